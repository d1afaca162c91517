/**
 * Leader election on the store contract: the leader holds a lease entry (system key, kind `e`)
 * taken with `create` and renewed with `compareAndSet` on its revision; stepping down is a
 * fenced `delete`. The revision of the winning `create` is the term's fencing token.
 *
 * The leader fences itself: it trusts its lease only until a local deadline on the monotonic
 * clock (when its last successful renewal was sent, plus the lease, minus a drift margin). If it
 * cannot renew by then, because the store is unreachable or slow, it steps down at that deadline
 * without waiting for the store, so two replicas never act as leader at once as long as the
 * store honours its TTLs. Followers try to take the lease every `renewEvery`, so a dead leader is
 * replaced within `lease + renewEvery`.
 */
import { randomUUID } from 'node:crypto'
import type { Revision, Store } from '../types/store.js'
import type { Codec } from '../types/codec.js'
import { parseDuration, type Duration } from '../core/duration.js'
import type { Logger } from '../core/logger.js'
import { InvalidArgumentError, NotLeaderError, StoreUnavailableError } from '../errors.js'

/** What a new leader is told. */
export interface Term {
  /** Fencing token of this term: larger than every earlier term's. */
  token: bigint
  /** Aborts when this term ends (lost, deadline passed, or `stop()`). */
  signal: AbortSignal
}

/** Options of `cache.leader(name, options)`. */
export interface LeaderOptions {
  /** How long a lease lasts without renewal, as ms or a duration string. @default '15s' */
  lease?: Duration
  /** How often the leader renews and followers try to take over; less than half the lease. @default lease / 3 */
  renewEvery?: Duration
  /** Id of this candidate. @default a random id */
  owner?: string
  /** Called when this replica becomes leader. Errors it throws are logged, not rethrown. */
  onElected?: (term: Term) => void | Promise<void>
  /** Called when a term of this replica ends, with why. */
  onRevoked?: (reason: string) => void
}

/** Parts of the cache an election needs; supplied by the cache. */
export interface ElectionContext {
  /** The coordination store (never a memory fallback); throws while only a fallback is available. */
  store(): Store
  codec: Codec
  keyOf(name: string): string
  logger: Logger
  maxTtlMs: number
  /** Called when this candidate is elected or its term ends (for diagnostics). @default nothing */
  report?(
    outcome: 'elected' | 'revoked',
    name: string,
    owner: string,
    token: bigint,
    reason?: string,
  ): void
}

interface LeaseValue {
  owner: string
  electedAt: number
}

function drift(leaseMs: number): number {
  return Math.ceil(leaseMs * 0.01) + 5
}

/** Longest pause between attempts after store errors, as a multiple of `renewEvery`. */
const BACKOFF_CAP = 4

/** One candidate in one election. Created by `cache.leader(name, options)`; runs until `stop()`. */
export class Election {
  /** Election name. */
  readonly name: string
  /** Id of this candidate. */
  readonly owner: string
  readonly #context: ElectionContext
  readonly #storeKey: string
  readonly #leaseMs: number
  readonly #renewMs: number
  readonly #options: LeaderOptions
  #term:
    { token: bigint; revision: Revision; controller: AbortController; deadline: number } | undefined
  #timer: NodeJS.Timeout | undefined
  #deadlineTimer: NodeJS.Timeout | undefined
  #failures = 0
  #stopped = false
  #running: Promise<void> | undefined

