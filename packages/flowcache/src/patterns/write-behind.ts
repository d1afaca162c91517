/**
 * Write-behind: writes go to the cache at once and to the system of record later, in batches.
 * The queue coalesces per key (last write wins), is bounded (writers wait when it is full),
 * retries failed batches with capped, jittered exponential backoff and never drops a write;
 * closing the writer (or the cache) writes everything still queued first.
 */
import { positiveInteger } from '../core/checks.js'
import { formatDuration, parseDuration, type Duration } from '../core/duration.js'
import { ClosedError, InvalidArgumentError, WriteTargetError } from '../errors.js'
import {
  KeySerializer,
  checkCanDelete,
  checkTarget,
  targetError,
  type PatternHost,
  type WriteOperation,
  type WriteTarget,
} from './target.js'

/** Options of `cache.writeBehind(target, options)`. */
export interface WriteBehindOptions<T = unknown> {
  /** Longest time a write waits in the queue before a flush starts, as ms or a duration string. @default '1s' */
  flushEvery?: Duration
  /** Most operations per target call; a flush starts at once when this many are queued. @default 100 */
  batchSize?: number
  /**
   * Most operations queued (or in progress) at once; further `set`/`delete` calls wait until a
   * flush makes room. Must be at least `batchSize`. @default 10000
   */
  maxPending?: number
  /**
   * Backoff of a failed flush: retry n (from 1) waits between half and all of
   * min(maxMs, baseMs × 2ⁿ⁻¹). Retries never stop while the writer is open. @default { baseMs: 100, maxMs: 30000 }
   */
  retry?: { baseMs?: number; maxMs?: number }
  /** Called after every failed target call, before the retry wait. Exceptions it throws are ignored. */
  onError?: (error: WriteTargetError, failure: WriteBehindFailure<T>) => void
  /** Called after every batch the target accepted. Exceptions it throws are ignored. */
  onFlush?: (flush: WriteBehindFlush<T>) => void
}

/** What `onError` receives besides the error. */
export interface WriteBehindFailure<T = unknown> {
  /** The operations of the failed batch; the same batch is retried. */
  operations: ReadonlyArray<WriteOperation<T>>
  /** Failed attempts of this batch so far (1 on the first failure). */
  attempt: number
  /** Delay before the next attempt, in ms. */
  retryInMs: number
}

/** What `onFlush` receives. */
export interface WriteBehindFlush<T = unknown> {
  /** The operations the target accepted. */
  operations: ReadonlyArray<WriteOperation<T>>
  /** Attempts it took (1 when the first one succeeded). */
  attempts: number
}

/** The last failure of a target call. */
export interface WriteBehindLastError {
  /** The `WriteTargetError` message (it includes the target's own message). */
  message: string
  /** When it happened, ms since the epoch. */
  at: number
}

/** Counters of one write-behind writer (`writer.stats()`). */
export interface WriteBehindStats {
  /** Operations accepted and not yet written to the target (one per key: the queue coalesces). */
  pending: number
  /** Operations the target accepted. */
  flushed: number
  /** Target calls that succeeded (a batch with sets and deletes makes two calls, counted once). */
  batches: number
  /** Failed target calls. */
  failures: number
  /** Attempts that repeated a failed batch. */
  retries: number
  /** Writes replaced by a later write of the same key before they were written. */
  coalesced: number
  /** Failures in a row of the current batch; 0 while the target accepts writes. */
  consecutiveFailures: number
  /** The latest failure, or `null` if the target never failed. */
  lastError: WriteBehindLastError | null
}

/** The write-behind counters of a whole cache, in `cache.stats().writeBehind`. */
export interface WriteBehindTotals {
  /** Open writers. */
  writers: number
  /** Operations queued in open writers. */
  pending: number
  /** Operations written, by every writer ever opened on this cache. */
  flushed: number
  /** Successful batches, by every writer. */
  batches: number
  /** Failed target calls, by every writer. */
  failures: number
  /** Retried attempts, by every writer. */
  retries: number
  /** Coalesced writes, by every writer. */
  coalesced: number
  /** Open writers whose target is failing now. */
  failing: number
  /** The latest failure of any writer, or `null`. */
  lastError: WriteBehindLastError | null
}

/** Options of `writer.close()`. */
export interface WriteBehindCloseOptions {
  /**
   * Give up flushing after this long (ms or duration string): `close()` then rejects with
   * `WriteTargetError` and `pendingWrites()` returns what was not written. @default wait until everything is written
   */
  timeout?: Duration
}

