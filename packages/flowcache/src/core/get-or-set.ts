/**
 * `getOrSet`: cache-aside with single flight, grace, timeouts and early refresh. The cache hands
 * it a narrow {@link GetOrSetHost} (reads, writes, store keys, flight locks, clock) and keeps the
 * shared {@link GetOrSetState} (flights in progress, retry deadlines, counters) in its core.
 *
 * Storage. The value goes to its user key with the logical TTL, exactly as `set` would write it:
 * `get` returns it and misses once the TTL has passed. With `grace`, a second entry, the grace
 * copy (system key of kind `g`, value `{ v, ms }`), keeps the value for ttl + grace. It is read
 * only when the value is missing, and served only when the factory fails or times out.
 *
 * Flights. One flight per store key and process: callers that find no value join the flight in
 * progress. With `distributed`, a flight first takes the key's flight lock (system key of kind
 * `f`); the holder runs the factory and writes, the other replicas poll the value with a growing
 * pause until it appears or the lock is free again (a dead holder's lock expires after `lockTtl`).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Locks } from '../coord/locks.js'
import { FactoryTimeoutError, InvalidArgumentError } from '../errors.js'
import { formatDuration, parseDuration, type Duration } from './duration.js'

/** Options of {@link Cache.getOrSet}. Every option is checked before the store is touched. */
export interface GetOrSetOptions {
  /** TTL of the value the factory returns, as ms or a duration string. @default the namespace's default TTL, else no expiry */
  ttl?: Duration
  /**
   * How long after its TTL the last good value is kept as a grace copy, to be served when the
   * factory fails or times out. Needs a TTL. @default none: nothing stale is ever served
   */
  grace?: Duration
  /**
   * After the factory failed or timed out and the grace copy was served, how long this process
   * keeps serving the grace copy before it calls the factory again. @default '10s'
   */
  graceBackoff?: Duration
  /**
   * Factory timeouts. A duration is the hard timeout. `soft`: once it passes, callers get the
   * grace copy (if there is one) while the factory goes on and updates the cache in the
   * background. `hard`: every waiter is released, with the grace copy if there is one, else with
   * `FactoryTimeoutError`; `ctx.signal` aborts and a late result is not cached.
   * @default no timeouts
   */
  timeout?: Duration | { soft?: Duration; hard?: Duration }
  /**
   * Early refresh (XFetch): a hit refreshes the value in the background, before it expires,
   * with a probability that grows as expiry nears: when `now − factoryMs × beta × ln(random)`
   * reaches the expiry, where `factoryMs` is the factory duration this process last measured for
   * the key. A larger `beta` refreshes earlier. The caller always gets the current value at once.
   * @default false; `true` means `{ beta: 1 }`
   */
  earlyRefresh?: boolean | { beta?: number }
  /**
   * One factory call per key across every replica sharing the store (not only per process):
   * a flight lock decides which replica calls the factory; the others wait for its value.
   * `lockTtl`: lease of the flight lock, extended while the factory runs, so a crashed holder
   * blocks the key for at most this long (default: the hard timeout, else '30s').
   * `pollEvery`: longest pause between two looks at the value while waiting (default '100ms').
   * @default false: single flight per process only
   */
  distributed?: boolean | { lockTtl?: Duration; pollEvery?: Duration }
  /** Tags of the cached value, for {@link Cache.invalidateTags}; as `set`'s `tags`. @default none */
  tags?: readonly string[]
  /**
   * Keys of this namespace the cached value depends on; as `set`'s `dependsOn`: writing or
   * deleting one of them deletes the value. @default none
   */
  dependsOn?: readonly string[]
}

/** What the factory of {@link Cache.getOrSet} receives. */
export interface FactoryContext<T = unknown> {
  /** The key being loaded, as given to `getOrSet`. */
  readonly key: string
  /** The grace copy (the last good value past its TTL), when `grace` is set and there is one. */
  readonly stale: T | undefined
  /** Aborts at the hard timeout (its reason is a `FactoryTimeoutError`); pass it to fetch & co. */
  readonly signal: AbortSignal
  /** Returns the result to the callers without caching it. */
  skip(): void
  /** Caches the result with this TTL (ms or a duration string) instead of the `ttl` option. */
  setTtl(ttl: Duration): void
}

/** A `getOrSet` factory: computes the value of a missing key. */
export type Factory<T> = (context: FactoryContext<T>) => T | Promise<T>

