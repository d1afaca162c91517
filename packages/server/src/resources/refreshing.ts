/**
 * Refreshing resources: values that change slowly (connections, secrets, node configuration)
 * held in memory, reloaded in the background every few minutes, served stale when a reload
 * fails, and bypassed by debug invocations, which always load fresh.
 */
import {
  InvalidArgumentError,
  parseDuration,
  stderrLogger,
  systemClock,
  type Clock,
  type Duration,
  type Logger,
} from '../flowcache.js'
import { ResourceLoadError } from './errors.js'
import { systemScheduler, type Scheduler } from './scheduler.js'

/** Why a load runs; passed to the loader, e.g. for its own logs. */
export type LoadReason = 'start' | 'get' | 'scheduled' | 'retry' | 'refresh' | 'debug'

/** What a loader receives. */
export interface LoadContext {
  /** Why this load runs. */
  reason: LoadReason
  /** Aborted when the resource is stopped; pass it on to `fetch` and the like. */
  signal: AbortSignal
}

/** Options of {@link createRefreshingResource}. */
export interface RefreshingResourceOptions<T> {
  /** Name of the resource in logs, errors and stats, e.g. `connections`. */
  name: string
  /** Loads the resource's current value. Throwing (or rejecting) is a failed load. */
  load: (context: LoadContext) => T | Promise<T>
  /** How long a loaded value is used before it is reloaded in the background. @default '5m' */
  refreshEvery?: Duration
  /**
   * Wait before the first retry of a failed background load; each further failure doubles it,
   * up to `maxRetryDelay`. @default '5s'
   */
  retryDelay?: Duration
  /** Longest wait between retries of failed loads. @default `refreshEvery` */
  maxRetryDelay?: Duration
  /** Receives a warning per failed load and a note when loads succeed again. @default stderrLogger */
  logger?: Logger
  /** Time source of `lastLoadedAt` and `ageMs`. @default systemClock */
  clock?: Clock
  /** Runs the background reloads; tests pass a `ManualScheduler`. @default systemScheduler */
  scheduler?: Scheduler
}

/** Options of {@link RefreshingResource.get}. */
export interface ResourceGetOptions {
  /**
   * A debug invocation: load a fresh value now, bypassing the cached one, and do not keep it.
   * A failed debug load rejects with a {@link ResourceLoadError}. @default false
   */
  debug?: boolean
}

/** What a resource has done, for health checks and the console. */
export interface RefreshingResourceStats {
  /** The resource's name. */
  name: string
  /** Whether a value is held (false before the first load and after `clear()`). */
  hasValue: boolean
  /** Whether the held value is older than a failed load: served stale because reloads fail. */
  stale: boolean
  /** Whether background reloading runs (between `start()` and `stop()`). */
  running: boolean
  /** Successful loads, debug loads excluded. */
  loads: number
  /** Failed loads, debug loads excluded. */
  failures: number
  /** Failed loads since the last successful one. */
  consecutiveFailures: number
  /** Debug loads (successful or not). */
  debugLoads: number
  /** When the held value was loaded (ms since the epoch), or `null`. */
  lastLoadedAt: number | null
  /** When a load last failed (ms since the epoch), or `null`. */
  lastFailedAt: number | null
  /** Message of the last failed load's error, or `null`. */
  lastError: string | null
  /** Age of the held value in ms, or `null` when none is held. */
  ageMs: number | null
  /** When the next background load is due (ms since the epoch), or `null` when none is. */
  nextLoadAt: number | null
}

