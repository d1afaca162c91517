/**
 * Locks with fencing tokens, built on the store contract: `create` takes a lock, `compareAndSet`
 * extends it, a fenced `delete` releases it. Nothing else is needed, so every store that passes
 * the contract suite gets the same locks.
 *
 * A lock entry is a system key (kind `l`): eviction and `clear()` never remove it. Its value is
 * `{ owner, acquiredAt }` and its TTL is the lease.
 *
 * The fencing token is the revision of the write that took the lock. Revisions are decimal
 * integers that grow with every write to a key, also after the key was deleted or expired, so a
 * later holder always has a larger token than an earlier one: a resource that accepts a write
 * only with a token at least as large as any it has seen turns away a holder whose lease ran out
 * while it was paused.
 *
 * A holder cannot know the exact moment the store expires its lease, so it stops trusting the lock
 * a little earlier: `lock.signal` aborts at the local deadline (monotonic clock, from when the
 * acquire or extend call was sent, minus a drift margin), or as soon as an extend finds the lease
 * gone.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Codec } from '../types/codec.js'
import type { Revision, Store } from '../types/store.js'
import { parseDuration, type Duration } from '../core/duration.js'
import type { LockOutcome } from '../core/diagnostics.js'
import {
  FlowcacheError,
  InvalidArgumentError,
  LockLostError,
  LockTimeoutError,
  StoreUnavailableError,
} from '../errors.js'

/** Options of {@link Locks.acquire}. */
export interface AcquireOptions {
  /** Lease length, as ms or a duration string: the lock is released by the store after it unless extended. */
  ttl: Duration
  /** Who holds the lock; shown to others and required by {@link Locks.release}. @default a random id */
  owner?: string
  /** How long to keep trying while another owner holds the lock, as ms or a duration string. @default 0: one attempt */
  wait?: Duration
  /** Pause between attempts while waiting (jittered ±50%). @default '50ms' */
  retryEvery?: Duration
  /** Stops waiting when aborted; `acquire` then rejects with an `AbortError`. */
  signal?: AbortSignal
}

/** What a lock entry holds. */
interface LockValue {
  owner: string
  /** When the holder acquired the lock (ms since the epoch); extending keeps it. */
  acquiredAt: number
  /**
   * The holder's fencing token, as a decimal string. Absent in the value the acquiring `create`
   * writes (its revision is the token); written by `extend`, whose new revision is not the token.
   */
  token?: string
}

/** How many lock calls ended each way, over all namespaces of a cache: `cache.stats().locks`. */
export interface LockStats {
  /** Locks taken by `acquire` / `withLock`. */
  acquired: number
  /** `acquire` calls that found the lock held by another owner (after any `wait`). */
  contended: number
  /** Leases renewed by `extend`. */
  extended: number
  /** Locks released by their holder. */
  released: number
  /** Locks whose lease expired, was taken over or reached its local deadline while held. */
  lost: number
  /** Lock calls (acquire, extend, release) whose store call failed. */
  failed: number
}

/** Parts of the cache a lock needs; supplied by the cache. */
export interface LockContext {
  /** The store for coordination: never a memory fallback. Throws when only a fallback is available. */
  store(): Store
  codec: Codec
  /** Store key of the lock named `key` in the caller's namespace. */
  keyOf(key: string): string
  /** Longest TTL accepted. */
  maxTtlMs: number
  /** Called with every lock outcome (for stats and diagnostics). @default nothing */
  report?(outcome: LockOutcome, lock: string, owner: string, token?: bigint): void
}

/** Safety margin taken off the lease for clock drift between this process and the store: 1% + 5 ms. */
function driftMs(ttlMs: number): number {
  return Math.ceil(ttlMs * 0.01) + 5
}

function checkedTtl(ttl: Duration, maxTtlMs: number, name = 'ttl'): number {
  const ms = parseDuration(ttl, name)
  if (ms > maxTtlMs) {
    throw InvalidArgumentError.format(name, `is longer than limits.maxTtl (${maxTtlMs} ms)`)
  }
  if (ms <= driftMs(ms)) {
    throw InvalidArgumentError.format(
      name,
      `of ${ms} ms is too short to hold a lock; use at least 20ms`,
    )
  }
  return ms
}

function tokenOf(revision: Revision): bigint {
  if (!/^\d+$/.test(revision)) {
    throw new StoreUnavailableError(
      `the store returned revision "${revision}", not a decimal integer; locks need a store whose revisions are ordered`,
    )
  }
  return BigInt(revision)
}

