/**
 * The L1 tier: an in-process memory tier in front of a distributed store, so a hot key costs a
 * Map lookup instead of a round trip. Replicas keep their L1 tiers coherent through the store's
 * pub/sub (Redis channels, NATS subjects): every write or delete publishes the keys it changed and
 * every other replica drops its copies.
 *
 * Pub/sub is at-most-once, so the tier is careful in three places:
 * - while the bus is down the L1 is empty and unused: it could not learn about changes;
 * - when the bus comes back the L1 is emptied again, since messages sent meanwhile are lost;
 * - a value read from the store is only kept if no invalidation arrived while the read was in
 *   flight (an epoch counter), so a late reply cannot resurrect a value another replica replaced.
 */
import { randomUUID } from 'node:crypto'
import type { Clock } from '../core/clock.js'
import { parseDuration, type Duration } from '../core/duration.js'
import type { Logger } from '../core/logger.js'
import { InvalidArgumentError } from '../errors.js'
import { MemoryStore, type ValueIsolation } from '../stores/memory/index.js'
import type { Codec } from '../types/codec.js'
import type {
  Invalidation,
  InvalidationBus,
  InvalidationListener,
  LocalAccess,
  Store,
} from '../types/store.js'

/** Options of the L1 tier (`createCache({ l1 })`). */
export interface L1Options {
  /** Most entries kept in the L1 tier. @default 10_000 */
  maxEntries?: number
  /** Soft limit on the encoded bytes kept in the L1 tier. @default 16 MiB */
  maxBytes?: number
  /**
   * Longest time an entry stays in L1 without being read again from the store, as ms or a
   * duration string; bounds staleness if an invalidation is ever lost without a disconnect.
   * @default '1m'
   */
  maxTtl?: Duration
  /** How returned values are protected from mutation, as in the memory store. @default 'frozen' */
  values?: ValueIsolation
  /**
   * Name shared by the replicas of one cache for their invalidation channel, `[A-Za-z0-9_-]`.
   * @default 'flowcache-<prefix>'
   */
  channel?: string
}

/** Counters of the L1 tier. */
export interface L1Stats {
  /** Reads answered by L1. */
  hits: number
  /** Entries in L1 now. */
  entries: number
  /** Invalidation messages received from other replicas. */
  invalidationsReceived: number
  /** Invalidation messages that could not be published (other replicas may serve stale values until their L1 maxTtl). */
  publishFailures: number
  /** Whether the bus is connected, so L1 is in use. */
  live: boolean
}

const CHANNEL_PATTERN = /^[A-Za-z0-9_-]{1,128}$/
/** Backoff of subscription retries after a failed subscribe, in ms. */
const RESUBSCRIBE_BASE_MS = 250
const RESUBSCRIBE_MAX_MS = 5000

/** The L1 tier of one cache. Created by `createCache` when `l1` is given. */
export class L1Tier {
  readonly origin = randomUUID()
  readonly #memory: MemoryStore
  readonly #local: LocalAccess
  readonly #bus: InvalidationBus
  readonly #logger: Logger
  readonly #maxTtlMs: number
  readonly #maxBytes: number
  #live = false
  #suspended = false
  #closed = false
  #epoch = 0
  #hits = 0
  #received = 0
  #publishFailures = 0
  #lastPublishWarning = 0
  readonly #subscribed: Promise<void>
  readonly #listener: InvalidationListener
  #attempts = 0
  #retry: NodeJS.Timeout | undefined

