/**
 * Rate limits built on the store contract, like locks: one state entry per limiter key (a system
 * key, kind `r`), read with `get` and written with `create` when missing or `compareAndSet` on
 * its revision. A decision is therefore atomic across every replica on every store that passes
 * the contract suite, without scripts of its own.
 *
 * Time is the store's clock (`store.now()`, else `Date.now()`), read once per attempt and never
 * mixed with another clock. Replicas estimate that clock separately (Redis), so a reading below
 * the newest time in the state is raised to it: times in a state never go backwards, and the
 * sliding window holds exactly on the state's own timeline. In real time it can be off by as
 * much as the replicas disagree about the store clock (Redis: half the round trip of the
 * `TIME` sample each replica took).
 *
 * Calls for one key in one process are queued and decided in batches of one read and at most one
 * write: a burst of in-process calls costs one round trip per batch instead of a compare-and-set
 * storm, so lost races only happen between replicas. Denied calls and `status` never write,
 * and the state's TTL is not refreshed by them, so a flood of denied calls costs reads only and
 * an idle limiter's entry expires `per` after its last admission.
 *
 * Rate limits never use a memory fallback: the context's `store()` throws while only a fallback
 * is available, and the caller's `failure` policy decides what such a fault means.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Codec } from '../types/codec.js'
import type { Store, StoreEntry } from '../types/store.js'
import { parseDuration, type Duration } from '../core/duration.js'
import type { RateLimitOutcome } from '../core/diagnostics.js'
import {
  DecodeError,
  FlowcacheError,
  InvalidArgumentError,
  StoreUnavailableError,
} from '../errors.js'

/** The algorithms of {@link RateLimitOptions.algorithm}. */
export const rateLimitAlgorithms = ['sliding-window', 'token-bucket'] as const
/** One of {@link rateLimitAlgorithms}. */
export type RateLimitAlgorithm = (typeof rateLimitAlgorithms)[number]

/**
 * Largest `max` of a sliding window. Its state keeps one timestamp per admitted unit of the
 * trailing window, delta-encoded: about 2 bytes each under bursts, about `digits(per / max) + 1`
 * when admissions are spread evenly. Every admission rewrites the whole state, so a full window
 * of 10 000 per day costs ~50 KB per write (20 KB if admitted in one burst). Use `token-bucket`
 * for larger limits: its state is two numbers whatever `max` is.
 */
export const MAX_SLIDING_WINDOW = 10_000

/** Options of {@link RateLimiter.limit} and {@link RateLimiter.status}. */
export interface RateLimitOptions {
  /** Units admitted per `per`: a positive integer; at most {@link MAX_SLIDING_WINDOW} for a sliding window. */
  max: number
  /**
   * As ms or a duration string: the window length (`sliding-window`), or the time an empty
   * bucket takes to refill completely (`token-bucket`). At most `limits.maxTtl`.
   */
  per: Duration
  /**
   * `sliding-window`: never more than `max` units admitted in any trailing `per` (exact).
   * `token-bucket`: a bucket of `max` tokens refilled continuously at `max` per `per`, so bursts
   * up to `max` pass and the long-run rate is `max / per`.
   * @default 'sliding-window'
   */
  algorithm?: RateLimitAlgorithm
  /** Units this call consumes (or, for `status`, would consume): a positive integer ≤ `max`. @default 1 */
  cost?: number
  /**
   * What a store fault (unreachable store, memory fallback, unreadable state, too many lost
   * races) means: `closed` rejects the call with the typed error; `open` admits it with
   * `failedOpen: true`. Both are counted in {@link RateLimiter.stats}.
   * @default 'closed'
   */
  failure?: 'closed' | 'open'
}

/** The answer of {@link RateLimiter.limit} and {@link RateLimiter.status}. */
export interface RateLimitResult {
  /** `limit`: whether this call was admitted (and consumed). `status`: whether it would be. */
  allowed: boolean
  /** Whole units still available after this call (`status`: before any call). 0 when failed open (unknown). */
  remaining: number
  /** 0 when allowed; otherwise ms until a call of the same cost can be admitted, if nothing else is. */
  retryAfterMs: number
  /** When the full `max` is available again if nothing else is admitted: ms since the epoch, store clock. */
  resetAt: number
  /** The `max` the call was checked against. */
  limit: number
  /** Time of the decision: ms since the epoch on the store clock (the local clock when failed open). */
  checkedAt: number
  /** Present when the store could not be asked and `failure: 'open'` admitted the call anyway. */
  failedOpen?: true
}

