/**
 * The SQLite store (`flowcache/sqlite`): entries in one SQLite file, so they outlive the process.
 *
 * It follows the memory store's rules: user entries are LRU-evicted by count and bytes and by
 * namespace quotas, system keys (locks, leases, limiter state) are never evicted, expiry is exact
 * (every read compares the deadline with the store clock; a sweep deletes expired rows in bounded
 * batches), and revisions never repeat. Every write is one SQLite transaction (`BEGIN IMMEDIATE`),
 * so `create`, `compareAndSet`, fenced `delete` and `increment` are atomic, also against other
 * connections to the same file.
 *
 * Recency without a write per read: a read records the key's new recency tick in memory, and
 * the next write transaction (which commits anyway) applies the recorded ticks before it writes
 * or evicts anything. Eviction therefore always sees every read this store has served, while a
 * read-mostly workload pays one batched update instead of one commit, and one fsync, per read.
 * Recorded ticks are also applied by the background sweep, on close, and once 10 000 keys wait.
 *
 * The driver is better-sqlite3, which is synchronous: every call runs to completion on the
 * calling thread, which is also what makes a call atomic within the process.
 */
import { mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, resolve } from 'node:path'
import type BetterSqlite3 from 'better-sqlite3'

import { incremented, positiveInteger } from '../../core/checks.js'
import { systemClock, type Clock } from '../../core/clock.js'
import { reportEviction } from '../../core/diagnostics.js'
import { isUserKey, underPrefixes } from '../../core/keyspace.js'
import {
  ClosedError,
  FlowcacheError,
  InvalidArgumentError,
  StoreUnavailableError,
  ValueTooLargeError,
} from '../../errors.js'
import type { Codec } from '../../types/codec.js'
import type {
  QuotaLimits,
  QuotaUsage,
  Revision,
  Store,
  StoreCapabilities,
  StoreChange,
  StoreEntry,
  StoreHistoryOptions,
  StoreListOptions,
  StoreStats,
  StoreVersion,
  StoreWatch,
  StoreWatchListener,
  StoreWriteItem,
  StoreWriteOptions,
} from '../../types/store.js'
import { prepareSchema } from './schema.js'
import { prepareHistory, type HistoryStatements } from './history.js'
import {
  TOMBSTONE_TTL_MS,
  Watchers,
  historyDepth,
  historyLimit,
  inferredExpiry,
  lastVersions,
} from '../changes.js'
import {
  prefixRange,
  prepareStatements,
  type EntryRow,
  type HeadRow,
  type RangeParams,
  type Statements,
  type UsageRow,
  type VictimRow,
} from './statements.js'

export { APPLICATION_ID, SCHEMA_VERSION } from './schema.js'

/** How hard the SQLite store works to keep acknowledged writes through a crash. */
export const SqliteDurability = {
  /**
   * WAL with `synchronous=FULL` (and `fullfsync` on macOS): every write is fsynced before it is
   * acknowledged, so none is lost when the process is killed or the machine loses power, as far
   * as SQLite and the disk honour fsync.
   */
  durable: 'durable',
  /**
   * WAL with `synchronous=NORMAL`: fsync only at checkpoints. A killed process loses nothing; an
   * OS crash or power loss may lose the last transactions (and the revisions they used, which
   * may then be handed out again). The database never becomes corrupt.
   */
  fast: 'fast',
} as const
/** One of the {@link SqliteDurability} modes. */
export type SqliteDurability = (typeof SqliteDurability)[keyof typeof SqliteDurability]

/** Options of {@link sqliteStore}. */
export interface SqliteStoreOptions {
  /**
   * Database file. Missing directories are created. `':memory:'` keeps a private in-memory
   * database (not persistent; useful in tests). Use a local disk: SQLite's WAL mode does not work
   * on network file systems.
   */
  path: string
  /** Fsync policy, see {@link SqliteDurability}. @default 'durable' */
  durability?: SqliteDurability
  /** Most user entries kept; the least recently used go first. System keys do not count. @default 50_000 */
  maxEntries?: number
  /**
   * Soft limit on the bytes (keys + values) of user entries; the least recently used go first.
   * The file is larger (indexes, page slack, the WAL) and does not shrink: SQLite reuses freed
   * pages instead. @default 256 MiB
   */
  maxBytes?: number
  /** Time source for TTL; deadlines are stored as ms since the epoch on this clock. @default the system clock */
  clock?: Clock
  /** How often expired rows are deleted in the background, in ms; `0` turns the sweep off (reads still never return them). @default 1000 */
  sweepIntervalMs?: number
  /**
   * How long a call waits for another connection's write lock before it fails with
   * `StoreUnavailableError`, in ms. The wait blocks the thread (the driver is synchronous).
   * @default 5000
   */
  busyTimeoutMs?: number
  /**
   * Versions kept per user key for `history()`, the current one included, up to 64 (flowgen's
   * `history`). Each version is a row with its value, so history multiplies what a key costs on
   * disk and adds a row write to every write; `0` keeps no log. @default 0
   */
  history?: number
}

