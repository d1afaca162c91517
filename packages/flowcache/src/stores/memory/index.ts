/**
 * The in-process memory store: the default store of `createCache()`.
 *
 * Entries live in two maps: user entries (LRU-evicted by count and bytes, and by namespace
 * quotas) and system entries (locks, leases, limiter state), which are never evicted. A Map's
 * insertion order is the recency order: a read moves an entry to the end, eviction takes from
 * the front. Expiry is exact: every read checks the deadline against the store clock, and a
 * sweep over a deadline heap removes expired entries in the background (no timer per key).
 *
 * Values written through the `local` fast path are kept decoded, so a hit costs no decoding;
 * the `values` option decides how callers are kept from mutating what is stored.
 */
import { incremented, positiveInteger } from '../../core/checks.js'
import { copyValue, freezeValue, jsonCodec } from '../../core/codec.js'
import { systemClock, type Clock } from '../../core/clock.js'
import { reportEviction } from '../../core/diagnostics.js'
import { isUserKey, underPrefixes } from '../../core/keyspace.js'
import { ClosedError, InvalidArgumentError, ValueTooLargeError } from '../../errors.js'
import { TOMBSTONE_TTL_MS, Watchers, historyDepth, historyLimit, lastVersions } from '../changes.js'
import type { Codec } from '../../types/codec.js'
import type {
  LocalAccess,
  QuotaLimits,
  QuotaUsage,
  Revision,
  Store,
  StoreCapabilities,
  StoreEntry,
  StoreHistoryOptions,
  StoreListOptions,
  StoreOperation,
  StoreStats,
  StoreVersion,
  StoreWatch,
  StoreWatchListener,
  StoreWriteItem,
  StoreWriteOptions,
} from '../../types/store.js'

/** How the memory store keeps callers from changing stored values through the objects they get back. */
export const ValueIsolation = {
  /** Objects and arrays are copied once on write and deep-frozen; reads return that frozen copy (fast). Values holding a Map, Set, Date or bytes, which freezing cannot protect, are copied on every read. */
  frozen: 'frozen',
  /** A copy on write and a fresh copy on every read: returned values may be mutated freely. */
  copied: 'copied',
  /** The caller's object is stored and returned as is: fastest, and the caller promises never to mutate it. */
  shared: 'shared',
} as const
/** One of the {@link ValueIsolation} modes. */
export type ValueIsolation = (typeof ValueIsolation)[keyof typeof ValueIsolation]

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /** Most user entries kept; the least recently used go first. System keys do not count. @default 50_000 */
  maxEntries?: number
  /** Soft limit on the encoded bytes (keys + values) of user entries; the least recently used go first. @default 32 MiB */
  maxBytes?: number
  /** Time source for TTL. @default the system clock */
  clock?: Clock
  /** How returned values are protected from mutation. @default 'frozen' */
  values?: ValueIsolation
  /** Codec used when an entry written as a value is read through the byte API, and the reverse. @default jsonCodec */
  codec?: Codec
  /** How often expired entries are swept in the background, in ms; `0` turns the sweep off (reads still never return them). @default 1000 */
  sweepIntervalMs?: number
  /**
   * Versions kept per user key for `history()`, the current one included, up to 64 (flowgen's
   * `history`). Each version holds its value, so history multiplies what a key costs; `0` keeps
   * no log, and writes cost what they cost without history. @default 0
   */
  history?: number
}

/** Entry holds bytes written through the byte API, decoded on the first local read. */
const ENCODED = 1
/** Entry value is not fully frozen: hand out copies. */
const COPY_ON_READ = 2
/** Entry was read or rewritten since the eviction hand last passed it: it gets a second chance. */
const REFERENCED = 4

class Entry {
  constructor(
    public value: unknown,
    public size: number,
    public expiresAt: number,
    public revision: number,
    public flags: number,
    public quotas: QuotaState[] | null,
  ) {}
}