/** Counters of a {@link RateLimiter}; for metrics. `failedOpen`/`failedClosed` count `limit` and `status` calls. */
export interface RateLimitStats {
  /** `limit` calls admitted by the store's state. */
  allowed: number
  /** `limit` calls denied. */
  denied: number
  /** Calls answered `allowed` without the store because of a fault and `failure: 'open'`. */
  failedOpen: number
  /** Calls rejected because of a fault and `failure: 'closed'`. */
  failedClosed: number
  /** Writes that lost a race to another replica and were retried. */
  conflicts: number
}

/** Parts of the cache a rate limiter needs; supplied by the cache. */
export interface RateLimitContext {
  /** The store for coordination: never a memory fallback. Throws when only a fallback is available. */
  store(): Store
  codec: Codec
  /** Store key of the limiter state named `key` in the caller's namespace (system key, kind `r`). */
  keyOf(key: string): string
  /** Longest TTL accepted, in ms; bounds `per`. */
  maxTtlMs: number
  /**
   * Counters to add to. Pass one object to the limiters of every namespace so they add up to
   * the cache's figures. @default counters of this limiter alone
   */
  counters?: RateLimitStats
  /**
   * Called with every decision of `limit` and every store fault of `limit` and `status`, as the
   * counters are (for diagnostics). @default nothing
   */
  report?(key: string, outcome: RateLimitOutcome): void
  /** Rounds of read and compare-and-set one batch may lose to other replicas before it counts as a store fault. @default 50 */
  maxAttempts?: number
}

/** Validated options of one call. */
interface Config {
  algorithm: RateLimitAlgorithm
  max: number
  perMs: number
  cost: number
  failure: 'closed' | 'open'
}

/** Admission times of a sliding window, ascending, store clock. */
interface WindowState {
  kind: 'sliding-window'
  times: number[]
}

/** A token bucket: `tokens` as of `at` (store clock). */
interface BucketState {
  kind: 'token-bucket'
  tokens: number
  at: number
}

type State = WindowState | BucketState

/**
 * Stored forms. A window keeps its first time and the gaps after it: under bursts most gaps are
 * 0, which keeps a large window's entry small.
 */
type StoredState = { a: 'sw'; b: number; d: number[] } | { a: 'tb'; n: number; at: number }

/** One queued `limit` call. */
interface Pending {
  key: string
  config: Config
  resolve: (result: RateLimitResult) => void
  reject: (error: unknown) => void
}

/** Float slack of the token arithmetic, so 0.9999999 refilled tokens count as 1. */
const EPSILON = 1e-9
/** Kept on top of `per` in the state's TTL: the store may expire on a clock this process only estimates. */
const TTL_MARGIN_MS = 100
/** Longest jittered pause between rounds lost to other replicas, in ms. */
const MAX_BACKOFF_MS = 50

function integerOption(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw InvalidArgumentError.format(
      name,
      `must be a positive integer; got ${typeof value === 'number' ? String(value) : typeof value}`,
    )
  }
  return value
}