/** A refreshing resource; see {@link createRefreshingResource}. */
export interface RefreshingResource<T> {
  /** The resource's name. */
  readonly name: string
  /**
   * Loads the value and starts reloading it every `refreshEvery`. Resolves to the value; rejects
   * with a {@link ResourceLoadError} when the first load fails (background retries still run, so
   * the resource recovers once the source is fixed). Calling it again while running is a `get()`.
   */
  start(): Promise<T>
  /**
   * The held value; loads it first when none is held (concurrent calls share one load). With
   * `{ debug: true }`, loads a fresh value that is returned but not kept. Rejects with a
   * {@link ResourceLoadError} only when there is no value to serve.
   */
  get(options?: ResourceGetOptions): Promise<T>
  /** The held value without loading, or `undefined` when none is held. */
  peek(): T | undefined
  /**
   * Reloads now and keeps the result; resolves to the new value. A failure rejects with a
   * {@link ResourceLoadError} and keeps the held value.
   */
  refresh(): Promise<T>
  /**
   * Drops the held value: the next `get()` loads a fresh one. A load running at the time of the
   * call is not kept.
   */
  clear(): void
  /** Stops background reloading and aborts the running load's signal. `start()` resumes. */
  stop(): void
  /** What the resource has done. */
  stats(): RefreshingResourceStats
}

/** The message of an error, for logs and wrapped errors. */
function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

class Refreshing<T> implements RefreshingResource<T> {
  readonly name: string
  readonly #load: RefreshingResourceOptions<T>['load']
  readonly #refreshEveryMs: number
  readonly #retryDelayMs: number
  readonly #maxRetryDelayMs: number
  readonly #logger: Logger
  readonly #clock: Clock
  readonly #scheduler: Scheduler
  #held: { value: T; loadedAt: number } | undefined
  #flight: Promise<T> | undefined
  /** Bumped by `clear()`: a load started before it is not kept. */
  #generation = 0
  #running = false
  #controller = new AbortController()
  #cancelTimer: (() => void) | undefined
  #nextLoadAt: number | null = null
  #loads = 0
  #failures = 0
  #consecutiveFailures = 0
  #debugLoads = 0
  #lastFailedAt: number | null = null
  #lastError: string | null = null

  constructor(options: RefreshingResourceOptions<T>) {
    if (typeof options.name !== 'string' || options.name === '') {
      throw InvalidArgumentError.format('name', 'must be a non-empty string naming the resource')
    }
    if (typeof options.load !== 'function') {
      throw InvalidArgumentError.format('load', `must be a function; got ${typeof options.load}`)
    }
    this.name = options.name
    this.#load = options.load
    this.#refreshEveryMs = parseDuration(options.refreshEvery ?? '5m', 'refreshEvery')
    this.#retryDelayMs = parseDuration(options.retryDelay ?? '5s', 'retryDelay')
    this.#maxRetryDelayMs =
      options.maxRetryDelay === undefined
        ? this.#refreshEveryMs
        : parseDuration(options.maxRetryDelay, 'maxRetryDelay')
    this.#logger = options.logger ?? stderrLogger
    this.#clock = options.clock ?? systemClock
    this.#scheduler = options.scheduler ?? systemScheduler
  }

