/**
 * The script sandbox: runs a flow step's JavaScript in a V8 isolate of its own (isolated-vm),
 * with a CPU-time, wall-time and memory budget, and hands it `event` and `ctx`.
 *
 * One {@link Sandbox} owns one isolate; the flow host keeps one sandbox per tenant. An isolate
 * is a separate V8 heap with its own memory limit, so a tenant that exhausts it loses only its
 * own isolate, and its CPU time is measured separately from every other tenant's. Runs of one
 * sandbox execute one at a time, which makes the CPU time of the isolate the CPU time of the
 * run, and means stopping a run never takes another run down with it. Every run gets a fresh
 * context (its own global object and built-ins), so a run cannot leave anything behind for the
 * next one, and compiled scripts are cached per isolate, so a fresh context costs little.
 *
 * When a run exceeds a budget the isolate is disposed, which stops it wherever it is, and the
 * next run starts a new isolate.
 */
import type IsolatedVm from 'isolated-vm'
import { BOOTSTRAP_SOURCE } from './bootstrap.js'
import { dispatch, errorReply, type BridgeRun, type Reply } from './bridge.js'
import {
  SandboxSetupError,
  ScriptError,
  ScriptLimitError,
  ScriptMemoryError,
  ScriptResultError,
  ScriptRunError,
  ScriptTimeoutError,
  type LogEntry,
  type ScriptErrorDetails,
} from './errors.js'
import {
  checkRunLimits,
  resolveRunLimits,
  type ResolvedRunLimits,
  type RunLimits,
} from './limits.js'
import {
  Cache,
  ClosedError,
  InvalidArgumentError,
  UnsupportedValueError,
  silentLogger,
  type Lock,
  type Logger,
} from '../flowcache.js'

type Ivm = typeof IsolatedVm

/** Options of {@link createSandbox}. */
export interface SandboxOptions {
  /**
   * Heap limit of the sandbox's isolate, in MiB (isolated-vm's `memoryLimit`; at least 8). A run
   * that goes over it is stopped with `ScriptMemoryError`. A hostile script can use up to 2-3
   * times this much before it is stopped. @default 64
   */
  memoryLimitMb?: number
  /** Limits of every run of this sandbox; a run can override them. @default {@link DEFAULT_RUN_LIMITS} */
  limits?: Partial<RunLimits>
  /** How many compiled scripts the sandbox keeps per isolate. @default 256 */
  compiledScripts?: number
  /** Where host-side failures of the bridge are reported (never shown to scripts). @default silentLogger */
  logger?: Logger
}

/** Plain data a script sees as `ctx.flow` (frozen). */
export interface FlowInfo {
  /** Flow name. */
  name: string
  /** Id of this run of the flow. */
  runId: string
  /** Tenant the flow belongs to. */
  tenant: string
  /** Name of the step being run, when the flow has several. */
  step?: string
}

/** What the host hands a run. */
export interface ScriptContext {
  /**
   * The flow's namespace view (`tenant` → `flow`): `ctx.cache`, `ctx.locks` and `ctx.rateLimit`
   * act on it and nothing else. Nothing a script passes can widen it.
   */
  cache: Cache
  /** Shown to the script as `ctx.flow`. */
  flow: FlowInfo
  /**
   * Shown to the script as `ctx.connections` (deeply frozen): the connection settings the flow
   * may read, by name. JSON data only; the script gets a copy made for its run, never a
   * reference to this object. @default {}
   */
  connections?: Record<string, unknown>
}

/** Options of {@link Sandbox.run}. */
export interface RunOptions {
  /** The event, a JSON object (`{ data, meta? }`); the script gets a copy. */
  event: Record<string, unknown>
  /** The run's `ctx`. */
  ctx: ScriptContext
  /** Limits of this run, over the sandbox's. */
  limits?: Partial<RunLimits>
  /** File name shown in the script's stack traces. @default `<flow name>.js` */
  filename?: string
}

/** The outcome of a run that finished. */
export interface RunResult {
  /** The event the script returned (a copy), or `null` when it dropped the event. */
  value: Record<string, unknown> | null
  /** What the script logged, within `maxLogLines` and `maxLogBytes`. */
  logs: LogEntry[]
  /** Whether log lines were cut or dropped because of those caps. */
  logsTruncated: boolean
  /** CPU time the script used, in ms. */
  cpuMs: number
  /** Time from the start of the script to its result, in ms. */
  wallMs: number
  /** `ctx` calls the script made. */
  calls: number
}