function parseOptions(options: RateLimitOptions, maxTtlMs: number): Config {
  if (typeof options !== 'object' || options === null) {
    throw InvalidArgumentError.format('options', 'must be an object with at least { max, per }')
  }
  const algorithm = options.algorithm ?? 'sliding-window'
  if (!rateLimitAlgorithms.includes(algorithm)) {
    throw InvalidArgumentError.format(
      'algorithm',
      `must be 'sliding-window' or 'token-bucket'; got ${JSON.stringify(algorithm)}`,
    )
  }
  const max = integerOption(options.max, 'max')
  if (algorithm === 'sliding-window' && max > MAX_SLIDING_WINDOW) {
    throw InvalidArgumentError.format(
      'max',
      `of a sliding window is at most ${MAX_SLIDING_WINDOW} (its state keeps one timestamp per admission); got ${max}: use algorithm 'token-bucket' for larger limits`,
    )
  }
  const perMs = parseDuration(options.per, 'per')
  if (perMs > maxTtlMs) {
    throw InvalidArgumentError.format('per', `is longer than limits.maxTtl (${maxTtlMs} ms)`)
  }
  const cost = options.cost === undefined ? 1 : integerOption(options.cost, 'cost')
  if (cost > max) {
    throw InvalidArgumentError.format(
      'cost',
      `of ${cost} is more than max (${max}): such a call could never be admitted`,
    )
  }
  const failure = options.failure ?? 'closed'
  if (failure !== 'closed' && failure !== 'open') {
    throw InvalidArgumentError.format(
      'failure',
      `must be 'closed' or 'open'; got ${JSON.stringify(failure)}`,
    )
  }
  return { algorithm, max, perMs, cost, failure }
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

function decodeState(codec: Codec, entry: StoreEntry, key: string): State {
  const stored = codec.decode(entry.value) as Partial<Record<string, unknown>> | null
  if (stored !== null && typeof stored === 'object') {
    if (stored.a === 'sw' && isFiniteNumber(stored.b) && Array.isArray(stored.d)) {
      const times = [stored.b]
      let at = stored.b
      for (const gap of stored.d as unknown[]) {
        if (!isFiniteNumber(gap) || gap < 0) break
        at += gap
        times.push(at)
      }
      if (times.length === stored.d.length + 1) return { kind: 'sliding-window', times }
    } else if (stored.a === 'tb' && isFiniteNumber(stored.n) && isFiniteNumber(stored.at)) {
      return { kind: 'token-bucket', tokens: stored.n, at: stored.at }
    }
  }
  throw new DecodeError(
    `the state of rate limit "${key}" is not one flowcache writes; reset(key) clears it, and it expires on its own`,
  )
}

function encodeState(state: State): StoredState {
  if (state.kind === 'token-bucket') return { a: 'tb', n: state.tokens, at: state.at }
  const [first = 0, ...rest] = state.times
  const gaps: number[] = []
  let previous = first
  for (const at of rest) {
    gaps.push(at - previous)
    previous = at
  }
  return { a: 'sw', b: first, d: gaps }
}

/** The newest time in a state, which later readings must not go below. */
function latestTime(state: State | undefined): number {
  if (state === undefined) return -Infinity
  return state.kind === 'token-bucket'
    ? state.at
    : (state.times[state.times.length - 1] ?? -Infinity)
}

/** One decision: its answer and, when it consumed, the state to write. */
interface Step {
  result: RateLimitResult
  next: State | undefined
}

/**
 * Decides one call at `clockNow` against `state`. Pure, so a batch can decide its calls one after
 * the other on the evolving state before writing once. A state of the other algorithm (the key
 * was used with another configuration) counts as empty.
 */
function decide(
  state: State | undefined,
  clockNow: number,
  config: Config,
  consume: boolean,
): Step {
  const now = Math.max(clockNow, latestTime(state))
  const { max, perMs, cost } = config
  if (config.algorithm === 'token-bucket') {
    // Ms per token is per / max; multiplying by it keeps whole-token waits exact in floats.
    const tokens =
      state?.kind === 'token-bucket'
        ? Math.min(max, state.tokens + (Math.max(0, now - state.at) * max) / perMs)
        : max
    const allowed = tokens + EPSILON >= cost
    const left = consume && allowed ? Math.max(0, tokens - cost) : tokens
    const result: RateLimitResult = {
      allowed,
      remaining: Math.max(0, Math.floor(left + EPSILON)),
      retryAfterMs: allowed ? 0 : Math.max(1, Math.ceil(((cost - tokens) * perMs) / max - EPSILON)),
      resetAt: now + Math.max(0, Math.ceil(((max - left) * perMs) / max - EPSILON)),
      limit: max,
      checkedAt: now,
    }
    return {
      result,
      next: consume && allowed ? { kind: 'token-bucket', tokens: left, at: now } : undefined,
    }
  }
  // Admissions at `t` count while `now < t + per`.
  const all = state?.kind === 'sliding-window' ? state.times : []
  let firstLive = 0
  while (firstLive < all.length && (all[firstLive] as number) <= now - perMs) firstLive++
  const live = all.slice(firstLive)
  const allowed = live.length + cost <= max
  if (consume && allowed) {
    for (let i = 0; i < cost; i++) live.push(now)
    // Only the newest `max` times can ever decide a call of this limiter, so the rest is dropped.
    const kept = live.length > max ? live.slice(live.length - max) : live
    return {
      result: {
        allowed,
        remaining: max - live.length,
        retryAfterMs: 0,
        resetAt: now + perMs,
        limit: max,
        checkedAt: now,
      },
      next: { kind: 'sliding-window', times: kept },
    }
  }
  // A call of `cost` fits once the oldest `live + cost - max` admissions have left the window.
  const mustLeave = live.length + cost - max
  const retryAfterMs = allowed ? 0 : (live[mustLeave - 1] as number) + perMs - now
  const newest = live[live.length - 1]
  return {
    result: {
      allowed,
      remaining: Math.max(0, max - live.length),
      retryAfterMs,
      resetAt: newest === undefined ? now : newest + perMs,
      limit: max,
      checkedAt: now,
    },
    next: undefined,
  }
}

/** The store's clock: the one clock every time in a limiter state is measured on. */
function storeNow(store: Store): number {
  const now = store.now?.() ?? Date.now()
  if (!Number.isFinite(now)) {
    // A decision on a broken clock would admit or deny at random; it is a store fault instead.
    throw new StoreUnavailableError(
      `the ${store.name} store's clock returned ${String(now)}, not a time`,
    )
  }
  return now
}

/**
 * Whether `error` is a fault the `failure` policy applies to, as the error to report; `undefined`
 * for errors that must reach the caller as they are (a closed cache, a bad argument).
 */
function asFault(error: unknown, key: string): FlowcacheError | undefined {
  if (error instanceof StoreUnavailableError || error instanceof DecodeError) return error
  if (error instanceof FlowcacheError) return undefined
  return new StoreUnavailableError(`rate limit "${key}" could not be checked: the store failed`, {
    cause: error,
  })
}

/**
 * Rate limits of one namespace: `cache.rateLimits`. Limiters of different namespaces never
 * meet, whatever their keys. One key is one limiter: calls on a key should share `max`, `per`
 * and `algorithm`; a call with another algorithm starts that key afresh.
 */
export class RateLimiter {
  readonly #context: RateLimitContext
  readonly #counters: RateLimitStats
  readonly #maxAttempts: number
  /** Calls waiting per store key; an entry exists while a batch of that key is in flight. */
  readonly #queues = new Map<string, Pending[]>()

  /** @internal created by the cache */
  constructor(context: RateLimitContext) {
    this.#context = context
    this.#counters = context.counters ?? {
      allowed: 0,
      denied: 0,
      failedOpen: 0,
      failedClosed: 0,
      conflicts: 0,
    }
    this.#maxAttempts =
      context.maxAttempts === undefined ? 50 : integerOption(context.maxAttempts, 'maxAttempts')
  }

  /**
   * Checks `key` and, when the call fits, consumes `cost` units, atomically across replicas.
   * Bad options reject with `InvalidArgumentError` before any I/O. A store fault rejects with
   * `StoreUnavailableError` (or `DecodeError`) unless `failure: 'open'`, which admits instead.
   */
  async limit(key: string, options: RateLimitOptions): Promise<RateLimitResult> {
    const config = parseOptions(options, this.#context.maxTtlMs)
    const storeKey = this.#context.keyOf(key)
    return new Promise<RateLimitResult>((resolve, reject) => {
      const pending: Pending = { key, config, resolve, reject }
      const queue = this.#queues.get(storeKey)
      if (queue !== undefined) {
        queue.push(pending)
        return
      }
      this.#queues.set(storeKey, [pending])
      void this.#drain(storeKey)
    })
  }

  /**
   * What {@link limit} would answer now for a call of `cost`, without consuming anything and
   * without writing. Faults follow `failure` like `limit`.
   */
  async status(key: string, options: RateLimitOptions): Promise<RateLimitResult> {
    const context = this.#context
    const config = parseOptions(options, context.maxTtlMs)
    const storeKey = context.keyOf(key)
    try {
      const store = context.store()
      const entry = await store.get(storeKey)
      const clockNow = storeNow(store)
      const state = entry === undefined ? undefined : decodeState(context.codec, entry, key)
      return decide(state, clockNow, config, false).result
    } catch (error) {
      return this.#failed(key, config, error)
    }
  }

  /**
   * Forgets everything `key` admitted, so its full `max` is available again. Returns whether
   * there was state to forget. Store faults reject with `StoreUnavailableError`.
   */
  async reset(key: string): Promise<boolean> {
    const context = this.#context
    const storeKey = context.keyOf(key)
    return context.store().delete(storeKey)
  }

  /** A copy of the counters (shared with other namespaces when the cache passed shared ones). */
  stats(): RateLimitStats {
    return { ...this.#counters }
  }

  async #drain(storeKey: string): Promise<void> {
    // Calls made in the same tick as the first one join its batch.
    await Promise.resolve()
    for (;;) {
      const batch = this.#queues.get(storeKey) ?? []
      if (batch.length === 0) {
        this.#queues.delete(storeKey)
        return
      }
      this.#queues.set(storeKey, [])
      await this.#decideBatch(storeKey, batch)
    }
  }

  /** Decides `batch` in order with one read and at most one write per round; never rejects. */
  async #decideBatch(storeKey: string, batch: readonly Pending[]): Promise<void> {
    const context = this.#context
    const first = batch[0] as Pending
    for (let attempt = 1; ; attempt++) {
      let results: RateLimitResult[]
      try {
        const store = context.store()
        const entry = await store.get(storeKey)
        const clockNow = storeNow(store)
        let state = entry === undefined ? undefined : decodeState(context.codec, entry, first.key)
        let ttlPerMs = 0
        results = []
        for (const pending of batch) {
          const step = decide(state, clockNow, pending.config, true)
          results.push(step.result)
          if (step.next !== undefined) {
            state = step.next
            ttlPerMs = Math.max(ttlPerMs, pending.config.perMs)
          }
        }
        if (ttlPerMs > 0 && state !== undefined) {
          // The state matters until `per` after its newest time, which may be ahead of this
          // process's reading of the store clock (raised to another replica's newer time).
          const ttlMs = Math.ceil(latestTime(state) - clockNow) + ttlPerMs + TTL_MARGIN_MS
          const value = context.codec.encode(encodeState(state))
          const revision =
            entry === undefined
              ? await store.create(storeKey, value, { ttlMs })
              : await store.compareAndSet(storeKey, value, entry.revision, { ttlMs })
          if (revision === undefined) {
            this.#counters.conflicts++
            if (attempt >= this.#maxAttempts) {
              throw new StoreUnavailableError(
                `rate limit "${first.key}" lost ${attempt} compare-and-set rounds in a row to other replicas; the key is too contended to decide`,
              )
            }
            // The first retry reads the winner's write at once; later ones spread out, jittered,
            // so replicas that keep colliding stop doing so in lockstep.
            if (attempt > 1) {
              await sleep(Math.random() * Math.min(MAX_BACKOFF_MS, 2 ** (attempt - 1)))
            }
            continue
          }
        }
      } catch (error) {
        for (const pending of batch) {
          this.#failed(pending.key, pending.config, error).then(pending.resolve, pending.reject)
        }
        return
      }
      batch.forEach((pending, index) => {
        const result = results[index] as RateLimitResult
        if (result.allowed) this.#counters.allowed++
        else this.#counters.denied++
        this.#context.report?.(pending.key, result.allowed ? 'allowed' : 'denied')
        pending.resolve(result)
      })
      return
    }
  }

  /** Applies the `failure` policy to an error: an open result, or a rejection with the typed error. */
  async #failed(key: string, config: Config, error: unknown): Promise<RateLimitResult> {
    const fault = asFault(error, key)
    if (fault === undefined) throw error
    if (config.failure === 'closed') {
      this.#counters.failedClosed++
      this.#context.report?.(key, 'failedClosed')
      throw fault
    }
    this.#counters.failedOpen++
    this.#context.report?.(key, 'failedOpen')
    const now = Date.now()
    return {
      allowed: true,
      remaining: 0,
      retryAfterMs: 0,
      resetAt: now,
      limit: config.max,
      checkedAt: now,
      failedOpen: true,
    }
  }
}