interface Batch<T> {
  readonly operations: Array<WriteOperation<T>>
  setsDone: boolean
  attempts: number
}

const DEFAULT_FLUSH_EVERY_MS = 1000
const DEFAULT_BATCH_SIZE = 100
const DEFAULT_MAX_PENDING = 10_000
const DEFAULT_RETRY_BASE_MS = 100
const DEFAULT_RETRY_MAX_MS = 30_000

/**
 * A write-behind writer. Create it with `cache.writeBehind(target, options)`; close it (or the
 * cache) to write everything still queued before the process exits.
 */
export class WriteBehindWriter<T = unknown> {
  readonly #host: PatternHost
  readonly #target: WriteTarget<T>
  readonly #registry: WriteBehindRegistry
  readonly #flushEveryMs: number
  readonly #batchSize: number
  readonly #maxPending: number
  readonly #retryBaseMs: number
  readonly #retryMaxMs: number
  readonly #onError: WriteBehindOptions<T>['onError']
  readonly #onFlush: WriteBehindOptions<T>['onFlush']
  readonly #serial = new KeySerializer()
  /** Operations not yet taken into a batch, in first-write order, one per key. */
  readonly #pending = new Map<string, WriteOperation<T>>()
  /** Calls between their checks and their enqueue, so close() can wait for them. */
  readonly #active = new Set<Promise<unknown>>()
  #waiters: Array<() => void> = []
  /** Queue slots held by calls that are writing the cache. */
  #reserved = 0
  /** The batch being written or waiting for its retry. */
  #batch: Batch<T> | undefined
  #pump: Promise<void> | undefined
  #timer: ReturnType<typeof setTimeout> | undefined
  /** Operations the flush timer asked to write now (the queue's length when it fired). */
  #due = 0
  /** flush() calls waiting: while there are any, the queue is written down to empty. */
  #flushing = 0
  #wake: (() => void) | undefined
  #open = true
  #abandoned = false
  #closing: Promise<void> | undefined
  readonly #counters: Omit<WriteBehindStats, 'pending'> = {
    flushed: 0,
    batches: 0,
    failures: 0,
    retries: 0,
    coalesced: 0,
    consecutiveFailures: 0,
    lastError: null,
  }

  /** @internal use `cache.writeBehind(target, options)` */
  constructor(
    host: PatternHost,
    registry: WriteBehindRegistry,
    target: WriteTarget<T>,
    options: WriteBehindOptions<T> = {},
  ) {
    checkTarget(target)
    this.#flushEveryMs =
      options.flushEvery === undefined
        ? DEFAULT_FLUSH_EVERY_MS
        : parseDuration(options.flushEvery, 'flushEvery')
    this.#batchSize = positiveInteger(options.batchSize, 'batchSize', DEFAULT_BATCH_SIZE)
    this.#maxPending = positiveInteger(
      options.maxPending,
      'maxPending',
      Math.max(DEFAULT_MAX_PENDING, this.#batchSize),
    )
    if (this.#maxPending < this.#batchSize) {
      throw InvalidArgumentError.format(
        'maxPending',
        `must be at least batchSize (${this.#batchSize}); got ${this.#maxPending}`,
      )
    }
    this.#retryBaseMs = positiveMs(options.retry?.baseMs, 'retry.baseMs', DEFAULT_RETRY_BASE_MS)
    this.#retryMaxMs = positiveMs(options.retry?.maxMs, 'retry.maxMs', DEFAULT_RETRY_MAX_MS)
    if (this.#retryMaxMs < this.#retryBaseMs) {
      throw InvalidArgumentError.format(
        'retry.maxMs',
        `must be at least retry.baseMs (${this.#retryBaseMs}); got ${this.#retryMaxMs}`,
      )
    }
    for (const name of ['onError', 'onFlush'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') {
        throw InvalidArgumentError.format(name, 'must be a function when given')
      }
    }
    this.#onError = options.onError
    this.#onFlush = options.onFlush
    this.#host = host
    this.#target = target
    this.#registry = registry
    registry.add(this)
  }

  /**
   * Writes `value` to the cache now (with `ttl`, else the namespace's default TTL) and queues it
   * for the target; resolves once it is in the cache and queued. A later write or delete of the
   * same key before the flush replaces it. Waits while `maxPending` operations are queued.
   * Throws `ClosedError` once the writer or the cache is closing; cache errors as `set` does
   * (then nothing is queued).
   */
  async set(key: string, value: T, ttl?: Duration | { ttl?: Duration }): Promise<true> {
    this.#checkOpen()
    this.#host.checkWrite(key, value, ttl)
    // The target gets the value as it was at set(), whatever the caller changes afterwards.
    const copy = snapshot(value)
    return this.#track(key, async (): Promise<true> => {
      await this.#host.cache.set(key, value, ttl)
      this.#enqueue({ kind: 'set', key, value: copy })
      return true
    })
  }

  /**
   * Deletes `key` from the cache now and queues the delete for the target; resolves to whether
   * the cache had the key. Needs a target with `delete`. Same waiting and errors as `set`.
   */
  async delete(key: string): Promise<boolean> {
    this.#checkOpen()
    checkCanDelete(this.#target, 'writeBehind')
    this.#host.checkKey(key)
    return this.#track(key, async () => {
      const existed = await this.#host.cache.delete(key)
      this.#enqueue({ kind: 'delete', key })
      return existed
    })
  }

  /**
   * Writes everything queued to the target now and resolves once the queue is empty (writes
   * queued meanwhile included). Keeps retrying while the target fails, so it resolves only
   * when the target is back; use `stats()` or `onError` to watch failures.
   */
  async flush(): Promise<void> {
    this.#flushing++
    try {
      while (this.#pending.size > 0 || this.#batch !== undefined || this.#pump !== undefined) {
        if (this.#abandoned) {
          throw new ClosedError(
            'this writeBehind writer was closed before its queue was written; see pendingWrites()',
          )
        }
        this.#kick()
        await this.#pump
      }
    } finally {
      this.#flushing--
    }
  }

  /**
   * Stops accepting writes, waits for calls in progress, then writes everything queued to the
   * target (retrying while it fails) and resolves. Idempotent. With `timeout`, rejects with
   * `WriteTargetError` when the queue is not written by then; `pendingWrites()` then returns
   * what is left. `cache.close()` closes every writer of the cache this way, without a timeout.
   */
  close(options: WriteBehindCloseOptions = {}): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    const timeoutMs =
      options.timeout === undefined ? undefined : parseDuration(options.timeout, 'timeout')
    this.#open = false
    this.#wakeWaiters()
    this.#closing = this.#shutdown(timeoutMs)
    return this.#closing
  }

  /** Whether `close()` was called (or the cache was closed). */
  get closed(): boolean {
    return !this.#open
  }

  /** Counters of this writer, for metrics: pending, flushed, batches, failures, retries… */
  stats(): WriteBehindStats {
    return { pending: this.#pendingCount(), ...this.#counters }
  }

  /** The operations not yet written to the target, oldest first (a copy). */
  pendingWrites(): Array<WriteOperation<T>> {
    return [...(this.#batch?.operations ?? []), ...this.#pending.values()].map((op) => ({ ...op }))
  }

  #checkOpen(): void {
    if (!this.#open) {
      throw new ClosedError(
        'this writeBehind writer is closed; create a new one with cache.writeBehind()',
      )
    }
  }

  /**
   * Runs one set/delete after the earlier calls for its key, holding a queue slot while it
   * writes the cache; close() waits for every such call.
   */
  #track<R>(key: string, run: () => Promise<R>): Promise<R> {
    const call = this.#serial.run(key, async () => {
      await this.#room()
      try {
        return await run()
      } finally {
        this.#reserved--
        this.#wakeWaiters()
      }
    })
    this.#active.add(call)
    const untrack = (): void => {
      this.#active.delete(call)
    }
    call.then(untrack, untrack)
    return call
  }

  /** Waits for a free queue slot and takes it; throws `ClosedError` once the writer closes. */
  async #room(): Promise<void> {
    for (;;) {
      this.#checkOpen()
      if (this.#pendingCount() + this.#reserved < this.#maxPending) break
      this.#kick()
      await new Promise<void>((resolve) => this.#waiters.push(resolve))
    }
    this.#reserved++
  }

  #wakeWaiters(): void {
    const waiters = this.#waiters
    this.#waiters = []
    for (const wake of waiters) wake()
  }

  #pendingCount(): number {
    return this.#pending.size + (this.#batch?.operations.length ?? 0)
  }

  #enqueue(op: WriteOperation<T>): void {
    if (this.#pending.has(op.key)) this.#counters.coalesced++
    this.#pending.set(op.key, op)
    if (this.#pending.size >= this.#batchSize) this.#kick()
    else this.#schedule()
  }

  /**
   * Arms the flush timer unless it is armed: every queued operation is written about
   * `flushEvery` after it was queued, or sooner.
   */
  #schedule(): void {
    if (this.#timer !== undefined || this.#abandoned) return
    // Not unref'd: while writes are queued, the timer keeps the process alive to write them.
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#due = this.#pending.size
      this.#kick()
    }, this.#flushEveryMs)
  }

  /** Stops the flush timer: nothing is queued, and the process need not stay alive for it. */
  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** Starts writing batches unless that is under way. */
  #kick(): void {
    if (this.#pump !== undefined || this.#abandoned) return
    this.#pump = this.#drain().finally(() => {
      this.#pump = undefined
      if (this.#moreToWrite()) this.#kick()
      else if (this.#pending.size > 0) this.#schedule()
      else this.#disarm()
    })
  }

  /**
   * Whether to take another batch now: a full one is queued, or the timer or a `flush()` asked
   * for what is queued. Otherwise operations wait for the timer, so that a steady trickle of
   * writes still goes to the target in full batches.
   */
  #moreToWrite(): boolean {
    const queued = this.#pending.size
    return queued >= this.#batchSize || (queued > 0 && (this.#due > 0 || this.#flushing > 0))
  }

  /** Writes batches while there is more to write; a failed batch is retried before any other. */
  async #drain(): Promise<void> {
    for (;;) {
      if (this.#abandoned) return
      let batch = this.#batch
      if (batch === undefined) {
        if (!this.#moreToWrite()) return
        batch = this.#take()
        this.#batch = batch
        this.#due = Math.max(0, this.#due - batch.operations.length)
      }
      batch.attempts++
      if (batch.attempts > 1) this.#counters.retries++
      try {
        await this.#write(batch)
      } catch (error) {
        await this.#failed(batch, error)
        continue
      }
      this.#batch = undefined
      this.#succeeded(batch)
      this.#wakeWaiters()
    }
  }

  /** Takes the oldest `batchSize` operations off the queue. */
  #take(): Batch<T> {
    const operations: Array<WriteOperation<T>> = []
    for (const [key, op] of this.#pending) {
      if (operations.length >= this.#batchSize) break
      operations.push(op)
      this.#pending.delete(key)
    }
    return { operations, setsDone: false, attempts: 0 }
  }

  /** One attempt: the sets (unless an earlier attempt wrote them), then the deletes. */
  async #write(batch: Batch<T>): Promise<void> {
    if (!batch.setsDone) {
      const items = []
      for (const op of batch.operations) {
        if (op.kind === 'set') items.push({ key: op.key, value: op.value })
      }
      if (items.length > 0) await this.#target.write(items)
      batch.setsDone = true
    }
    const keys = []
    for (const op of batch.operations) if (op.kind === 'delete') keys.push(op.key)
    if (keys.length > 0) await this.#target.delete?.(keys)
  }

  #succeeded(batch: Batch<T>): void {
    const counters = this.#counters
    counters.flushed += batch.operations.length
    counters.batches++
    if (counters.consecutiveFailures > 0) {
      this.#host.logger.info(
        `writeBehind: the target accepts writes again after ${counters.consecutiveFailures} failed attempts`,
      )
    }
    counters.consecutiveFailures = 0
    const onFlush = this.#onFlush
    if (onFlush !== undefined) {
      try {
        onFlush({ operations: batch.operations, attempts: batch.attempts })
      } catch {
        // A broken metrics hook must not stop the flush.
      }
    }
  }

  /** Counts and reports a failed attempt, then waits out the backoff. */
  async #failed(batch: Batch<T>, cause: unknown): Promise<void> {
    const counters = this.#counters
    counters.failures++
    counters.consecutiveFailures++
    const retryInMs = this.#retryDelay(batch.attempts)
    const error =
      cause instanceof WriteTargetError
        ? cause
        : targetError(`write a batch of ${batch.operations.length} operations`, cause)
    counters.lastError = { message: error.message, at: Date.now() }
    if (counters.consecutiveFailures === 1) {
      this.#host.logger.warn(
        `writeBehind: ${error.message}; retrying with backoff (${this.#pendingCount()} operations queued)`,
      )
    }
    const onError = this.#onError
    if (onError !== undefined) {
      try {
        onError(error, { operations: batch.operations, attempt: batch.attempts, retryInMs })
      } catch {
        // A broken hook must not stop the retries.
      }
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined
        resolve()
      }, retryInMs)
      this.#wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })
  }

  /** Retry n waits between half and all of min(maxMs, baseMs × 2ⁿ⁻¹). */
  #retryDelay(attempt: number): number {
    const ceiling = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** Math.min(30, attempt - 1))
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
  }

  async #shutdown(timeoutMs: number | undefined): Promise<void> {
    const drained = (async () => {
      await Promise.allSettled([...this.#active])
      await this.flush()
    })()
    try {
      if (timeoutMs === undefined) {
        await drained
        return
      }
      drained.catch(() => undefined)
      let timer: ReturnType<typeof setTimeout> | undefined
      const expired = new Promise<'expired'>((resolve) => {
        timer = setTimeout(() => resolve('expired'), timeoutMs)
      })
      const outcome = await Promise.race([drained.then(() => 'drained' as const), expired])
      clearTimeout(timer)
      if (outcome === 'expired') {
        this.#abandon()
        const last = this.#counters.lastError
        throw new WriteTargetError(
          `writeBehind.close(): ${this.#pendingCount()} operations were not written to the target within ${formatDuration(timeoutMs)}${last === null ? '' : ` (last error: ${last.message})`}; get them from pendingWrites() and store them elsewhere`,
        )
      }
    } finally {
      this.#registry.retire(this)
    }
  }

  /** Stops flushing for good (close timed out); queued operations stay in pendingWrites(). */
  #abandon(): void {
    this.#abandoned = true
    this.#disarm()
    this.#wake?.()
  }
}