/** A held lock. Check `signal` (or `held`) before acting on what it protects, and pass `token` to the resource. */
export class Lock {
  /** Lock name, as given to `acquire`. */
  readonly key: string
  /** Owner id. */
  readonly owner: string
  /** Fencing token: larger than the token of every earlier holder of this lock. */
  readonly token: bigint
  /** When this lock was acquired, in ms since the epoch. */
  readonly acquiredAt: number
  readonly #controller = new AbortController()
  readonly #context: LockContext
  readonly #storeKey: string
  #revision: Revision
  #deadline: number
  #timer: NodeJS.Timeout | undefined
  #released = false

  /** @internal created by {@link Locks.acquire} */
  constructor(
    context: LockContext,
    key: string,
    storeKey: string,
    owner: string,
    revision: Revision,
    sentAt: number,
    ttlMs: number,
    acquiredAt: number,
  ) {
    this.#context = context
    this.key = key
    this.acquiredAt = acquiredAt
    this.#storeKey = storeKey
    this.owner = owner
    this.#revision = revision
    this.token = tokenOf(revision)
    this.#deadline = sentAt + ttlMs - driftMs(ttlMs)
    this.#arm()
  }

  /** Aborts when the lease is lost or its local deadline passes; the reason is a `LockLostError`. */
  get signal(): AbortSignal {
    return this.#controller.signal
  }

  /** Whether the lock is still trusted: not released, not lost, local deadline not passed. */
  get held(): boolean {
    return !this.#controller.signal.aborted && performance.now() < this.#deadline
  }

  /** Milliseconds left before the local deadline (0 once lost or released). */
  remainingMs(): number {
    return this.held ? Math.max(0, Math.floor(this.#deadline - performance.now())) : 0
  }

  /**
   * Renews the lease for `ttl` from now. Throws `LockLostError` when the lease was lost meanwhile
   * (and aborts `signal`); a store fault rejects with `StoreUnavailableError` and leaves the local
   * deadline as it was.
   */
  async extend(ttl: Duration): Promise<void> {
    const ttlMs = checkedTtl(ttl, this.#context.maxTtlMs)
    if (!this.held) throw this.#lost('the lock is no longer held; acquire it again')
    const sentAt = performance.now()
    const value = this.#context.codec.encode({
      owner: this.owner,
      acquiredAt: this.acquiredAt,
      token: this.token.toString(),
    } satisfies LockValue)
    let revision: Revision | undefined
    try {
      revision = await this.#context
        .store()
        .compareAndSet(this.#storeKey, value, this.#revision, { ttlMs })
    } catch (error) {
      this.#context.report?.('failed', this.key, this.owner, this.token)
      // The outcome is unknown; the local deadline still bounds how long the lock is trusted.
      throw error instanceof FlowcacheError
        ? error
        : new StoreUnavailableError(`extending lock "${this.key}" failed`, { cause: error })
    }
    if (revision === undefined) {
      throw this.#lost('its lease expired or was taken over before it was extended')
    }
    this.#revision = revision
    this.#deadline = sentAt + ttlMs - driftMs(ttlMs)
    this.#arm()
    this.#context.report?.('extended', this.key, this.owner, this.token)
  }

  /**
   * Releases the lock if this owner still holds it (checked atomically by revision). Returns
   * `false` when the lease had already been lost. Idempotent.
   */
  async release(): Promise<boolean> {
    if (this.#released) return false
    this.#released = true
    this.#disarm()
    const stillHeld = !this.#controller.signal.aborted
    this.#controller.abort(new LockLostError(`lock "${this.key}" was released`))
    if (!stillHeld) return false
    let released: boolean
    try {
      released = await this.#context.store().delete(this.#storeKey, { expected: this.#revision })
    } catch (error) {
      this.#context.report?.('failed', this.key, this.owner, this.token)
      throw error
    }
    this.#context.report?.(released ? 'released' : 'lost', this.key, this.owner, this.token)
    return released
  }

  #arm(): void {
    this.#disarm()
    const delay = Math.max(0, this.#deadline - performance.now())
    this.#timer = setTimeout(() => {
      this.#controller.abort(
        new LockLostError(`lock "${this.key}" reached its local deadline without being extended`),
      )
      this.#context.report?.('lost', this.key, this.owner, this.token)
    }, delay)
    this.#timer.unref()
  }

  #disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #lost(why: string): LockLostError {
    this.#disarm()
    const error = new LockLostError(`lock "${this.key}" held by "${this.owner}" is lost: ${why}`)
    if (!this.#controller.signal.aborted) {
      this.#controller.abort(error)
      this.#context.report?.('lost', this.key, this.owner, this.token)
    }
    return error
  }
}

