/**
 * The flow runner: runs a flow's steps in order through the script sandbox, each with the
 * flow's namespace view as `ctx.cache`. A step that returns `null` drops the event. A memoized
 * step (`cache: { key, ttl }`) goes through flowcache's `memoize` (getOrSet: single flight per
 * key), so a repeated input is answered from the step cache without running the script.
 */
import { createHash, randomUUID } from 'node:crypto'
import { relative, isAbsolute } from 'node:path'
import {
  Cache,
  ClosedError,
  InvalidArgumentError,
  hashArguments,
  silentLogger,
  type Logger,
} from '../flowcache.js'
import {
  createSandbox,
  ScriptError,
  type LogEntry,
  type RunLimits,
  type Sandbox,
  type SandboxOptions,
} from '../sandbox/index.js'
import type { RefreshingResource } from '../resources/refreshing.js'
import { ConnectionMissingError, FlowStepError } from './errors.js'
import { parseKeyTemplate, renderKeyTemplate, type TemplatePart } from './key-template.js'
import type {
  FlowDefinition,
  FlowRunnerLike,
  FlowRunResult,
  StepDefinition,
  StepReport,
} from './types.js'

/** Creates the sandbox of a tenant. */
export type SandboxFactory = (tenant: string) => Promise<Sandbox>

/** Options of {@link FlowRunner}. */
export interface FlowRunnerOptions {
  /**
   * The root cache. Each flow works in `cache.namespace('tenant:<tenant>').namespace('flow:<name>')`;
   * the runner never closes it.
   */
  cache: Cache
  /**
   * How each tenant's sandbox is made, on the tenant's first run: options for `createSandbox`,
   * or a function that creates it. The runner owns the sandboxes and closes them in `close()`.
   * @default createSandbox with its defaults
   */
  sandboxes?: SandboxOptions | SandboxFactory
  /** Limits of every step run, over the sandbox's. @default the sandbox's limits */
  limits?: Partial<RunLimits>
  /** Where the runner reports failed steps. @default silentLogger */
  logger?: Logger
  /**
   * The host's connections: a refreshing resource (usually a `fileResource` of the connections
   * file) holding connection settings by name. Each run of a flow that declares `connections`
   * reads it (`get({ debug })`: a debug run loads it fresh) and hands the script only the
   * declared entries as `ctx.connections`. The runner never starts or stops it.
   * @default none: flows that declare connections fail with `ConnectionMissingError`
   */
  connections?: RefreshingResource<Record<string, unknown>>
}

/** Options of one run. */
export interface FlowRunOptions {
  /**
   * A debug run: every step's script runs, memoized or not; the step cache is neither read nor
   * written (the step reports `hit: null, bypassed: true`), and the connections are loaded
   * fresh, bypassing the held copy. `ctx.cache` is the flow's real namespace all the same.
   * @default false
   */
  debug?: boolean
  /** Id of the run, shown to scripts as `ctx.flow.runId`. @default a random UUID */
  runId?: string
}

/** The namespace of a flow: `tenant:<tenant>` → `flow:<name>`. */
export function flowNamespace(cache: Cache, flow: Pick<FlowDefinition, 'tenant' | 'name'>): Cache {
  return cache.namespace(`tenant:${flow.tenant}`).namespace(`flow:${flow.name}`)
}

/** Name of the namespace, inside the flow's, that holds a memoized step's results. */
export function stepCacheNamespace(step: Pick<StepDefinition, 'name'>): string {
  return `step:${step.name}`
}

/**
 * The key of a memoized step's result for an input event: `<script hash>:<key>`, where the
 * script hash (16 characters of the script's sha256, base64url) makes a changed script miss,
 * and `<key>` is the step's key template rendered against the event, or `event:<sha256 of the
 * canonical event>` without a template.
 */
export function stepCacheKey(step: StepDefinition, event: unknown, parts?: TemplatePart[]): string {
  const scriptHash = createHash('sha256').update(step.script).digest('base64url').slice(0, 16)
  if (step.cache?.key === undefined) return `${scriptHash}:event:${hashArguments([event])}`
  const template = parts ?? templateParts(step.cache.key)
  return `${scriptHash}:${renderKeyTemplate(template, event)}`
}