/** One `getOrSet` call's result with how it was obtained. */
export interface GetOrSetResult<T> {
  value: T
  /** The value was in the cache when the call looked. */
  hit: boolean
  /** The value is the grace copy, served because the factory failed or timed out. */
  stale: boolean
}

/** Counters of `getOrSet` (and `memoize`) calls, in `cache.stats().getOrSet`. */
export interface GetOrSetStats {
  /** Calls that found the value in the cache. */
  hits: number
  /** Calls that did not (they joined or started a flight). */
  misses: number
  /** Factory calls made by this process (refreshes included). */
  factoryCalls: number
  /** Factory calls that threw or rejected. */
  factoryErrors: number
  /** Calls answered with the grace copy (failure, timeout or retry backoff). */
  graceServed: number
  /** Flights whose soft timeout passed while a grace copy was there to serve. */
  softTimeouts: number
  /** Flights stopped by their hard timeout. */
  timeouts: number
  /** Background early refreshes started. */
  refreshes: number
  /** Pauses of `distributed` flights waiting for another replica's value. */
  lockWaits: number
}

/** A value with its expiry deadline (ms since the epoch on the store's clock, `null`: none). */
export interface TimedValue {
  value: unknown
  expiresAt: number | null
}

/** The parts of a cache (namespace view) that `getOrSet` uses. */
export interface GetOrSetHost {
  readonly state: GetOrSetState
  /** The store is in-process (reads cost no round trip, so they are not coalesced). */
  readonly inProcess: boolean
  /** Store key of a user key; throws `InvalidArgumentError` for a bad key. */
  storeKeyOf(key: string): string
  /** Store key of the grace copy of a user key. */
  graceKeyOf(key: string): string
  /** Reads a value the way `get` does (counted as a hit or miss). */
  get(key: string): Promise<unknown>
  /** Like `get`, with the entry's expiry (bypasses fast paths that do not know it). */
  getTimed(key: string): Promise<TimedValue | undefined>
  /** Reads a store key again, uncounted. */
  reread(storeKey: string): Promise<unknown>
  /** Writes a value the way `set` does, with the tags and dependencies of the options. */
  write(
    key: string,
    value: unknown,
    ttlMs: number | undefined,
    links: Links | undefined,
  ): Promise<void>
  /** Checks `tags` and `dependsOn` for `key` as `set` would; throws `InvalidArgumentError`. */
  checkLinks(key: string, links: Links): void
  /** Reads the grace copy under a store key (decoded), or `undefined`. */
  readGrace(graceKey: string): Promise<unknown>
  /** Writes the grace copy under a store key. */
  writeGrace(graceKey: string, copy: GraceCopy, ttlMs: number): Promise<void>
  /** TTL in ms of a duration option; checked against the limits. */
  checkTtl(ttl: Duration, name: string): number
  /** TTL used when neither the options nor the factory give one. */
  readonly defaultTtlMs: number | undefined
  /** Longest TTL a write may have. */
  readonly maxTtlMs: number
  /** Locks of the flight-lock kind in this namespace; throws while the store is only a fallback. */
  flightLocks(): Locks
  /** The store's clock, ms since the epoch. */
  now(): number
}

/** What a grace copy holds: the value and how long the factory took to compute it. */
export interface GraceCopy {
  v: unknown
  ms: number
}

/** Settled result of a flight. */
interface Outcome {
  value: unknown
  stale: boolean
}

interface Flight {
  /** A background early refresh: callers that still have a value do not wait for it. */
  readonly refresh: boolean
  /** What callers await: the outcome, or the grace copy after the soft timeout. */
  readonly answer: Promise<Outcome>
}

/** Most keys whose retry deadline or factory duration is remembered; then the memo restarts. */
const MEMO_KEYS = 16_384
const DEFAULT_BACKOFF_MS = 10_000
const DEFAULT_LOCK_TTL_MS = 30_000
const DEFAULT_POLL_MS = 100
const FIRST_POLL_MS = 5

/** State shared by a cache and all its namespace views. */
export class GetOrSetState {
  /** Flights in progress by store key. */
  readonly flights = new Map<string, Flight>()
  /** Store reads in progress by store key, shared by the calls that arrive meanwhile. */
  readonly reads = new Map<string, Promise<unknown>>()
  /** Until when (host clock) a key serves its grace copy without calling the factory. */
  readonly retryAt = new Map<string, number>()
  /** Last measured factory duration (ms) by store key, for early refresh. */
  readonly factoryMs = new Map<string, number>()
  readonly counters: GetOrSetStats = {
    hits: 0,
    misses: 0,
    factoryCalls: 0,
    factoryErrors: 0,
    graceServed: 0,
    softTimeouts: 0,
    timeouts: 0,
    refreshes: 0,
    lockWaits: 0,
  }