/**
 * Locks of one namespace: `cache.locks`. Locks of different namespaces never meet, whatever
 * their names.
 */
export class Locks {
  readonly #context: LockContext

  /** @internal created by the cache */
  constructor(context: LockContext) {
    this.#context = context
  }

  /**
   * Takes the lock `key` for `ttl`, or returns `null` when another owner holds it (after waiting
   * up to `wait`). Store faults reject with `StoreUnavailableError`: a lock is never granted
   * from a memory fallback.
   */
  async acquire(key: string, options: AcquireOptions): Promise<Lock | null> {
    const context = this.#context
    if (typeof options !== 'object' || options === null) {
      throw InvalidArgumentError.format('options', 'must be an object with at least { ttl }')
    }
    const ttlMs = checkedTtl(options.ttl, context.maxTtlMs)
    const owner = options.owner ?? randomUUID()
    if (typeof owner !== 'string' || owner === '' || owner.length > 256) {
      throw InvalidArgumentError.format(
        'owner',
        'must be a non-empty string of at most 256 characters',
      )
    }
    const waitMs =
      options.wait === undefined || options.wait === 0 ? 0 : parseDuration(options.wait, 'wait')
    const retryMs = parseDuration(options.retryEvery ?? 50, 'retryEvery')
    const storeKey = context.keyOf(key)
    const giveUpAt = performance.now() + waitMs
    for (;;) {
      options.signal?.throwIfAborted()
      const sentAt = performance.now()
      const acquiredAt = Date.now()
      const value = context.codec.encode({ owner, acquiredAt } satisfies LockValue)
      let revision: Revision | undefined
      try {
        revision = await context.store().create(storeKey, value, { ttlMs })
      } catch (error) {
        context.report?.('failed', key, owner)
        throw error
      }
      if (revision !== undefined) {
        const lock = new Lock(context, key, storeKey, owner, revision, sentAt, ttlMs, acquiredAt)
        context.report?.('acquired', key, owner, lock.token)
        return lock
      }
      const left = giveUpAt - performance.now()
      if (left <= 0) {
        context.report?.('contended', key, owner)
        return null
      }
      const pause = Math.min(left, retryMs * (0.5 + Math.random()))
      await sleep(
        pause,
        undefined,
        options.signal === undefined ? undefined : { signal: options.signal },
      )
    }
  }

  /**
   * Releases the lock `key` if `owner` holds it, atomically (a lock taken over by someone else
   * is left alone). Returns whether it was released.
   */
  async release(key: string, owner: string): Promise<boolean> {
    const context = this.#context
    const storeKey = context.keyOf(key)
    const store = context.store()
    const entry = await store.get(storeKey)
    if (entry === undefined) return false
    const value = context.codec.decode(entry.value) as Partial<LockValue> | null
    if (value === null || typeof value !== 'object' || value.owner !== owner) return false
    const released = await store.delete(storeKey, { expected: entry.revision })
    if (released) context.report?.('released', key, owner, tokenOf(entry.revision))
    return released
  }

  /** The current holder of `key`, or `undefined` when it is free. */
  async holder(
    key: string,
  ): Promise<{ owner: string; token: bigint; acquiredAt: number } | undefined> {
    const context = this.#context
    const entry = await context.store().get(context.keyOf(key))
    if (entry === undefined) return undefined
    const value = context.codec.decode(entry.value) as LockValue
    const token = value.token === undefined ? tokenOf(entry.revision) : BigInt(value.token)
    return { owner: value.owner, token, acquiredAt: value.acquiredAt }
  }

  /**
   * Runs `fn` while holding the lock `key` and releases it afterwards, also when `fn` throws.
   * Throws `LockTimeoutError` when the lock cannot be taken within `wait`. `fn` gets the lock:
   * check `lock.signal` before side effects and pass `lock.token` to fenced resources.
   */
  async withLock<T>(
    key: string,
    fn: (lock: Lock) => T | Promise<T>,
    options: AcquireOptions,
  ): Promise<T> {
    const lock = await this.acquire(key, options)
    if (lock === null) {
      throw new LockTimeoutError(
        `lock "${key}" is held by another owner${options.wait === undefined || options.wait === 0 ? '' : ` and was not free within ${String(options.wait)}`}; retry later or pass a longer wait`,
      )
    }
    try {
      return await fn(lock)
    } finally {
      await lock.release().catch(() => false)
    }
  }
}