/** A namespace quota: limits of the user entries under one prefix. */
interface Quota {
  readonly prefix: string
  readonly range: RangeParams
  readonly maxEntries: number
  readonly maxBytes: number
  /**
   * The least recently used entries under the prefix as of one query, oldest first, consumed
   * from `next`. A candidate whose `used_at` is unchanged is still the oldest: entries outside
   * the list were newer when it was fetched, and reads and writes only move entries forward.
   * One sorted query thus serves many evictions instead of one sort of the namespace per write.
   */
  candidates: VictimRow[]
  next: number
}

const DEFAULT_MAX_ENTRIES = 50_000
/** Eight times the memory store's default: a file holds more than a heap, yet stays a cache. */
const DEFAULT_MAX_BYTES = 256 * 1024 * 1024
const DEFAULT_BUSY_TIMEOUT_MS = 5000
/** Expired rows deleted per transaction, so a sweep never holds the write lock for long. */
const SWEEP_BATCH = 1000
/** Expired rows deleted per background sweep at most, so one sweep never blocks for long. */
const SWEEP_BUDGET = 20_000
/** Recorded reads that trigger a flush of their recency on their own. */
const TOUCH_FLUSH_AT = 10_000
/** Keys fetched per query while listing: the connection stays free for the caller between pages. */
const LIST_PAGE = 500
/** Eviction candidates fetched per query. */
const VICTIM_BATCH = 256
/** Size the WAL file is truncated to after a checkpoint, so one burst does not keep it large. */
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

type Driver = typeof BetterSqlite3

let driver: Driver | undefined

/** Loads better-sqlite3 on first use: it is an optional peer dependency of flowcache. */
function loadDriver(): Driver {
  if (driver !== undefined) return driver
  try {
    driver = createRequire(import.meta.url)('better-sqlite3') as Driver
  } catch (cause) {
    throw new StoreUnavailableError(
      'the sqlite store needs the better-sqlite3 package; install it with `npm install better-sqlite3`',
      { cause },
    )
  }
  return driver
}

/** Longest delay Node's timers and SQLite's busy handler accept, in ms (about 24.8 days). */
const MAX_DELAY_MS = 2 ** 31 - 1

function delayMs(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_DELAY_MS) {
    throw InvalidArgumentError.format(
      name,
      `must be an integer from 0 to ${MAX_DELAY_MS}; got ${String(value)}`,
    )
  }
  return value
}

function checkTtl(ttlMs: number | undefined): void {
  if (ttlMs !== undefined && !(ttlMs > 0 && Number.isFinite(ttlMs))) {
    throw InvalidArgumentError.format(
      'ttlMs',
      `must be a positive finite number; got ${String(ttlMs)}`,
    )
  }
}

function isLive(row: HeadRow, now: number): boolean {
  return row.expires_at === null || row.expires_at > now
}

/** A plain Uint8Array over the driver's Buffer, without copying: `Buffer#slice` does not copy, which callers of a Uint8Array API do not expect. */
function bytesOf(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
}

function toStoreEntry(row: EntryRow): StoreEntry {
  return { value: bytesOf(row.value), revision: String(row.revision), expiresAt: row.expires_at }
}

/** What to tell the user to do about an SQLite error code (`SQLITE_BUSY`, `SQLITE_IOERR_WRITE`…). */
function hintFor(code: string, busyTimeoutMs: number): string {
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return `another connection held the database lock longer than busyTimeoutMs (${busyTimeoutMs} ms)`
  }
  if (code === 'SQLITE_FULL') return 'the disk is full; free space or lower maxBytes'
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return 'the file is not a readable SQLite database (corrupt, truncated or not SQLite); move it away and start with a new file, or restore a backup'
  }
  if (code.startsWith('SQLITE_READONLY')) return 'the file or its directory is read-only'
  if (code.startsWith('SQLITE_CANTOPEN')) {
    return 'the file cannot be opened; check that the path is a file and that its directory is writable'
  }
  if (code.startsWith('SQLITE_IOERR')) return 'the operating system reported an I/O error'
  return 'see the cause for details'
}

/** The SQLite store. Create it with {@link sqliteStore}. */
export class SqliteStore implements Store {
  readonly name = 'sqlite'
  readonly capabilities: StoreCapabilities
  /** The database file, as given. */
  readonly path: string
  /** The fsync policy in use. */
  readonly durability: SqliteDurability