function templateParts(template: string): TemplatePart[] {
  const parsed = parseKeyTemplate(template)
  if ('problems' in parsed) {
    throw InvalidArgumentError.format('cache.key', parsed.problems[0]?.message ?? 'is not valid')
  }
  return parsed.parts
}

/** A path for messages: relative to the current directory when the file is under it. */
function displayPath(file: string): string {
  const shown = relative(process.cwd(), file)
  return shown === '' || shown.startsWith('..') || isAbsolute(shown) ? file : shown
}

/** Freezes `value` and everything in it; returns it. */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const key of Reflect.ownKeys(value))
      deepFreeze((value as Record<PropertyKey, unknown>)[key])
  }
  return value
}

/** The frozen, empty `ctx.connections` of a flow that declares none. */
const NO_CONNECTIONS: Readonly<Record<string, unknown>> = Object.freeze({})

/** Runs flows; see the module comment. Implements {@link FlowRunnerLike}. */
export class FlowRunner implements FlowRunnerLike {
  readonly #cache: Cache
  readonly #createSandbox: SandboxFactory
  readonly #limits: Partial<RunLimits> | undefined
  readonly #logger: Logger
  readonly #connections: RefreshingResource<Record<string, unknown>> | undefined
  readonly #sandboxes = new Map<string, Promise<Sandbox>>()
  readonly #templates = new Map<string, TemplatePart[]>()
  #closed = false

  constructor(options: FlowRunnerOptions) {
    if (typeof options !== 'object' || options === null || !(options.cache instanceof Cache)) {
      throw InvalidArgumentError.format('cache', 'must be a flowcache Cache (createCache())')
    }
    this.#cache = options.cache
    const sandboxes = options.sandboxes ?? {}
    this.#createSandbox =
      typeof sandboxes === 'function'
        ? sandboxes
        : () => createSandbox({ logger: options.logger, ...sandboxes })
    const connections = options.connections
    if (
      connections !== undefined &&
      (typeof connections !== 'object' ||
        connections === null ||
        typeof connections.get !== 'function')
    ) {
      throw InvalidArgumentError.format(
        'connections',
        'must be a refreshing resource (fileResource or createRefreshingResource)',
      )
    }
    this.#limits = options.limits
    this.#logger = options.logger ?? silentLogger
    this.#connections = connections
  }