/** Counters of a sandbox, for metrics. */
export interface SandboxStats {
  /** Runs started. */
  runs: number
  /** Runs that ended with an error (any kind). */
  failed: number
  /** Runs stopped for their CPU or wall budget. */
  timeouts: number
  /** Runs stopped for the memory limit. */
  memoryKills: number
  /** Isolates created (the first one, then one after every stopped run). */
  isolates: number
}

/** Largest script source accepted, in UTF-16 code units. */
export const MAX_SOURCE_LENGTH = 1024 * 1024

/** The text the script is wrapped in: it becomes the body of an async function. */
const PREFIX = '(async function (event, ctx) {'
const SUFFIX = '\n})'

const LOG_LEVELS = new Set(['debug', 'info', 'warn', 'error'])

/** Why a run was stopped by the host. */
type Stop =
  | { kind: 'cpu' | 'wall'; limitMs: number; usedMs: number }
  | { kind: 'calls'; limit: number }
  | { kind: 'closed' }

/** Everything one run keeps on the host side. */
interface RunState extends BridgeRun {
  readonly limits: ResolvedRunLimits
  readonly controller: AbortController
  readonly logs: LogEntry[]
  logBytes: number
  logsTruncated: boolean
  /** Log lines that reached the host (kept, cut or dropped). */
  linesIn: number
  /** Called once `linesIn` reaches the number of lines the script sent before its answer. */
  linesWaiter: { lines: number; arrived: () => void } | undefined
  /** Set when the run is over: lines that arrive later are ignored. */
  ended: boolean
  calls: number
  stop: Stop | undefined
  stopRun: (stop: Stop) => void
}

/** The live isolate of a sandbox and what was compiled in it. */
interface Runtime {
  readonly isolate: IsolatedVm.Isolate
  readonly bootstrap: IsolatedVm.Script
  readonly scripts: Map<string, IsolatedVm.Script>
}

/** Whether the process was started with `--no-node-snapshot` (needed by isolated-vm on Node ≥ 20). */
function hasNoSnapshotFlag(): boolean {
  if (process.execArgv.includes('--no-node-snapshot')) return true
  return (process.env.NODE_OPTIONS ?? '').split(/\s+/).includes('--no-node-snapshot')
}

/**
 * Checks that this process can host isolates, before any is created: on Node 20 and later,
 * isolated-vm crashes the process unless Node runs with `--no-node-snapshot`. Throws
 * `SandboxSetupError` saying what to add.
 */
export function checkSandboxRuntime(): void {
  const major = Number(process.versions.node.split('.')[0])
  if (major >= 20 && !hasNoSnapshotFlag()) {
    throw new SandboxSetupError(
      `the script sandbox needs Node started with --no-node-snapshot (isolated-vm requires it on Node ${major}); run \`node --no-node-snapshot …\` or set NODE_OPTIONS=--no-node-snapshot`,
    )
  }
}

async function loadIsolatedVm(): Promise<Ivm> {
  try {
    const module = (await import('isolated-vm')) as { default: Ivm }
    return module.default
  } catch (cause) {
    throw new SandboxSetupError(
      'isolated-vm could not be loaded; install it with `npm install isolated-vm@5` (it compiles from source: python3, make and a C++ compiler are needed)',
      { cause },
    )
  }
}

function byteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

function checkCount(value: number, name: string, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw InvalidArgumentError.format(
      name,
      `must be an integer of at least ${min}; got ${String(value)}`,
    )
  }
  return value
}

/**
 * Creates a sandbox. Checks the runtime first (see {@link checkSandboxRuntime}) and loads
 * isolated-vm; the isolate itself is created by the first run.
 */
export async function createSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const memoryLimitMb = checkCount(options.memoryLimitMb ?? 64, 'memoryLimitMb', 8)
  const compiledScripts = checkCount(options.compiledScripts ?? 256, 'compiledScripts', 1)
  const limits = checkRunLimits(options.limits)
  checkSandboxRuntime()
  const ivm = await loadIsolatedVm()
  return new Sandbox(ivm, {
    memoryLimitMb,
    compiledScripts,
    limits,
    logger: options.logger ?? silentLogger,
  })
}