  /** Sets a bounded per-key memo entry. */
  remember(memo: Map<string, number>, storeKey: string, value: number): void {
    if (memo.size >= MEMO_KEYS && !memo.has(storeKey)) memo.clear()
    memo.set(storeKey, value)
  }
}

/** The `tags` and `dependsOn` options, passed on to `set`. */
export interface Links {
  tags?: readonly string[]
  dependsOn?: readonly string[]
}

/** Options resolved and checked once per call. */
interface Plan {
  ttlMs: number | undefined
  links: Links | undefined
  graceMs: number
  backoffMs: number
  softMs: number | undefined
  hardMs: number | undefined
  /** 0: no early refresh. */
  beta: number
  distributed: { lockTtlMs: number; pollMs: number } | undefined
}

const OPTION_NAMES = new Set([
  'ttl',
  'grace',
  'graceBackoff',
  'timeout',
  'earlyRefresh',
  'distributed',
  'tags',
  'dependsOn',
])

/** Checks the options and resolves their defaults; throws `InvalidArgumentError`. */
function planOf(host: GetOrSetHost, key: string, options: GetOrSetOptions): Plan {
  if (typeof options !== 'object' || options === null) {
    throw InvalidArgumentError.format('options', 'must be an object such as { ttl: "5m" }')
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) {
      throw InvalidArgumentError.format(
        `option "${name}"`,
        `is not supported by getOrSet(); the supported options are ${[...OPTION_NAMES].join(', ')}`,
      )
    }
  }
  const ttlMs = options.ttl === undefined ? host.defaultTtlMs : host.checkTtl(options.ttl, 'ttl')
  const graceMs = options.grace === undefined ? 0 : host.checkTtl(options.grace, 'grace')
  const backoffMs =
    options.graceBackoff === undefined
      ? DEFAULT_BACKOFF_MS
      : parseDuration(options.graceBackoff, 'graceBackoff')
  const { softMs, hardMs } = timeoutsOf(options.timeout)
  let links: Links | undefined
  if (options.tags !== undefined || options.dependsOn !== undefined) {
    links = {}
    if (options.tags !== undefined) links.tags = options.tags
    if (options.dependsOn !== undefined) links.dependsOn = options.dependsOn
    host.checkLinks(key, links)
  }
  return {
    ttlMs,
    links,
    graceMs,
    backoffMs,
    softMs,
    hardMs,
    beta: betaOf(options.earlyRefresh),
    distributed: distributedOf(options.distributed, hardMs),
  }
}

function timeoutsOf(timeout: GetOrSetOptions['timeout']): {
  softMs: number | undefined
  hardMs: number | undefined
} {
  if (timeout === undefined) return { softMs: undefined, hardMs: undefined }
  if (typeof timeout !== 'object' || timeout === null) {
    return { softMs: undefined, hardMs: parseDuration(timeout, 'timeout') }
  }
  const softMs =
    timeout.soft === undefined ? undefined : parseDuration(timeout.soft, 'timeout.soft')
  const hardMs =
    timeout.hard === undefined ? undefined : parseDuration(timeout.hard, 'timeout.hard')
  if (softMs !== undefined && hardMs !== undefined && softMs >= hardMs) {
    throw InvalidArgumentError.format(
      'timeout.soft',
      `(${formatDuration(softMs)}) must be shorter than timeout.hard (${formatDuration(hardMs)})`,
    )
  }
  return { softMs, hardMs }
}

function betaOf(earlyRefresh: GetOrSetOptions['earlyRefresh']): number {
  if (earlyRefresh === undefined || earlyRefresh === false) return 0
  if (earlyRefresh === true) return 1
  if (typeof earlyRefresh !== 'object' || earlyRefresh === null) {
    throw InvalidArgumentError.format('earlyRefresh', 'must be a boolean or { beta }')
  }
  const beta = earlyRefresh.beta ?? 1
  if (typeof beta !== 'number' || !Number.isFinite(beta) || beta <= 0) {
    throw InvalidArgumentError.format(
      'earlyRefresh.beta',
      `must be a positive number (1 is the usual choice); got ${String(beta)}`,
    )
  }
  return beta
}

