/**
 * The Store contract: what a backend must do for flowcache. Bytes in, bytes out; every write
 * returns a revision; `create` (write-if-absent), `compareAndSet` and fenced `delete` are the
 * primitives that dedup, locks, leases and rate limits are built on.
 *
 * Keys are store keys from the keyspace (`core/keyspace.ts`): already escaped, namespaced and
 * length-checked by the cache. A store may translate them further to its native grammar.
 * A miss or a lost race is a return value; a backend fault is a thrown `StoreUnavailableError`.
 */
import type { Codec } from './codec.js'

/** Opaque revision of a stored entry; changes on every write. Compare only for equality. */
export type Revision = string

/** One stored entry as read back from a store. */
export interface StoreEntry {
  /** The stored bytes. */
  value: Uint8Array
  /** Revision of this write. */
  revision: Revision
  /** Expiry deadline in ms since the epoch (store clock), or `null` when the entry never expires. */
  expiresAt: number | null
}

/** Options of a single write. */
export interface StoreWriteOptions {
  /** Time to live in milliseconds: a positive finite number (the cache passes whole ms); omitted = no expiry. */
  ttlMs?: number
}

/** One item of `setMany`. */
export interface StoreWriteItem extends StoreWriteOptions {
  key: string
  value: Uint8Array
}

/** Options of `list`. */
export interface StoreListOptions {
  /** Stop after this many keys. Default: no limit. */
  limit?: number
}

/** Limits of a namespace quota, enforced by the store on user entries under one prefix. */
export interface QuotaLimits {
  /** At most this many user entries under the prefix; the least recently used go first. */
  maxEntries?: number
  /** At most this many bytes of user entries (encoded size) under the prefix; a soft limit. */
  maxBytes?: number
}

/** Usage of one namespace quota; see `Store.quotaUsage`. */
export interface QuotaUsage {
  /** User entries under the prefix now. */
  entries: number
  /** Encoded bytes of those entries now. */
  bytes: number
  /** Entries evicted to keep the prefix within its limits, since the quota was first set. */
  evictions: number
}

/** Counters a store keeps about itself. */
export interface StoreStats {
  /** Entries stored now (user and system). */
  entries: number
  /** Encoded bytes of the stored values now. */
  bytes: number
  /** Entries removed to respect `maxEntries` / `maxBytes` or a namespace quota. */
  evictions: number
  /** Entries removed because their TTL passed. */
  expirations: number
}

/** Health of a store: `ok`, `degraded` (serving from a fallback) or `down`, with why and since when. */
export interface StoreHealth {
  status: 'ok' | 'degraded' | 'down'
  /** Why the status is not `ok`. */
  reason?: string
  /** Since when (ms since the epoch) this status holds. */
  since: number
}

/** Tells other replicas to drop their L1 copies of some keys. */
export interface Invalidation {
  /** Id of the cache that published it; a cache ignores its own messages. */
  origin: string
  /** Store keys whose L1 copies must go. */
  keys?: string[]
  /** Store-key prefixes whose L1 copies must go (after `clear()`). */
  prefixes?: string[]
}

/** What a bus subscriber is told. */
export interface InvalidationListener {
  /** A message from another replica. */
  message(invalidation: Invalidation): void
  /** The subscription broke: messages may be lost from now until `resumed`. */
  interrupted(reason: string): void
  /** The subscription is live again. */
  resumed(): void
}

/**
 * The pub/sub channel replicas use to invalidate each other's L1 tier: Redis channels, NATS
 * subjects. At-most-once: a subscriber that was disconnected must assume it missed messages.
 */
export interface InvalidationBus {
  /** Sends a message to every other subscriber. */
  publish(invalidation: Invalidation): Promise<void>
  /** Starts delivering messages to `listener`; resolves once subscribed. */
  subscribe(listener: InvalidationListener): Promise<void>
  /** Unsubscribes and releases the bus connection. Idempotent. */
  close(): Promise<void>
}