  constructor(
    store: Store,
    codec: Codec,
    clock: Clock,
    logger: Logger,
    root: string,
    options: L1Options,
  ) {
    if (store.createBus === undefined || store.capabilities.local) {
      throw InvalidArgumentError.format(
        'l1',
        `needs a distributed store with an invalidation bus (redis, nats); the ${store.name} store has none`,
      )
    }
    const channel = options.channel ?? `flowcache-${root}`
    if (!CHANNEL_PATTERN.test(channel)) {
      throw InvalidArgumentError.format(
        'l1.channel',
        `must be 1-128 characters of [A-Za-z0-9_-]; got ${JSON.stringify(channel)}`,
      )
    }
    this.#maxTtlMs = parseDuration(options.maxTtl ?? '1m', 'l1.maxTtl')
    this.#maxBytes = options.maxBytes ?? 16 * 1024 * 1024
    this.#memory = new MemoryStore({
      maxEntries: options.maxEntries ?? 10_000,
      maxBytes: this.#maxBytes,
      values: options.values ?? 'frozen',
      codec,
      clock,
    })
    this.#local = this.#memory.local
    this.#logger = logger
    this.#bus = store.createBus(channel)
    this.#listener = {
      message: (invalidation) => this.#onMessage(invalidation),
      interrupted: (reason) => {
        this.#live = false
        this.#drop()
        logger.warn(`L1 invalidation bus interrupted (${reason}); L1 is bypassed until it is back`)
      },
      resumed: () => {
        this.#drop()
        this.#live = true
      },
    }
    this.#subscribed = this.#subscribe()
  }

  /**
   * Subscribes; when that fails (the store is unreachable at start, say) L1 stays off and the
   * subscription is retried with capped, jittered backoff until it works or the tier is closed.
   */
  async #subscribe(): Promise<void> {
    try {
      await this.#bus.subscribe(this.#listener)
    } catch (error) {
      if (this.#closed) return
      if (this.#attempts === 0) {
        this.#logger.warn(
          `L1 invalidation bus could not subscribe; L1 stays off and subscribing is retried: ${error instanceof Error ? error.message : String(error)}`,
        )
      }
      const ceiling = Math.min(
        RESUBSCRIBE_MAX_MS,
        RESUBSCRIBE_BASE_MS * 2 ** Math.min(this.#attempts, 20),
      )
      this.#attempts++
      this.#retry = setTimeout(() => void this.#subscribe(), Math.max(10, Math.random() * ceiling))
      this.#retry.unref()
      return
    }
    if (this.#closed) return
    if (this.#attempts > 0) this.#logger.info('L1 invalidation bus subscribed; L1 is in use')
    this.#attempts = 0
    this.#drop()
    this.#live = true
  }

  /** Resolves once the first subscription attempt has finished (whether or not it worked). */
  ready(): Promise<void> {
    return this.#subscribed
  }

  /** The value held in L1, or `undefined`. */
  read(storeKey: string): unknown {
    if (!this.#live || this.#suspended) return undefined
    const value = this.#local.read(storeKey)
    if (value !== undefined) this.#hits++
    return value
  }

  /** Current invalidation epoch; pass it to {@link L1Tier.fill} after reading from the store. */
  get epoch(): number {
    return this.#epoch
  }

  /**
   * Keeps a value read from the store (or just written by this replica), unless an invalidation
   * arrived since `epoch` was taken or the bus is down.
   */
  fill(
    storeKey: string,
    value: unknown,
    sizeBytes: number,
    expiresInMs: number | null,
    epoch: number,
  ): void {
    if (!this.#live || this.#suspended || epoch !== this.#epoch) return
    const ttlMs = expiresInMs === null ? this.#maxTtlMs : Math.min(expiresInMs, this.#maxTtlMs)
    if (ttlMs <= 0) return
    // A value too big for L1 is simply not kept there; the store still has it.
    if (sizeBytes + storeKey.length > this.#maxBytes) {
      void this.#memory.delete(storeKey)
      return
    }
    this.#local.write(storeKey, value, sizeBytes, ttlMs)
  }

  /**
   * Stops using L1 (while the cache serves from its memory fallback, whose values must never
   * reach L1) or starts again, emptied (when the cache has switched back to the store).
   */
  setSuspended(suspended: boolean): void {
    this.#suspended = suspended
    this.#drop()
  }

  /**
   * Drops this replica's copies and tells the other replicas to drop theirs. Resolves with the
   * epoch right after this replica's own drop: pass it to {@link L1Tier.fill} to keep the value
   * just written, so that an invalidation arriving while the message is published keeps it out.
   */
  async invalidate(change: { keys?: string[]; prefixes?: string[] }): Promise<number> {
    this.#apply(change)
    const epoch = this.#epoch
    const message: Invalidation = { origin: this.origin, ...change }
    try {
      await this.#bus.publish(message)
    } catch (error) {
      this.#publishFailures++
      const now = Date.now()
      // One warning per 10 s at most: an outage must not flood the log.
      if (now - this.#lastPublishWarning > 10_000) {
        this.#lastPublishWarning = now
        this.#logger.warn(
          `could not publish an L1 invalidation; other replicas may serve old values for up to their l1.maxTtl: ${error instanceof Error ? error.message : String(error)}`,
        )
      }
    }
    return epoch
  }

  stats(): L1Stats {
    return {
      hits: this.#hits,
      entries: this.#memory.stats().entries,
      invalidationsReceived: this.#received,
      publishFailures: this.#publishFailures,
      live: this.#live,
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#live = false
    if (this.#retry !== undefined) clearTimeout(this.#retry)
    await Promise.allSettled([this.#bus.close(), this.#memory.close()])
  }

  #onMessage(invalidation: Invalidation): void {
    if (invalidation.origin === this.origin) return
    this.#received++
    this.#apply(invalidation)
  }

  #apply(change: { keys?: string[]; prefixes?: string[] }): void {
    this.#epoch++
    if (this.#closed) return
    if (change.keys !== undefined) void this.#memory.deleteMany(change.keys)
    if (change.prefixes !== undefined) {
      for (const prefix of change.prefixes) void this.#memory.clear(prefix)
    }
  }

  #drop(): void {
    this.#epoch++
    if (this.#closed) return
    void this.#memory.clear('')
  }
}