function distributedOf(
  distributed: GetOrSetOptions['distributed'],
  hardMs: number | undefined,
): Plan['distributed'] {
  if (distributed === undefined || distributed === false) return undefined
  const given = distributed === true ? {} : distributed
  if (typeof given !== 'object' || given === null) {
    throw InvalidArgumentError.format('distributed', 'must be a boolean or { lockTtl, pollEvery }')
  }
  const lockTtlMs =
    given.lockTtl === undefined
      ? Math.max(hardMs ?? DEFAULT_LOCK_TTL_MS, 100)
      : parseDuration(given.lockTtl, 'distributed.lockTtl')
  if (lockTtlMs < 100) {
    throw InvalidArgumentError.format('distributed.lockTtl', 'must be at least 100ms')
  }
  const pollMs =
    given.pollEvery === undefined
      ? DEFAULT_POLL_MS
      : parseDuration(given.pollEvery, 'distributed.pollEvery')
  return { lockTtlMs, pollMs }
}

/**
 * Returns the cached value of `key`, or computes it once (per process, or per cluster with
 * `distributed`) and caches it; see {@link GetOrSetOptions}. Resolves with how the value was
 * obtained, for callers that report it (`memoize`).
 */
export async function getOrSetResult<T>(
  host: GetOrSetHost,
  key: string,
  factory: Factory<T>,
  options: GetOrSetOptions = {},
): Promise<GetOrSetResult<T>> {
  if (typeof factory !== 'function') {
    throw InvalidArgumentError.format('factory', 'must be a function returning the value to cache')
  }
  const plan = planOf(host, key, options)
  const storeKey = host.storeKeyOf(key)
  const state = host.state
  const counters = state.counters
  // A load in progress: join it without reading the store (a refresh is joined only on a miss).
  const running = state.flights.get(storeKey)
  if (running !== undefined && !running.refresh) {
    counters.misses++
    return answer(state, running)
  }
  if (plan.beta > 0) {
    const timed = await host.getTimed(key)
    if (timed !== undefined) {
      counters.hits++
      maybeRefresh(host, key, storeKey, factory as Factory<unknown>, plan, timed.expiresAt)
      return { value: timed.value as T, hit: true, stale: false }
    }
  } else {
    const value = await coalescedGet(host, key, storeKey)
    if (value !== undefined) {
      counters.hits++
      return { value: value as T, hit: true, stale: false }
    }
  }
  counters.misses++
  const flight =
    state.flights.get(storeKey) ??
    startFlight(host, key, storeKey, factory as Factory<unknown>, plan, false)
  return answer(state, flight)
}

/**
 * Reads a key once for all the calls that ask at the same time: a burst of calls on a key that
 * is not cached costs one store read, not one per call, before they join one flight.
 */
function coalescedGet(host: GetOrSetHost, key: string, storeKey: string): Promise<unknown> {
  const reads = host.state.reads
  let read = reads.get(storeKey)
  if (read === undefined) {
    if (host.inProcess) return host.get(key)
    read = host.get(key)
    reads.set(storeKey, read)
    const forget = (): void => {
      reads.delete(storeKey)
    }
    read.then(forget, forget)
  }
  return read
}

async function answer<T>(state: GetOrSetState, flight: Flight): Promise<GetOrSetResult<T>> {
  const outcome = await flight.answer
  if (outcome.stale) state.counters.graceServed++
  return { value: outcome.value as T, hit: false, stale: outcome.stale }
}

/** XFetch: on a hit, starts a background refresh with a probability that grows near expiry. */
function maybeRefresh(
  host: GetOrSetHost,
  key: string,
  storeKey: string,
  factory: Factory<unknown>,
  plan: Plan,
  expiresAt: number | null,
): void {
  const state = host.state
  if (expiresAt === null || state.flights.has(storeKey)) return
  const factoryMs = state.factoryMs.get(storeKey)
  if (factoryMs === undefined || factoryMs <= 0) return
  if (host.now() - factoryMs * plan.beta * Math.log(Math.random()) < expiresAt) return
  state.counters.refreshes++
  const flight = startFlight(host, key, storeKey, factory, plan, true)
  // Nobody waits for a refresh; its failure is counted and the current value stays.
  flight.answer.catch(() => undefined)
}

