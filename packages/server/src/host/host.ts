/**
 * The flow host: triggers the loaded flows. HTTP flows run through a route table
 * (`dispatch(method, path, body)`), refreshed periodically and on demand for unknown routes under
 * flood protection; `schedule` flows tick; `events` flows read a JSONL file, stdin or a NATS
 * subject. Scheduled and event flows with `requireLeaderElection` run only on the replica that
 * leads the election `flow:<name>` of their tenant. `status()` reports it all, with a bounded
 * ring of recent runs per flow.
 */
import { hostname } from 'node:os'
import {
  ClosedError,
  InvalidArgumentError,
  parseDuration,
  stderrLogger,
  systemClock,
  type Cache,
  type Clock,
  type Duration,
  type Election,
  type Logger,
} from '../flowcache.js'
import type {
  FlowDefinition,
  FlowRunResult,
  FlowRunnerLike,
  HttpMethod,
  StepReport,
  Trigger,
} from '../flows/types.js'
import { ReloadGuard, type ReloadGuardStats, type ReloadOutcome } from './reload-guard.js'
import { RouteTable, type RouteConflict } from './routes.js'
import { Ticker, type Tick, type TickerStats } from './schedule.js'
import { startSource, type EventOrigin, type SourceHandle, type SourceStats } from './sources.js'
import { errorText as describe } from '../schema-text.js'

/** Where the host gets its flows: a function, or an object with a `load()` method. */
export type FlowLoader =
  | (() => FlowDefinition[] | Promise<FlowDefinition[]>)
  | { load(): FlowDefinition[] | Promise<FlowDefinition[]> }

/** Options of {@link createFlowHost}. */
export interface FlowHostOptions {
  /** Root cache: elections of leader-elected flows live in `tenant:<tenant>` of it. */
  cache: Cache
  /** Runs a flow for an event. */
  runner: FlowRunnerLike
  /** Loads the flows; called at `start()`, on every route refresh and on guarded reloads. */
  flows: FlowLoader
  /** How often the route table is rebuilt from the loader. @default '1m' */
  routeRefreshEvery?: Duration
  /**
   * Flood protection of reloads caused by unknown routes: at most `max` reloads start in any
   * trailing `per`; concurrent unknown requests share one reload. @default { max: 5, per: '1m' }
   */
  unknownRouteReloads?: { max?: number; per?: Duration }
  /**
   * Lease and renewal of the elections of leader-elected flows (see `cache.leader`).
   * @default { lease: '15s', renewEvery: lease / 3 }
   */
  leader?: { lease?: Duration; renewEvery?: Duration }
  /** Candidate id of this host in elections. @default `<hostname>:<pid>:<random>` */
  owner?: string
  /** Recent runs kept per flow for `status()`. @default 20 */
  recentRuns?: number
  /** Readable that `events: stdin` flows read. @default process.stdin */
  stdin?: NodeJS.ReadableStream
  /** NATS server of `events: nats` sources that name no `url`. @default 'nats://127.0.0.1:4222' */
  natsUrl?: string
  /** @default stderrLogger */
  logger?: Logger
  /** Time source of run timestamps and of the reload window. @default systemClock */
  clock?: Clock
}

/** Options of {@link FlowHost.dispatch}. */
export interface DispatchOptions {
  /** Passed to the runner: a debug run bypasses step caches. @default false */
  debug?: boolean
  /** Query parameters, merged over those of a `?query` in the path. */
  query?: Record<string, string | string[]>
}

/** The answer of {@link FlowHost.dispatch}. */
export type DispatchResult =
  | {
      kind: 'ok'
      status: 200
      flow: string
      params: Record<string, string>
      result: FlowRunResult
    }
  | {
      kind: 'not-found'
      status: 404
      /** What the unknown route did to the table. */
      reload: ReloadOutcome
    }
  | { kind: 'method-not-allowed'; status: 405; allow: HttpMethod[] }