  readonly #db: BetterSqlite3.Database
  readonly #sql: Statements
  readonly #SqliteError: Driver['SqliteError']
  readonly #tx: BetterSqlite3.Transaction<(body: () => unknown) => unknown>
  readonly #clock: Clock
  readonly #maxEntries: number
  readonly #maxBytes: number
  readonly #busyTimeoutMs: number
  readonly #quotas = new Map<string, Quota>()
  /** Keys read since the last write transaction, oldest read first; applied to `used_at` by the next one. */
  readonly #touches = new Set<string>()
  /** Recency counter: every write and every recorded read takes the next tick. */
  #tick: number
  #evictions = 0
  #expirations = 0
  // Counted inside the running write transaction, added to the totals only once it commits.
  #txEvictions = 0
  #txExpirations = 0
  /** Quotas whose prefix the running transaction wrote under. */
  readonly #txQuotas = new Set<Quota>()
  /** Whether the running transaction wrote a user entry. */
  #txUser = false
  #closed = false
  /** Counters kept at close, so `stats()` still answers afterwards. */
  #finalStats: StoreStats | undefined
  readonly #sweepTimer: NodeJS.Timeout | undefined
  /** Versions kept per user key; 0 = no log. */
  readonly #depth: number
  readonly #log: HistoryStatements
  readonly #watchers = new Watchers()
  /** Changes of the running write transaction, delivered to watchers once it commits. */
  #txChanges: StoreChange[] = []

