/**
 * Cache warming: loads many keys from their source into the cache with bounded parallelism,
 * reporting progress per key and collecting failures instead of stopping at the first one.
 */
import { positiveInteger } from '../core/checks.js'
import type { Duration } from '../core/duration.js'
import { InvalidArgumentError } from '../errors.js'
import type { PatternHost } from './target.js'

/** Loads run at once when `concurrency` is not given. */
export const DEFAULT_WARM_CONCURRENCY = 8
/** Largest `concurrency` accepted. */
export const MAX_WARM_CONCURRENCY = 256
/** Most failures kept in `WarmSummary.errors` (`failed` counts them all). */
export const MAX_WARM_ERRORS = 100
/** Keys per `loadMany` call when a batch loader gives no `batchSize`. */
export const DEFAULT_WARM_BATCH_SIZE = 100

/** What a loader receives besides the key(s). */
export interface WarmContext {
  /** Aborts when the caller's `signal` aborts or `stopOnError` stops the run. */
  signal: AbortSignal
}

/** Loads one key's value; `undefined` means the source has none (nothing is cached). */
export type WarmKeyLoader<T = unknown> = (
  key: string,
  context: WarmContext,
) => T | undefined | Promise<T | undefined>

/** Loads many keys in one call (one query, one HTTP request) and returns one value per key. */
export interface WarmBatchLoader<T = unknown> {
  /** Values in the order of `keys`, `undefined` where the source has none. */
  loadMany(
    keys: string[],
    context: WarmContext,
  ): ReadonlyArray<T | undefined> | Promise<ReadonlyArray<T | undefined>>
  /** Keys per call, at most the cache's `limits.maxBatchSize`. @default 100 */
  batchSize?: number
}

/** A loader of `warm()`: a function of one key, or `{ loadMany, batchSize }`. */
export type WarmLoader<T = unknown> = WarmKeyLoader<T> | WarmBatchLoader<T>

/** Options of `cache.warm(keys, loader, options)`. */
export interface WarmOptions {
  /** Loads (or `loadMany` calls) in flight at once, 1 to 256. @default 8 */
  concurrency?: number
  /** TTL of the loaded entries. @default the namespace's default TTL */
  ttl?: Duration
  /** Load keys that are already cached too. @default false: cached keys are skipped */
  force?: boolean
  /** Stops starting loads when aborted; loads in flight finish and the summary says `aborted`. */
  signal?: AbortSignal
  /** Called after each key with the running counts. Exceptions it throws are ignored. */
  onProgress?: (progress: WarmProgress) => void
  /**
   * Stop at the first failure: no new loads start, and `warm()` rejects with that failure's
   * error once the loads in flight finish. @default false: failures are collected
   */
  stopOnError?: boolean
}

/** What happened to one key. */
export type WarmOutcome = 'loaded' | 'skipped' | 'missing' | 'failed'

/** One progress event: the key just finished, its outcome, and the counts so far. */
export interface WarmProgress {
  key: string
  outcome: WarmOutcome
  /** The loader's or the cache's error, when `outcome` is `failed`. */
  error?: unknown
  /** Keys finished so far (loaded + skipped + missing + failed). */
  done: number
  /** Distinct keys to warm. */
  total: number
  loaded: number
  skipped: number
  missing: number
  failed: number
}

/** One failed key. */
export interface WarmFailure {
  key: string
  error: unknown
}

/** What `warm()` resolves to. */
export interface WarmSummary {
  /** Distinct keys given (duplicates are warmed once). */
  total: number
  /** Keys loaded and cached. */
  loaded: number
  /** Keys already cached, not loaded (never with `force`). */
  skipped: number
  /** Keys the loader returned `undefined` for; nothing was cached. */
  missing: number
  /** Keys whose load or cache write failed. */
  failed: number
  /** The first 100 failures. */
  errors: WarmFailure[]
  /** Whether `signal` aborted the run before every key was tried. */
  aborted: boolean
}

/**
 * Loads `keys` into the cache of `host`. Every argument and key is checked first, so a bad
 * call loads nothing. See `Cache.warm`.
 * @internal
 */
export async function warm<T>(
  host: PatternHost,
  keys: Iterable<string>,
  loader: WarmLoader<T>,
  options: WarmOptions = {},
): Promise<WarmSummary> {
  if (
    typeof keys !== 'object' ||
    keys === null ||
    typeof (keys as Partial<Iterable<string>>)[Symbol.iterator] !== 'function'
  ) {
    throw InvalidArgumentError.format('keys', 'must be an array (or another iterable) of keys')
  }
  const unique = [...new Set(keys)]
  for (const key of unique) host.checkKey(key)
  const concurrency = positiveInteger(options.concurrency, 'concurrency', DEFAULT_WARM_CONCURRENCY)
  if (concurrency > MAX_WARM_CONCURRENCY) {
    throw InvalidArgumentError.format(
      'concurrency',
      `must be at most ${MAX_WARM_CONCURRENCY}; got ${concurrency}`,
    )
  }
  if (options.ttl !== undefined) host.checkTtl(options.ttl)
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') {
    throw InvalidArgumentError.format('onProgress', 'must be a function when given')
  }
  const signal = options.signal
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw InvalidArgumentError.format('signal', 'must be an AbortSignal when given')
  }
  const units = unitsOf(host, unique, loader)
  const run = new WarmRun<T>(host, loader, unique.length, options)
  const stop = (): void => run.controller.abort(signal?.reason)
  signal?.addEventListener('abort', stop, { once: true })
  if (signal?.aborted === true) stop()
  try {
    let next = 0
    const worker = async (): Promise<void> => {
      while (!run.stopped && next < units.length) {
        await run.process(units[next++] as string[])
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, units.length) }, worker))
  } finally {
    signal?.removeEventListener('abort', stop)
  }
  return run.finish(signal?.aborted === true)
}