/** One logged version of a user key; `value` is kept as stored (decoded, or bytes when `encoded`). */
interface LoggedVersion {
  operation: StoreOperation
  revision: string
  at: number
  value: unknown
  encoded: boolean
  expiresAt: number | null
}

class QuotaState {
  entries = 0
  bytes = 0
  /** Entries this quota evicted since it was first set. */
  evictions = 0
  /** User entries under the prefix, least recently used first (exact LRU). */
  readonly order = new Map<string, Entry>()
  /** Where eviction of this quota resumes; see `MemoryStore.#hand`. */
  hand: Iterator<[string, Entry]> = this.order.entries()
  constructor(
    readonly prefix: string,
    public maxEntries: number,
    public maxBytes: number,
  ) {}
}

const DEFAULT_MAX_ENTRIES = 50_000
const DEFAULT_MAX_BYTES = 32 * 1024 * 1024
/** Expired entries removed per background sweep at most, so one sweep never blocks for long. */
const SWEEP_BUDGET = 20_000
/** Most deleted keys whose log is kept (each for up to an hour), so deletes cannot grow memory. */
const MAX_TOMBSTONES = 10_000

function checkTtlMs(ttlMs: number | undefined): void {
  if (ttlMs !== undefined && !(ttlMs > 0 && Number.isFinite(ttlMs))) {
    throw InvalidArgumentError.format('ttlMs', `must be a positive number; got ${String(ttlMs)}`)
  }
}

/** The in-process store. Create it with {@link memoryStore}. */
export class MemoryStore implements Store {
  readonly name = 'memory'
  readonly capabilities: StoreCapabilities
  readonly local: LocalAccess

  readonly #user = new Map<string, Entry>()
  readonly #system = new Map<string, Entry>()
  readonly #quotas = new Map<string, QuotaState>()
  readonly #clock: Clock
  readonly #codec: Codec
  readonly #isolation: ValueIsolation
  readonly #maxEntries: number
  readonly #maxBytes: number
  #userBytes = 0
  #systemBytes = 0
  #revision = 0
  // The eviction hand: one live iterator over the user map. Everything before it has already
  // been evicted or moved to the end, so it never needs to restart from the front, where a fresh
  // iterator would step over every slot deleted since the table was last compacted.
  #hand: Iterator<[string, Entry]> = this.#user.entries()
  #evictions = 0
  #expirations = 0
  #closed = false
  // Deadline heap as two parallel arrays (cheaper than an object per node). Items go stale when
  // an entry is rewritten or deleted; they are skipped when popped and dropped on rebuild.
  #heapAt: number[] = []
  #heapKey: string[] = []
  readonly #sweepTimer: NodeJS.Timeout | undefined
  /** Versions kept per user key; 0 = no log. */
  readonly #depth: number
  /** Version logs of user keys (live or deleted), oldest version first. */
  readonly #logs = new Map<string, LoggedVersion[]>()
  /** Keys whose log ends with a delete or expire marker → the marker's time; oldest first. */
  readonly #tombstones = new Map<string, number>()
  readonly #watchers = new Watchers()