  /**
   * Runs `flow` on `event` (a JSON object, usually `{ data, meta? }`): each step gets the
   * previous step's result; a step returning `null` drops the event and ends the run. Rejects
   * with `FlowStepError` (`E_FLOW_STEP`, with the flow, step, file and line, and the step's
   * typed error as `cause`) when a step fails, and with `InvalidArgumentError` before anything
   * runs when `event` is not a JSON object. A flow that declares connections fails before any
   * step runs with `ConnectionMissingError` (`E_CONNECTION_MISSING`) when one is not in the
   * connections resource, and with `ResourceLoadError` (`E_RESOURCE_LOAD`) when the resource has
   * no value and cannot load one (or, for a debug run, cannot load a fresh one).
   */
  async run(
    flow: FlowDefinition,
    event: unknown,
    options: FlowRunOptions = {},
  ): Promise<FlowRunResult> {
    if (this.#closed) throw new ClosedError('the flow runner was closed; create a new one')
    if (typeof event !== 'object' || event === null || Array.isArray(event)) {
      throw InvalidArgumentError.format(
        'event',
        `must be a JSON object like { "data": … }; got ${Array.isArray(event) ? 'an array' : event === null ? 'null' : typeof event}`,
      )
    }
    const runId = options.runId ?? randomUUID()
    const debug = options.debug === true
    const started = performance.now()
    const view = flowNamespace(this.#cache, flow)
    const connections = await this.#connectionsOf(flow, debug)
    const sandbox = await this.#sandboxOf(flow.tenant)
    const steps: StepReport[] = []
    let current: Record<string, unknown> | null = event as Record<string, unknown>
    for (const step of flow.steps) {
      const input: Record<string, unknown> = current
      const stepStarted = performance.now()
      let logs: LogEntry[] | undefined
      const runScript = async (): Promise<Record<string, unknown> | null> => {
        const result = await sandbox.run(step.script, {
          event: input,
          ctx: {
            cache: view,
            flow: { name: flow.name, runId, tenant: flow.tenant, step: step.name },
            connections,
          },
          limits: this.#limits,
          filename: `${flow.name}.${step.name}.js`,
        })
        logs = result.logs
        return result.value
      }
      let hit: boolean | null = null
      try {
        if (step.cache === undefined || debug) {
          current = await runScript()
        } else {
          const key = stepCacheKey(step, input, this.#templateOf(step.cache.key))
          const memoized = view.memoize(runScript, {
            key: () => key,
            ttl: step.cache.ttlMs,
            namespace: stepCacheNamespace(step),
          })
          const outcome = await memoized.run()
          current = outcome.value
          hit = outcome.hit
        }
      } catch (error) {
        throw this.#stepError(flow, step, runId, error)
      }
      const report: StepReport = { name: step.name, hit, ms: performance.now() - stepStarted }
      if (debug && step.cache !== undefined) report.bypassed = true
      if (logs !== undefined) report.logs = logs
      steps.push(report)
      if (current === null) break
    }
    return {
      runId,
      flow: flow.name,
      output: current,
      dropped: current === null,
      steps,
      ms: performance.now() - started,
    }
  }

  /** Closes every sandbox the runner created (a run in progress rejects); idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const sandboxes = [...this.#sandboxes.values()]
    this.#sandboxes.clear()
    await Promise.all(
      sandboxes.map(async (pending) => {
        try {
          await (await pending).close()
        } catch {
          // A sandbox that could not be created has nothing to close.
        }
      }),
    )
  }

  /**
   * The `ctx.connections` of a run: a frozen copy of the entries `flow` declares, read from the
   * connections resource (fresh for a debug run). Other entries are never copied.
   */
  async #connectionsOf(
    flow: FlowDefinition,
    debug: boolean,
  ): Promise<Readonly<Record<string, unknown>>> {
    const names = flow.connections ?? []
    if (names.length === 0) return NO_CONNECTIONS
    const resource = this.#connections
    const missing = (connection: string, file: string | undefined): ConnectionMissingError =>
      new ConnectionMissingError({ flow: flow.name, flowFile: flow.file, connection, file })
    if (resource === undefined) throw missing(names[0] as string, undefined)
    const all = await resource.get({ debug })
    const picked: Array<[string, unknown]> = []
    for (const name of names) {
      if (typeof all !== 'object' || all === null || !Object.hasOwn(all, name)) {
        throw missing(name, resource.name)
      }
      picked.push([name, structuredClone(all[name])])
    }
    return deepFreeze(Object.fromEntries(picked))
  }

  #templateOf(template: string | undefined): TemplatePart[] | undefined {
    if (template === undefined) return undefined
    let parts = this.#templates.get(template)
    if (parts === undefined) {
      parts = templateParts(template)
      if (this.#templates.size >= 1000) this.#templates.clear()
      this.#templates.set(template, parts)
    }
    return parts
  }

  /** The tenant's sandbox, created on first use; a failed creation is retried next time. */
  #sandboxOf(tenant: string): Promise<Sandbox> {
    let sandbox = this.#sandboxes.get(tenant)
    if (sandbox === undefined) {
      sandbox = this.#createSandbox(tenant)
      this.#sandboxes.set(tenant, sandbox)
      sandbox.catch(() => {
        if (this.#sandboxes.get(tenant) === sandbox) this.#sandboxes.delete(tenant)
      })
    }
    return sandbox
  }

  #stepError(
    flow: FlowDefinition,
    step: StepDefinition,
    runId: string,
    error: unknown,
  ): FlowStepError {
    let line = step.line
    if (error instanceof ScriptError && error.line !== undefined && step.scriptLine !== undefined) {
      line = step.scriptLine + error.line - 1
    }
    const logs = (error as { logs?: unknown }).logs
    const failure = new FlowStepError(
      {
        flow: flow.name,
        step: step.name,
        file: flow.file,
        line,
        runId,
        logs: Array.isArray(logs) ? (logs as LogEntry[]) : [],
        cause: error,
      },
      displayPath(flow.file),
    )
    this.#logger.warn('flow step failed', {
      flow: flow.name,
      step: step.name,
      runId,
      code: failure.causeCode,
    })
    return failure
  }
}