/** Settings of a sandbox after {@link createSandbox} checked them. */
interface SandboxSettings {
  memoryLimitMb: number
  compiledScripts: number
  limits: RunLimits
  logger: Logger
}

/** Finds `filename:line:column` in a stack trace and returns the position in the script source. */
export function positionIn(
  stack: string,
  filename: string,
): { line: number; column: number } | undefined {
  const marker = `${filename}:`
  let at = stack.indexOf(marker)
  while (at >= 0) {
    const match = /^(\d+):(\d+)/.exec(stack.slice(at + marker.length, at + marker.length + 24))
    if (match !== null) {
      const line = Number(match[1])
      const column = Number(match[2])
      return { line, column: line === 1 ? Math.max(1, column - PREFIX.length) : column }
    }
    at = stack.indexOf(marker, at + 1)
  }
  return undefined
}

/** A script sandbox; create it with {@link createSandbox}. */
export class Sandbox {
  readonly #ivm: Ivm
  readonly #settings: SandboxSettings
  readonly #stats: SandboxStats = { runs: 0, failed: 0, timeouts: 0, memoryKills: 0, isolates: 0 }
  #runtime: Runtime | undefined
  #tail: Promise<unknown> = Promise.resolve()
  #current: RunState | undefined
  #closed = false

  /** @internal use {@link createSandbox} */
  constructor(ivm: Ivm, settings: SandboxSettings) {
    this.#ivm = ivm
    this.#settings = settings
  }