/** What a store can do; the cache and the contract suite read these instead of guessing. */
export interface StoreCapabilities {
  /** Data outlives the process (sqlite, redis, nats). */
  readonly persistent: boolean
  /** Several processes can share the data (redis, nats). */
  readonly distributed: boolean
  /** `native`: the backend expires entries itself; `emulated`: the store enforces TTL on read and sweeps. */
  readonly ttl: 'native' | 'emulated'
  /** The store honours an injected `Clock` for TTL, so tests can move time instead of sleeping. */
  readonly injectableClock: boolean
  /** `setQuota` is supported. */
  readonly quotas: boolean
  /** `local` fast path is available (in-process stores). */
  readonly local: boolean
  /**
   * Versions of a user key that `history()` returns at most (the current one included): the
   * store's `history` option. Omitted (or 0) when the store has no `history()`.
   */
  readonly history?: number
  /**
   * Which writes `watch()` reports: `process` = only those made through this store object (an
   * in-process store); `shared` = those of every process sharing the data. Omitted when the
   * store has no `watch()`.
   */
  readonly watch?: 'process' | 'shared'
  /** `watch()` reports `expire` events (an entry removed because its TTL passed). */
  readonly watchExpiry?: boolean
}

/** What happened to a user entry: written, deleted (or evicted), or removed because its TTL passed. */
export type StoreOperation = 'set' | 'delete' | 'expire'

/** One version of a user key, as kept for `history()`. */
export interface StoreVersion {
  /** What this version was. */
  operation: StoreOperation
  /**
   * Revision of this version: the entry's revision for `set`, the marker's revision for
   * `delete` and `expire`. `undefined` for an `expire` the store infers from a passed deadline
   * (the backend removed the entry without leaving a marker).
   */
  revision: Revision | undefined
  /** When it happened, in ms since the epoch (store clock; for `expire`, the deadline). */
  at: number
  /** The stored bytes for `set`; `undefined` for `delete` and `expire`. */
  value: Uint8Array | undefined
  /** Expiry deadline of a `set` written with a TTL, else `null`. */
  expiresAt: number | null
}

/** Options of `history()`. */
export interface StoreHistoryOptions {
  /** Return at most this many versions, the most recent ones. @default all the store keeps */
  limit?: number
}

/** A change to a user entry, as reported by `watch()`. */
export interface StoreChange {
  type: StoreOperation
  /** Store key of the entry. */
  key: string
  /** Revision of the write or marker, when the store knows it. */
  revision?: Revision
  /** The written bytes of a `set`, when the store has them at hand. */
  value?: Uint8Array
  /** When it happened, in ms since the epoch (store clock). */
  at: number
}

/** What a `watch()` subscriber is told. */
export interface StoreWatchListener {
  /** One change under the watched prefix, in the order the store applied them per key. */
  change(change: StoreChange): void
  /** The subscription broke: changes may be lost from now until `resumed`. */
  interrupted?(reason: string): void
  /** The subscription is live again. */
  resumed?(): void
}

/** A live `watch()` subscription. */
export interface StoreWatch {
  /** Stops delivering changes and releases what the subscription holds. Idempotent. */
  close(): Promise<void>
}

/**
 * Fast path of in-process stores: they may keep decoded values so that a hit costs no decoding.
 * Entries written through `local` and through the byte API are the same entries. It serves user
 * keys only (kind `k`); system keys go through the byte API.
 */
export interface LocalAccess {
  /**
   * The codec the store uses between its decoded values and the byte API. A cache over this
   * store must use the same codec.
   */
  readonly codec: Codec
  /** The decoded value, or `undefined` on a miss or an expired entry. */
  read(key: string): unknown
  /** Whether a live entry exists. */
  has(key: string): boolean
  /**
   * Stores a value the cache has validated; `sizeBytes` is its encoded size.
   * @returns the new revision
   */
  write(key: string, value: unknown, sizeBytes: number, ttlMs: number | undefined): Revision
}

/** A flowcache store. Implement it, then prove it with `runStoreContract` from `flowcache/testing`. */
export interface Store {
  /** Store kind (`memory`, `sqlite`, `redis`, `nats`, …). */
  readonly name: string
  /** What this store can do. */
  readonly capabilities: StoreCapabilities
  /** Present when `capabilities.local` is true. */
  readonly local?: LocalAccess