  constructor(options: MemoryStoreOptions = {}) {
    this.#depth = historyDepth(options.history, 0)
    this.capabilities = {
      persistent: false,
      distributed: false,
      ttl: 'emulated',
      injectableClock: true,
      quotas: true,
      local: true,
      ...(this.#depth > 0 ? { history: this.#depth } : {}),
      watch: 'process',
      watchExpiry: true,
    }
    this.#maxEntries = positiveInteger(options.maxEntries, 'maxEntries', DEFAULT_MAX_ENTRIES)
    this.#maxBytes = positiveInteger(options.maxBytes, 'maxBytes', DEFAULT_MAX_BYTES)
    this.#clock = options.clock ?? systemClock
    this.#codec = options.codec ?? jsonCodec
    const isolation = options.values ?? 'frozen'
    if (!Object.values(ValueIsolation).includes(isolation)) {
      throw InvalidArgumentError.format(
        'values',
        `must be one of ${Object.values(ValueIsolation).join(', ')}; got ${String(isolation)}`,
      )
    }
    this.#isolation = isolation
    const sweepMs = options.sweepIntervalMs ?? 1000
    if (!Number.isFinite(sweepMs) || sweepMs < 0) {
      throw InvalidArgumentError.format('sweepIntervalMs', `must be >= 0; got ${String(sweepMs)}`)
    }
    if (sweepMs > 0) {
      this.#sweepTimer = setInterval(() => this.#sweep(SWEEP_BUDGET), sweepMs)
      this.#sweepTimer.unref()
    }
    this.local = {
      codec: this.#codec,
      read: (key) => this.#readValue(key),
      has: (key) => this.#live(key) !== undefined,
      write: (key, value, sizeBytes, ttlMs) => {
        this.#checkOpen()
        if (!isUserKey(key)) {
          throw InvalidArgumentError.format(
            'key',
            `${key} is not a user key; local writes are for user keys only`,
          )
        }
        const [stored, flags] = this.#isolate(value)
        return this.#write(key, stored, sizeBytes + key.length, ttlMs, flags)
      },
    }
  }

  // ---- byte API -------------------------------------------------------------------------------

  async get(key: string): Promise<StoreEntry | undefined> {
    this.#checkOpen()
    const entry = this.#used(key)
    return entry === undefined ? undefined : this.#toStoreEntry(entry)
  }

  async peek(key: string): Promise<StoreEntry | undefined> {
    this.#checkOpen()
    const entry = this.#live(key)
    return entry === undefined ? undefined : this.#toStoreEntry(entry)
  }

  async getMany(keys: readonly string[]): Promise<Array<StoreEntry | undefined>> {
    this.#checkOpen()
    return keys.map((key) => {
      const entry = this.#used(key)
      return entry === undefined ? undefined : this.#toStoreEntry(entry)
    })
  }

  async set(key: string, value: Uint8Array, options?: StoreWriteOptions): Promise<Revision> {
    this.#checkOpen()
    return this.#writeBytes(key, value, options?.ttlMs)
  }

  async setMany(items: readonly StoreWriteItem[]): Promise<Revision[]> {
    this.#checkOpen()
    // All or nothing: every item is checked before the first one is written.
    for (const item of items) {
      checkTtlMs(item.ttlMs)
      if (isUserKey(item.key)) {
        const quotas = this.#quotas.size > 0 ? this.#quotasOf(item.key) : null
        this.#checkFits(item.key, item.value.byteLength + item.key.length, quotas)
      }
    }
    return items.map((item) => this.#writeBytes(item.key, item.value, item.ttlMs))
  }

  async create(
    key: string,
    value: Uint8Array,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    this.#checkOpen()
    if (this.#live(key) !== undefined) return undefined
    return this.#writeBytes(key, value, options?.ttlMs)
  }

  async compareAndSet(
    key: string,
    value: Uint8Array,
    expected: Revision,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    this.#checkOpen()
    const entry = this.#live(key)
    if (entry === undefined || String(entry.revision) !== expected) return undefined
    return this.#writeBytes(key, value, options?.ttlMs)
  }

  async delete(key: string, options?: { expected?: Revision }): Promise<boolean> {
    this.#checkOpen()
    const entry = this.#live(key)
    if (entry === undefined) return false
    if (options?.expected !== undefined && String(entry.revision) !== options.expected) return false
    this.#remove(key, entry)
    this.#changed('delete', key, entry)
    return true
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    this.#checkOpen()
    let deleted = 0
    for (const key of keys) {
      const entry = this.#live(key)
      if (entry !== undefined) {
        this.#remove(key, entry)
        this.#changed('delete', key, entry)
        deleted++
      }
    }
    return deleted
  }

  async increment(
    key: string,
    by: number,
    codec: Codec,
    options?: StoreWriteOptions,
  ): Promise<number> {
    this.#checkOpen()
    const entry = this.#live(key)
    if (entry === undefined) {
      this.#write(key, by, codec.encodedSize(by) + key.length, options?.ttlMs, 0)
      return by
    }
    const current = entry.flags & ENCODED ? codec.decode(entry.value as Uint8Array) : entry.value
    const next = incremented(current, by)
    const remaining = entry.expiresAt === 0 ? undefined : entry.expiresAt - this.#clock.now()
    this.#write(key, next, codec.encodedSize(next) + key.length, remaining, 0)
    return next
  }

  async *list(prefix: string, options?: StoreListOptions): AsyncIterable<string> {
    this.#checkOpen()
    const limit = options?.limit ?? Number.POSITIVE_INFINITY
    if (limit <= 0) return
    const now = this.#clock.now()
    // Snapshot first: the caller may write or delete while iterating.
    const found: string[] = []
    for (const map of [this.#user, this.#system]) {
      for (const [key, entry] of map) {
        if (!key.startsWith(prefix) || (entry.expiresAt !== 0 && entry.expiresAt <= now)) continue
        found.push(key)
        if (found.length >= limit) break
      }
      if (found.length >= limit) break
    }
    yield* found
  }

  async clear(prefix: string): Promise<number> {
    this.#checkOpen()
    let removed = 0
    const now = this.#clock.now()
    for (const [key, entry] of this.#user) {
      if (!key.startsWith(prefix)) continue
      this.#remove(key, entry)
      // An entry past its deadline was already gone for every reader: it is an expiration.
      const expired = entry.expiresAt !== 0 && entry.expiresAt <= now
      if (expired) this.#expirations++
      else removed++
      // A cleared namespace is forgotten, history included; watchers still see each key go.
      this.#forget(key)
      if (this.#watchers.active) this.#notify(expired ? 'expire' : 'delete', key, entry, now)
    }
    return removed
  }

  setQuota(prefix: string, limits: QuotaLimits): void {
    this.#checkOpen()
    const maxEntries = positiveInteger(limits.maxEntries, 'maxEntries', Number.MAX_SAFE_INTEGER)
    const maxBytes = positiveInteger(limits.maxBytes, 'maxBytes', Number.MAX_SAFE_INTEGER)
    const existing = this.#quotas.get(prefix)
    if (existing !== undefined) {
      existing.maxEntries = maxEntries
      existing.maxBytes = maxBytes
      this.#enforceQuota(existing)
      return
    }
    const quota = new QuotaState(prefix, maxEntries, maxBytes)
    this.#quotas.set(prefix, quota)
    for (const [key, entry] of this.#user) {
      if (!key.startsWith(prefix)) continue
      ;(entry.quotas ??= []).push(quota)
      quota.order.set(key, entry)
      quota.entries++
      quota.bytes += entry.size
    }
    this.#enforceQuota(quota)
  }

  /**
   * Entries, bytes and evictions of the quota on `prefix`; `undefined` when none is set. Entries
   * past their deadline count until a read or the sweep removes them.
   */
  async quotaUsage(prefix: string): Promise<QuotaUsage | undefined> {
    this.#checkOpen()
    const quota = this.#quotas.get(prefix)
    if (quota === undefined) return undefined
    return { entries: quota.entries, bytes: quota.bytes, evictions: quota.evictions }
  }

  async prune(): Promise<number> {
    this.#checkOpen()
    return this.#sweep(Number.POSITIVE_INFINITY)
  }

  /**
   * Versions of a user key, oldest first: up to `history` of them (the store option), sets with
   * their value and deletes and expiries as markers. A deleted key's log is kept for an hour
   * (10 000 deleted keys at most); `clear()` and eviction drop the logs of the keys they remove.
   */
  async history(key: string, options?: StoreHistoryOptions): Promise<StoreVersion[]> {
    this.#checkOpen()
    const limit = historyLimit(options)
    if (this.#depth === 0) {
      throw InvalidArgumentError.format(
        'history',
        'is off in this memory store; create it with memoryStore({ history: n }) to keep n versions per key',
      )
    }
    this.#live(key) // an entry past its deadline becomes its expire marker now
    this.#pruneTombstones(this.#clock.now())
    const log = this.#logs.get(key) ?? []
    return lastVersions(log, limit).map((version) => ({
      operation: version.operation,
      revision: version.revision,
      at: version.at,
      value:
        version.operation !== 'set'
          ? undefined
          : version.encoded
            ? (version.value as Uint8Array).slice()
            : this.#codec.encode(version.value),
      expiresAt: version.expiresAt,
    }))
  }

  /**
   * Reports changes to user entries under `prefix` made through this store: writes (also through
   * the `local` path), deletes, clears, evictions (as `delete`) and expiries (when a read or the
   * sweep removes the entry, so within `sweepIntervalMs` of its deadline).
   */
  async watch(prefix: string, listener: StoreWatchListener): Promise<StoreWatch> {
    this.#checkOpen()
    return this.#watchers.add(prefix, listener)
  }

  now(): number {
    return this.#clock.now()
  }

  stats(): StoreStats {
    return {
      entries: this.#user.size + this.#system.size,
      bytes: this.#userBytes + this.#systemBytes,
      evictions: this.#evictions,
      expirations: this.#expirations,
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer)
    this.#watchers.interruptAll('the memory store was closed')
    this.#logs.clear()
    this.#tombstones.clear()
    this.#user.clear()
    this.#hand = this.#user.entries()
    this.#system.clear()
    this.#quotas.clear()
    this.#heapAt = []
    this.#heapKey = []
    this.#userBytes = 0
    this.#systemBytes = 0
  }

  // ---- internals ------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('this memory store is closed; create a new one')
  }

  /** The live entry under `key`, expiring it on the spot when its deadline has passed. */
  #live(key: string): Entry | undefined {
    const entry = (isUserKey(key) ? this.#user : this.#system).get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt !== 0 && entry.expiresAt <= this.#clock.now()) {
      this.#remove(key, entry)
      this.#expirations++
      this.#changed('expire', key, entry)
      return undefined
    }
    return entry
  }

  /** Like `#live`, and a read: the entry becomes the most recently used. */
  #used(key: string): Entry | undefined {
    const entry = this.#live(key)
    if (entry !== undefined && isUserKey(key)) this.#touch(key, entry)
    return entry
  }

  /** A user entry's value (the local path serves user keys only). */
  #readValue(key: string): unknown {
    this.#checkOpen()
    const entry = this.#user.get(key)
    if (entry === undefined) return undefined
    if (entry.expiresAt !== 0 && entry.expiresAt <= this.#clock.now()) {
      this.#remove(key, entry)
      this.#expirations++
      this.#changed('expire', key, entry)
      return undefined
    }
    this.#touch(key, entry)
    if (entry.flags & ENCODED) {
      const decoded = this.#codec.decode(entry.value as Uint8Array)
      // A decoded value is a fresh object nobody else holds: isolate without another copy.
      entry.value = decoded
      const copyOnRead =
        this.#isolation !== 'shared' && (this.#isolation === 'copied' || !freezeValue(decoded))
      entry.flags = (entry.flags & REFERENCED) | (copyOnRead ? COPY_ON_READ : 0)
    }
    return entry.flags & COPY_ON_READ ? copyValue(entry.value) : entry.value
  }

  /**
   * Marks an entry as recently used. Store-wide eviction is CLOCK (second chance): a hit only
   * sets a bit, and the eviction hand moves a marked entry to the back instead of evicting it,
   * so hits cost no Map writes. Quota orders stay exact LRU: their entries move on every hit.
   */
  #touch(key: string, entry: Entry): void {
    entry.flags |= REFERENCED
    if (entry.quotas !== null) {
      for (const quota of entry.quotas) {
        quota.order.delete(key)
        quota.order.set(key, entry)
      }
    }
  }