  /** @internal created by the cache */
  constructor(context: ElectionContext, name: string, options: LeaderOptions = {}) {
    this.#context = context
    this.name = name
    this.#storeKey = context.keyOf(name)
    this.#leaseMs = parseDuration(options.lease ?? '15s', 'lease')
    if (this.#leaseMs > context.maxTtlMs) {
      throw InvalidArgumentError.format(
        'lease',
        `is longer than limits.maxTtl (${context.maxTtlMs} ms)`,
      )
    }
    if (this.#leaseMs < 100) throw InvalidArgumentError.format('lease', 'must be at least 100ms')
    this.#renewMs =
      options.renewEvery === undefined
        ? Math.floor(this.#leaseMs / 3)
        : parseDuration(options.renewEvery, 'renewEvery')
    if (this.#renewMs * 2 > this.#leaseMs - drift(this.#leaseMs)) {
      throw InvalidArgumentError.format(
        'renewEvery',
        `(${this.#renewMs} ms) must be less than half the lease (${this.#leaseMs} ms), so a renewal can fail once and still be retried in time`,
      )
    }
    const owner = options.owner ?? randomUUID()
    if (typeof owner !== 'string' || owner === '' || owner.length > 256) {
      throw InvalidArgumentError.format(
        'owner',
        'must be a non-empty string of at most 256 characters',
      )
    }
    this.owner = owner
    this.#options = options
    this.#schedule(0)
  }

  /** Whether this replica is the leader now (lease held and its local deadline not passed). */
  get isLeader(): boolean {
    const term = this.#term
    return (
      term !== undefined && !term.controller.signal.aborted && performance.now() < term.deadline
    )
  }

  /** Fencing token of the current term, or `undefined` when not leader. */
  get token(): bigint | undefined {
    return this.isLeader ? this.#term?.token : undefined
  }

  /** Aborts when the current term ends; already aborted when this replica is not leader. */
  get signal(): AbortSignal {
    return (
      this.#term?.controller.signal ??
      AbortSignal.abort(new NotLeaderError(`not the leader of "${this.name}"`))
    )
  }

  /**
   * Stops campaigning. A leader deletes its lease (fenced by revision) so another replica can
   * take over at once instead of after the lease. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    await this.#running?.catch(() => undefined)
    const term = this.#term
    if (term === undefined) return
    this.#endTerm('stopped')
    try {
      await this.#context.store().delete(this.#storeKey, { expected: term.revision })
    } catch {
      // The lease then ends on its own at its TTL.
    }
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#running = this.#tick().finally(() => {
        this.#running = undefined
      })
    }, delayMs)
    this.#timer.unref()
  }

  async #tick(): Promise<void> {
    try {
      if (this.#term === undefined) await this.#campaign()
      else await this.#renew()
      this.#failures = 0
    } catch (error) {
      this.#failures++
      if (this.#failures === 1) {
        this.#context.logger.warn(
          `election "${this.name}": store call failed; retrying${this.#term === undefined ? '' : ' until the lease deadline'}: ${error instanceof Error ? error.message : String(error)}`,
        )
      }
    }
    if (this.#stopped) return
    // Leaders renew on time; followers and failing calls back off with a cap, jittered so that
    // candidates do not move in lockstep.
    const base =
      this.#term === undefined || this.#failures > 0
        ? this.#renewMs * Math.min(BACKOFF_CAP, 2 ** Math.max(0, this.#failures - 1))
        : this.#renewMs
    const delay =
      this.#term === undefined ? base * (0.75 + Math.random() * 0.5) : Math.min(base, this.#renewMs)
    this.#schedule(Math.max(5, delay))
  }

  async #campaign(): Promise<void> {
    const store = this.#context.store()
    const sentAt = performance.now()
    const value = this.#context.codec.encode({
      owner: this.owner,
      electedAt: Date.now(),
    } satisfies LeaseValue)
    const revision = await store.create(this.#storeKey, value, { ttlMs: this.#leaseMs })
    if (revision === undefined || this.#stopped) {
      if (revision !== undefined) await store.delete(this.#storeKey, { expected: revision })
      return
    }
    if (!/^\d+$/.test(revision)) {
      throw new StoreUnavailableError(
        `the store returned revision "${revision}", not a decimal integer`,
      )
    }
    const controller = new AbortController()
    this.#term = {
      token: BigInt(revision),
      revision,
      controller,
      deadline: sentAt + this.#leaseMs - drift(this.#leaseMs),
    }
    this.#armDeadline()
    this.#context.report?.('elected', this.name, this.owner, this.#term.token)
    const term: Term = { token: this.#term.token, signal: controller.signal }
    try {
      await this.#options.onElected?.(term)
    } catch (error) {
      this.#context.logger.error(
        `election "${this.name}": onElected threw: ${error instanceof Error ? error.message : String(error)}`,
      )
    }
  }

  async #renew(): Promise<void> {
    const term = this.#term
    if (term === undefined) return
    const sentAt = performance.now()
    const value = this.#context.codec.encode({
      owner: this.owner,
      electedAt: Date.now(),
    } satisfies LeaseValue)
    const revision = await this.#context
      .store()
      .compareAndSet(this.#storeKey, value, term.revision, { ttlMs: this.#leaseMs })
    if (this.#term !== term) return
    if (revision === undefined) {
      this.#endTerm('the lease was lost (expired or taken over) before it was renewed')
      return
    }
    term.revision = revision
    term.deadline = sentAt + this.#leaseMs - drift(this.#leaseMs)
    this.#armDeadline()
  }

  #armDeadline(): void {
    const term = this.#term
    if (term === undefined) return
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer)
    this.#deadlineTimer = setTimeout(
      () => {
        if (this.#term === term)
          this.#endTerm('the lease could not be renewed before its local deadline')
      },
      Math.max(0, term.deadline - performance.now()),
    )
    this.#deadlineTimer.unref()
  }

  #endTerm(reason: string): void {
    const term = this.#term
    if (term === undefined) return
    this.#term = undefined
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer)
    term.controller.abort(new NotLeaderError(`leadership of "${this.name}" ended: ${reason}`))
    this.#context.report?.('revoked', this.name, this.owner, term.token, reason)
    try {
      this.#options.onRevoked?.(reason)
    } catch (error) {
      this.#context.logger.error(
        `election "${this.name}": onRevoked threw: ${error instanceof Error ? error.message : String(error)}`,
      )
    }
  }
}