/** Starts and registers a flight: the factory call (or the wait for another replica's). */
function startFlight(
  host: GetOrSetHost,
  key: string,
  storeKey: string,
  factory: Factory<unknown>,
  plan: Plan,
  refresh: boolean,
): Flight {
  const state = host.state
  const controller = new AbortController()
  const graceKey = plan.graceMs > 0 ? host.graceKeyOf(key) : undefined
  const stale: Promise<GraceCopy | undefined> =
    graceKey === undefined
      ? Promise.resolve(undefined)
      : host.readGrace(graceKey).then(graceCopyOf, () => undefined)
  const load: Load = {
    host,
    key,
    storeKey,
    graceKey,
    factory,
    plan,
    refresh,
    signal: controller.signal,
  }
  const work = (async (): Promise<Outcome> => {
    const copy = await stale
    if (copy !== undefined && state.factoryMs.get(storeKey) === undefined && copy.ms > 0) {
      state.remember(state.factoryMs, storeKey, copy.ms)
    }
    const retryAt = state.retryAt.get(storeKey)
    if (copy !== undefined && retryAt !== undefined && host.now() < retryAt) {
      return { value: copy.v, stale: true }
    }
    try {
      return plan.distributed === undefined
        ? await loadHere(load, copy)
        : await loadDistributed(load, copy, plan.distributed)
    } catch (error) {
      if (copy === undefined || controller.signal.aborted) throw error
      state.remember(state.retryAt, storeKey, host.now() + plan.backoffMs)
      return { value: copy.v, stale: true }
    }
  })()
  const done = withHardTimeout(load, work, stale, controller)
  const flight: Flight = { refresh, answer: withSoftTimeout(state, plan, done, stale) }
  state.flights.set(storeKey, flight)
  const forget = (): void => {
    if (state.flights.get(storeKey) === flight) state.flights.delete(storeKey)
  }
  done.then(forget, forget)
  return flight
}

/** Settles at the hard timeout at the latest: with the grace copy, else `FactoryTimeoutError`. */
function withHardTimeout(
  load: Load,
  work: Promise<Outcome>,
  stale: Promise<GraceCopy | undefined>,
  controller: AbortController,
): Promise<Outcome> {
  const { hardMs } = load.plan
  if (hardMs === undefined) return work
  const state = load.host.state
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<Outcome>((resolve, reject) => {
    timer = setTimeout(() => {
      const error = new FactoryTimeoutError(
        `the getOrSet factory of key "${load.key}" did not settle within ${formatDuration(hardMs)} (timeout.hard); make it faster, raise the timeout, or set grace to serve the last good value meanwhile`,
      )
      controller.abort(error)
      state.counters.timeouts++
      void stale.then((copy) => {
        if (copy === undefined) return reject(error)
        state.remember(state.retryAt, load.storeKey, load.host.now() + load.plan.backoffMs)
        resolve({ value: copy.v, stale: true })
      })
    }, hardMs)
  })
  return Promise.race([work, timedOut]).finally(() => clearTimeout(timer))
}

/** After the soft timeout, answers with the grace copy if there is one; the flight goes on. */
function withSoftTimeout(
  state: GetOrSetState,
  plan: Plan,
  done: Promise<Outcome>,
  stale: Promise<GraceCopy | undefined>,
): Promise<Outcome> {
  const { softMs } = plan
  if (softMs === undefined) return done
  let settled = false
  const markSettled = (): void => {
    settled = true
  }
  done.then(markSettled, markSettled)
  let timer: NodeJS.Timeout | undefined
  // Resolves with the grace copy once the soft timeout passes; never, when there is none.
  const soft = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => {
      void stale.then((copy) => {
        if (copy === undefined || settled) return
        state.counters.softTimeouts++
        resolve({ value: copy.v, stale: true })
      })
    }, softMs)
  })
  return Promise.race([done, soft]).finally(() => clearTimeout(timer))
}

/** Everything one flight needs. */
interface Load {
  host: GetOrSetHost
  key: string
  storeKey: string
  graceKey: string | undefined
  factory: Factory<unknown>
  plan: Plan
  refresh: boolean
  signal: AbortSignal
}

/** Single flight per process: look once more, then call the factory. */
async function loadHere(load: Load, copy: GraceCopy | undefined): Promise<Outcome> {
  if (!load.refresh) {
    // A flight that finished between the caller's miss and now has already stored the value.
    const again = await load.host.reread(load.storeKey)
    if (again !== undefined) return { value: again, stale: false }
  }
  return compute(load, copy)
}