/** One finished run, as kept in the ring of recent runs. */
export interface RunRecord {
  /** The runner's run id; absent when the run failed before the runner gave one. */
  runId?: string
  trigger: Trigger['kind']
  /** Revision of the flow that ran. */
  revision: string
  /** Start, in ms since the epoch (on the host's clock). */
  startedAt: number
  /** Wall time of the run, in ms. */
  ms: number
  ok: boolean
  dropped?: boolean
  /** Per-step reports, with their cache hits. */
  steps?: StepReport[]
  /** Why the run failed. */
  error?: { code?: string; message: string }
  /** Fencing token (decimal) of the leader term the run ran in. */
  leaderToken?: string
}

/** Run counters of one flow. */
export interface FlowRunCounts {
  /** Runs finished (ok or failed). */
  total: number
  failed: number
  /** Runs in progress. */
  running: number
  /** Ticks or events not run because this host was not the leader at that moment. */
  notLeader: number
}

/** One flow in {@link HostStatus}. */
export interface FlowStatus {
  name: string
  tenant: string
  revision: string
  file: string
  trigger: Trigger
  /** Whether this host runs the flow's trigger (always true for routed HTTP flows). */
  active: boolean
  /** Why the flow's trigger is not running, when it is not. */
  problem?: string
  leader?: { isLeader: boolean; token?: string; owner: string }
  runs: FlowRunCounts
  schedule?: TickerStats
  source?: SourceStats
  /** Recent runs, oldest first. */
  recent: RunRecord[]
}

/** What {@link FlowHost.status} reports. */
export interface HostStatus {
  state: 'new' | 'running' | 'stopping' | 'stopped'
  routes: {
    size: number
    /** When the table was last rebuilt, in ms since the epoch. */
    loadedAt?: number
    refreshEveryMs: number
    /** Periodic refreshes done and failed. */
    refreshes: { done: number; failed: number }
    /** Reloads caused by unknown routes. */
    unknownRouteReloads: ReloadGuardStats & { max: number; perMs: number }
    conflicts: RouteConflict[]
    invalid: { flow: string; error: string }[]
    /** The last loader error, if the last load failed. */
    lastError?: string
  }
  flows: FlowStatus[]
}

/** Per-flow state of the host. */
interface FlowState {
  definition: FlowDefinition
  active: boolean
  problem?: string
  election?: Election
  ticker?: Ticker
  source?: SourceHandle
  counts: FlowRunCounts
  recent: RunRecord[]
}

const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222'

function positiveInteger(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw InvalidArgumentError.format(name, `must be a positive integer; got ${String(value)}`)
  }
  return value
}

/** Splits `?a=1&a=2&b=3` off a path: `a` becomes `['1', '2']`, `b` becomes `'3'`. */
function splitQuery(path: string): { path: string; query: Record<string, string | string[]> } {
  const at = path.indexOf('?')
  if (at < 0) return { path, query: {} }
  const query: Record<string, string | string[]> = {}
  for (const [key, value] of new URLSearchParams(path.slice(at + 1))) {
    const seen = query[key]
    query[key] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value]
  }
  return { path: path.slice(0, at), query }
}

/** Runs flows on their triggers. Create with {@link createFlowHost}. */
export class FlowHost {
  readonly #cache: Cache
  readonly #runner: FlowRunnerLike
  readonly #loader: () => Promise<FlowDefinition[]>
  readonly #refreshMs: number
  readonly #reloadMax: number
  readonly #reloadPerMs: number
  readonly #leaseMs: number
  readonly #renewMs: number | undefined
  readonly #owner: string
  readonly #recentRuns: number
  readonly #stdin: NodeJS.ReadableStream
  readonly #natsUrl: string
  readonly #logger: Logger
  readonly #clock: Clock
  readonly #guard: ReloadGuard
  #state: HostStatus['state'] = 'new'
  #stopped: Promise<void> | undefined
  #table = RouteTable.empty()
  #loadedAt: number | undefined
  #lastLoadError: string | undefined
  #refreshes = { done: 0, failed: 0 }
  #refreshTimer: NodeJS.Timeout | undefined
  readonly #flows = new Map<string, FlowState>()
  /** Runs in progress, of every trigger. */
  readonly #inFlight = new Set<Promise<unknown>>()
  /** Sources waiting for leadership: resolved with `true` when elected, `false` on stop. */
  readonly #leaderWaiters = new Map<string, Set<(go: boolean) => void>>()