  /** Reads one entry; `undefined` when missing or expired. */
  get(key: string): Promise<StoreEntry | undefined>
  /** Reads many entries in one round trip where the backend allows; same order as `keys`. */
  getMany(keys: readonly string[]): Promise<Array<StoreEntry | undefined>>
  /**
   * Reads like `get` without counting as a use: the entry's place in the LRU order (of the
   * store and of a namespace quota) stays where it was. For metadata reads such as `ttl()` and
   * listings; optional, the cache falls back to `get`.
   */
  peek?(key: string): Promise<StoreEntry | undefined>
  /** Writes an entry unconditionally. */
  set(key: string, value: Uint8Array, options?: StoreWriteOptions): Promise<Revision>
  /** Writes many entries; revisions in the same order. */
  setMany(items: readonly StoreWriteItem[]): Promise<Revision[]>
  /** Writes only if no live entry exists (an expired one counts as absent); `undefined` if one does. */
  create(key: string, value: Uint8Array, options?: StoreWriteOptions): Promise<Revision | undefined>
  /** Writes only if the live entry's revision is `expected`; `undefined` on conflict or when missing. */
  compareAndSet(
    key: string,
    value: Uint8Array,
    expected: Revision,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined>
  /**
   * Deletes an entry; with `expected`, only if its revision is that one (fenced delete, so a
   * lock holder whose lease was taken over cannot delete the new holder's key).
   * @returns whether an entry was deleted
   */
  delete(key: string, options?: { expected?: Revision }): Promise<boolean>
  /** Deletes many entries; returns how many existed. */
  deleteMany(keys: readonly string[]): Promise<number>
  /**
   * Adds `by` to a numeric entry encoded by `codec`, creating it with `by` (and `ttlMs`) when
   * missing; the TTL of an existing entry is kept. Optional: the cache falls back to a
   * compare-and-set loop when a store lacks it.
   */
  increment?(key: string, by: number, codec: Codec, options?: StoreWriteOptions): Promise<number>
  /** Store keys (live entries, user and system) that start with `prefix`. */
  list(prefix: string, options?: StoreListOptions): AsyncIterable<string>
  /** Deletes every user entry whose key starts with `prefix`; system keys stay. Returns how many. */
  clear(prefix: string): Promise<number>
  /**
   * Sets or replaces the quota of user entries under `prefix`. Only when `capabilities.quotas`.
   * Stores shared by several processes may record it asynchronously; until the promise settles
   * the quota is enforced by this process's own writes at least.
   */
  setQuota?(prefix: string, limits: QuotaLimits): void | Promise<void>
  /**
   * What the user entries under a quota's `prefix` use now, as the store accounts them (shared by
   * every process on a distributed store). Only when `capabilities.quotas`; `undefined` when no
   * quota is set on `prefix`.
   */
  quotaUsage?(prefix: string): Promise<QuotaUsage | undefined>
  /** Expires due entries now (emulated TTL); the store also does it on its own schedule. */
  prune?(): Promise<number>
  /** Current counters. */
  stats?(): StoreStats
  /** The store's current time in ms since the epoch, the clock `expiresAt` is measured on. @default Date.now() */
  now?(): number
  /**
   * Connects to the backend, resolving once it answers; rejects with `StoreUnavailableError`
   * when it cannot be reached within the store's connect timeout. Called at start-up and, after a
   * fallback, again and again until it succeeds. Stores without a connection omit it.
   */
  connect?(): Promise<void>
  /**
   * Creates the invalidation bus on the store's own pub/sub, for the L1 tier. `channel` is a
   * name made of `[A-Za-z0-9_-]`, the same for every replica of one cache.
   */
  createBus?(channel: string): InvalidationBus
  /**
   * Versions of the user key `key`, oldest first: sets with their values, deletes and expiries as
   * markers, at most `capabilities.history` of them. Empty when the store knows nothing of the
   * key. Present when `capabilities.history` is set.
   */
  history?(key: string, options?: StoreHistoryOptions): Promise<StoreVersion[]>
  /**
   * Reports changes to user entries whose store key starts with `prefix` to `listener`, until
   * the returned watch is closed; resolves once changes are being delivered. Present when
   * `capabilities.watch` is set. Never reports system keys.
   */
  watch?(prefix: string, listener: StoreWatchListener): Promise<StoreWatch>
  /** Health of the store itself, when it can tell (a wrapper in fallback mode reports `degraded`). */
  health?(): StoreHealth
  /** Releases connections and timers. Idempotent. */
  close(): Promise<void>
}