  constructor(options: SqliteStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw InvalidArgumentError.format('options', 'must be an object with a path')
    }
    const path = options.path
    if (typeof path !== 'string' || path === '') {
      throw InvalidArgumentError.format(
        'path',
        `must be a file path or ':memory:'; got ${JSON.stringify(path)}`,
      )
    }
    const durability = options.durability ?? 'durable'
    if (durability !== 'durable' && durability !== 'fast') {
      throw InvalidArgumentError.format(
        'durability',
        `must be 'durable' or 'fast'; got ${JSON.stringify(durability)}`,
      )
    }
    this.path = path
    this.durability = durability
    this.#maxEntries = positiveInteger(options.maxEntries, 'maxEntries', DEFAULT_MAX_ENTRIES)
    this.#maxBytes = positiveInteger(options.maxBytes, 'maxBytes', DEFAULT_MAX_BYTES)
    this.#busyTimeoutMs = delayMs(options.busyTimeoutMs, 'busyTimeoutMs', DEFAULT_BUSY_TIMEOUT_MS)
    const sweepMs = delayMs(options.sweepIntervalMs, 'sweepIntervalMs', 1000)
    this.#clock = options.clock ?? systemClock
    this.#depth = historyDepth(options.history, 0)
    this.capabilities = {
      persistent: true,
      distributed: false,
      ttl: 'emulated',
      injectableClock: true,
      quotas: true,
      local: false,
      ...(this.#depth > 0 ? { history: this.#depth } : {}),
      watch: 'process',
      watchExpiry: true,
    }

    const Database = loadDriver()
    this.#SqliteError = Database.SqliteError
    const memory = path === ':memory:'
    if (!memory) {
      try {
        mkdirSync(dirname(resolve(path)), { recursive: true })
      } catch (cause) {
        throw new StoreUnavailableError(
          `cannot create the directory of the sqlite store at ${path}: ${cause instanceof Error ? cause.message : String(cause)}`,
          { cause },
        )
      }
    }
    let db: BetterSqlite3.Database
    try {
      db = new Database(path, { timeout: this.#busyTimeoutMs })
    } catch (error) {
      throw this.#openError(error)
    }
    try {
      // The first statement reads the file header: a file that is not SQLite fails here.
      const mode = db.pragma('journal_mode = WAL', { simple: true }) as string
      if (!memory && mode !== 'wal') {
        throw new StoreUnavailableError(
          `cannot switch ${path} to WAL mode (journal_mode is ${mode}); the sqlite store needs a local file system`,
        )
      }
      db.pragma(`synchronous = ${durability === 'durable' ? 'FULL' : 'NORMAL'}`)
      if (durability === 'durable') {
        // macOS: a plain fsync leaves data in the drive's cache; F_FULLFSYNC does not. No-op elsewhere.
        db.pragma('fullfsync = ON')
        db.pragma('checkpoint_fullfsync = ON')
      }
      db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`)
      prepareSchema(db, path)
      this.#sql = prepareStatements(db)
      this.#log = prepareHistory(db)
      this.#tx = db.transaction((body: () => unknown) => body())
      this.#tick = this.#sql.maxTick.get()?.tick ?? 0
    } catch (error) {
      db.close()
      throw this.#openError(error)
    }
    this.#db = db
    if (sweepMs > 0) {
      this.#sweepTimer = setInterval(() => this.#background(), sweepMs)
      this.#sweepTimer.unref()
    }
  }

  // ---- reads ----------------------------------------------------------------------------------

  async get(key: string): Promise<StoreEntry | undefined> {
    return this.#guard('get', () => {
      const row = this.#sql.get.get({ key, now: this.#clock.now() })
      if (row === undefined) return undefined
      if (isUserKey(key)) this.#touch(key)
      return toStoreEntry(row)
    })
  }

  async peek(key: string): Promise<StoreEntry | undefined> {
    return this.#guard('peek', () => {
      const row = this.#sql.get.get({ key, now: this.#clock.now() })
      return row === undefined ? undefined : toStoreEntry(row)
    })
  }

  async getMany(keys: readonly string[]): Promise<Array<StoreEntry | undefined>> {
    return this.#guard('getMany', () => {
      if (keys.length === 0) return []
      const now = this.#clock.now()
      // One read transaction: the entries come from one snapshot, even with other writers.
      const rows = this.#tx.deferred(() =>
        keys.map((key) => this.#sql.get.get({ key, now })),
      ) as Array<EntryRow | undefined>
      return rows.map((row, i) => {
        if (row === undefined) return undefined
        const key = keys[i] as string
        if (isUserKey(key)) this.#touch(key)
        return toStoreEntry(row)
      })
    })
  }

  async *list(prefix: string, options?: StoreListOptions): AsyncIterable<string> {
    let remaining = Math.ceil(options?.limit ?? Number.POSITIVE_INFINITY)
    const { lo, hi } = prefixRange(prefix)
    let after: string | undefined
    // Page by key instead of holding one cursor: the driver refuses other statements on a
    // connection while a cursor is open, and the caller may write between two keys.
    while (remaining > 0) {
      const limit = Math.min(LIST_PAGE, remaining)
      const page = this.#guard('list', () => {
        const now = this.#clock.now()
        return after === undefined
          ? this.#sql.listFirst.all({ lo, hi, now, limit })
          : this.#sql.listNext.all({ after, hi, now, limit })
      })
      for (const key of page) yield key
      if (page.length < limit) return
      remaining -= page.length
      after = page[page.length - 1]
    }
  }

  // ---- writes ---------------------------------------------------------------------------------

  async set(key: string, value: Uint8Array, options?: StoreWriteOptions): Promise<Revision> {
    const ttlMs = options?.ttlMs
    this.#checkWrite(key, value, ttlMs)
    return this.#write('set', (now) => {
      const revision = this.#nextRevisions(1)
      this.#put(key, value, this.#deadline(now, ttlMs), revision)
      return String(revision)
    })
  }

  async setMany(items: readonly StoreWriteItem[]): Promise<Revision[]> {
    for (const item of items) this.#checkWrite(item.key, item.value, item.ttlMs)
    if (items.length === 0) return this.#guard('setMany', () => [])
    return this.#write('setMany', (now) => {
      const first = this.#nextRevisions(items.length)
      return items.map((item, i) => {
        this.#put(item.key, item.value, this.#deadline(now, item.ttlMs), first + i)
        return String(first + i)
      })
    })
  }

  async create(
    key: string,
    value: Uint8Array,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    const ttlMs = options?.ttlMs
    this.#checkWrite(key, value, ttlMs)
    return this.#write('create', (now) => {
      const head = this.#sql.head.get(key)
      if (head !== undefined) {
        if (isLive(head, now)) return undefined
        this.#txExpirations++ // replaced below because its TTL passed
        this.#removed('expire', key, head.expires_at ?? now)
      }
      const revision = this.#nextRevisions(1)
      this.#put(key, value, this.#deadline(now, ttlMs), revision)
      return String(revision)
    })
  }

  async compareAndSet(
    key: string,
    value: Uint8Array,
    expected: Revision,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    const ttlMs = options?.ttlMs
    this.#checkWrite(key, value, ttlMs)
    return this.#write('compareAndSet', (now) => {
      const head = this.#sql.head.get(key)
      if (head === undefined || !isLive(head, now) || String(head.revision) !== expected) {
        return undefined
      }
      const revision = this.#nextRevisions(1)
      this.#put(key, value, this.#deadline(now, ttlMs), revision)
      return String(revision)
    })
  }

  async delete(key: string, options?: { expected?: Revision }): Promise<boolean> {
    const expected = options?.expected
    return this.#write('delete', (now) => {
      const result =
        expected === undefined
          ? this.#sql.deleteLive.run({ key, now })
          : this.#sql.deleteFenced.run({ key, now, expected })
      if (result.changes > 0) this.#removed('delete', key, now)
      return result.changes > 0
    })
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    if (keys.length === 0) return this.#guard('deleteMany', () => 0)
    return this.#write('deleteMany', (now) => {
      let deleted = 0
      for (const key of keys) {
        if (this.#sql.deleteLive.run({ key, now }).changes === 0) continue
        deleted++
        this.#removed('delete', key, now)
      }
      return deleted
    })
  }

  async increment(
    key: string,
    by: number,
    codec: Codec,
    options?: StoreWriteOptions,
  ): Promise<number> {
    const ttlMs = options?.ttlMs
    checkTtl(ttlMs)
    return this.#write('increment', (now) => {
      const row = this.#sql.full.get(key)
      let next = by
      let expiresAt = this.#deadline(now, ttlMs)
      if (row !== undefined && isLive(row, now)) {
        const current = codec.decode(bytesOf(row.value))
        next = incremented(current, by)
        // An existing counter keeps its deadline, whatever ttlMs this call gives.
        expiresAt = row.expires_at
      } else if (row !== undefined) {
        this.#txExpirations++ // the expired counter is replaced, not continued
      }
      const value = codec.encode(next)
      this.#checkFits(key, value.byteLength + key.length)
      this.#put(key, value, expiresAt, this.#nextRevisions(1))
      return next
    })
  }

  async clear(prefix: string): Promise<number> {
    const range = prefixRange(prefix)
    return this.#write('clear', (now) => {
      if (this.#watchers.active) {
        for (const row of this.#log.rangeKeys.all(range)) {
          const expired = row.expires_at !== null && row.expires_at <= now
          this.#txChanges.push({
            type: expired ? 'expire' : 'delete',
            key: row.key,
            at: expired ? (row.expires_at as number) : now,
          })
        }
      }
      // A cleared namespace is forgotten, history included.
      if (this.#depth > 0) {
        this.#log.forgetRange.run(range)
        this.#log.unmarkRange.run(range)
      }
      const removed = this.#sql.clearLive.run({ ...range, now }).changes
      // Expired rows go too, without counting as cleared: for the caller they were gone already.
      this.#txExpirations += this.#sql.clearExpired.run({ ...range, now }).changes
      return removed
    })
  }

  /**
   * Sets or replaces the quota of the user entries under `prefix` and enforces it at once.
   * Quotas live in memory: the cache sets them again each time it starts.
   */
  setQuota(prefix: string, limits: QuotaLimits): void {
    const quota: Quota = {
      prefix,
      range: prefixRange(prefix),
      maxEntries: positiveInteger(limits.maxEntries, 'maxEntries', Number.MAX_SAFE_INTEGER),
      maxBytes: positiveInteger(limits.maxBytes, 'maxBytes', Number.MAX_SAFE_INTEGER),
      candidates: [],
      next: 0,
    }
    this.#write('setQuota', (now) => {
      this.#sql.registerQuota.run(quota.range)
      this.#quotas.set(prefix, quota)
      this.#enforceQuota(quota, now)
    })
  }

  /**
   * Entries, bytes and evictions of the quota on `prefix`, as kept in the file: every process
   * sharing it reports the same numbers. `undefined` when no quota was ever set on `prefix` in
   * this file. Entries past their deadline count until the sweep removes them.
   */
  async quotaUsage(prefix: string): Promise<QuotaUsage | undefined> {
    return this.#guard('quotaUsage', () => {
      const row = this.#sql.quotaRow.get(prefix)
      if (row === undefined) return undefined
      return { entries: row.entries, bytes: row.bytes, evictions: row.evictions }
    })
  }

  // ---- history and watch ------------------------------------------------------------------------

  /**
   * Versions of a user key, oldest first: up to `history` of them (the store option), sets with
   * their value and deletes and expiries as markers. A deleted key's log is kept for an hour;
   * `clear()` and eviction drop the logs of the keys they remove. An entry past its deadline
   * that the sweep has not removed yet shows as an `expire` without revision at its deadline.
   */
  async history(key: string, options?: StoreHistoryOptions): Promise<StoreVersion[]> {
    const limit = historyLimit(options)
    if (this.#depth === 0) {
      throw InvalidArgumentError.format(
        'history',
        'is off in this sqlite store; create it with sqliteStore({ path, history: n }) to keep n versions per key',
      )
    }
    return this.#guard('history', () => {
      const versions: StoreVersion[] = this.#log.versions.all(key).map((row) => ({
        operation: row.operation,
        revision: String(row.revision),
        at: row.at,
        value: row.value === null ? undefined : bytesOf(row.value),
        expiresAt: row.expires_at,
      }))
      const expiry = inferredExpiry(versions.at(-1), this.#clock.now())
      if (expiry !== undefined) versions.push(expiry)
      return lastVersions(versions, limit)
    })
  }

  /**
   * Reports changes to user entries under `prefix` made through this store object, once their
   * transaction commits. Writes by other processes (or other store objects on the same file) are
   * not reported. Expiries are reported when the sweep removes the entry (every
   * `sweepIntervalMs`), evictions as `delete`.
   */
  async watch(prefix: string, listener: StoreWatchListener): Promise<StoreWatch> {
    return this.#guard('watch', () => this.#watchers.add(prefix, listener))
  }

  /** Whether writes must log versions or collect changes. */
  #tracking(): boolean {
    return this.#depth > 0 || this.#watchers.active
  }

  /** Logs a write of a user key (inside the write transaction). */
  #written(key: string, value: Uint8Array, expiresAt: number | null, revision: number): void {
    const at = this.#clock.now()
    if (this.#depth > 0) {
      this.#log.append.run({ key, revision, operation: 'set', at, expiresAt, value })
      this.#log.trim.run({ key, keep: this.#depth })
      this.#log.unmark.run(key)
    }
    if (this.#watchers.active) {
      // The driver may reuse nothing of ours, but the caller may reuse its buffer: copy.
      this.#txChanges.push({
        type: 'set',
        key,
        revision: String(revision),
        value: value.slice(),
        at,
      })
    }
  }

  /** Logs a delete or expire marker for a removed user entry (inside the write transaction). */
  #removed(operation: 'delete' | 'expire', key: string, at: number): void {
    if (!isUserKey(key) || !this.#tracking()) return
    const revision = this.#nextRevisions(1)
    if (this.#depth > 0) {
      this.#log.append.run({ key, revision, operation, at, expiresAt: null, value: null })
      this.#log.trim.run({ key, keep: this.#depth })
      this.#log.mark.run({ key, at: this.#clock.now() })
    }
    if (this.#watchers.active) {
      this.#txChanges.push({ type: operation, key, revision: String(revision), at })
    }
  }

  /** Delivers the changes of a committed transaction. */
  #deliver(changes: StoreChange[]): void {
    for (const change of changes) this.#watchers.emit(change)
  }

  // ---- maintenance ----------------------------------------------------------------------------

  async prune(): Promise<number> {
    return this.#guard('prune', () => this.#sweep(Number.POSITIVE_INFINITY))
  }

  now(): number {
    return this.#clock.now()
  }

  stats(): StoreStats {
    if (this.#finalStats !== undefined) return { ...this.#finalStats }
    return this.#guard('stats', () => this.#currentStats())
  }

  /** Applies recorded reads, checkpoints the WAL into the file and closes the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return
    try {
      this.#finalStats = this.#currentStats()
      if (this.#touches.size > 0) this.#write('close', () => undefined)
      // TRUNCATE leaves an empty WAL, so the file alone holds the data once the store is closed.
      this.#db.pragma('wal_checkpoint(TRUNCATE)')
    } catch {
      // Best effort: recency is advisory, and SQLite replays the WAL on the next open anyway.
    }
    this.#closed = true
    this.#finalStats ??= {
      entries: 0,
      bytes: 0,
      evictions: this.#evictions,
      expirations: this.#expirations,
    }
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer)
    this.#watchers.interruptAll('the sqlite store was closed')
    this.#touches.clear()
    try {
      this.#db.close()
    } catch (error) {
      throw this.#translate(error, 'close')
    }
  }

  // ---- internals ------------------------------------------------------------------------------

  /** Runs `body` on the open connection, turning SQLite faults into `StoreUnavailableError`. */
  #guard<T>(operation: string, body: () => T): T {
    if (this.#closed) throw new ClosedError('this sqlite store is closed; create a new one')
    try {
      return body()
    } catch (error) {
      throw this.#translate(error, operation)
    }
  }

  #translate(error: unknown, operation: string): unknown {
    if (!(error instanceof this.#SqliteError)) return error
    return new StoreUnavailableError(
      `sqlite store ${this.path}: ${operation} failed with ${error.code} (${error.message}); ${hintFor(error.code, this.#busyTimeoutMs)}`,
      { cause: error },
    )
  }

  #openError(error: unknown): FlowcacheError {
    if (error instanceof FlowcacheError) return error
    if (error instanceof this.#SqliteError) {
      return new StoreUnavailableError(
        `cannot open the sqlite store at ${this.path}: ${error.code} (${error.message}); ${hintFor(error.code, this.#busyTimeoutMs)}`,
        { cause: error },
      )
    }
    return new StoreUnavailableError(
      `cannot open the sqlite store at ${this.path}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    )
  }

  /**
   * Runs `body` in one immediate write transaction: recorded reads are applied first and the
   * limits are enforced last, so eviction sees every read and every write of this call.
   */
  #write<T>(operation: string, body: (now: number) => T): T {
    return this.#guard(operation, () => {
      this.#txEvictions = 0
      this.#txExpirations = 0
      this.#txQuotas.clear()
      this.#txUser = false
      this.#txChanges = []
      let result: T
      try {
        result = this.#tx.immediate(() => {
          const now = this.#clock.now()
          // Another connection to the file may have written newer ticks; stay ahead of them.
          const stored = this.#sql.maxTick.get()?.tick ?? 0
          if (stored > this.#tick) this.#tick = stored
          // Reads take their ticks now, after catching up: a tick taken at read time could be
          // older than another process's writes since, and would make a hot key look cold.
          for (const key of this.#touches) this.#sql.touch.run({ key, tick: ++this.#tick })
          const value = body(now)
          if (this.#txUser) this.#enforceLimits(now)
          return value
        }) as T
      } catch (error) {
        // Candidates consumed by a rolled-back eviction are still in the table, and still oldest.
        for (const quota of this.#quotas.values()) quota.candidates = []
        throw error
      }
      // Only now: a rolled-back transaction keeps the reads recorded and counts nothing.
      this.#touches.clear()
      this.#evictions += this.#txEvictions
      if (this.#txEvictions > 0) reportEviction({ store: this.name, count: this.#txEvictions })
      this.#expirations += this.#txExpirations
      const changes = this.#txChanges
      this.#txChanges = []
      if (changes.length > 0) this.#deliver(changes)
      return result
    })
  }

  #checkWrite(key: string, value: Uint8Array, ttlMs: number | undefined): void {
    if (typeof key !== 'string' || key === '') {
      throw InvalidArgumentError.format('key', `must be a non-empty string; got ${String(key)}`)
    }
    if (!(value instanceof Uint8Array)) {
      throw InvalidArgumentError.format('value', `must be a Uint8Array; got ${typeof value}`)
    }
    checkTtl(ttlMs)
    this.#checkFits(key, value.byteLength + key.length)
  }

  /** Refuses a user entry larger than a byte limit it would have to fit in alone. */
  #checkFits(key: string, size: number): void {
    if (!isUserKey(key)) return
    if (size > this.#maxBytes) {
      throw new ValueTooLargeError(
        `entry ${key} needs ${size} bytes but the sqlite store's maxBytes is ${this.#maxBytes}; raise maxBytes or store less`,
      )
    }
    for (const quota of this.#quotasOf(key)) {
      if (size > quota.maxBytes) {
        throw new ValueTooLargeError(
          `entry needs ${size} bytes but its namespace quota (maxBytes) is ${quota.maxBytes}; raise the quota or store less`,
        )
      }
    }
  }

  #deadline(now: number, ttlMs: number | undefined): number | null {
    return ttlMs === undefined ? null : now + ttlMs
  }

  /** Reserves `count` revisions; returns the first. They live in the transaction that uses them. */
  #nextRevisions(count: number): number {
    const row = this.#sql.nextRevision.get(count)
    if (row === undefined) throw new StoreUnavailableError(`${this.path} has no revision counter`)
    return row.revision - count + 1
  }