  /** Counters since the sandbox was created. */
  stats(): SandboxStats {
    return { ...this.#stats }
  }

  /**
   * Runs `source` as the body of an async function `(event, ctx)` and returns what it returned:
   * the event (a copy) or `null`. Runs of one sandbox execute one at a time, in call order.
   *
   * Rejects with `ScriptError` when the script throws or does not compile, `ScriptTimeoutError`
   * when it exceeds `cpuTime` or `wallTime`, `ScriptMemoryError` when its isolate goes over the
   * memory limit, `ScriptResultError` when its result cannot be passed on, `ScriptLimitError`
   * after too many `ctx` calls, and `InvalidArgumentError` (before anything runs) for bad options.
   */
  async run(source: string, options: RunOptions): Promise<RunResult> {
    if (this.#closed) throw new ClosedError('the sandbox was closed; create a new one')
    if (typeof source !== 'string') {
      throw InvalidArgumentError.format('source', 'must be the script text')
    }
    if (source.length > MAX_SOURCE_LENGTH) {
      throw InvalidArgumentError.format('source', `is longer than ${MAX_SOURCE_LENGTH} characters`)
    }
    if (typeof options !== 'object' || options === null) {
      throw InvalidArgumentError.format('options', 'must be an object with { event, ctx }')
    }
    const event: unknown = options.event
    if (typeof event !== 'object' || event === null || Array.isArray(event)) {
      throw InvalidArgumentError.format('event', 'must be a JSON object like { data, meta }')
    }
    const ctx = options.ctx
    if (typeof ctx !== 'object' || ctx === null || !(ctx.cache instanceof Cache)) {
      throw InvalidArgumentError.format('ctx.cache', "must be the flow's Cache namespace view")
    }
    const flow = checkFlow(ctx.flow)
    const connections = checkConnections(ctx.connections)
    const limits = resolveRunLimits(this.#settings.limits, options.limits)
    const filename = options.filename ?? `${flow.name}.js`
    if (typeof filename !== 'string' || filename === '' || filename.length > 200) {
      throw InvalidArgumentError.format(
        'filename',
        'must be a non-empty string of at most 200 characters',
      )
    }
    let eventCopy: IsolatedVm.ExternalCopy
    try {
      eventCopy = new this.#ivm.ExternalCopy(event)
    } catch (cause) {
      throw InvalidArgumentError.format(
        'event',
        'must be JSON data (no functions or class instances)',
        {
          cause,
        },
      )
    }
    const run = this.#tail.then(() =>
      this.#execute(source, filename, eventCopy, ctx.cache, flow, connections, limits),
    )
    this.#tail = run.catch(() => undefined)
    return run
  }

  /** Stops the run in progress (it rejects with `ClosedError`), disposes the isolate; idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#current?.stopRun({ kind: 'closed' })
    this.#disposeRuntime()
    await this.#tail
  }

  async #runtimeReady(): Promise<Runtime> {
    if (this.#runtime !== undefined && !this.#runtime.isolate.isDisposed) return this.#runtime
    const isolate = new this.#ivm.Isolate({ memoryLimit: this.#settings.memoryLimitMb })
    this.#stats.isolates++
    try {
      const bootstrap = await isolate.compileScript(BOOTSTRAP_SOURCE, {
        filename: 'flowcache:sandbox',
      })
      this.#runtime = { isolate, bootstrap, scripts: new Map() }
      return this.#runtime
    } catch (error) {
      isolate.dispose()
      throw error
    }
  }

  #disposeRuntime(): void {
    const runtime = this.#runtime
    this.#runtime = undefined
    if (runtime !== undefined && !runtime.isolate.isDisposed) runtime.isolate.dispose()
  }

  async #compile(runtime: Runtime, source: string, filename: string): Promise<IsolatedVm.Script> {
    const key = `${filename}\0${source}`
    const cached = runtime.scripts.get(key)
    if (cached !== undefined) {
      runtime.scripts.delete(key)
      runtime.scripts.set(key, cached)
      return cached
    }
    const script = await runtime.isolate.compileScript(PREFIX + source + SUFFIX, { filename })
    runtime.scripts.set(key, script)
    if (runtime.scripts.size > this.#settings.compiledScripts) {
      const oldest = runtime.scripts.keys().next()
      if (oldest.done !== true) {
        runtime.scripts.get(oldest.value)?.release()
        runtime.scripts.delete(oldest.value)
      }
    }
    return script
  }

  async #execute(
    source: string,
    filename: string,
    eventCopy: IsolatedVm.ExternalCopy,
    cache: Cache,
    flow: FlowInfo,
    connections: Record<string, unknown>,
    limits: ResolvedRunLimits,
  ): Promise<RunResult> {
    this.#stats.runs++
    if (this.#closed) {
      eventCopy.release()
      this.#stats.failed++
      throw new ClosedError('the sandbox was closed; create a new one')
    }
    const ivm = this.#ivm
    const runtime = await this.#runtimeReady()
    const isolate = runtime.isolate
    const controller = new AbortController()
    let rejectStopped: (stop: Stop) => void = () => undefined
    const stopped = new Promise<never>((_, reject) => {
      rejectStopped = reject
    })
    stopped.catch(() => undefined)
    const state: RunState = {
      cache,
      signal: controller.signal,
      locks: new Map<string, Lock>(),
      limits,
      controller,
      logs: [],
      logBytes: 0,
      logsTruncated: false,
      linesIn: 0,
      linesWaiter: undefined,
      ended: false,
      calls: 0,
      stop: undefined,
      stopRun: (stop) => {
        if (state.stop !== undefined) return
        state.stop = stop
        // Disposing the isolate terminates whatever it is running, wherever it is.
        if (this.#runtime === runtime) this.#disposeRuntime()
        else if (!isolate.isDisposed) isolate.dispose()
        controller.abort(new ClosedError('the run was stopped'))
        rejectStopped(stop)
      },
    }
    this.#current = state

    let settle: IsolatedVm.Reference | undefined
    // Answers one ctx call: copies the reply into the isolate and resolves the script's promise.
    const answer = (id: number, reply: Reply): void => {
      if (state.stop !== undefined || isolate.isDisposed || settle === undefined) return
      let copy: IsolatedVm.ExternalCopy
      try {
        copy = new ivm.ExternalCopy(reply)
      } catch {
        copy = new ivm.ExternalCopy(
          errorReply(
            new UnsupportedValueError(
              'the value read from the cache cannot be copied into a script',
            ),
            '',
          ),
        )
      }
      settle.apply(undefined, [id, copy.copyInto({ release: true })]).catch(() => undefined)
    }
    const call = new ivm.Callback(
      (operation: unknown, args: unknown, id: unknown) => {
        if (typeof id !== 'number') return
        state.calls++
        if (state.calls > limits.maxCalls) {
          state.stopRun({ kind: 'calls', limit: limits.maxCalls })
          return
        }
        void dispatch(state, operation, args, (error) => {
          if (!controller.signal.aborted) {
            this.#settings.logger.warn('flowcache sandbox: a ctx call failed in the host', {
              error,
              flow: flow.name,
            })
          }
        }).then((reply) => answer(id, reply))
      },
      { ignored: true },
    )
    // Log lines arrive as their own messages, in the order the script wrote them, but not
    // necessarily before the script's answer: see allLines().
    const log = new ivm.Callback(
      (level: unknown, text: unknown) => {
        if (state.ended) return
        state.linesIn++
        this.#log(state, level, text)
        const waiter = state.linesWaiter
        if (waiter !== undefined && state.linesIn >= waiter.lines) {
          state.linesWaiter = undefined
          waiter.arrived()
        }
      },
      { ignored: true },
    )
    const config = JSON.stringify({ flow, connections, limits })

    let context: IsolatedVm.Context | undefined
    const cpuStart = isolate.cpuTime
    const started = performance.now()
    const cpuMs = (): number => Number(isolate.cpuTime - cpuStart) / 1e6
    // The watchdog: polls the isolate's CPU time and the wall clock from the host's event loop,
    // which stays free while the isolate runs on its own thread.
    const tick = Math.max(1, Math.min(10, Math.floor(limits.cpuMs / 10)))
    const watchdog = setInterval(() => {
      if (isolate.isDisposed) return
      const cpu = cpuMs()
      if (cpu > limits.cpuMs) state.stopRun({ kind: 'cpu', limitMs: limits.cpuMs, usedMs: cpu })
    }, tick)
    const wallTimer = setTimeout(() => {
      state.stopRun({
        kind: 'wall',
        limitMs: limits.wallMs,
        usedMs: performance.now() - started,
      })
    }, limits.wallMs)

    // Handles into the run's context; all released when the run ends, so the context can be
    // collected (a handle left behind keeps the whole context alive in the isolate).
    const handles: Array<{ release(): void }> = []
    const hold = <T extends { release(): void }>(handle: T): T => {
      handles.push(handle)
      return handle
    }
    const work = (async (): Promise<unknown> => {
      context = hold(await isolate.createContext())
      const setup = hold(await runtime.bootstrap.run(context, { reference: true }))
      const bridge = hold(
        (await setup.apply(undefined, [call, log, config], {
          result: { reference: true },
        })) as IsolatedVm.Reference<{ run: unknown; settle: unknown }>,
      )
      const runner = hold(await bridge.get('run', { reference: true }))
      settle = hold(await bridge.get('settle', { reference: true }))
      const script = await this.#compile(runtime, source, filename)
      const fn = hold(await script.run(context, { reference: true, timeout: limits.cpuMs }))
      return runner.apply(undefined, [fn.derefInto(), eventCopy.copyInto({ release: true })], {
        result: { promise: true },
        timeout: limits.cpuMs,
      })
    })()
    work.catch(() => undefined)

    let cpu = 0
    try {
      const out = await Promise.race([work, stopped])
      cpu = isolate.isDisposed ? cpu : cpuMs()
      const answer = await allLines(state, out, stopped)
      const result = this.#decode(state, answer, filename)
      return {
        value: result,
        logs: state.logs,
        logsTruncated: state.logsTruncated,
        cpuMs: cpu,
        wallMs: performance.now() - started,
        calls: state.calls,
      }
    } catch (error) {
      this.#stats.failed++
      throw this.#failure(state, runtime, error, filename, limits)
    } finally {
      clearInterval(watchdog)
      clearTimeout(wallTimer)
      state.ended = true
      state.linesWaiter = undefined
      if (this.#current === state) this.#current = undefined
      if (!controller.signal.aborted) controller.abort(new ClosedError('the run is over'))
      if (state.stop !== undefined) await releaseLocks(state)
      settle = undefined
      if (!isolate.isDisposed) {
        for (const handle of handles.reverse()) {
          try {
            handle.release()
          } catch {
            // already released with its isolate
          }
        }
      }
    }
  }

  /** Appends one log line within the run's caps. */
  #log(state: RunState, level: unknown, text: unknown): void {
    if (level === 'dropped' || typeof text !== 'string') {
      state.logsTruncated = true
      return
    }
    const limits = state.limits
    if (state.logs.length >= limits.maxLogLines || state.logBytes >= limits.maxLogBytes) {
      state.logsTruncated = true
      return
    }
    let message = text
    let bytes = byteLength(message)
    const room = limits.maxLogBytes - state.logBytes
    if (bytes > room) {
      message = Buffer.from(message, 'utf8').subarray(0, room).toString('utf8')
      bytes = room
      state.logsTruncated = true
    }
    state.logBytes += bytes
    const entryLevel = typeof level === 'string' && LOG_LEVELS.has(level) ? level : 'info'
    state.logs.push({ level: entryLevel as LogEntry['level'], message })
  }

  /** Turns the runner's answer into the run's result, or throws the matching typed error. */
  #decode(state: RunState, out: unknown, filename: string): Record<string, unknown> | null {
    const logs = state.logs
    if (typeof out !== 'string' || out === '') {
      throw new ScriptError('the script ended without a result', { logs })
    }
    const tag = out[0]
    const rest = out.slice(1)
    switch (tag) {
      case 'N':
        return null
      case 'R': {
        if (byteLength(rest) > state.limits.maxResultBytes) {
          throw tooLarge(state.limits.maxResultBytes, logs)
        }
        const value: unknown = JSON.parse(rest)
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          throw new ScriptResultError(
            `the script returned ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value} after JSON conversion; return the event object, or null to drop it`,
            { logs },
          )
        }
        return value as Record<string, unknown>
      }
      case 'U':
        throw new ScriptResultError(
          'the script returned nothing; return the event (changed or not) to pass it on, or null to drop it',
          { logs },
        )
      case 'T':
        throw new ScriptResultError(
          `the script returned ${rest === 'array' ? 'an array' : `a ${rest.slice(0, 20)}`}; return the event object, or null to drop it`,
          { logs },
        )
      case 'J':
        throw new ScriptResultError(`the script's result is not JSON data: ${rest.slice(0, 300)}`, {
          logs,
        })
      case 'L':
        throw tooLarge(state.limits.maxResultBytes, logs)
      case 'E':
        throw scriptError(rest, filename, logs)
      default:
        throw new ScriptError('the script ended without a result', { logs })
    }
  }

  /** Maps whatever ended a run to the typed error the caller gets. */
  #failure(
    state: RunState,
    runtime: Runtime,
    error: unknown,
    filename: string,
    limits: ResolvedRunLimits,
  ): Error {
    const logs = state.logs
    const stop = state.stop
    if (stop !== undefined) {
      switch (stop.kind) {
        case 'cpu':
        case 'wall':
          this.#stats.timeouts++
          return new ScriptTimeoutError(stop.kind, stop.limitMs, stop.usedMs, { logs })
        case 'calls':
          return new ScriptLimitError(
            `the script made more than limits.maxCalls (${stop.limit}) ctx calls and was stopped`,
            { logs },
          )
        case 'closed':
          return new ClosedError('the sandbox was closed while the script ran')
      }
    }
    if (error instanceof ScriptRunError || error instanceof InvalidArgumentError) return error
    const message = error instanceof Error ? error.message : ''
    if (runtime.isolate.isDisposed) {
      if (this.#runtime === runtime) this.#runtime = undefined
      this.#stats.memoryKills++
      return new ScriptMemoryError(
        `the script went over the sandbox's memory limit (${this.#settings.memoryLimitMb} MiB) and was stopped; use less memory per event or raise memoryLimitMb`,
        { logs },
      )
    }
    if (/timed out/i.test(message)) {
      // isolated-vm's own timeout on the synchronous part; treat it like the watchdog's.
      this.#stats.timeouts++
      this.#disposeRuntime()
      return new ScriptTimeoutError('cpu', limits.cpuMs, limits.cpuMs, { logs })
    }
    if (error instanceof SyntaxError || (error instanceof Error && error.name === 'SyntaxError')) {
      return compileError(message, filename, logs)
    }
    return new ScriptError('the script failed in the sandbox', { logs, cause: error })
  }
}

