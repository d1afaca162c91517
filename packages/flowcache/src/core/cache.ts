/**
 * The `Cache`: flowcache's public API over one store. A cache and its namespace views share one
 * core (store, codec, limits, counters, in-flight loads); a view adds its key prefix, its default
 * TTL and, optionally, its quota. Every argument is checked before the store is touched.
 */
import { incremented } from './checks.js'
import { jsonCodec, valuesEqual } from './codec.js'
import { systemClock, type Clock } from './clock.js'
import type { Duration } from './duration.js'
import {
  checkRoot,
  childPrefix,
  rootPrefix,
  stripUserKey,
  systemKey,
  userKey,
  userKeyPrefix,
} from './keyspace.js'
import {
  checkBatch,
  checkTtl,
  checkValueSize,
  resolveLimits,
  type Limits,
  type LimitsOptions,
} from './limits.js'
import { checkTags, Links, MAX_DEPENDS_ON, MAX_TAGS, type DependentsRead } from './links.js'
import { stderrLogger, type Logger } from './logger.js'
import {
  electionChannel,
  fallbackChannel,
  lockChannel,
  operationChannel,
  rateLimitChannel,
  type OperationEvent,
  type OperationOutcome,
} from './diagnostics.js'
import { enableTracing } from './tracing.js'
import {
  getOrSetResult,
  GetOrSetState,
  type Factory,
  type GetOrSetHost,
  type GetOrSetOptions,
  type GetOrSetResult,
} from './get-or-set.js'
import { memoize, type Memoized, type MemoizeOptions } from './memoize.js'
import { StatsRecorder, type CacheStats } from './stats.js'
import {
  checkSampleEvery,
  checkSlots,
  checkTop,
  NamespaceTracker,
  type NamespaceStats,
  type NamespaceStatsOptions,
} from './namespace-stats.js'
import { quotaFor, resolveQuotas, type QuotasOptions, type ResolvedQuotas } from './quotas.js'
import { closeWatches, startWatch, type CacheWatch } from './watch.js'
import { FallbackStore, type FallbackMode } from '../tiers/fallback.js'
import { L1Tier, type L1Options } from '../tiers/l1.js'
import { Locks, type LockStats } from '../coord/locks.js'
import {
  RateLimiter,
  type RateLimitOptions,
  type RateLimitResult,
  type RateLimitStats,
} from '../coord/rate-limit.js'
import { Election, type LeaderOptions } from '../coord/leader.js'
import {
  ClosedError,
  FlowcacheError,
  InvalidArgumentError,
  StoreUnavailableError,
} from '../errors.js'
import { memoryStore } from '../stores/memory/index.js'
import type { PatternHost, WriteTarget } from '../patterns/target.js'
import { warm, type WarmLoader, type WarmOptions, type WarmSummary } from '../patterns/warm.js'
import {
  WriteBehindRegistry,
  WriteBehindWriter,
  type WriteBehindOptions,
} from '../patterns/write-behind.js'
import { WriteThroughWriter } from '../patterns/write-through.js'
import type { Codec } from '../types/codec.js'
import type { QuotaLimits, QuotaUsage, Revision, Store, StoreEntry } from '../types/store.js'

/**
 * Most namespaces one cache tracks for `namespaceStats()` (those with a quota or `trackStats`);
 * beyond it the longest-tracked one is dropped with its counts. Namespace names can come from
 * requests, so the process's memory stays bounded whatever names arrive.
 */
export const MAX_TRACKED_NAMESPACES = 10_000

/** Options of {@link createCache}. */
export interface CacheOptions {
  /** Where entries live. @default memoryStore() with its defaults */
  store?: Store
  /** Value codec. Must be the store's codec when the store is in-process. @default jsonCodec */
  codec?: Codec
  /** Time source of the default memory store (inject a `ManualClock` in tests). @default the system clock */
  clock?: Clock
  /** First token of every store key, so several applications can share one store. `[A-Za-z0-9_-]{1,64}`. @default 'fc' */
  prefix?: string
  /** TTL of writes that give none, as ms or a duration string. @default no expiry */
  defaultTtl?: Duration
  /** Key, value, TTL and batch limits, checked before any I/O. */
  limits?: LimitsOptions
  /**
   * When a distributed store (Redis, NATS) cannot be reached at start: `memory` serves from an
   * in-process memory store, reports `degraded` and reconnects in the background; `fail` makes
   * `ready()` and every call reject. @default 'memory'
   */
  fallback?: FallbackMode
  /**
   * Backoff of the background reconnect while in memory fallback: the delay before attempt n is
   * a random time up to min(maxMs, baseMs × 2ⁿ). @default { baseMs: 250, maxMs: 5000 }
   */
  fallbackRetry?: { baseMs?: number; maxMs?: number }
  /**
   * An in-process memory tier in front of a distributed store (Redis, NATS). Writes and deletes
   * invalidate the other replicas' L1 through the store's pub/sub. @default none
   */
  l1?: L1Options
  /** Where flowcache reports state changes (fallback, reconnect). @default one line per event on stderr */
  logger?: Logger
  /**
   * OpenTelemetry spans (`flowcache.<operation>`) for every call, when `@opentelemetry/api` is
   * installed and a tracer provider is registered before the cache is created. `false` turns
   * them off for this cache. @default true
   */
  tracing?: boolean
  /**
   * Namespace quotas set by configuration: `default` is the allocation every top-level namespace
   * (tenant) gets unless it has an entry in `namespaces` or gives limits to `namespace()`
   * itself. Needs a store with quotas. See docs/quotas.md. @default none
   */
  quotas?: QuotasOptions
  /**
   * Slots of the most-accessed-keys counter of each tracked namespace (1 to 10 000): keys that
   * make up more than 1 / slots of the counted reads (see `topKeySampleEvery`) are always found.
   * @default 64
   */
  topKeySlots?: number
  /**
   * One read in this many (on average, at random) of a tracked namespace feeds its
   * most-accessed-keys counter; hits and misses count every read. `1` records every read (exact
   * counts, the highest cost). @default 8
   */
  topKeySampleEvery?: number
}

/** Options of {@link Cache.namespace}. */
export interface NamespaceOptions {
  /** TTL of writes in this namespace that give none. @default the parent's default TTL */
  defaultTtl?: Duration
  /** Most user entries in this namespace (children included); the least recently used are evicted. */
  maxEntries?: number
  /** Most encoded bytes of user entries in this namespace (children included); a soft limit. */
  maxBytes?: number
  /**
   * Count this namespace's reads (hits, misses, most-accessed keys) for `namespaceStats()` and
   * the per-namespace metrics. Namespaces with a quota are tracked anyway. @default false
   */
  trackStats?: boolean
  /**
   * `false` opens the view without setting any quota in the store: the `quotas` of `createCache`
   * are not applied, and `maxEntries` / `maxBytes` are refused with it. For code that only
   * reads a namespace it may not own, such as a console or an admin listing: opening a namespace
   * normally records its configured allocation in the store, which can evict entries there.
   *
   * The view is otherwise the same as a normal one: reads count toward the namespace's stats
   * when it is tracked (opened with a quota or `trackStats` by any view of this cache), and a
   * quota already set on the namespace (by any view or process) still applies to writes made
   * through it. Writes through it are not refused, but when no quota was set yet they are not
   * held to the configured allocation: write through a normal view. @default true
   */
  applyQuotas?: boolean
}

/** Options of a write. */
export interface SetOptions {
  /** Time to live, as ms or a duration string. @default the namespace's default TTL, else no expiry */
  ttl?: Duration
  /**
   * Tags of the entry, for {@link Cache.invalidateTags}: up to 64 strings of 1-128 UTF-8 bytes
   * without control characters; duplicates count once. The tag index entries expire with the
   * entry. @default no tags
   */
  tags?: readonly string[]
  /**
   * Keys of this namespace the entry depends on (up to 64, not the key itself): writing or
   * deleting any of them deletes this entry, transitively. The entry's TTL is capped by the
   * earliest expiry among those that exist now, so it never outlives them. @default none
   */
  dependsOn?: readonly string[]
}

/** One item of {@link Cache.setMany}. */
export interface SetManyItem<T = unknown> {
  key: string
  value: T
  /** Time to live, as ms or a duration string. @default the namespace's default TTL */
  ttl?: Duration
  /** Tags of the entry, as in {@link SetOptions.tags}. @default no tags */
  tags?: readonly string[]
  /** Keys the entry depends on, as in {@link SetOptions.dependsOn}. @default none */
  dependsOn?: readonly string[]
}

/** Tags (escaped) and parents (store keys) of one write, checked. */
interface WriteLinks {
  tags: string[]
  parents: string[]
}

/** Options of {@link Cache.listKeys}. */
export interface ListKeysOptions {
  /** Most keys returned. @default 1000 */
  limit?: number
}