/** What the registry needs of a writer. */
interface RegisteredWriter {
  stats(): WriteBehindStats
  close(): Promise<void>
}

/** The write-behind writers of one cache and the counters of those already closed. @internal */
export class WriteBehindRegistry {
  readonly #writers = new Set<RegisteredWriter>()
  readonly #retired: Omit<WriteBehindTotals, 'writers' | 'pending' | 'failing'> = {
    flushed: 0,
    batches: 0,
    failures: 0,
    retries: 0,
    coalesced: 0,
    lastError: null,
  }

  /** Registers an open writer. */
  add(writer: RegisteredWriter): void {
    this.#writers.add(writer)
  }

  /** Unregisters a closed writer, keeping its counters in the totals. */
  retire(writer: RegisteredWriter): void {
    if (!this.#writers.delete(writer)) return
    const stats = writer.stats()
    const retired = this.#retired
    retired.flushed += stats.flushed
    retired.batches += stats.batches
    retired.failures += stats.failures
    retired.retries += stats.retries
    retired.coalesced += stats.coalesced
    retired.lastError = latest(retired.lastError, stats.lastError)
  }

  /** Totals of every writer of the cache. */
  stats(): WriteBehindTotals {
    const totals: WriteBehindTotals = {
      writers: this.#writers.size,
      pending: 0,
      failing: 0,
      ...this.#retired,
    }
    for (const writer of this.#writers) {
      const stats = writer.stats()
      totals.pending += stats.pending
      totals.flushed += stats.flushed
      totals.batches += stats.batches
      totals.failures += stats.failures
      totals.retries += stats.retries
      totals.coalesced += stats.coalesced
      if (stats.consecutiveFailures > 0) totals.failing++
      totals.lastError = latest(totals.lastError, stats.lastError)
    }
    return totals
  }

  /** Closes every open writer, each writing its queue first; never rejects. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#writers].map((writer) => writer.close()))
  }
}

function latest(
  a: WriteBehindLastError | null,
  b: WriteBehindLastError | null,
): WriteBehindLastError | null {
  if (a === null) return b
  if (b === null) return a
  return b.at >= a.at ? b : a
}

/** A deep copy of a value, or the value itself when it cannot be cloned. */
function snapshot<T>(value: T): T {
  if (typeof value !== 'object' || value === null) return value
  try {
    return structuredClone(value)
  } catch {
    return value
  }
}

function positiveMs(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw InvalidArgumentError.format(name, `must be a positive number of ms; got ${String(value)}`)
  }
  return value
}