/**
 * Reads the runner's `<lines>,<answer>` and waits until the host has received the `lines` log
 * lines the script sent before its answer (they travel separately and can arrive after it), or
 * until the run is stopped. Returns the answer, or `undefined` when `out` is not in that form.
 */
async function allLines(
  state: RunState,
  out: unknown,
  stopped: Promise<never>,
): Promise<string | undefined> {
  if (typeof out !== 'string') return undefined
  const comma = out.indexOf(',')
  const lines = Number(out.slice(0, comma))
  if (comma < 1 || comma > 12 || !Number.isSafeInteger(lines) || lines < 0) return undefined
  // The bootstrap sends at most maxLogLines lines and one "dropped" marker.
  const expected = Math.min(lines, state.limits.maxLogLines + 1)
  if (state.linesIn < expected) {
    const arrived = new Promise<void>((resolve) => {
      state.linesWaiter = { lines: expected, arrived: resolve }
    })
    await Promise.race([arrived, stopped])
  }
  return out.slice(comma + 1)
}

function tooLarge(max: number, logs: readonly LogEntry[]): ScriptResultError {
  return new ScriptResultError(
    `the script's result is larger than limits.maxResultBytes (${max} bytes); return less data or raise the limit`,
    { logs },
  )
}

/** A `ScriptError` from the runner's `E` answer: the script's own name, message, code and line. */
function scriptError(json: string, filename: string, logs: readonly LogEntry[]): ScriptError {
  let thrown: { name?: unknown; message?: unknown; code?: unknown; stack?: unknown } = {}
  try {
    const parsed: unknown = JSON.parse(json)
    if (typeof parsed === 'object' && parsed !== null) thrown = parsed
  } catch {
    // keep the defaults below
  }
  const details: ScriptErrorDetails = { logs }
  if (typeof thrown.name === 'string' && thrown.name !== '') details.scriptName = thrown.name
  if (typeof thrown.code === 'string' && thrown.code !== '') details.scriptCode = thrown.code
  if (typeof thrown.stack === 'string') {
    const position = positionIn(thrown.stack, filename)
    if (position !== undefined) {
      details.line = position.line
      details.column = position.column
    }
  }
  const message =
    typeof thrown.message === 'string' && thrown.message !== ''
      ? thrown.message
      : 'the script threw a value without a message'
  return new ScriptError(message, details)
}