/** An entry with its revision, for optimistic concurrency with {@link Cache.compareAndSet}. */
export interface CacheEntry<T = unknown> {
  value: T
  /** Revision of this write; pass it to `compareAndSet`. */
  revision: Revision
  /** Expiry deadline in ms since the epoch, or `null` when the entry never expires. */
  expiresAt: number | null
}

/** Options of {@link Cache.history}. */
export interface HistoryOptions {
  /** Return at most this many versions, the most recent ones. @default all the store keeps */
  limit?: number
}

/** One version of a key, from {@link Cache.history}. */
export interface CacheVersion<T = unknown> {
  /** `set` wrote `value`; `delete` and `expire` are markers. */
  operation: 'set' | 'delete' | 'expire'
  /** Revision of this version; `undefined` for an expiry the store inferred from a passed deadline. */
  revision: Revision | undefined
  /** When it happened, in ms since the epoch (store clock; for `expire`, the deadline). */
  at: number
  /** The value written, for `set`. */
  value?: T
  /** Expiry deadline of a `set` written with a TTL, else `null`. */
  expiresAt: number | null
}

/** Options of {@link Cache.watch}. */
export interface WatchOptions {
  /** Ends the iteration and unsubscribes when aborted. */
  signal?: AbortSignal
  /**
   * Events kept for a consumer that is behind; beyond this, events are dropped and one
   * `overflow` event with their number takes their place. 1 to 100 000. @default 1000
   */
  buffer?: number
}

/** Health of a cache and its store. */
export interface CacheHealth {
  /** `ok`, `degraded` (working on a fallback) or `down`. */
  status: 'ok' | 'degraded' | 'down'
  /** Why the status is not `ok`. */
  reason?: string
  /** Since when (ms since the epoch) the status holds. */
  since: number
  /** Store kind. */
  store: string
}

interface Core {
  readonly store: Store
  readonly fallback: FallbackStore | undefined
  readonly l1: L1Tier | undefined
  readonly logger: Logger
  readonly elections: Set<Election>
  readonly rateLimitCounters: RateLimitStats
  readonly lockCounters: LockStats
  /** The cache `createCache` returned; diagnostics events name it for every view. */
  root: Cache | undefined
  readonly codec: Codec
  readonly limits: Readonly<Limits>
  readonly stats: StatsRecorder
  readonly writeBehind: WriteBehindRegistry
  readonly getOrSet: GetOrSetState
  readonly healthSince: number
  /** Prefix of the root cache. */
  readonly rootPrefix: string
  readonly quotas: ResolvedQuotas
  readonly topKeySlots: number
  readonly topKeySampleEvery: number
  /** Tracked namespaces by prefix. */
  readonly trackers: Map<string, NamespaceTracker>
  /** Bumped whenever a namespace starts being tracked, so views look their trackers up again. */
  trackerGeneration: number
  /** Quotas this process set, by prefix, so opening a view again does not set them again. */
  readonly quotasSet: Map<string, string>
  closed: boolean
  closing: Promise<void> | undefined
}

const MAX_LIST_LIMIT = 100_000
const CAS_ATTEMPTS = 1000
/** Most store keys remembered by each namespace view. */
const KEY_MEMO = 16_384

/**
 * A cache, or a namespace view of one. Create it with {@link createCache}. All methods are
 * async; a miss is `undefined` and a lost race is `false`, while store faults throw
 * `StoreUnavailableError` and bad arguments throw `InvalidArgumentError` subclasses.
 */
export class Cache {
  readonly #core: Core
  readonly #prefix: string
  readonly #userPrefix: string
  readonly #defaultTtlMs: number | undefined
  readonly #path: readonly string[]
  // Store keys of recently used keys: escaping and concatenating a key costs more than a whole
  // memory hit, and hot keys repeat. Bounded: emptied when it reaches KEY_MEMO entries.
  readonly #storeKeys = new Map<string, string>()
  #locks: Locks | undefined
  #getOrSetHost: GetOrSetHost | undefined
  #rateLimits: RateLimiter | undefined
  #links: Links | undefined
  /** Trackers of this namespace and of the tracked namespaces above it, as of `#trackedAt`. */
  #trackers: ViewTracker[] = []
  #trackedAt = 0
  /** Whether `#trackers` is not empty: the read paths check this and `#trackedAt` only. */
  #tracking = false

  /** @internal use {@link createCache} */
  constructor(
    core: Core,
    prefix: string,
    defaultTtlMs: number | undefined,
    path: readonly string[],
  ) {
    this.#core = core
    this.#prefix = prefix
    this.#userPrefix = `${prefix}k/`
    this.#defaultTtlMs = defaultTtlMs
    this.#path = path
    core.root ??= this
  }

  /** Namespace path of this view (empty for the root cache). */
  get path(): readonly string[] {
    return this.#path
  }

  /**
   * Locks with fencing tokens in this namespace. They always use the store itself: while a
   * distributed store is replaced by the memory fallback, lock calls fail with
   * `StoreUnavailableError` instead of granting locks no other replica can see.
   */
  get locks(): Locks {
    this.#locks ??= new Locks({
      store: () => this.#coordinationStore(),
      codec: this.#core.codec,
      keyOf: (key) => systemKey(this.#prefix, 'l', key, this.#core.limits.maxKeyBytes),
      maxTtlMs: this.#core.limits.maxTtlMs,
      report: (outcome, lock, owner, token) => {
        this.#core.lockCounters[outcome]++
        if (!lockChannel.hasSubscribers) return
        const cache = this.#core.root ?? this
        const event = { cache, namespace: this.#path, lock, owner, outcome }
        lockChannel.publish(token === undefined ? event : { ...event, token })
      },
    })
    return this.#locks
  }