  #put(key: string, value: Uint8Array, expiresAt: number | null, revision: number): void {
    const user = isUserKey(key)
    this.#sql.upsert.run({
      key,
      revision,
      expiresAt,
      size: value.byteLength + key.length,
      usedAt: ++this.#tick,
      isUser: user ? 1 : 0,
      value,
    })
    if (!user) return
    this.#txUser = true
    for (const quota of this.#quotasOf(key)) this.#txQuotas.add(quota)
    if (this.#tracking()) this.#written(key, value, expiresAt, revision)
  }

  /** Records a read of a user entry for LRU; applied by the next write transaction. */
  #touch(key: string): void {
    // Most recent read last: the ticks are handed out in this order.
    this.#touches.delete(key)
    this.#touches.add(key)
    if (this.#touches.size < TOUCH_FLUSH_AT) return
    try {
      this.#write('flush', () => undefined)
    } catch {
      // The read itself succeeded; the recorded reads stay and go with the next write.
    }
  }

  #quotasOf(key: string): Quota[] {
    return this.#quotas.size === 0 ? [] : underPrefixes(this.#quotas, key)
  }

  #enforceLimits(now: number): void {
    for (const quota of this.#txQuotas) this.#enforceQuota(quota, now)
    const totals = this.#sql.totals.get()
    if (totals === undefined) return
    const usage = { entries: totals.user_entries, bytes: totals.user_bytes }
    const over = (): boolean => usage.entries > this.#maxEntries || usage.bytes > this.#maxBytes
    // The global LRU index hands out the oldest entries directly; no candidate list needed.
    while (over()) {
      const victims = this.#sql.globalVictims.all(this.#batchFor(usage, this.#maxEntries))
      if (victims.length === 0) return
      for (const victim of victims) {
        if (!over()) return
        this.#evict(victim, usage, now)
      }
    }
  }

  #enforceQuota(quota: Quota, now: number): void {
    const usage: UsageRow | undefined = this.#sql.quotaUsage.get(quota.prefix)
    if (usage === undefined) return
    const over = (): boolean => usage.entries > quota.maxEntries || usage.bytes > quota.maxBytes
    let evicted = 0
    while (over()) {
      if (quota.next >= quota.candidates.length) {
        quota.candidates = this.#sql.rangeVictims.all({ ...quota.range, limit: VICTIM_BATCH })
        quota.next = 0
        if (quota.candidates.length === 0) break
      }
      const candidate = quota.candidates[quota.next++] as VictimRow
      const current = this.#sql.candidate.get(candidate.key)
      // Gone, rewritten or read since the query: no longer a candidate.
      if (current === undefined || current.used_at !== candidate.used_at) continue
      if (this.#evict({ ...current, key: candidate.key }, usage, now)) evicted++
    }
    // Kept in the file, in this transaction: every process sharing it counts the same evictions.
    if (evicted > 0) this.#sql.countEvictions.run({ prefix: quota.prefix, count: evicted })
  }

  /** Candidates to fetch: the entry excess in one query; a byte excess a small batch at a time. */
  #batchFor(usage: UsageRow, maxEntries: number): number {
    return Math.min(VICTIM_BATCH, Math.max(usage.entries - maxEntries, 16))
  }

  /** Deletes a user entry for a limit; false when it had expired (counted as an expiration). */
  #evict(victim: VictimRow, usage: UsageRow, now: number): boolean {
    this.#sql.deleteKey.run(victim.key)
    usage.entries--
    usage.bytes -= victim.size
    const expired = victim.expires_at !== null && victim.expires_at <= now
    if (expired) this.#txExpirations++
    else this.#txEvictions++
    // Eviction forgets the key, history included; watchers see it go.
    if (this.#depth > 0) {
      this.#log.forget.run(victim.key)
      this.#log.unmark.run(victim.key)
    }
    if (this.#watchers.active) {
      this.#txChanges.push({
        type: expired ? 'expire' : 'delete',
        key: victim.key,
        at: expired ? (victim.expires_at as number) : now,
      })
    }
    return !expired
  }

  /** Deletes expired rows in batches of their own transaction, up to `budget`; returns how many. */
  #sweep(budget: number): number {
    let removed = 0
    while (removed < budget) {
      const now = this.#clock.now()
      // Look before taking the write lock: most sweeps find nothing to do.
      if (this.#sql.anyExpired.get(now) === undefined) break
      const limit = Math.min(SWEEP_BATCH, budget - removed)
      const changes: StoreChange[] = []
      const deleted = this.#tx.immediate(() => {
        if (!this.#tracking()) return this.#sql.sweepBatch.run({ now, limit }).changes
        this.#txChanges = changes
        const rows = this.#log.sweepReturning.all({ now, limit })
        for (const row of rows) {
          if (row.is_user === 1) this.#removed('expire', row.key, row.expires_at)
        }
        return rows.length
      }) as number
      this.#txChanges = []
      this.#expirations += deleted
      removed += deleted
      if (changes.length > 0) this.#deliver(changes)
      if (deleted < limit) break
    }
    if (this.#depth > 0) this.#dropOldTombstones()
    return removed
  }

  /** Drops the logs of keys deleted more than an hour ago. */
  #dropOldTombstones(): void {
    const before = this.#clock.now() - TOMBSTONE_TTL_MS
    // Look before taking the write lock, as the sweep does.
    if (this.#log.anyOld.get(before) === undefined) return
    this.#tx.immediate(() => {
      this.#log.dropOld.run(before)
      this.#log.unmarkOld.run(before)
    })
  }

  #background(): void {
    if (this.#closed) return
    try {
      if (this.#touches.size > 0) this.#write('flush', () => undefined)
      this.#guard('sweep', () => this.#sweep(SWEEP_BUDGET))
    } catch {
      // A busy or failing database is reported by the next call that needs it; the sweep
      // tries again on its next tick.
    }
  }

  #currentStats(): StoreStats {
    const totals = this.#sql.totals.get()
    return {
      entries: totals?.entries ?? 0,
      bytes: totals?.bytes ?? 0,
      evictions: this.#evictions,
      expirations: this.#expirations,
    }
  }
}

/**
 * Creates a persistent store on one SQLite file: LRU by entries and bytes, exact TTL, namespace
 * quotas, system keys never evicted, revisions that never repeat. Opens the file at once, so a
 * path that is not a usable flowcache database fails here with `StoreUnavailableError`.
 * Needs the optional peer dependency better-sqlite3.
 */
export function sqliteStore(options: SqliteStoreOptions): SqliteStore {
  return new SqliteStore(options)
}