/** A `ScriptError` for a script that does not compile; isolated-vm appends `[file:line:col]`. */
function compileError(message: string, filename: string, logs: readonly LogEntry[]): ScriptError {
  const details: ScriptErrorDetails = { logs, scriptName: 'SyntaxError' }
  const position = positionIn(message, filename)
  if (position !== undefined) {
    details.line = position.line
    details.column = position.column
  }
  const bracket = message.lastIndexOf(` [${filename}:`)
  return new ScriptError(bracket > 0 ? message.slice(0, bracket) : message, details)
}

/** Releases the locks a stopped run still held, so that they do not wait out their TTL. */
async function releaseLocks(state: RunState): Promise<void> {
  const held = [...state.locks.values()]
  state.locks.clear()
  await Promise.all(held.map((lock) => lock.release().catch(() => false)))
}

function checkFlow(flow: unknown): FlowInfo {
  if (typeof flow !== 'object' || flow === null) {
    throw InvalidArgumentError.format('ctx.flow', 'must be { name, runId, tenant, step? }')
  }
  const given = flow as Record<string, unknown>
  const info: FlowInfo = { name: '', runId: '', tenant: '' }
  for (const field of ['name', 'runId', 'tenant'] as const) {
    const value = given[field]
    if (typeof value !== 'string' || value === '') {
      throw InvalidArgumentError.format(`ctx.flow.${field}`, 'must be a non-empty string')
    }
    info[field] = value
  }
  if (given.step !== undefined) {
    if (typeof given.step !== 'string') {
      throw InvalidArgumentError.format('ctx.flow.step', 'must be a string')
    }
    info.step = given.step
  }
  return info
}

/**
 * Checks `ctx.connections` and returns a plain-data copy of it: an object (not a list) of JSON
 * data. The copy is what crosses into the isolate, so nothing the caller holds is shared.
 */
function checkConnections(connections: unknown): Record<string, unknown> {
  if (connections === undefined) return {}
  if (typeof connections !== 'object' || connections === null || Array.isArray(connections)) {
    throw InvalidArgumentError.format(
      'ctx.connections',
      'must be an object of connection settings by name',
    )
  }
  let text: string
  try {
    text = JSON.stringify(connections)
  } catch (cause) {
    throw InvalidArgumentError.format(
      'ctx.connections',
      'must be JSON data (no cycles or BigInts)',
      { cause },
    )
  }
  return JSON.parse(text) as Record<string, unknown>
}