  /**
   * Joins the leader election `name` in this namespace and campaigns until `stop()` (or until the
   * cache is closed). Exactly one replica is leader at a time; a leader that cannot renew its
   * lease steps down at its local deadline, even when the store is unreachable.
   */
  leader(name: string, options: LeaderOptions = {}): Election {
    const core = this.#open()
    const election = new Election(
      {
        store: () => this.#coordinationStore(),
        codec: core.codec,
        keyOf: (key) => systemKey(this.#prefix, 'e', key, core.limits.maxKeyBytes),
        logger: core.logger,
        maxTtlMs: core.limits.maxTtlMs,
        report: (outcome, name, owner, token, reason) => {
          if (!electionChannel.hasSubscribers) return
          const event = { cache: core.root ?? this, namespace: this.#path, election: name, owner }
          electionChannel.publish({
            ...event,
            outcome,
            token,
            ...(reason === undefined ? {} : { reason }),
          })
        },
      },
      name,
      options,
    )
    core.elections.add(election)
    return election
  }

  /**
   * Rate limiters of this namespace (`limit`, `status`, `reset`): atomic across replicas through
   * the store itself, never the memory fallback; each call's `failure` option decides whether a
   * store fault denies (`'closed'`, the default) or admits (`'open'`).
   */
  get rateLimits(): RateLimiter {
    this.#rateLimits ??= new RateLimiter({
      store: () => this.#coordinationStore(),
      codec: this.#core.codec,
      keyOf: (key) => systemKey(this.#prefix, 'r', key, this.#core.limits.maxKeyBytes),
      maxTtlMs: this.#core.limits.maxTtlMs,
      counters: this.#core.rateLimitCounters,
      report: (key, outcome) => {
        if (!rateLimitChannel.hasSubscribers) return
        const cache = this.#core.root ?? this
        rateLimitChannel.publish({ cache, namespace: this.#path, key, outcome })
      },
    })
    return this.#rateLimits
  }

  /**
   * Counts one call against the limit `key` (`{ max, per, algorithm }`) and says whether it is
   * allowed: `{ allowed, remaining, retryAfterMs, resetAt, limit }`. Shorthand for
   * `cache.rateLimits.limit(key, options)`.
   */
  rateLimit(key: string, options: RateLimitOptions): Promise<RateLimitResult> {
    return this.rateLimits.limit(key, options)
  }

  /** The store for coordination: the primary store, never a memory fallback. */
  #coordinationStore(): Store {
    // No closed check here: close() stops elections, which hand their lease back on the way out.
    const core = this.#core
    const fallback = core.fallback
    if (fallback === undefined) return core.store
    if (fallback.inFallback) {
      throw new StoreUnavailableError(
        `the ${fallback.primary.name} store is unreachable and coordination never falls back to memory; retry when health() is ok`,
      )
    }
    return fallback.primary
  }

  /** The store under this cache. */
  get store(): Store {
    return this.#core.store
  }

  /** Reads a value; `defaultValue` (else `undefined`) on a miss. A stored `null` is a hit. */
  get<T = unknown>(key: string): Promise<T | undefined>
  get<T = unknown>(key: string, defaultValue: T): Promise<T>
  async get<T>(key: string, defaultValue?: T): Promise<T | undefined> {
    const core = this.#open()
    const storeKey = this.#storeKeyOf(key)
    const observed = operationChannel.hasSubscribers
    const sampled = core.stats.shouldSample()
    const start = sampled || observed ? performance.now() : -1
    let value: unknown
    const local = core.store.local
    if (local !== undefined) {
      value = local.read(storeKey)
    } else {
      value = core.l1?.read(storeKey)
      if (value === undefined) {
        try {
          value = await this.#readThrough(storeKey)
        } catch (error) {
          if (observed) this.#report('get', start, 'error', error)
          throw error
        }
      }
    }
    if (sampled) core.stats.recordLatency('get', performance.now() - start)
    if (observed) this.#report('get', start, value === undefined ? 'miss' : 'hit')
    if (value === undefined) {
      core.stats.misses++
      if (this.#tracking || this.#trackedAt !== core.trackerGeneration) this.#track(key, false)
      return defaultValue
    }
    core.stats.hits++
    if (this.#tracking || this.#trackedAt !== core.trackerGeneration) this.#track(key, true)
    return value as T
  }

  /** Counts a read of `key` in the tracked namespaces this view belongs to. */
  #track(key: string, hit: boolean): void {
    const core = this.#core
    if (this.#trackedAt !== core.trackerGeneration) {
      this.#trackers = this.#findTrackers()
      this.#tracking = this.#trackers.length > 0
      this.#trackedAt = core.trackerGeneration
    }
    const trackers = this.#trackers
    for (let i = 0; i < trackers.length; i++) {
      const view = trackers[i] as ViewTracker
      view.tracker.record(key, view.below, view.belowId, hit)
    }
  }

  /** The trackers of this namespace and of those above it, with this view's path below each. */
  #findTrackers(): ViewTracker[] {
    const core = this.#core
    const found: ViewTracker[] = []
    let prefix = core.rootPrefix
    for (let depth = 0; depth < this.#path.length; depth++) {
      prefix = childPrefix(prefix, this.#path[depth] as string, core.limits.maxKeyBytes)
      const tracker = core.trackers.get(prefix)
      if (tracker === undefined) continue
      const below = this.#path.slice(depth + 1)
      found.push({ tracker, below, belowId: below.join('\u0000') })
    }
    return found
  }

  /** Reads from the store (not L1), decodes, and keeps the value in L1 when there is one. */
  async #readThrough(storeKey: string): Promise<unknown> {
    const core = this.#core
    const l1 = core.l1
    const epoch = l1?.epoch ?? 0
    const entry = await this.#call('get', () => core.store.get(storeKey), false)
    if (entry === undefined) return undefined
    const value = core.codec.decode(entry.value)
    if (l1 !== undefined) {
      const expiresIn = entry.expiresAt === null ? null : entry.expiresAt - this.#storeNow()
      l1.fill(storeKey, value, entry.value.byteLength, expiresIn, epoch)
    }
    return value
  }

  /**
   * Runs a write and then drops the L1 copies of what it touched, here and on the other
   * replicas: also when the write failed, since a write that timed out may still be applied.
   */
  async #mutate<R>(
    change: { keys?: string[]; prefixes?: string[] },
    operation: string,
    run: () => Promise<R>,
  ): Promise<R> {
    if (this.#core.l1 === undefined) return this.#call(operation, run)
    try {
      return await this.#call(operation, run)
    } finally {
      await this.#changed(change)
    }
  }

  /** After a write to the store: drop L1 copies here and on the other replicas. */
  async #changed(change: { keys?: string[]; prefixes?: string[] }): Promise<void> {
    await this.#core.l1?.invalidate(change)
  }

  /**
   * Stores a value; returns `true`. The third argument is a TTL (ms or duration string) or
   * `{ ttl, tags, dependsOn }`. Without a TTL, the namespace's default TTL applies, else the
   * entry never expires. Keys that depend on this one (their `dependsOn`) are deleted,
   * transitively, before it resolves; `tags` and `dependsOn` are indexed after the write.
   */
  async set(key: string, value: unknown, ttlOrOptions?: Duration | SetOptions): Promise<true> {
    const core = this.#open()
    const storeKey = this.#storeKeyOf(key)
    let ttlMs = this.#ttlOf(ttlOrOptions, true)
    const links = this.#writeLinks(key, storeKey, ttlOrOptions, '')
    const observed = operationChannel.hasSubscribers
    const sampled = core.stats.shouldSample()
    const start = sampled || observed ? performance.now() : -1
    const local = core.store.local
    const size = local === undefined ? 0 : core.codec.encodedSize(value)
    if (local !== undefined) checkValueSize(size, core.limits, key)
    const bytes = local === undefined ? this.#encode(key, value) : undefined
    if (links !== undefined && links.parents.length > 0) {
      ttlMs = await this.#cappedTtl(ttlMs, links.parents)
    }
    const index = this.#linkIndex()
    const dependents = index.readDependents([storeKey])
    if (local !== undefined) {
      local.write(storeKey, value, size, ttlMs)
    } else {
      const encoded = bytes as Uint8Array
      const l1 = core.l1
      const before = l1?.epoch
      try {
        await this.#call('set', () => core.store.set(storeKey, encoded, { ttlMs }), false)
      } catch (error) {
        if (observed) this.#report('set', start, 'error', error)
        // The write may still be applied (a timeout): no replica may keep the old value.
        if (l1 !== undefined) await this.#changed({ keys: [storeKey] })
        throw error
      }
      if (l1 !== undefined) {
        // Another replica's invalidation during our write may mean its value overtook ours in
        // the store: then keeping ours in L1 would serve a value the store no longer holds.
        const overtaken = l1.epoch !== before
        const epoch = await l1.invalidate({ keys: [storeKey] })
        if (!overtaken) l1.fill(storeKey, value, encoded.byteLength, ttlMs ?? null, epoch)
      }
    }
    const linked = links === undefined ? undefined : [{ storeKey, ...links, ttlMs }]
    await this.#afterWrite([storeKey], dependents, 'set', linked)
    if (sampled) core.stats.recordLatency('set', performance.now() - start)
    if (observed) this.#report('set', start, 'ok')
    core.stats.sets++
    return true
  }

  /**
   * After a write of `storeKeys`: indexes the tags and parents of `linked` writes, then deletes
   * the keys that depend on the written ones. When indexing fails, the linked entries are
   * deleted (best effort) so that no entry stays without its index, and the error is thrown.
   */
  async #afterWrite(
    storeKeys: readonly string[],
    dependents: DependentsRead,
    operation: string,
    linked?: ReadonlyArray<WriteLinks & { storeKey: string; ttlMs: number | undefined }>,
  ): Promise<void> {
    if (dependents === undefined && (linked === undefined || linked.length === 0)) return
    const core = this.#core
    const index = this.#linkIndex()
    let failure: Error | undefined
    if (linked !== undefined && linked.length > 0) {
      try {
        await index.record(linked)
      } catch (error) {
        failure = error instanceof Error ? error : new StoreUnavailableError(String(error))
        const keys = linked.map((item) => item.storeKey)
        await this.#mutate({ keys }, operation, () => core.store.deleteMany(keys)).catch(
          () => undefined,
        )
      }
    }
    await index.cascade(storeKeys, dependents, operation)
    if (failure !== undefined) throw failure
  }

  /**
   * Drops every entry of this namespace (not its children) that carries one of `tags`, on every
   * replica (their L1 included), and the keys that depend on those entries, transitively.
   * Every entry written with one of the tags by a call that resolved before this one began is
   * gone when it resolves; writes running concurrently may survive. Returns how many entries
   * were deleted. Costs one prefix listing of the store per tag (a SCAN on Redis).
   */
  async invalidateTags(tags: string | readonly string[]): Promise<number> {
    const core = this.#open()
    const escaped = checkTags(tags, 'tags', core.limits.maxBatchSize)
    const start = core.stats.shouldSample() ? performance.now() : -1
    const deleted = await this.#linkIndex().invalidateTags(this.#prefix, escaped)
    if (start >= 0) core.stats.recordLatency('invalidateTags', performance.now() - start)
    return deleted
  }

  /** The tag and dependency index, created on first use. */
  #linkIndex(): Links {
    this.#links ??= new Links({
      store: () => this.#core.store,
      now: () => this.#storeNow(),
      call: (operation, run) => this.#call(operation, run, false),
      deleteEntries: async (keys, operation) => {
        const core = this.#core
        const deleted = await this.#mutate({ keys }, operation, () => core.store.deleteMany(keys))
        core.stats.deletes += deleted
        return deleted
      },
      batchSize: this.#core.limits.maxBatchSize,
    })
    return this.#links
  }

  /**
   * The checked `tags` and `dependsOn` of a write (`undefined` when it has none); `name` prefixes
   * the option names in error messages (`items[3].` for setMany).
   */
  #writeLinks(
    key: string,
    storeKey: string,
    options: Duration | SetOptions | SetManyItem | undefined,
    name: string,
  ): WriteLinks | undefined {
    if (typeof options !== 'object' || options === null) return undefined
    const { tags, dependsOn } = options
    if (tags === undefined && dependsOn === undefined) return undefined
    const escaped = tags === undefined ? [] : checkTags(tags, `${name}tags`, MAX_TAGS)
    const parents =
      dependsOn === undefined ? [] : this.#parentsOf(key, storeKey, dependsOn, `${name}dependsOn`)
    if (escaped.length === 0 && parents.length === 0) return undefined
    return { tags: escaped, parents }
  }

  /** Store keys of the `dependsOn` keys of a write to `key`, checked and without duplicates. */
  #parentsOf(key: string, storeKey: string, dependsOn: unknown, name: string): string[] {
    if (!Array.isArray(dependsOn)) {
      throw InvalidArgumentError.format(
        name,
        `must be an array of keys of this namespace; got ${typeof dependsOn}`,
      )
    }
    if (dependsOn.length > MAX_DEPENDS_ON) {
      throw InvalidArgumentError.format(
        name,
        `has ${dependsOn.length} keys; the limit is ${MAX_DEPENDS_ON}: depend on a shared key or use a tag`,
      )
    }
    const parents = new Set<string>()
    for (const parent of dependsOn as unknown[]) {
      if (typeof parent !== 'string') {
        throw InvalidArgumentError.format(name, `must hold strings only; got ${typeof parent}`)
      }
      const parentKey = this.#storeKeyOf(parent)
      if (parentKey === storeKey) {
        throw InvalidArgumentError.format(
          name,
          `must not hold the key itself (${JSON.stringify(key)}): a key cannot depend on itself`,
        )
      }
      parents.add(parentKey)
    }
    return [...parents]
  }

  /** `ttlMs` capped by the earliest deadline of the live `parents`, so a dependent never outlives them. */
  async #cappedTtl(
    ttlMs: number | undefined,
    parents: readonly string[],
  ): Promise<number | undefined> {
    const deadline = await this.#linkIndex().parentsDeadline(parents)
    if (deadline === null) return ttlMs
    const remaining = Math.max(1, Math.ceil(deadline - this.#storeNow()))
    return ttlMs === undefined ? remaining : Math.min(ttlMs, remaining)
  }

  /** Stores a value only if the key has no live entry: atomic, so exactly one concurrent `add` wins. */
  async add(key: string, value: unknown, ttl?: Duration): Promise<boolean> {
    const core = this.#open()
    const storeKey = this.#storeKeyOf(key)
    const ttlMs = this.#ttlOf(ttl)
    const bytes = this.#encode(key, value)
    const dependents = this.#linkIndex().readDependents([storeKey])
    const revision = await this.#mutate({ keys: [storeKey] }, 'add', () =>
      core.store.create(storeKey, bytes, { ttlMs }),
    )
    if (revision === undefined) return false
    await this.#afterWrite([storeKey], dependents, 'add')
    core.stats.sets++
    return true
  }

  /** Deletes an entry and the keys that depend on it, transitively; `true` if the entry existed. */
  async delete(key: string): Promise<boolean> {
    const core = this.#open()
    const storeKey = this.#storeKeyOf(key)
    const dependents = this.#linkIndex().readDependents([storeKey])
    // Invalidates even when nothing was deleted here: a replica may still hold an expired copy.
    const deleted = await this.#mutate({ keys: [storeKey] }, 'delete', () =>
      core.store.delete(storeKey),
    )
    if (deleted) core.stats.deletes++
    await this.#linkIndex().cascade([storeKey], dependents, 'delete')
    return deleted
  }

  /** Whether a live entry exists (a stored `null` counts). */
  async has(key: string): Promise<boolean> {
    const core = this.#open()
    const storeKey = this.#storeKeyOf(key)
    const local = core.store.local
    // An in-process store answers without #call, unless someone observes calls.
    if (local !== undefined && !operationChannel.hasSubscribers) return local.has(storeKey)
    return this.#call(
      'has',
      async () =>
        local !== undefined
          ? local.has(storeKey)
          : core.l1?.read(storeKey) !== undefined || (await core.store.get(storeKey)) !== undefined,
      true,
      found,
    )
  }

  /**
   * Whether the stored value deep-equals `value`: type-aware (`1`, `1n` and `"1"` differ) and
   * independent of object key order and of Map/Set insertion order. A miss is `false`.
   */
  async exists(key: string, value: unknown): Promise<boolean> {
    const stored = await this.get(key)
    return stored !== undefined && valuesEqual(stored, value)
  }

  /**
   * Adds `by` (default 1) to a numeric entry and returns the new value; a missing key starts
   * from 0 and gets `ttl` (an existing entry keeps its TTL). Atomic across concurrent callers.
   * Throws `NotANumberError` when the stored value is not a number.
   */
  async increment(key: string, by = 1, ttl?: Duration): Promise<number> {
    const core = this.#open()
    if (typeof by !== 'number' || !Number.isFinite(by)) {
      throw InvalidArgumentError.format('by', `must be a finite number; got ${String(by)}`)
    }
    const storeKey = this.#storeKeyOf(key)
    const ttlMs = this.#ttlOf(ttl)
    const store = core.store
    const dependents = this.#linkIndex().readDependents([storeKey])
    let result: number
    if (store.increment !== undefined) {
      const increment = store.increment.bind(store)
      result = await this.#mutate({ keys: [storeKey] }, 'increment', () =>
        increment(storeKey, by, core.codec, { ttlMs }),
      )
    } else {
      result = await this.#mutate({ keys: [storeKey] }, 'increment', () =>
        this.#incrementByCas(key, storeKey, by, ttlMs),
      )
    }
    await this.#afterWrite([storeKey], dependents, 'increment')
    core.stats.sets++
    return result
  }

  async #incrementByCas(
    key: string,
    storeKey: string,
    by: number,
    ttlMs: number | undefined,
  ): Promise<number> {
    const core = this.#core
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      // Timed and reported once, by the #mutate around this loop.
      const entry = await this.#call('increment', () => core.store.get(storeKey), false)
      if (entry === undefined) {
        const created = await this.#call(
          'increment',
          () => core.store.create(storeKey, this.#encode(key, by), { ttlMs }),
          false,
        )
        if (created !== undefined) return by
        continue
      }
      const current = core.codec.decode(entry.value)
      const next = incremented(current, by)
      const remaining = entry.expiresAt === null ? undefined : entry.expiresAt - this.#storeNow()
      if (remaining !== undefined && remaining <= 0) continue
      const written = await this.#call(
        'increment',
        () =>
          core.store.compareAndSet(storeKey, this.#encode(key, next), entry.revision, {
            ttlMs: remaining,
          }),
        false,
      )
      if (written !== undefined) return next
    }
    throw new StoreUnavailableError(
      `increment of "${key}" lost ${CAS_ATTEMPTS} compare-and-set races in a row; the key is too contended for this store`,
    )
  }

  /** Reads many keys; values (or `undefined` for misses) in the order of `keys`. */
  async getMany<T = unknown>(keys: readonly string[]): Promise<Array<T | undefined>> {
    const core = this.#open()
    checkBatch(keys.length, core.limits, 'getMany')
    const storeKeys = keys.map((key) => this.#storeKeyOf(key))
    const local = core.store.local
    const values = await this.#call('getMany', async () =>
      local !== undefined
        ? storeKeys.map((storeKey) => local.read(storeKey))
        : this.#readManyThrough(storeKeys),
    )
    for (const value of values) {
      if (value === undefined) core.stats.misses++
      else core.stats.hits++
    }
    if (this.#tracking || this.#trackedAt !== core.trackerGeneration) {
      for (const [i, key] of keys.entries()) this.#track(key, values[i] !== undefined)
    }
    return values as Array<T | undefined>
  }

  async #readManyThrough(storeKeys: string[]): Promise<unknown[]> {
    const core = this.#core
    const l1 = core.l1
    const values: unknown[] = l1 === undefined ? [] : storeKeys.map((storeKey) => l1.read(storeKey))
    const missing =
      l1 === undefined ? storeKeys : storeKeys.filter((_, i) => values[i] === undefined)
    if (missing.length === 0) return values
    const epoch = l1?.epoch ?? 0
    const entries = await this.#call('getMany', () => core.store.getMany(missing), false)
    const now = l1 === undefined ? 0 : this.#storeNow()
    const fetched = entries.map((entry, i) => {
      if (entry === undefined) return undefined
      const value = core.codec.decode(entry.value)
      if (l1 !== undefined) {
        const expiresIn = entry.expiresAt === null ? null : entry.expiresAt - now
        l1.fill(missing[i] as string, value, entry.value.byteLength, expiresIn, epoch)
      }
      return value
    })
    if (l1 === undefined) return fetched
    let next = 0
    return values.map((value) => (value === undefined ? fetched[next++] : value))
  }

  /**
   * Writes many entries in one store call; every item is checked before anything is written.
   * Items take `tags` and `dependsOn` as in {@link Cache.set}; keys depending on any written key
   * are deleted, transitively.
   */
  async setMany(items: ReadonlyArray<SetManyItem>): Promise<true> {
    const core = this.#open()
    checkBatch(items.length, core.limits, 'setMany')
    const prepared = items.map((item) => ({
      key: this.#storeKeyOf(item.key),
      value: this.#encode(item.key, item.value),
      ttlMs: this.#ttlOf(item.ttl),
    }))
    const links = items.map((item, i) =>
      this.#writeLinks(item.key, prepared[i]?.key as string, item, `items[${i}].`),
    )
    await Promise.all(
      links.map(async (link, i) => {
        const item = prepared[i]
        if (link === undefined || link.parents.length === 0 || item === undefined) return
        item.ttlMs = await this.#cappedTtl(item.ttlMs, link.parents)
      }),
    )
    const storeKeys = prepared.map((item) => item.key)
    const dependents = this.#linkIndex().readDependents(storeKeys)
    await this.#mutate({ keys: storeKeys }, 'setMany', () => core.store.setMany(prepared))
    const linked = prepared.flatMap((item, i) => {
      const link = links[i]
      return link === undefined ? [] : [{ storeKey: item.key, ...link, ttlMs: item.ttlMs }]
    })
    await this.#afterWrite(storeKeys, dependents, 'setMany', linked)
    core.stats.sets += items.length
    return true
  }

  /** Deletes many keys; returns how many existed. */
  async deleteMany(keys: readonly string[]): Promise<number> {
    const core = this.#open()
    checkBatch(keys.length, core.limits, 'deleteMany')
    const storeKeys = keys.map((key) => this.#storeKeyOf(key))
    const dependents = this.#linkIndex().readDependents(storeKeys)
    const deleted = await this.#mutate({ keys: storeKeys }, 'deleteMany', () =>
      core.store.deleteMany(storeKeys),
    )
    core.stats.deletes += deleted
    await this.#linkIndex().cascade(storeKeys, dependents, 'deleteMany')
    return deleted
  }

  /** Keys of this namespace (not its children) that start with `prefix`, sorted, namespace stripped. */
  async keys(prefix?: string): Promise<string[]> {
    return this.#listKeys(prefix, MAX_LIST_LIMIT)
  }

  /** Like {@link Cache.keys}, at most `limit` keys (default 1000). */
  async listKeys(prefix?: string, options: ListKeysOptions = {}): Promise<string[]> {
    const limit = options.limit ?? 1000
    if (!Number.isSafeInteger(limit) || limit <= 0 || limit > MAX_LIST_LIMIT) {
      throw InvalidArgumentError.format(
        'limit',
        `must be an integer from 1 to ${MAX_LIST_LIMIT}; got ${String(limit)}`,
      )
    }
    return this.#listKeys(prefix, limit)
  }

  async #listKeys(prefix: string | undefined, limit: number): Promise<string[]> {
    const core = this.#open()
    const storePrefix = userKeyPrefix(this.#prefix, prefix, core.limits.maxKeyBytes)
    const keys = await this.#call('keys', async () => {
      const found: string[] = []
      for await (const storeKey of core.store.list(storePrefix, { limit })) {
        const key = stripUserKey(storeKey, this.#userPrefix)
        if (key !== undefined) found.push(key)
      }
      return found
    })
    return keys.sort()
  }

  /**
   * Deletes every entry of this namespace and of its child namespaces; nothing outside it, and
   * never locks, leases or limiter state. Then removes the tag and dependency index entries of
   * those namespaces whose entries are gone. Returns how many entries were deleted.
   */
  async clear(): Promise<number> {
    const core = this.#open()
    const deleted = await this.#mutate({ prefixes: [this.#prefix] }, 'clear', () =>
      core.store.clear(this.#prefix),
    )
    core.stats.deletes += deleted
    await this.#linkIndex().sweep(this.#prefix)
    return deleted
  }

  /**
   * Previous versions of `key`, oldest first, with revision, time and operation (`set` with its
   * value, `delete`, `expire`): as many as the store keeps (its `history` option; the NATS
   * bucket's history). Throws `InvalidArgumentError` when the store keeps no history.
   */
  async history<T = unknown>(
    key: string,
    options: HistoryOptions = {},
  ): Promise<CacheVersion<T>[]> {
    const core = this.#open()
    const storeKey = this.#storeKeyOf(key)
    const limit = options.limit
    if (limit !== undefined && (!Number.isSafeInteger(limit) || limit <= 0)) {
      throw InvalidArgumentError.format('limit', `must be a positive integer; got ${String(limit)}`)
    }
    const store = this.#changeStore()
    if (store.history === undefined || !(store.capabilities.history ?? 0)) {
      throw InvalidArgumentError.format(
        'history()',
        `needs a store that keeps versions; the ${store.name} store keeps none (give it the history option)`,
      )
    }
    const versions = await this.#call('history', () =>
      (store.history as NonNullable<Store['history']>).call(store, storeKey, { limit }),
    )
    return versions.map((version) => {
      const result: CacheVersion<T> = {
        operation: version.operation,
        revision: version.revision,
        at: version.at,
        expiresAt: version.expiresAt,
      }
      if (version.value !== undefined) result.value = core.codec.decode(version.value) as T
      return result
    })
  }

  /**
   * Changes to this namespace's keys that start with `prefix` (not its child namespaces, never
   * system keys), as an async iterable of `set` / `delete` / `expire` events with the namespace
   * stripped from the key. Which writes a store reports differs (see the store's docs): in-process
   * stores report this process's writes, Redis and NATS every replica's. A consumer more than
   * `buffer` events behind gets an `overflow` event in place of the events dropped. Ends when
   * `signal` aborts, the loop breaks, `close()` is called or the cache closes.
   */
  watch<T = unknown>(prefix?: string, options: WatchOptions = {}): CacheWatch<T> {
    const core = this.#open()
    const storePrefix = userKeyPrefix(this.#prefix, prefix, core.limits.maxKeyBytes)
    const buffer = options.buffer ?? 1000
    if (!Number.isSafeInteger(buffer) || buffer <= 0 || buffer > 100_000) {
      throw InvalidArgumentError.format(
        'buffer',
        `must be an integer from 1 to 100000; got ${String(buffer)}`,
      )
    }
    const signal = options.signal
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw InvalidArgumentError.format('signal', 'must be an AbortSignal')
    }
    const store = this.#changeStore()
    if (store.watch === undefined || store.capabilities.watch === undefined) {
      throw InvalidArgumentError.format(
        'watch()',
        `needs a store that reports changes; the ${store.name} store does not`,
      )
    }
    return startWatch<T>(core, {
      store,
      storePrefix,
      keyOf: (storeKey) => {
        try {
          return stripUserKey(storeKey, this.#userPrefix)
        } catch {
          return undefined
        }
      },
      decode: (bytes) => core.codec.decode(bytes),
      buffer,
      signal,
    })
  }

  /** The store history and watch use: the store itself, never a memory fallback. */
  #changeStore(): Store {
    return this.#core.fallback?.primary ?? this.#core.store
  }

  /** Remaining time to live in ms; `null` when the entry never expires; `undefined` when missing. */
  async ttl(key: string): Promise<number | null | undefined> {
    const core = this.#open()
    const storeKey = this.#storeKeyOf(key)
    // A TTL read is not a use: it leaves the key's place in the LRU order alone.
    const store = core.store
    const entry = await this.#call(
      'ttl',
      () => (store.peek === undefined ? store.get(storeKey) : store.peek(storeKey)),
      true,
      found,
    )
    if (entry === undefined) return undefined
    if (entry.expiresAt === null) return null
    return Math.max(1, entry.expiresAt - this.#storeNow())
  }

  /** Reads a value with its revision and expiry, for {@link Cache.compareAndSet}. */
  async entry<T = unknown>(key: string): Promise<CacheEntry<T> | undefined> {
    const core = this.#open()
    const storeKey = this.#storeKeyOf(key)
    const entry: StoreEntry | undefined = await this.#call(
      'entry',
      () => core.store.get(storeKey),
      true,
      found,
    )
    if (entry === undefined) {
      core.stats.misses++
      if (this.#tracking || this.#trackedAt !== core.trackerGeneration) this.#track(key, false)
      return undefined
    }
    core.stats.hits++
    if (this.#tracking || this.#trackedAt !== core.trackerGeneration) this.#track(key, true)
    return {
      value: core.codec.decode(entry.value) as T,
      revision: entry.revision,
      expiresAt: entry.expiresAt,
    }
  }

  /**
   * Writes only if the entry is still at `revision` (from {@link Cache.entry}): returns the new
   * revision, or `false` when another write came first or the entry is gone.
   */
  async compareAndSet(
    key: string,
    value: unknown,
    revision: Revision,
    ttl?: Duration,
  ): Promise<Revision | false> {
    const core = this.#open()
    if (typeof revision !== 'string' || revision === '') {
      throw InvalidArgumentError.format(
        'revision',
        'must be the revision string returned by entry()',
      )
    }
    const storeKey = this.#storeKeyOf(key)
    const ttlMs = this.#ttlOf(ttl)
    const bytes = this.#encode(key, value)
    const dependents = this.#linkIndex().readDependents([storeKey])
    const written = await this.#mutate({ keys: [storeKey] }, 'compareAndSet', () =>
      core.store.compareAndSet(storeKey, bytes, revision, { ttlMs }),
    )
    if (written === undefined) return false
    await this.#afterWrite([storeKey], dependents, 'compareAndSet')
    core.stats.sets++
    return written
  }

  /**
   * Returns the cached value, or runs `factory` once, caches its result and returns it.
   * Concurrent calls for one key share one factory call: in this process, or across every
   * replica with `distributed: true`. A failing factory caches nothing and every waiter gets its
   * error, unless `grace` has kept the last good value to serve instead; `timeout` bounds the
   * wait, `earlyRefresh` refreshes hot keys before they expire, and the factory's context can
   * `skip()` caching or `setTtl()`. A result of `undefined` is returned but not cached.
   */
  async getOrSet<T>(key: string, factory: Factory<T>, options: GetOrSetOptions = {}): Promise<T> {
    this.#open()
    return (await this.#observedGetOrSet('getOrSet', this.#getOrSet(), key, factory, options)).value
  }

  /**
   * Runs a getOrSet and, when someone listens on the operation channel, reports it as one
   * operation (`getOrSet` or `memoize`) with `hit` / `miss` and its whole duration.
   */
  async #observedGetOrSet<T>(
    operation: 'getOrSet' | 'memoize',
    host: GetOrSetHost,
    key: string,
    factory: Factory<T>,
    options: GetOrSetOptions | undefined,
  ): Promise<GetOrSetResult<T>> {
    if (!operationChannel.hasSubscribers) return getOrSetResult(host, key, factory, options)
    const start = performance.now()
    try {
      const result = await getOrSetResult(host, key, factory, options)
      this.#report(operation, start, result.hit ? 'hit' : 'miss')
      return result
    } catch (error) {
      this.#report(operation, start, 'error', error)
      throw error
    }
  }

  /**
   * Wraps `fn` so that its results are cached by arguments through {@link Cache.getOrSet} (same
   * options). The default key is `<name>:<sha256 of the canonical arguments>`, independent of
   * object key order. `memoized.run(...args)` also tells whether it was a hit and how long it
   * took; `memoized.invalidate(...args)` drops a result.
   */
  memoize<A extends unknown[], R>(
    fn: (...args: A) => R | Promise<R>,
    options: MemoizeOptions<A> = {},
  ): Memoized<A, Awaited<R>> {
    this.#open()
    const view = options.namespace === undefined ? this : this.namespace(options.namespace)
    const host = view.#getOrSet()
    return memoize(
      {
        getOrSet: (key, factory, getOrSetOptions) =>
          view.#observedGetOrSet('memoize', host, key, factory, getOrSetOptions),
        forget: async (key) => {
          const [deleted] = await Promise.all([
            view.delete(key),
            view.#call('delete', () => view.#core.store.delete(host.graceKeyOf(key))),
          ])
          return deleted
        },
      },
      fn,
      options,
    )
  }

  /** What getOrSet needs of this view. */
  #getOrSet(): GetOrSetHost {
    if (this.#getOrSetHost !== undefined) return this.#getOrSetHost
    const core = this.#core
    let flightLocks: Locks | undefined
    this.#getOrSetHost = {
      state: core.getOrSet,
      inProcess: core.store.local !== undefined,
      storeKeyOf: (key) => this.#storeKeyOf(key),
      graceKeyOf: (key) => systemKey(this.#prefix, 'g', key, core.limits.maxKeyBytes),
      get: (key) => this.get(key),
      getTimed: async (key) => {
        const storeKey = this.#storeKeyOf(key)
        const entry = await this.#call('get', () => core.store.get(storeKey))
        if (entry === undefined) {
          core.stats.misses++
          if (this.#tracking || this.#trackedAt !== core.trackerGeneration) this.#track(key, false)
          return undefined
        }
        core.stats.hits++
        if (this.#tracking || this.#trackedAt !== core.trackerGeneration) this.#track(key, true)
        return { value: core.codec.decode(entry.value), expiresAt: entry.expiresAt }
      },
      reread: async (storeKey) => {
        const local = core.store.local
        return local !== undefined ? local.read(storeKey) : this.#readThrough(storeKey)
      },
      write: async (key, value, ttlMs, links) => {
        await this.set(key, value, links === undefined ? ttlMs : { ttl: ttlMs, ...links })
      },
      checkLinks: (key, links) => {
        this.#writeLinks(key, this.#storeKeyOf(key), links, '')
      },
      readGrace: async (graceKey) => {
        const entry = await this.#call('get', () => core.store.get(graceKey))
        return entry === undefined ? undefined : core.codec.decode(entry.value)
      },
      writeGrace: async (graceKey, copy, ttlMs) => {
        const bytes = core.codec.encode(copy)
        await this.#call('set', () => core.store.set(graceKey, bytes, { ttlMs }))
      },
      checkTtl: (ttl, name) => checkTtl(ttl, core.limits, name),
      defaultTtlMs: this.#defaultTtlMs,
      maxTtlMs: core.limits.maxTtlMs,
      flightLocks: () =>
        (flightLocks ??= new Locks({
          store: () => this.#coordinationStore(),
          codec: core.codec,
          keyOf: (key) => systemKey(this.#prefix, 'f', key, core.limits.maxKeyBytes),
          maxTtlMs: core.limits.maxTtlMs,
        })),
      now: () => this.#storeNow(),
    }
    return this.#getOrSetHost
  }

  /**
   * A view of the namespace `name` inside this one: its keys are separate from every other
   * namespace's, whatever characters either uses. Views nest. `maxEntries` / `maxBytes` give it
   * a quota: when it is over, its own least recently used entries are evicted, never another's.
   * A top-level namespace also gets the `quotas` of `createCache` (its override, else the
   * default), field by field under the limits given here. `trackStats` counts its reads for
   * {@link Cache.namespaceStats}; namespaces with a quota are always tracked. `applyQuotas: false`
   * opens a view for reading: it sets no quota in the store (an option rather than a separate
   * method, so it nests and combines with `defaultTtl` / `trackStats` like every other view).
   */
  namespace(name: string, options: NamespaceOptions = {}): Cache {
    const core = this.#open()
    const prefix = childPrefix(this.#prefix, name, core.limits.maxKeyBytes)
    const defaultTtlMs =
      options.defaultTtl === undefined
        ? this.#defaultTtlMs
        : checkTtl(options.defaultTtl, core.limits, 'defaultTtl')
    const trackStats = options.trackStats ?? false
    if (typeof trackStats !== 'boolean') {
      throw InvalidArgumentError.format(
        'trackStats',
        `must be true or false; got ${String(trackStats)}`,
      )
    }
    const applyQuotas = options.applyQuotas ?? true
    if (typeof applyQuotas !== 'boolean') {
      throw InvalidArgumentError.format(
        'applyQuotas',
        `must be true or false; got ${String(applyQuotas)}`,
      )
    }
    const given: QuotaLimits = {}
    if (options.maxEntries !== undefined) given.maxEntries = options.maxEntries
    if (options.maxBytes !== undefined) given.maxBytes = options.maxBytes
    if (!applyQuotas && (given.maxEntries !== undefined || given.maxBytes !== undefined)) {
      throw InvalidArgumentError.format(
        'applyQuotas',
        'is false, so maxEntries / maxBytes would never be set; give one or the other',
      )
    }
    const path = [...this.#path, name]
    const limits = applyQuotas
      ? quotaFor(core.quotas, name, this.#path.length === 0, given)
      : undefined
    if (limits !== undefined) this.#setQuota(prefix, limits)
    if ((limits !== undefined || trackStats) && !core.trackers.has(prefix)) {
      // Namespace names may come from requests: the oldest tracker goes beyond the cap.
      if (core.trackers.size >= MAX_TRACKED_NAMESPACES) {
        const oldest = core.trackers.keys().next().value
        if (oldest !== undefined) core.trackers.delete(oldest)
      }
      core.trackers.set(
        prefix,
        new NamespaceTracker(path, prefix, core.topKeySlots, core.topKeySampleEvery),
      )
      core.trackerGeneration++
    }
    const tracker = core.trackers.get(prefix)
    if (tracker !== undefined && limits !== undefined) tracker.quota = limits
    return new Cache(core, prefix, defaultTtlMs, path)
  }

  /** Sets the quota of `prefix` in the store, unless this process already set the same one. */
  #setQuota(prefix: string, limits: QuotaLimits): void {
    const core = this.#core
    const store = core.store
    if (store.setQuota === undefined || !store.capabilities.quotas) {
      throw InvalidArgumentError.format(
        'maxEntries/maxBytes',
        `need a store with namespace quotas; the ${core.store.name} store has none`,
      )
    }
    const id = `${limits.maxEntries ?? ''}/${limits.maxBytes ?? ''}`
    if (core.quotasSet.get(prefix) === id) return
    const recorded = store.setQuota(prefix, limits)
    if (core.quotasSet.size >= MAX_TRACKED_NAMESPACES) {
      // Forgetting one only means setting it again the next time that namespace is opened.
      const oldest = core.quotasSet.keys().next().value
      if (oldest !== undefined) core.quotasSet.delete(oldest)
    }
    core.quotasSet.set(prefix, id)
    if (recorded instanceof Promise) {
      recorded.catch((error: unknown) => {
        // Set it again the next time the namespace is opened.
        if (core.quotasSet.get(prefix) === id) core.quotasSet.delete(prefix)
        core.logger.warn('flowcache: could not record a namespace quota in the store', {
          prefix,
          error: error instanceof Error ? error.message : String(error),
        })
      })
    }
  }

  /**
   * Statistics of this namespace (children included): entries, bytes and evictions as the store
   * accounts its quota (`undefined` without a quota or when the store does not report usage),
   * and, when the namespace is tracked (a quota, or `trackStats: true`), this process's hits,
   * misses, hit ratio and most-read keys (`top`, default 10).
   */
  async namespaceStats(options: NamespaceStatsOptions = {}): Promise<NamespaceStats> {
    const core = this.#open()
    const top = checkTop(options.top)
    if (this.#path.length === 0) {
      throw InvalidArgumentError.format(
        'namespaceStats',
        'is for namespace views; call it on cache.namespace(name), or use stats() for the whole cache',
      )
    }
    return this.#namespaceStatsOf(core.trackers.get(this.#prefix), this.#prefix, this.#path, top)
  }

  /**
   * {@link Cache.namespaceStats} of every namespace this process tracks (those with a quota or
   * `trackStats: true`), whichever view it is called on; what the per-namespace metrics read.
   * A namespace whose usage the store cannot report now (unreachable) comes with `entries`,
   * `bytes` and `evictions` undefined instead of failing the whole call.
   */
  async trackedNamespaceStats(options: NamespaceStatsOptions = {}): Promise<NamespaceStats[]> {
    const core = this.#open()
    const top = checkTop(options.top)
    return Promise.all(
      [...core.trackers.values()].map((tracker) =>
        this.#namespaceStatsOf(tracker, tracker.prefix, tracker.path, top, true),
      ),
    )
  }

  async #namespaceStatsOf(
    tracker: NamespaceTracker | undefined,
    prefix: string,
    path: readonly string[],
    top: number,
    tolerant = false,
  ): Promise<NamespaceStats> {
    const store = this.#core.store
    const quota = tracker?.quota
    let usage: QuotaUsage | undefined
    if (quota !== undefined && store.quotaUsage !== undefined) {
      try {
        usage = await this.#call(
          'quotaUsage',
          () => store.quotaUsage?.(prefix) ?? Promise.resolve(undefined),
        )
      } catch (error) {
        if (!tolerant) throw error
      }
    }
    const hits = tracker?.hits ?? 0
    const misses = tracker?.misses ?? 0
    return {
      namespace: path,
      tracked: tracker !== undefined,
      quota: quota === undefined ? undefined : { ...quota },
      entries: usage?.entries,
      bytes: usage?.bytes,
      evictions: usage?.evictions,
      hits,
      misses,
      hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses),
      topKeys: tracker?.topKeys(top) ?? [],
    }
  }

  /**
   * A writer for a system of record (`target`) in front of this namespace: `set`/`delete` write
   * the target first and the cache only once the target accepted. When the target fails, the
   * call throws `WriteTargetError` and the key is deleted from the cache. See write patterns.
   */
  writeThrough<T = unknown>(target: WriteTarget<T>): WriteThroughWriter<T> {
    this.#open()
    return new WriteThroughWriter(this.#patternHost(), target)
  }

  /**
   * A writer that writes this namespace at once and `target` later, in batches (`flushEvery`,
   * default 1s; `batchSize`, default 100), coalescing per key, retrying failed batches with
   * backoff and never dropping a write. `cache.close()` writes everything queued first.
   */
  writeBehind<T = unknown>(
    target: WriteTarget<T>,
    options: WriteBehindOptions<T> = {},
  ): WriteBehindWriter<T> {
    const core = this.#open()
    return new WriteBehindWriter(this.#patternHost(), core.writeBehind, target, options)
  }

  /**
   * Loads `keys` into this namespace with `loader` (a function of one key, or `{ loadMany }`),
   * at most `concurrency` (default 8) at once, skipping cached keys unless `force`. Failures are
   * collected, not thrown; resolves to `{ total, loaded, skipped, missing, failed, errors, aborted }`.
   */
  warm<T = unknown>(
    keys: Iterable<string>,
    loader: WarmLoader<T>,
    options: WarmOptions = {},
  ): Promise<WarmSummary> {
    this.#open()
    return warm(this.#patternHost(), keys, loader, options)
  }

  /** What the write patterns and warm() use of this view: its methods and argument checks. */
  #patternHost(): PatternHost {
    const core = this.#core
    return {
      cache: this,
      checkWrite: (key, value, ttl) => {
        this.#open()
        this.#storeKeyOf(key)
        this.#ttlOf(ttl)
        checkValueSize(core.codec.encodedSize(value), core.limits, key)
      },
      checkKey: (key) => {
        this.#open()
        this.#storeKeyOf(key)
      },
      checkTtl: (ttl) => {
        checkTtl(ttl, core.limits)
      },
      maxBatchSize: core.limits.maxBatchSize,
      logger: core.logger,
    }
  }

  /** Counters of this cache (shared by all its namespace views) and of its store. */
  stats(): CacheStats {
    const core = this.#core
    const { hits, misses } = core.stats
    const storeStats = core.store.stats?.()
    return {
      hits,
      misses,
      hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses),
      sets: core.stats.sets,
      deletes: core.stats.deletes,
      evictions: storeStats?.evictions ?? 0,
      expirations: storeStats?.expirations ?? 0,
      entries: storeStats?.entries ?? 0,
      bytes: storeStats?.bytes ?? 0,
      latency: core.stats.latency(),
      fallback: {
        active: core.fallback?.inFallback ?? false,
        activations: core.fallback?.activations ?? 0,
      },
      rateLimits: { ...core.rateLimitCounters },
      locks: { ...core.lockCounters },
      writeBehind: core.writeBehind.stats(),
      getOrSet: { ...core.getOrSet.counters },
      ...(core.l1 === undefined ? {} : { l1: core.l1.stats() }),
    }
  }

  /**
   * Health of the cache: `ok`; `degraded` while a distributed store is replaced by the memory
   * fallback; `down` once closed or when the store could not be reached with `fallback: 'fail'`.
   */
  health(): CacheHealth {
    const core = this.#core
    const store = core.store.name
    if (core.closed)
      return { status: 'down', reason: 'the cache is closed', since: core.healthSince, store }
    const inner = core.store.health?.()
    if (inner === undefined) return { status: 'ok', since: core.healthSince, store }
    return { ...inner, store }
  }

  /**
   * Resolves once the store is connected or the cache has fallen back to memory; rejects with
   * `StoreUnavailableError` when the store cannot be reached and `fallback` is `'fail'`.
   * Calls made before that wait for it, so awaiting `ready()` is optional.
   */
  async ready(): Promise<void> {
    await Promise.all([this.#core.fallback?.ready(), this.#core.l1?.ready()])
  }

  /** Closes the cache and its store. Idempotent; every later call throws `ClosedError`. */
  async close(): Promise<void> {
    const core = this.#core
    if (core.closing !== undefined) return core.closing
    core.closed = true
    const elections = [...core.elections]
    core.elections.clear()
    const l1 = core.l1
    // Write-behind writers first: every acknowledged write reaches its target before the end.
    core.closing = core.writeBehind
      .close()
      .then(() =>
        Promise.all([...elections.map((election) => election.stop()), closeWatches(core)]),
      )
      .then(() => l1?.close())
      .then(() => core.store.close())
    return core.closing
  }

  /** The store key of `key` in this namespace (checked and escaped; see the keyspace). */
  #storeKeyOf(key: string): string {
    let storeKey = this.#storeKeys.get(key)
    if (storeKey !== undefined) return storeKey
    storeKey = userKey(this.#prefix, key, this.#core.limits.maxKeyBytes)
    if (this.#storeKeys.size >= KEY_MEMO) this.#storeKeys.clear()
    this.#storeKeys.set(key, storeKey)
    return storeKey
  }

  #storeNow(): number {
    const store = this.#core.store
    return store.now === undefined ? Date.now() : store.now()
  }

  #open(): Core {
    if (this.#core.closed)
      throw new ClosedError('this cache is closed; create a new one with createCache()')
    return this.#core
  }

  /** The TTL of a write in ms; `withLinks` allows the `tags` and `dependsOn` options of `set`. */
  #ttlOf(ttlOrOptions: Duration | SetOptions | undefined, withLinks = false): number | undefined {
    if (ttlOrOptions === undefined) return this.#defaultTtlMs
    if (typeof ttlOrOptions === 'object' && ttlOrOptions !== null) {
      for (const name of Object.keys(ttlOrOptions)) {
        if (name !== 'ttl' && !(withLinks && (name === 'tags' || name === 'dependsOn'))) {
          throw InvalidArgumentError.format(
            `option "${name}"`,
            withLinks
              ? 'is not supported by set(); the supported options are ttl, tags and dependsOn'
              : 'is not supported by set(); the supported option is ttl',
          )
        }
      }
      return ttlOrOptions.ttl === undefined
        ? this.#defaultTtlMs
        : checkTtl(ttlOrOptions.ttl, this.#core.limits)
    }
    return checkTtl(ttlOrOptions, this.#core.limits)
  }

  #encode(key: string, value: unknown): Uint8Array {
    const bytes = this.#core.codec.encode(value)
    checkValueSize(bytes.byteLength, this.#core.limits, key)
    return bytes
  }

  /**
   * Runs a store call, turning anything but a flowcache error into `StoreUnavailableError`.
   * Unless `timed` is false, the call is timed (sampled, for `stats().latency`) and reported on
   * the `flowcache:operation` channel (every call, while it has subscribers), with `outcomeOf`
   * deciding hit or miss; a new operation is instrumented by going through here.
   */
  async #call<R>(
    operation: string,
    run: () => Promise<R>,
    timed = true,
    outcomeOf?: (result: R) => OperationOutcome,
  ): Promise<R> {
    const stats = this.#core.stats
    // get and set time themselves (L1 hits included), so they pass timed = false.
    const observed = timed && operationChannel.hasSubscribers
    const sampled = timed && stats.shouldSample()
    const start = sampled || observed ? performance.now() : -1
    let result: R
    try {
      result = await run()
    } catch (error) {
      const failure =
        error instanceof FlowcacheError
          ? error
          : new StoreUnavailableError(
              `${this.#core.store.name} store failed during ${operation}: ${error instanceof Error ? error.message : String(error)}`,
              { cause: error },
            )
      if (observed) this.#report(operation, start, 'error', failure)
      throw failure
    }
    if (sampled) stats.recordLatency(operation, performance.now() - start)
    if (observed) this.#report(operation, start, outcomeOf === undefined ? 'ok' : outcomeOf(result))
    return result
  }

  /** Publishes one call that started at `start` (`performance.now()`) on `flowcache:operation`. */
  #report(operation: string, start: number, outcome: OperationOutcome, error?: unknown): void {
    const core = this.#core
    const event: OperationEvent = {
      cache: core.root ?? this,
      operation,
      namespace: this.#path,
      store: core.store.name,
      outcome,
      durationMs: performance.now() - start,
    }
    if (outcome === 'error') {
      event.error = error
      if (error instanceof FlowcacheError) event.errorCode = error.code
    }
    operationChannel.publish(event)
  }
}

/** A tracked namespace as one view sees it: the path of the view below it. */
interface ViewTracker {
  readonly tracker: NamespaceTracker
  readonly below: readonly string[]
  readonly belowId: string
}

/** Outcome of a single-key read: `hit` when it found something. */
function found(result: unknown): OperationOutcome {
  return result === undefined || result === false ? 'miss' : 'hit'
}

function positiveMs(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isFinite(value) || value <= 0) {
    throw InvalidArgumentError.format(name, `must be a positive number of ms; got ${String(value)}`)
  }
  return value
}

/**
 * Creates a cache. Without a store it uses an in-process {@link memoryStore}, which can be
 * given the `clock` and `codec` options too.
 */
export function createCache(options: CacheOptions = {}): Cache {
  const limits = resolveLimits(options.limits)
  const quotas = resolveQuotas(options.quotas)
  const topKeySlots = checkSlots(options.topKeySlots, 'topKeySlots')
  const topKeySampleEvery = checkSampleEvery(options.topKeySampleEvery, 'topKeySampleEvery')
  const clock = options.clock ?? systemClock
  let codec = options.codec ?? jsonCodec
  const root = checkRoot(options.prefix ?? 'fc')
  const logger = options.logger ?? stderrLogger
  const given: Store = options.store ?? memoryStore({ clock, codec })
  const tracing = options.tracing ?? true
  if (typeof tracing !== 'boolean') {
    throw InvalidArgumentError.format('tracing', `must be true or false; got ${String(tracing)}`)
  }
  const fallbackMode = options.fallback ?? 'memory'
  if (fallbackMode !== 'memory' && fallbackMode !== 'fail') {
    throw InvalidArgumentError.format(
      'fallback',
      `must be 'memory' or 'fail'; got ${String(fallbackMode)}`,
    )
  }
  // Values served by the memory fallback must never reach the L1 tier, and L1 starts empty when
  // the cache switches back to the store.
  const tier: { l1?: L1Tier; root?: Cache } = {}
  const fallback =
    given.capabilities.distributed && given.connect !== undefined
      ? new FallbackStore(given, {
          mode: fallbackMode,
          logger,
          onChange: (state) => {
            tier.l1?.setSuspended(state === 'fallback')
            if (fallbackChannel.hasSubscribers && tier.root !== undefined) {
              fallbackChannel.publish({ cache: tier.root, store: given.name, state })
            }
          },
          reconnectBaseMs: positiveMs(options.fallbackRetry?.baseMs, 'fallbackRetry.baseMs', 250),
          reconnectMaxMs: positiveMs(options.fallbackRetry?.maxMs, 'fallbackRetry.maxMs', 5000),
          clock,
        })
      : undefined
  const store: Store = fallback ?? given
  const local = store.local
  if (local !== undefined) {
    if (options.codec !== undefined && options.codec !== local.codec) {
      throw InvalidArgumentError.format(
        'codec',
        `differs from the codec of the ${store.name} store; give the codec to the store only`,
      )
    }
    codec = local.codec
  }
  const defaultTtlMs =
    options.defaultTtl === undefined
      ? undefined
      : checkTtl(options.defaultTtl, limits, 'defaultTtl')
  if (
    (quotas.default !== undefined || quotas.namespaces.size > 0) &&
    (store.setQuota === undefined || !store.capabilities.quotas)
  ) {
    throw InvalidArgumentError.format(
      'quotas',
      `need a store with namespace quotas; the ${store.name} store has none`,
    )
  }
  const l1 =
    options.l1 === undefined ? undefined : new L1Tier(given, codec, clock, logger, root, options.l1)
  tier.l1 = l1
  if (l1 !== undefined && fallback?.inFallback === true) l1.setSuspended(true)
  const core: Core = {
    store,
    fallback,
    l1,
    logger,
    elections: new Set(),
    rateLimitCounters: { allowed: 0, denied: 0, failedOpen: 0, failedClosed: 0, conflicts: 0 },
    lockCounters: { acquired: 0, contended: 0, extended: 0, released: 0, lost: 0, failed: 0 },
    root: undefined,
    codec,
    limits,
    stats: new StatsRecorder(),
    writeBehind: new WriteBehindRegistry(),
    getOrSet: new GetOrSetState(),
    healthSince: clock.now(),
    rootPrefix: rootPrefix(root),
    quotas,
    topKeySlots,
    topKeySampleEvery,
    trackers: new Map(),
    trackerGeneration: 0,
    quotasSet: new Map(),
    closed: false,
    closing: undefined,
  }
  const cache = new Cache(core, rootPrefix(root), defaultTtlMs, [])
  tier.root = cache
  if (tracing) enableTracing(cache)
  return cache
}