  /** @internal use {@link createFlowHost} */
  constructor(options: FlowHostOptions) {
    if (typeof options !== 'object' || options === null) {
      throw InvalidArgumentError.format('options', 'must be an object with cache, runner and flows')
    }
    const { cache, runner, flows } = options
    if (typeof cache !== 'object' || cache === null || typeof cache.namespace !== 'function') {
      throw InvalidArgumentError.format('cache', 'must be a flowcache Cache (createCache())')
    }
    if (typeof runner !== 'object' || runner === null || typeof runner.run !== 'function') {
      throw InvalidArgumentError.format('runner', 'must have a run(flow, event, options) method')
    }
    if (typeof flows === 'function') {
      this.#loader = async () => flows()
    } else if (typeof flows === 'object' && flows !== null && typeof flows.load === 'function') {
      this.#loader = async () => flows.load()
    } else {
      throw InvalidArgumentError.format(
        'flows',
        'must be a function returning the flow definitions, or an object with a load() method',
      )
    }
    this.#cache = cache
    this.#runner = runner
    this.#refreshMs = parseDuration(options.routeRefreshEvery ?? '1m', 'routeRefreshEvery')
    this.#reloadMax = positiveInteger(
      options.unknownRouteReloads?.max ?? 5,
      'unknownRouteReloads.max',
    )
    this.#reloadPerMs = parseDuration(
      options.unknownRouteReloads?.per ?? '1m',
      'unknownRouteReloads.per',
    )
    this.#leaseMs = parseDuration(options.leader?.lease ?? '15s', 'leader.lease')
    this.#renewMs =
      options.leader?.renewEvery === undefined
        ? undefined
        : parseDuration(options.leader.renewEvery, 'leader.renewEvery')
    this.#owner =
      options.owner ?? `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`
    this.#recentRuns = positiveInteger(options.recentRuns ?? 20, 'recentRuns')
    this.#stdin = options.stdin ?? process.stdin
    this.#natsUrl = options.natsUrl ?? DEFAULT_NATS_URL
    this.#logger = options.logger ?? stderrLogger
    this.#clock = options.clock ?? systemClock
    this.#guard = new ReloadGuard(
      () => this.#reload('unknown route'),
      this.#reloadMax,
      this.#reloadPerMs,
      this.#clock,
    )
  }

  /**
   * Loads the flows, builds the route table, starts schedules, event sources and elections, and
   * the periodic route refresh. Rejects (after undoing what it started) when the loader fails or
   * an event source cannot start (e.g. NATS unreachable). Call once.
   */
  async start(): Promise<void> {
    if (this.#state !== 'new') {
      throw new ClosedError(`the flow host was already started; create a new one to start again`)
    }
    this.#state = 'running'
    try {
      const flows = await this.#load()
      for (const flow of flows) await this.#activate(flow)
    } catch (error) {
      await this.stop()
      throw error
    }
    this.#refreshTimer = setInterval(() => {
      void this.#reload('refresh').then(
        () => this.#refreshes.done++,
        () => this.#refreshes.failed++,
      )
    }, this.#refreshMs)
    this.#refreshTimer.unref()
  }

  /**
   * Stops gracefully: no new runs start (`dispatch` rejects with `ClosedError`), schedules and
   * event sources stop, runs in progress finish, then elections are left (a leader hands its
   * lease back at once). The cache is not closed. Idempotent.
   */
  async stop(): Promise<void> {
    this.#stopped ??= this.#stop()
    return this.#stopped
  }

  async #stop(): Promise<void> {
    this.#state = 'stopping'
    if (this.#refreshTimer !== undefined) clearInterval(this.#refreshTimer)
    for (const waiters of this.#leaderWaiters.values()) {
      for (const wake of waiters) wake(false)
    }
    this.#leaderWaiters.clear()
    const states = [...this.#flows.values()]
    await Promise.all(
      states.map(async (state) => {
        await state.ticker?.stop()
        await state.source?.stop()
      }),
    )
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight])
    await Promise.all(states.map(async (state) => state.election?.stop()))
    for (const state of states) state.active = false
    this.#state = 'stopped'
  }

  /**
   * Runs the HTTP flow routed at `method` and `path` with the event `{ data: body, body, params,
   * query, meta }`. `path` may carry a `?query`. An unknown route reloads the table first
   * (single-flight, rate-limited) and is looked up again. Rejects with the runner's error when
   * the run fails, and with `ClosedError` when the host is not running.
   */
  async dispatch(
    method: string,
    path: string,
    body?: unknown,
    options: DispatchOptions = {},
  ): Promise<DispatchResult> {
    if (typeof method !== 'string' || method === '') {
      throw InvalidArgumentError.format('method', 'must be an HTTP method such as "GET"')
    }
    if (typeof path !== 'string' || !path.startsWith('/')) {
      throw InvalidArgumentError.format('path', `must start with "/"; got ${JSON.stringify(path)}`)
    }
    this.#assertRunning()
    const split = splitQuery(path)
    let match = this.#table.match(method, split.path)
    let reload: ReloadOutcome | undefined
    if (match.kind !== 'found') {
      reload = await this.#guard.reload()
      if (reload === 'reloaded' || reload === 'joined')
        match = this.#table.match(method, split.path)
    }
    if (match.kind === 'method-not-allowed') {
      return { kind: 'method-not-allowed', status: 405, allow: match.allow }
    }
    if (match.kind === 'not-found') {
      return { kind: 'not-found', status: 404, reload: reload ?? 'limited' }
    }
    this.#assertRunning()
    const flow = match.route.flow
    const query = { ...split.query, ...options.query }
    const event = {
      data: body ?? null,
      body: body ?? null,
      params: match.params,
      query,
      meta: {
        trigger: 'http',
        method: match.route.method,
        path: split.path,
        route: match.route.path,
      },
    }
    const state = this.#stateOf(flow)
    const result = await this.#run(state, flow, event, { debug: options.debug === true })
    return { kind: 'ok', status: 200, flow: flow.name, params: match.params, result }
  }

  /** The host's state: routes, flows with their triggers, leaders and recent runs. */
  status(): HostStatus {
    const flows: FlowStatus[] = []
    for (const state of [...this.#flows.values()].sort((a, b) =>
      a.definition.name < b.definition.name ? -1 : 1,
    )) {
      const flow = state.definition
      const entry: FlowStatus = {
        name: flow.name,
        tenant: flow.tenant,
        revision: flow.revision,
        file: flow.file,
        trigger: flow.trigger,
        active: state.active,
        runs: { ...state.counts },
        recent: state.recent.map((run) => ({ ...run })),
      }
      if (state.problem !== undefined) entry.problem = state.problem
      if (state.election !== undefined) {
        const token = state.election.token
        entry.leader = { isLeader: state.election.isLeader, owner: state.election.owner }
        if (token !== undefined) entry.leader.token = token.toString()
      }
      if (state.ticker !== undefined) entry.schedule = state.ticker.stats()
      if (state.source !== undefined) entry.source = state.source.stats()
      flows.push(entry)
    }
    const routes: HostStatus['routes'] = {
      size: this.#table.size,
      refreshEveryMs: this.#refreshMs,
      refreshes: { ...this.#refreshes },
      unknownRouteReloads: {
        ...this.#guard.stats(),
        max: this.#reloadMax,
        perMs: this.#reloadPerMs,
      },
      conflicts: this.#table.conflicts.map((c) => ({ ...c, ignored: [...c.ignored] })),
      invalid: [...this.#table.invalid],
    }
    if (this.#loadedAt !== undefined) routes.loadedAt = this.#loadedAt
    if (this.#lastLoadError !== undefined) routes.lastError = this.#lastLoadError
    return { state: this.#state, routes, flows }
  }

  #assertRunning(): void {
    if (this.#state !== 'running') {
      throw new ClosedError(
        `the flow host is ${this.#state === 'new' ? 'not started; call start() first' : 'stopped'}`,
      )
    }
  }

  /** Loads the flows (first of each name wins) and swaps in their route table. */
  async #load(): Promise<FlowDefinition[]> {
    let loaded: FlowDefinition[]
    try {
      loaded = await this.#loader()
      if (!Array.isArray(loaded)) {
        throw new TypeError(`the flow loader returned ${typeof loaded}, not an array of flows`)
      }
    } catch (error) {
      this.#lastLoadError = describe(error)
      throw error
    }
    this.#lastLoadError = undefined
    const byName = new Map<string, FlowDefinition>()
    for (const flow of loaded) {
      if (byName.has(flow.name)) {
        this.#logger.warn(
          `flow host: two flows are named "${flow.name}" (${byName.get(flow.name)?.file} and ${flow.file}); keeping the first, rename the other`,
        )
        continue
      }
      byName.set(flow.name, flow)
    }
    const flows = [...byName.values()]
    const table = RouteTable.build(flows)
    for (const conflict of table.conflicts) {
      this.#logger.warn(
        `flow host: ${conflict.method} ${conflict.path} is claimed by flows ${[conflict.kept, ...conflict.ignored].join(', ')}; routing it to "${conflict.kept}"`,
      )
    }
    for (const bad of table.invalid) this.#logger.warn(`flow host: ${bad.error}; not routed`)
    this.#table = table
    this.#loadedAt = this.#clock.now()
    // Keep the states of active flows and of flows still loaded; refresh the definitions of
    // HTTP flows (their trigger is the table). Running schedules and sources keep theirs.
    for (const [name, state] of this.#flows) {
      const fresh = byName.get(name)
      if (fresh === undefined && state.ticker === undefined && state.source === undefined) {
        this.#flows.delete(name)
      } else if (fresh !== undefined && fresh.trigger.kind === 'http') {
        state.definition = fresh
        state.active = true
      } else if (fresh !== undefined && !state.active && state.ticker === undefined) {
        state.definition = fresh
      }
    }
    for (const flow of flows) {
      if (!this.#flows.has(flow.name)) {
        this.#flows.set(flow.name, {
          definition: flow,
          active: flow.trigger.kind === 'http',
          counts: { total: 0, failed: 0, running: 0, notLeader: 0 },
          recent: [],
        })
      }
    }
    return flows
  }

  /** A reload for `why`; logs and rethrows a loader error (the old table stays). */
  async #reload(why: string): Promise<void> {
    if (this.#state !== 'running') return
    try {
      await this.#load()
    } catch (error) {
      this.#logger.warn(
        `flow host: reloading flows (${why}) failed; keeping the current routes: ${describe(error)}`,
      )
      throw error
    }
  }

  #stateOf(flow: FlowDefinition): FlowState {
    let state = this.#flows.get(flow.name)
    if (state === undefined) {
      state = {
        definition: flow,
        active: true,
        counts: { total: 0, failed: 0, running: 0, notLeader: 0 },
        recent: [],
      }
      this.#flows.set(flow.name, state)
    }
    return state
  }

  /** Starts the trigger of a schedule or events flow (with its election when required). */
  async #activate(flow: FlowDefinition): Promise<void> {
    const trigger = flow.trigger
    if (trigger.kind === 'http') return
    const state = this.#stateOf(flow)
    if (trigger.kind === 'schedule') {
      if (typeof trigger.everyMs !== 'number' || !(trigger.everyMs > 0)) {
        state.problem = `schedule.everyMs must be a positive number of ms; got ${String(trigger.everyMs)}`
        this.#logger.error(`flow "${flow.name}": ${state.problem}; not scheduled`)
        return
      }
    }
    if (flow.requireLeaderElection) {
      state.election = this.#cache.namespace(`tenant:${flow.tenant}`).leader(`flow:${flow.name}`, {
        lease: this.#leaseMs,
        ...(this.#renewMs === undefined ? {} : { renewEvery: this.#renewMs }),
        owner: this.#owner,
        onElected: ({ token }) => {
          this.#logger.info(`flow "${flow.name}": this host leads it now (token ${token})`)
          const waiters = this.#leaderWaiters.get(flow.name)
          this.#leaderWaiters.delete(flow.name)
          for (const wake of waiters ?? []) wake(true)
        },
        onRevoked: (reason) => {
          this.#logger.info(`flow "${flow.name}": this host no longer leads it: ${reason}`)
        },
      })
    }
    if (trigger.kind === 'schedule') {
      state.ticker = new Ticker(trigger.everyMs, (tick) => this.#onTick(state, flow, tick))
      state.ticker.start()
    } else {
      state.source = await startSource(trigger.source, {
        flow: flow.name,
        flowFile: flow.file,
        logger: this.#logger,
        stdin: this.#stdin,
        natsUrl: this.#natsUrl,
        gate: () => this.#gate(state, flow),
        deliver: (event, origin) => this.#onEvent(state, flow, event, origin),
      })
    }
    state.active = true
  }

  /**
   * The leader token to run with: `null` when the flow needs leadership this host does not hold
   * right now (counted), `undefined` when it needs none.
   */
  #leaderToken(state: FlowState): string | null | undefined {
    if (state.election === undefined) return undefined
    const token = state.election.token
    if (!state.election.isLeader || token === undefined) {
      state.counts.notLeader++
      return null
    }
    return token.toString()
  }

  async #onTick(state: FlowState, flow: FlowDefinition, tick: Tick): Promise<void> {
    if (this.#state !== 'running') return
    const token = this.#leaderToken(state)
    if (token === null) return
    const scheduledAt = new Date(tick.scheduledAt).toISOString()
    const meta: Record<string, unknown> = { trigger: 'schedule', tick: tick.n, scheduledAt }
    if (token !== undefined) meta.leaderToken = token
    await this.#run(state, flow, { data: { tick: tick.n, scheduledAt }, meta }, {}, token).catch(
      () => undefined,
    )
  }

  async #onEvent(
    state: FlowState,
    flow: FlowDefinition,
    event: Record<string, unknown>,
    origin: EventOrigin,
  ): Promise<void> {
    if (this.#state !== 'running') return
    const token = this.#leaderToken(state)
    if (token === null) return
    if (token !== undefined) {
      event.meta = { ...(event.meta as Record<string, unknown>), ...origin, leaderToken: token }
    }
    await this.#run(state, flow, event, {}, token).catch(() => undefined)
  }

  /** Resolves `true` when the flow may read its next event (leader, if required); `false` on stop. */
  async #gate(state: FlowState, flow: FlowDefinition): Promise<boolean> {
    if (this.#state !== 'running') return false
    if (state.election === undefined || state.election.isLeader) return true
    return new Promise<boolean>((resolve) => {
      const waiters = this.#leaderWaiters.get(flow.name) ?? new Set()
      waiters.add(resolve)
      this.#leaderWaiters.set(flow.name, waiters)
    })
  }

  /** Runs `flow` and records the run; rejects with the runner's error. */
  async #run(
    state: FlowState,
    flow: FlowDefinition,
    event: unknown,
    options: { debug?: boolean },
    leaderToken?: string,
  ): Promise<FlowRunResult> {
    const startedAt = this.#clock.now()
    const began = performance.now()
    state.counts.running++
    const run = (async () => this.#runner.run(flow, event, options))()
    this.#inFlight.add(run)
    try {
      const result = await run
      this.#record(state, {
        runId: result.runId,
        trigger: flow.trigger.kind,
        revision: flow.revision,
        startedAt,
        ms: result.ms,
        ok: true,
        dropped: result.dropped,
        steps: result.steps.map((step) => ({ ...step })),
        ...(leaderToken === undefined ? {} : { leaderToken }),
      })
      return result
    } catch (error) {
      state.counts.failed++
      const code = (error as { code?: unknown } | null)?.code
      this.#record(state, {
        trigger: flow.trigger.kind,
        revision: flow.revision,
        startedAt,
        ms: Math.round(performance.now() - began),
        ok: false,
        error: { ...(typeof code === 'string' ? { code } : {}), message: describe(error) },
        ...(leaderToken === undefined ? {} : { leaderToken }),
      })
      if (flow.trigger.kind !== 'http') {
        this.#logger.warn(`flow "${flow.name}": run failed: ${describe(error)}`)
      }
      throw error
    } finally {
      state.counts.running--
      this.#inFlight.delete(run)
    }
  }

  #record(state: FlowState, record: RunRecord): void {
    state.counts.total++
    state.recent.push(record)
    if (state.recent.length > this.#recentRuns) state.recent.shift()
  }
}

/** Creates a flow host; nothing runs until `start()`. Options are checked here. */
export function createFlowHost(options: FlowHostOptions): FlowHost {
  return new FlowHost(options)
}