/**
 * Single flight across replicas: the holder of the flight lock computes; the others poll the
 * value with a pause that doubles up to `pollMs`, trying the lock again each time, until the
 * value appears or the hard timeout abandons the flight. Without the lock, the factory never runs.
 */
async function loadDistributed(
  load: Load,
  copy: GraceCopy | undefined,
  options: { lockTtlMs: number; pollMs: number },
): Promise<Outcome> {
  const { host, signal } = load
  const locks = host.flightLocks()
  let pause = Math.min(FIRST_POLL_MS, options.pollMs)
  for (let attempt = 0; ; attempt++) {
    signal.throwIfAborted()
    const lock = await locks.acquire(load.key, { ttl: options.lockTtlMs })
    if (lock !== null) {
      const keepAlive = setInterval(
        () => void lock.extend(options.lockTtlMs).catch(() => undefined),
        Math.max(10, Math.floor(options.lockTtlMs / 3)),
      )
      keepAlive.unref()
      // At the hard timeout the flight is abandoned: a hanging factory must not hold the key.
      const stop = (): void => {
        clearInterval(keepAlive)
        void lock.release().catch(() => false)
      }
      signal.addEventListener('abort', stop, { once: true })
      try {
        if (!load.refresh || attempt > 0) {
          const again = await host.reread(load.storeKey)
          if (again !== undefined) return { value: again, stale: false }
        }
        return await compute(load, copy)
      } finally {
        signal.removeEventListener('abort', stop)
        stop()
      }
    }
    host.state.counters.lockWaits++
    await sleep(pause * (0.5 + Math.random() / 2), undefined, { signal })
    pause = Math.min(pause * 2, options.pollMs)
    const value = await host.reread(load.storeKey)
    if (value !== undefined) return { value, stale: false }
  }
}

/** Calls the factory and caches its result (and the grace copy) unless told not to. */
async function compute(load: Load, copy: GraceCopy | undefined): Promise<Outcome> {
  const { host, plan, storeKey } = load
  const state = host.state
  const context = new Context(load.key, copy?.v, load.signal, (ttl) =>
    host.checkTtl(ttl, 'ctx.setTtl'),
  )
  state.counters.factoryCalls++
  const started = performance.now()
  let value: unknown
  try {
    value = await load.factory(context)
  } catch (error) {
    state.counters.factoryErrors++
    throw error
  }
  const ms = performance.now() - started
  state.remember(state.factoryMs, storeKey, ms)
  // After the hard timeout the callers are gone: a late result is not cached.
  if (load.signal.aborted) return { value, stale: false }
  if (value !== undefined && !context.skipped) {
    const ttlMs = context.ttlMs ?? plan.ttlMs
    const writes = [host.write(load.key, value, ttlMs, plan.links)]
    if (load.graceKey !== undefined && ttlMs !== undefined) {
      const graceTtl = Math.min(ttlMs + plan.graceMs, host.maxTtlMs)
      // The grace copy is a best effort: the value itself was written.
      writes.push(host.writeGrace(load.graceKey, { v: value, ms }, graceTtl).catch(() => undefined))
    }
    await Promise.all(writes)
  }
  state.retryAt.delete(storeKey)
  return { value, stale: false }
}

/** A grace copy read back from the store, or `undefined` when it is not one. */
function graceCopyOf(stored: unknown): GraceCopy | undefined {
  if (typeof stored !== 'object' || stored === null || !('v' in stored)) return undefined
  const ms = (stored as { ms?: unknown }).ms
  return { v: stored.v, ms: typeof ms === 'number' ? ms : 0 }
}

class Context<T> implements FactoryContext<T> {
  readonly key: string
  readonly stale: T | undefined
  readonly signal: AbortSignal
  readonly #checkTtl: (ttl: Duration) => number
  skipped = false
  ttlMs: number | undefined

  constructor(
    key: string,
    stale: T | undefined,
    signal: AbortSignal,
    checkTtl: (ttl: Duration) => number,
  ) {
    this.key = key
    this.stale = stale
    this.signal = signal
    this.#checkTtl = checkTtl
  }

  skip(): void {
    this.skipped = true
  }

  setTtl(ttl: Duration): void {
    this.ttlMs = this.#checkTtl(ttl)
  }
}