  #isolate(value: unknown): [unknown, number] {
    if (typeof value !== 'object' || value === null || this.#isolation === 'shared')
      return [value, 0]
    const copy = copyValue(value)
    if (this.#isolation === 'copied') return [copy, COPY_ON_READ]
    return [copy, freezeValue(copy) ? 0 : COPY_ON_READ]
  }

  #writeBytes(key: string, value: Uint8Array, ttlMs: number | undefined): Revision {
    // Keep our own copy: the caller may reuse its buffer (Buffer#slice would only be a view).
    return this.#write(key, new Uint8Array(value), value.byteLength + key.length, ttlMs, ENCODED)
  }

  #write(
    key: string,
    value: unknown,
    size: number,
    ttlMs: number | undefined,
    flags: number,
  ): Revision {
    checkTtlMs(ttlMs)
    const user = isUserKey(key)
    const map = user ? this.#user : this.#system
    const quotas = user && this.#quotas.size > 0 ? this.#quotasOf(key) : null
    if (user) this.#checkFits(key, size, quotas)
    const expiresAt = ttlMs === undefined ? 0 : this.#clock.now() + ttlMs
    const revision = ++this.#revision
    if (expiresAt !== 0) this.#heapPush(expiresAt, key)
    if (user && (this.#depth > 0 || this.#watchers.active)) {
      this.#recordSet(key, value, flags, revision, expiresAt)
    }
    const previous = map.get(key)
    if (previous !== undefined) {
      // Rewrite in place: no Map delete and insert, no new record. The entry counts as used.
      const grown = size - previous.size
      previous.value = value
      previous.size = size
      previous.expiresAt = expiresAt
      previous.revision = revision
      if (!user) {
        previous.flags = flags
        this.#systemBytes += grown
        return String(revision)
      }
      previous.flags = flags | REFERENCED
      this.#userBytes += grown
      if (previous.quotas !== null) {
        for (const quota of previous.quotas) {
          quota.bytes += grown
          quota.order.delete(key)
          quota.order.set(key, previous)
        }
        for (const quota of previous.quotas) this.#enforceQuota(quota)
      }
      this.#enforceStoreLimits(key)
      return String(revision)
    }
    const entry = new Entry(value, size, expiresAt, revision, flags, quotas)
    map.set(key, entry)
    if (!user) {
      this.#systemBytes += size
      return String(revision)
    }
    this.#userBytes += size
    if (quotas !== null) {
      for (const quota of quotas) {
        quota.order.set(key, entry)
        quota.entries++
        quota.bytes += size
      }
      for (const quota of quotas) this.#enforceQuota(quota)
    }
    this.#enforceStoreLimits(key)
    return String(revision)
  }

  /** Evicts until the store is within its limits; never the entry `written` was just given. */
  #enforceStoreLimits(written: string): void {
    while (this.#user.size > this.#maxEntries || this.#userBytes > this.#maxBytes) {
      if (!this.#evictByClock(written)) break
    }
  }

  /** Evicts the first entry at or after the hand that was not used since the hand last passed. */
  #evictByClock(spare: string): boolean {
    const user = this.#user
    // Each marked entry is moved once, so two passes over the map always find a victim.
    for (let steps = 0; steps <= 2 * user.size + 1; steps++) {
      const next = this.#hand.next()
      if (next.done === true) {
        if (user.size === 0) return false
        this.#hand = user.entries()
        continue
      }
      const [key, entry] = next.value
      if (entry.flags & REFERENCED || key === spare) {
        entry.flags &= ~REFERENCED
        user.delete(key)
        user.set(key, entry)
        continue
      }
      this.#evict(key, entry)
      return true
    }
    return false
  }

  /** Refuses a single entry larger than a byte limit it would have to fit in alone. */
  #checkFits(key: string, size: number, quotas: QuotaState[] | null): void {
    if (size > this.#maxBytes) {
      throw new ValueTooLargeError(
        `entry ${key} needs ${size} bytes but the memory store's maxBytes is ${this.#maxBytes}; raise maxBytes or store less`,
      )
    }
    if (quotas === null) return
    for (const quota of quotas) {
      if (size > quota.maxBytes) {
        throw new ValueTooLargeError(
          `entry ${key} needs ${size} bytes but its namespace quota (maxBytes) is ${quota.maxBytes}; raise the quota or store less`,
        )
      }
    }
  }

  #quotasOf(key: string): QuotaState[] | null {
    const found = underPrefixes(this.#quotas, key)
    return found.length === 0 ? null : found
  }

  #enforceQuota(quota: QuotaState): void {
    while (quota.entries > quota.maxEntries || quota.bytes > quota.maxBytes) {
      let next = quota.hand.next()
      if (next.done === true) {
        quota.hand = quota.order.entries()
        next = quota.hand.next()
        if (next.done === true) return
      }
      const [key, entry] = next.value
      if (this.#evict(key, entry)) quota.evictions++
    }
  }

  /** Removes a user entry for a limit; false when it had expired (counted as an expiration). */
  #evict(key: string, entry: Entry): boolean {
    this.#remove(key, entry)
    const now = this.#clock.now()
    if (entry.expiresAt !== 0 && entry.expiresAt <= now) {
      this.#expirations++
      this.#changed('expire', key, entry)
      return false
    }
    this.#evictions++
    reportEviction({ store: this.name, count: 1, key })
    // Eviction forgets the key, history included; watchers see it go as a delete.
    this.#forget(key)
    if (this.#watchers.active) this.#notify('delete', key, entry, now)
    return true
  }

  // ---- history and watch ------------------------------------------------------------------------

  /** Logs and reports a write of a user key. */
  #recordSet(
    key: string,
    value: unknown,
    flags: number,
    revision: number,
    expiresAt: number,
  ): void {
    const at = this.#clock.now()
    const encoded = (flags & ENCODED) !== 0
    if (this.#depth > 0) {
      this.#tombstones.delete(key)
      this.#append(key, {
        operation: 'set',
        revision: String(revision),
        at,
        value,
        encoded,
        expiresAt: expiresAt === 0 ? null : expiresAt,
      })
    }
    if (this.#watchers.active && this.#watchers.wants(key)) {
      this.#watchers.emit({
        type: 'set',
        key,
        revision: String(revision),
        value: encoded ? (value as Uint8Array).slice() : this.#codec.encode(value),
        at,
      })
    }
  }

  /** Logs a delete or expire marker for a removed user entry and reports it. */
  #changed(operation: 'delete' | 'expire', key: string, entry: Entry): void {
    if (!isUserKey(key) || (this.#depth === 0 && !this.#watchers.active)) return
    const now = this.#clock.now()
    const at = operation === 'expire' ? entry.expiresAt : now
    const revision = String(++this.#revision)
    if (this.#depth > 0) {
      this.#append(key, {
        operation,
        revision,
        at,
        value: undefined,
        encoded: false,
        expiresAt: null,
      })
      this.#tombstones.delete(key)
      this.#tombstones.set(key, now)
      this.#pruneTombstones(now)
    }
    if (this.#watchers.active) this.#watchers.emit({ type: operation, key, revision, at })
  }

  /** Reports a removal that leaves no marker (clear, eviction). */
  #notify(operation: 'delete' | 'expire', key: string, entry: Entry, now: number): void {
    if (!isUserKey(key)) return
    this.#watchers.emit({
      type: operation,
      key,
      revision: String(++this.#revision),
      at: operation === 'expire' ? entry.expiresAt : now,
    })
  }

  #append(key: string, version: LoggedVersion): void {
    let log = this.#logs.get(key)
    if (log === undefined) {
      log = []
      this.#logs.set(key, log)
    }
    log.push(version)
    if (log.length > this.#depth) log.shift()
  }

  /** Drops the log of a key. */
  #forget(key: string): void {
    if (this.#depth === 0) return
    this.#logs.delete(key)
    this.#tombstones.delete(key)
  }

  /** Drops deleted keys' logs older than the tombstone TTL, and the oldest beyond the cap. */
  #pruneTombstones(now: number): void {
    for (const [key, at] of this.#tombstones) {
      if (at + TOMBSTONE_TTL_MS > now && this.#tombstones.size <= MAX_TOMBSTONES) break
      this.#tombstones.delete(key)
      this.#logs.delete(key)
    }
  }

  #remove(key: string, entry: Entry): void {
    if (isUserKey(key)) {
      this.#user.delete(key)
      this.#userBytes -= entry.size
      if (entry.quotas !== null) {
        for (const quota of entry.quotas) {
          quota.order.delete(key)
          quota.entries--
          quota.bytes -= entry.size
        }
      }
    } else {
      this.#system.delete(key)
      this.#systemBytes -= entry.size
    }
  }

  #toStoreEntry(entry: Entry): StoreEntry {
    const value =
      entry.flags & ENCODED ? (entry.value as Uint8Array).slice() : this.#codec.encode(entry.value)
    return {
      value,
      revision: String(entry.revision),
      expiresAt: entry.expiresAt === 0 ? null : entry.expiresAt,
    }
  }

  // ---- expiry -----------------------------------------------------------------------------------

  #sweep(budget: number): number {
    const now = this.#clock.now()
    let removed = 0
    while (this.#heapAt.length > 0 && (this.#heapAt[0] as number) <= now && removed < budget) {
      const key = this.#heapKey[0] as string
      this.#heapPop()
      const entry = (isUserKey(key) ? this.#user : this.#system).get(key)
      if (entry !== undefined && entry.expiresAt !== 0 && entry.expiresAt <= now) {
        this.#remove(key, entry)
        this.#expirations++
        this.#changed('expire', key, entry)
        removed++
      }
    }
    if (this.#tombstones.size > 0) this.#pruneTombstones(now)
    const live = this.#user.size + this.#system.size
    if (this.#heapAt.length > 2 * live + 1024) this.#rebuildHeap()
    return removed
  }

  #heapPush(at: number, key: string): void {
    // Rewrites leave stale items behind; without a running sweep nothing else would drop them.
    if (this.#heapAt.length > 2 * (this.#user.size + this.#system.size) + 1024) this.#rebuildHeap()
    const times = this.#heapAt
    const keys = this.#heapKey
    let index = times.length
    times.push(at)
    keys.push(key)
    while (index > 0) {
      const parent = (index - 1) >> 1
      if ((times[parent] as number) <= at) break
      times[index] = times[parent] as number
      keys[index] = keys[parent] as string
      index = parent
    }
    times[index] = at
    keys[index] = key
  }

  #heapPop(): void {
    const times = this.#heapAt
    const keys = this.#heapKey
    const lastAt = times.pop() as number
    const lastKey = keys.pop() as string
    const size = times.length
    if (size === 0) return
    let index = 0
    for (;;) {
      const left = 2 * index + 1
      if (left >= size) break
      const right = left + 1
      const child =
        right < size && (times[right] as number) < (times[left] as number) ? right : left
      if ((times[child] as number) >= lastAt) break
      times[index] = times[child] as number
      keys[index] = keys[child] as string
      index = child
    }
    times[index] = lastAt
    keys[index] = lastKey
  }

  #rebuildHeap(): void {
    const times = this.#heapAt
    const keys = this.#heapKey
    this.#heapAt = []
    this.#heapKey = []
    const kept = new Set<string>()
    for (let i = 0; i < times.length; i++) {
      const key = keys[i] as string
      const entry = (isUserKey(key) ? this.#user : this.#system).get(key)
      // One item per live entry: the one with its deadline (rewrites within one millisecond
      // leave several with the same time).
      if (entry === undefined || entry.expiresAt !== times[i] || kept.has(key)) continue
      kept.add(key)
      this.#heapPush(times[i] as number, key)
    }
  }
}

/**
 * Creates an in-process memory store: LRU by entries and bytes, exact TTL, namespace quotas,
 * system keys never evicted. `createCache()` uses one with default options when given no store.
 */
export function memoryStore(options?: MemoryStoreOptions): MemoryStore {
  return new MemoryStore(options)
}
