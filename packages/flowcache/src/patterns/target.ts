/**
 * What the write patterns (`writeThrough`, `writeBehind`) write to: a {@link WriteTarget}, the
 * system of record behind the cache (a database table, an HTTP API, a file). Also the small
 * pieces the patterns share: the cache calls they make and per-key ordering.
 */
import type { Duration } from '../core/duration.js'
import type { Logger } from '../core/logger.js'
import { InvalidArgumentError, WriteTargetError } from '../errors.js'

/** One value for the target to store under `key` (the key as given to the writer). */
export interface WriteItem<T = unknown> {
  key: string
  value: T
}

/**
 * The system of record a writer writes to. Implement `write` (and `delete` if the writer should
 * delete) over your database or API:
 *
 * - a call that resolves means every item in it is durably stored (or deleted) in the target;
 * - a call that throws or rejects means the writer may call it again with the same items, so both
 *   methods must be idempotent: an upsert, not an insert;
 * - one call never holds two items with the same key, and the writer never has two calls in
 *   flight at once, so writes to one key reach the target in the order they were made.
 */
export interface WriteTarget<T = unknown> {
  /** Stores (inserts or replaces) every item. Throw to fail the whole call. */
  write(items: ReadonlyArray<WriteItem<T>>): Promise<void>
  /**
   * Deletes every key; a key the target does not have is not an error. Optional: without it,
   * the writer's `delete` throws `E_INVALID_ARGUMENT`.
   */
  delete?(keys: readonly string[]): Promise<void>
}

/** A queued write-behind operation: store `value` under `key`, or delete `key`. */
export type WriteOperation<T = unknown> =
  { kind: 'set'; key: string; value: T } | { kind: 'delete'; key: string }

/** The cache calls a pattern makes (a `Cache` or a namespace view of one). */
export interface PatternCache {
  set(key: string, value: unknown, ttl?: Duration | { ttl?: Duration }): Promise<true>
  setMany(items: ReadonlyArray<{ key: string; value: unknown; ttl?: Duration }>): Promise<true>
  delete(key: string): Promise<boolean>
  has(key: string): Promise<boolean>
}

/**
 * What the cache hands to a pattern: the view to write to and checks that throw the cache's own
 * argument errors without any I/O, so a rejected call has touched neither target nor store.
 * @internal
 */
export interface PatternHost {
  readonly cache: PatternCache
  /** Checks that the cache is open and that `key`, `value` and `ttl` would be accepted by `set`. */
  checkWrite(key: string, value: unknown, ttl: Duration | { ttl?: Duration } | undefined): void
  /** Checks that the cache is open and that `key` is a valid key. */
  checkKey(key: string): void
  /** Checks a TTL against the cache's limits. */
  checkTtl(ttl: Duration): void
  /** The cache's `limits.maxBatchSize`. */
  readonly maxBatchSize: number
  readonly logger: Logger
}

/** Throws `E_INVALID_ARGUMENT` unless `target` has a `write` method (and a valid `delete`). */
export function checkTarget(target: unknown): void {
  const candidate = target as { write?: unknown; delete?: unknown } | null
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    typeof candidate.write !== 'function'
  ) {
    throw InvalidArgumentError.format(
      'target',
      'must be an object with a write(items) method (and optionally delete(keys))',
    )
  }
  if (candidate.delete !== undefined && typeof candidate.delete !== 'function') {
    throw InvalidArgumentError.format('target.delete', 'must be a function when given')
  }
}

/** Throws `E_INVALID_ARGUMENT` when the target cannot delete. */
export function checkCanDelete(target: WriteTarget<never>, writer: string): void {
  if (target.delete === undefined) {
    throw InvalidArgumentError.format(
      `${writer}.delete()`,
      'needs a target with a delete(keys) method; add one to the target',
    )
  }
}

/** Wraps what a target threw into a {@link WriteTargetError} whose message says what failed. */
export function targetError(what: string, error: unknown): WriteTargetError {
  const detail = error instanceof Error ? error.message : String(error)
  return new WriteTargetError(`the write target failed to ${what}: ${detail}`, { cause: error })
}

/** The message of any thrown value. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/**
 * Runs the tasks given for one key one after the other, in call order; tasks of different keys
 * run concurrently. A task that fails does not stop the next one.
 */
export class KeySerializer {
  readonly #tails = new Map<string, Promise<void>>()

  /** Runs `task` after every task given earlier for `key` has settled. */
  run<R>(key: string, task: () => Promise<R>): Promise<R> {
    const previous = this.#tails.get(key)
    const result = previous === undefined ? task() : previous.then(task)
    const tail = result.then(
      () => undefined,
      () => undefined,
    )
    this.#tails.set(key, tail)
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    })
    return result
  }
}