  async start(): Promise<T> {
    if (this.#running) return this.get()
    this.#running = true
    this.#controller = new AbortController()
    if (this.#held !== undefined) {
      this.#schedule(this.#refreshEveryMs)
      return this.#held.value
    }
    return this.#startLoad('start')
  }

  async get(options: ResourceGetOptions = {}): Promise<T> {
    if (options.debug === true) return this.#debugLoad()
    if (this.#held !== undefined) return this.#held.value
    return this.#startLoad('get')
  }

  peek(): T | undefined {
    return this.#held?.value
  }

  refresh(): Promise<T> {
    return this.#startLoad('refresh')
  }

  clear(): void {
    this.#held = undefined
    this.#generation++
    this.#flight = undefined
  }

  stop(): void {
    this.#running = false
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    this.#nextLoadAt = null
    this.#controller.abort()
  }

  stats(): RefreshingResourceStats {
    const loadedAt = this.#held?.loadedAt ?? null
    return {
      name: this.name,
      hasValue: this.#held !== undefined,
      stale: this.#held !== undefined && this.#consecutiveFailures > 0,
      running: this.#running,
      loads: this.#loads,
      failures: this.#failures,
      consecutiveFailures: this.#consecutiveFailures,
      debugLoads: this.#debugLoads,
      lastLoadedAt: loadedAt,
      lastFailedAt: this.#lastFailedAt,
      lastError: this.#lastError,
      ageMs: loadedAt === null ? null : Math.max(0, this.#clock.now() - loadedAt),
      nextLoadAt: this.#nextLoadAt,
    }
  }

  /** A debug load: fresh, not kept, not counted as a load or failure of the held value. */
  async #debugLoad(): Promise<T> {
    this.#debugLoads++
    try {
      return await this.#load({ reason: 'debug', signal: this.#controller.signal })
    } catch (error) {
      throw this.#wrap(error)
    }
  }

  /** Starts a load, or joins the one running; keeps its value unless `clear()` came between. */
  #startLoad(reason: LoadReason): Promise<T> {
    if (this.#flight !== undefined) return this.#flight
    const generation = this.#generation
    const signal = this.#controller.signal
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    this.#nextLoadAt = null
    const flight = this.#run(reason, generation, signal)
    const settle = (): void => {
      if (this.#flight === flight) this.#flight = undefined
    }
    flight.then(settle, settle)
    this.#flight = flight
    return flight
  }

  /** Runs the loader once and records the outcome. */
  async #run(reason: LoadReason, generation: number, signal: AbortSignal): Promise<T> {
    try {
      const value = await this.#load({ reason, signal })
      this.#succeeded(value, generation)
      return value
    } catch (error) {
      this.#failed(error)
      throw this.#wrap(error)
    }
  }

  /** Records a successful load and schedules the next one. */
  #succeeded(value: T, generation: number): void {
    if (generation === this.#generation) {
      this.#held = { value, loadedAt: this.#clock.now() }
    }
    this.#loads++
    if (this.#consecutiveFailures > 0) {
      this.#logger.info('flowcache resource: loaded again after failures', {
        resource: this.name,
        failures: this.#consecutiveFailures,
      })
    }
    this.#consecutiveFailures = 0
    this.#schedule(this.#refreshEveryMs)
  }

  /** Records a failed load, logs it and schedules a retry with backoff. */
  #failed(error: unknown): void {
    this.#failures++
    this.#consecutiveFailures++
    this.#lastFailedAt = this.#clock.now()
    this.#lastError = messageOf(error)
    const delay = Math.min(
      this.#retryDelayMs * 2 ** Math.min(this.#consecutiveFailures - 1, 30),
      this.#maxRetryDelayMs,
    )
    this.#logger.warn(
      this.#held === undefined
        ? 'flowcache resource: load failed and no value is held'
        : 'flowcache resource: reload failed; serving the last good value',
      {
        resource: this.name,
        error: this.#lastError,
        consecutiveFailures: this.#consecutiveFailures,
        retryInMs: this.#running ? delay : null,
        lastLoadedAt: this.#held?.loadedAt ?? null,
      },
    )
    this.#schedule(delay)
  }

  /** Schedules the next background load in `delayMs`, when running. */
  #schedule(delayMs: number): void {
    this.#cancelTimer?.()
    this.#cancelTimer = undefined
    this.#nextLoadAt = null
    if (!this.#running) return
    this.#nextLoadAt = this.#clock.now() + delayMs
    this.#cancelTimer = this.#scheduler.schedule(() => {
      this.#cancelTimer = undefined
      this.#nextLoadAt = null
      // Failures are counted and logged by #failed; nobody awaits a background load.
      this.#startLoad(this.#consecutiveFailures > 0 ? 'retry' : 'scheduled').catch(() => undefined)
    }, delayMs)
  }

  #wrap(error: unknown): ResourceLoadError {
    return new ResourceLoadError(
      this.name,
      `resource "${this.name}" could not be loaded: ${messageOf(error)}`,
      { cause: error },
    )
  }
}

/**
 * Creates a refreshing resource. Nothing is loaded until `start()` or the first `get()`;
 * background reloading runs between `start()` and `stop()`.
 *
 * @example
 * const connections = createRefreshingResource({
 *   name: 'connections',
 *   load: () => readConnections(),
 *   refreshEvery: '5m',
 * })
 * await connections.start()
 * const current = await connections.get({ debug: run.debug })
 */
export function createRefreshingResource<T>(
  options: RefreshingResourceOptions<T>,
): RefreshingResource<T> {
  return new Refreshing(options)
}