/** The keys split into units of work: one key each, or `batchSize` keys per `loadMany` call. */
function unitsOf<T>(host: PatternHost, keys: string[], loader: WarmLoader<T>): string[][] {
  if (typeof loader === 'function') return keys.map((key) => [key])
  if (typeof loader !== 'object' || loader === null || typeof loader.loadMany !== 'function') {
    throw InvalidArgumentError.format(
      'loader',
      'must be a function (key) => value, or an object with loadMany(keys) => values',
    )
  }
  const size = positiveInteger(loader.batchSize, 'loader.batchSize', DEFAULT_WARM_BATCH_SIZE)
  if (size > host.maxBatchSize) {
    throw InvalidArgumentError.format(
      'loader.batchSize',
      `must be at most limits.maxBatchSize (${host.maxBatchSize}); got ${size}`,
    )
  }
  const units: string[][] = []
  for (let i = 0; i < keys.length; i += size) units.push(keys.slice(i, i + size))
  return units
}

/** The state of one `warm()` call: counts, failures, and whether to stop. */
class WarmRun<T> {
  readonly controller = new AbortController()
  readonly #host: PatternHost
  readonly #loader: WarmLoader<T>
  readonly #options: WarmOptions
  readonly #counts = { loaded: 0, skipped: 0, missing: 0, failed: 0 }
  readonly #errors: WarmFailure[] = []
  readonly #total: number
  #firstError: { error: unknown } | undefined

  constructor(host: PatternHost, loader: WarmLoader<T>, total: number, options: WarmOptions) {
    this.#host = host
    this.#loader = loader
    this.#total = total
    this.#options = options
  }

  /** Whether no new loads may start. */
  get stopped(): boolean {
    return this.controller.signal.aborted
  }

  /** Warms one unit of keys; never throws (failures are recorded per key). */
  async process(keys: string[]): Promise<void> {
    const loader = this.#loader
    if (typeof loader === 'function') await this.#one(keys[0] as string, loader)
    else await this.#many(keys, loader)
  }

  async #one(key: string, loader: WarmKeyLoader<T>): Promise<void> {
    const cache = this.#host.cache
    try {
      if (this.#options.force !== true && (await cache.has(key))) {
        this.#record(key, 'skipped')
        return
      }
      const value = await loader(key, { signal: this.controller.signal })
      if (value === undefined) {
        this.#record(key, 'missing')
        return
      }
      await cache.set(key, value, this.#options.ttl)
      this.#record(key, 'loaded')
    } catch (error) {
      this.#record(key, 'failed', error)
    }
  }

  async #many(keys: string[], loader: WarmBatchLoader<T>): Promise<void> {
    const cache = this.#host.cache
    let todo = keys
    try {
      if (this.#options.force !== true) {
        const cached = await Promise.all(keys.map((key) => cache.has(key)))
        todo = keys.filter((_, i) => cached[i] !== true)
        for (const [i, key] of keys.entries()) if (cached[i] === true) this.#record(key, 'skipped')
      }
      if (todo.length === 0) return
      const values = await loader.loadMany(todo, { signal: this.controller.signal })
      if (!Array.isArray(values) || values.length !== todo.length) {
        throw InvalidArgumentError.format(
          'loader.loadMany',
          `must return an array with one value per key (${todo.length} keys); got ${Array.isArray(values) ? `${values.length} values` : typeof values}`,
        )
      }
      const ttl = this.#options.ttl
      const items: Array<{ key: string; value: unknown; ttl?: Duration }> = []
      for (const [i, key] of todo.entries()) {
        const value: unknown = values[i]
        if (value !== undefined)
          items.push(ttl === undefined ? { key, value } : { key, value, ttl })
      }
      if (items.length > 0) await cache.setMany(items)
      for (const [i, key] of todo.entries()) {
        this.#record(key, values[i] === undefined ? 'missing' : 'loaded')
      }
    } catch (error) {
      for (const key of todo) this.#record(key, 'failed', error)
    }
  }

  #record(key: string, outcome: WarmOutcome, error?: unknown): void {
    const counts = this.#counts
    counts[outcome]++
    if (outcome === 'failed') {
      if (this.#errors.length < MAX_WARM_ERRORS) this.#errors.push({ key, error })
      if (this.#firstError === undefined) this.#firstError = { error }
      if (this.#options.stopOnError === true) this.controller.abort(error)
    }
    const onProgress = this.#options.onProgress
    if (onProgress === undefined) return
    const done = counts.loaded + counts.skipped + counts.missing + counts.failed
    const progress: WarmProgress = { key, outcome, done, total: this.#total, ...counts }
    if (outcome === 'failed') progress.error = error
    try {
      onProgress(progress)
    } catch {
      // A broken progress display must not stop the warm-up.
    }
  }

  /** The summary, or the first failure with `stopOnError`. */
  finish(aborted: boolean): WarmSummary {
    if (this.#options.stopOnError === true && this.#firstError !== undefined) {
      throw this.#firstError.error
    }
    const counts = this.#counts
    const done = counts.loaded + counts.skipped + counts.missing + counts.failed
    return {
      total: this.#total,
      ...counts,
      errors: this.#errors,
      aborted: aborted && done < this.#total,
    }
  }
}
