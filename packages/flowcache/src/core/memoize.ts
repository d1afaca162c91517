/**
 * `memoize`: wraps a function so that its results are cached by input through `getOrSet`, with
 * its single flight, grace, timeouts and early refresh. The default key is a stable hash of the
 * canonical form of the arguments, so `{ a: 1, b: 2 }` and `{ b: 2, a: 1 }` share one entry.
 */
import { createHash } from 'node:crypto'
import { InvalidArgumentError } from '../errors.js'
import { canonicalize } from './codec.js'
import type { Duration } from './duration.js'
import type { GetOrSetOptions, GetOrSetResult } from './get-or-set.js'

/** Options of {@link Cache.memoize}: those of `getOrSet`, plus how keys are made. */
export interface MemoizeOptions<A extends unknown[]> extends GetOrSetOptions {
  /** TTL of each result, as ms or a duration string. @default the namespace's default TTL */
  ttl?: Duration
  /**
   * Key of the cache entry for some arguments. Two functions memoized in one namespace must not
   * produce the same keys. @default `<name>:<sha256 of the canonical arguments, base64url>`
   */
  key?: (...args: A) => string
  /** First part of the default key. @default the function's name; required for an anonymous function without `key` */
  name?: string
  /** Namespace (inside the cache or view `memoize` is called on) that holds the results. @default none: the view itself */
  namespace?: string
}

/** One call of a memoized function with how its result was obtained, for step metadata. */
export interface MemoizedResult<R> {
  /** The function's result (or the cached one). */
  value: R
  /** Whether the result was in the cache when the call looked. */
  hit: boolean
  /** Whether the result is a grace copy served because the function failed or timed out. */
  stale: boolean
  /** Time the call took, in ms. */
  ms: number
  /** The cache key used. */
  key: string
}

/** A memoized function: call it like the original; `run`, `invalidate` and `keyOf` take the same arguments. */
export interface Memoized<A extends unknown[], R> {
  (...args: A): Promise<R>
  /** Calls it and says whether the result was a cache hit, and how long the call took. */
  run(...args: A): Promise<MemoizedResult<R>>
  /** Deletes the cached result (and its grace copy) for these arguments; whether one existed. */
  invalidate(...args: A): Promise<boolean>
  /** The cache key of these arguments. */
  keyOf(...args: A): string
}

/** The parts of a cache view that `memoize` uses. */
export interface MemoizeHost {
  getOrSet(
    key: string,
    factory: () => unknown,
    options: GetOrSetOptions,
  ): Promise<GetOrSetResult<unknown>>
  /** Deletes a key and its grace copy. */
  forget(key: string): Promise<boolean>
}

/** Stable hash of arguments: sha256 of their canonical form, base64url (43 characters). */
export function hashArguments(args: readonly unknown[]): string {
  return createHash('sha256').update(canonicalize(args)).digest('base64url')
}

/** Builds a memoized function over `host`; see {@link Cache.memoize}. */
export function memoize<A extends unknown[], R>(
  host: MemoizeHost,
  fn: (...args: A) => R | Promise<R>,
  options: MemoizeOptions<A>,
): Memoized<A, Awaited<R>> {
  if (typeof fn !== 'function') {
    throw InvalidArgumentError.format('fn', 'must be the function to memoize')
  }
  const { key: keyFn, name: givenName } = options
  // The rest are getOrSet's options (which rejects unknown ones); the namespace is applied by the cache.
  const getOrSetOptions: Record<string, unknown> = { ...options }
  for (const own of ['key', 'name', 'namespace']) delete getOrSetOptions[own]
  if (keyFn !== undefined && typeof keyFn !== 'function') {
    throw InvalidArgumentError.format('key', 'must be a function of the arguments returning a key')
  }
  const name = givenName ?? fn.name
  if (keyFn === undefined && (typeof name !== 'string' || name === '')) {
    throw InvalidArgumentError.format(
      'name',
      'is needed to memoize an anonymous function: pass { name } or a { key } function',
    )
  }
  const keyOf = (...args: A): string => {
    if (keyFn === undefined) return `${name}:${hashArguments(args)}`
    const key = keyFn(...args)
    if (typeof key !== 'string' || key === '') {
      throw InvalidArgumentError.format('key', `must return a non-empty string; got ${String(key)}`)
    }
    return key
  }
  const run = async (...args: A): Promise<MemoizedResult<Awaited<R>>> => {
    const started = performance.now()
    const key = keyOf(...args)
    const result = await host.getOrSet(key, () => fn(...args), getOrSetOptions)
    return {
      value: result.value as Awaited<R>,
      hit: result.hit,
      stale: result.stale,
      ms: performance.now() - started,
      key,
    }
  }
  const memoized = async (...args: A): Promise<Awaited<R>> => (await run(...args)).value
  return Object.assign(memoized, {
    run,
    invalidate: (...args: A) => host.forget(keyOf(...args)),
    keyOf,
  })
}
