/**
 * `flowcache/nats`: a store on a NATS JetStream KV bucket, shared by every process that opens
 * the same bucket.
 *
 * Revisions are stream sequences; `create`, `compareAndSet`, fenced `delete` and `increment`
 * use the server's expected-last-subject-sequence check, so races between processes are decided
 * by the server. Entry layout (value as is, deadline in a header): see `./layout.ts`.
 *
 * TTL: servers before 2.11 ignore per-message TTL, so flowcache keeps each entry's deadline in
 * the entry and enforces it itself: no read, list or conditional write ever treats an entry past
 * its deadline as live, and expired entries are removed lazily on read and by a periodic sweep,
 * always with a delete fenced on the expired revision so a newer write is never lost. On 2.11+
 * the native per-message TTL is passed as well where it is safe (see `#open`), but the deadline
 * in the entry stays the source of truth.
 */
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import {
  connect,
  credsAuthenticator,
  errors as natsErrors,
  nanos,
  type MsgHdrs,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node'

import { busSubject, NatsInvalidationBus } from './bus.js'
import {
  checkQuota,
  counted,
  entrySize,
  NatsQuotas,
  recentKeyOf,
  TOUCH_FLUSH_MS,
  type QuotaIo,
  type QuotaState,
  type UsageDelta,
} from './quota.js'
import { historyLimit, inferredExpiry, lastVersions } from '../changes.js'
import { incremented, positiveInteger } from '../../core/checks.js'
import { systemClock, type Clock } from '../../core/clock.js'
import { parseDuration, type Duration } from '../../core/duration.js'
import { isUserKey } from '../../core/keyspace.js'
import {
  ClosedError,
  FlowcacheError,
  InvalidArgumentError,
  StoreUnavailableError,
} from '../../errors.js'
import type { Codec } from '../../types/codec.js'
import type {
  InvalidationBus,
  QuotaLimits,
  QuotaUsage,
  Revision,
  Store,
  StoreCapabilities,
  StoreEntry,
  StoreHealth,
  StoreHistoryOptions,
  StoreListOptions,
  StoreChange,
  StoreVersion,
  StoreWatch,
  StoreWatchListener,
  StoreWriteItem,
  StoreWriteOptions,
} from '../../types/store.js'
import {
  EXPIRED_HEADER,
  MARKER_REASON_HEADER,
  OPERATION_HEADER,
  checkBucket,
  checkKey,
  checkPayload,
  deleteHeaders,
  filterForPrefix,
  maxKeyBytes,
  toRawEntry,
  writeHeaders,
  type RawEntry,
} from './layout.js'

export { EXPIRES_HEADER, EXPIRED_HEADER } from './layout.js'

/** How to authenticate to the NATS server (alternatively, put `user:pass@` in the URL). */
export type NatsCredentials =
  | { user: string; pass: string }
  | { token: string }
  /** Contents of a `.creds` file (user JWT and NKey seed), as text or bytes. */
  | { creds: string | Uint8Array }

/** Options of {@link natsStore}. */
export interface NatsStoreOptions {
  /** NATS server URL(s), e.g. `nats://127.0.0.1:4222`. Ignored with `connection`. @default nats://127.0.0.1:4222 */
  servers?: string | string[]
  /** Alias of `servers` for a single URL. */
  url?: string
  /**
   * An existing connection to use instead of opening one. The store never closes it; it only
   * stops using it on `close()`.
   */
  connection?: NatsConnection
  /** Credentials for the connection the store opens. */
  credentials?: NatsCredentials
  /**
   * More options for the connection the store opens (`tls`, `name`, reconnect timing…).
   * `servers`, `credentials` and `requestTimeoutMs` above take precedence. By default the
   * store's connection reconnects forever, so it recovers from any outage on its own.
   */
  connectOptions?: Omit<NodeConnectionOptions, 'servers'>
  /** KV bucket name, `[A-Za-z0-9_-]` (flowgen's `db_name`). Created when missing; an existing bucket is used with its own settings. @default 'flowcache' */
  bucket?: string
  /** Values kept per key when the store creates the bucket; above 1 keeps previous values for `history()`. 1..64. @default 1 */
  history?: number
  /**
   * Bucket-wide age limit (ms or a duration string) when the store creates the bucket: the server
   * removes every entry older than this, with or without a TTL, so keep it above your longest TTL.
   * @default none
   */
  maxAge?: Duration
  /**
   * How long delete markers are kept (ms or a duration string, at least 1 s). The sweep removes
   * older markers on every server version; on servers >= 2.11 it also becomes the bucket's
   * `subject_delete_marker_ttl` when the store creates the bucket (flowgen's `tombstone_ttl`).
   * @default '1h'
   */
  tombstoneTtl?: Duration
  /** How long a request to the server may take before it fails with `StoreUnavailableError`, in ms. Also the connect timeout. @default 2000 */
  requestTimeoutMs?: number
  /**
   * How often the background sweep removes expired entries and old delete markers, in ms; `0`
   * turns it off (reads still never return expired entries). Each sweep reads the headers, not
   * the values, of every key in the bucket, in every process. @default 60_000
   */
  sweepIntervalMs?: number
  /**
   * Time source of TTL deadlines. Deadlines are absolute (ms since the epoch), so processes
   * sharing a bucket should have synchronised clocks; skew shifts expiry by the skew.
   * @default the system clock
   */
  clock?: Clock
}

/**
 * One version of a key, as returned by {@link NatsStore.history}: a {@link StoreVersion} plus
 * what the bucket itself recorded.
 */
export interface NatsHistoryEntry extends StoreVersion {
  /** Revision (stream sequence) of this version; `undefined` only for an inferred expiry. */
  revision: Revision | undefined
  /** The KV operation: `PUT` stored a value; `DEL` and `PURGE` deleted the key. */
  kvOperation: 'PUT' | 'DEL' | 'PURGE'
  /** When the server stored this version, in ms since the epoch (server clock). */
  time: number
  /** True for a `DEL` that flowcache wrote because the previous version's TTL had passed. */
  expired: boolean
}

/** Options of {@link NatsStore.history}. */
export type NatsHistoryOptions = StoreHistoryOptions

const DEFAULT_BUCKET = 'flowcache'
const DEFAULT_REQUEST_TIMEOUT_MS = 2000
const DEFAULT_SWEEP_INTERVAL_MS = 60_000
const DEFAULT_TOMBSTONE_TTL_MS = 3_600_000
/** ADR-8's limit of values per key; nats.js and old servers do not enforce it, other clients do. */
const MAX_HISTORY = 64
/**
 * Compare-and-set rounds before a contended `increment`, `create` or `delete` gives up. Each lost
 * round means another writer won, so this many losses in a row only happen under extreme
 * contention on one key, where failing is better than spinning.
 */
const MAX_CAS_ATTEMPTS = 100
/**
 * How long a quota's ledger must stay unchanged (and at least 3 request timeouts) before the
 * sweep recounts it, so that no write between its reservation and its publish is missed.
 */
const MIN_QUIET_MS = 1000
/** Requests a batch operation keeps in flight at once. */
const PARALLELISM = 64
/** Messages per pull request of a scan. */
const SCAN_BATCH = 1024
/** A scan consumer the server forgets when left idle this long (a crashed scan cleans up). */
const SCAN_IDLE_MS = 30_000
/** Shortest pull wait nats.js accepts. */
const MIN_FETCH_EXPIRES_MS = 1000
const EMPTY = new Uint8Array(0)
/** Operations that change nothing, so a timeout leaves no doubt about their effect. */
const READ_OPERATIONS = new Set(['get', 'getMany', 'list', 'history', 'open the bucket'])

/** Capabilities of a store; `history` is the bucket's own setting once known. */
function capabilitiesOf(ttl: 'native' | 'emulated', history: number): StoreCapabilities {
  return Object.freeze({
    persistent: true,
    distributed: true,
    ttl,
    injectableClock: true,
    quotas: true,
    local: false,
    history,
    watch: 'shared',
    watchExpiry: true,
  })
}

/** What the store holds once connected and the bucket is open. */
interface Session {
  readonly nc: NatsConnection
  readonly js: JetStreamClient
  readonly jsm: JetStreamManager
  /** Stream of the bucket: `KV_<bucket>`. */
  readonly stream: string
  /** Subject prefix of keys: `$KV.<bucket>.`. */
  readonly subjects: string
  /** Reads may use direct get (`allow_direct`). */
  readonly direct: boolean
  /** Direct get answers from the one copy of the stream, so read-modify-write may use it too. */
  readonly directIsLeader: boolean
  /** Writes also carry the server's per-message TTL. */
  readonly nativeTtl: boolean
}

function checkTtl(ttlMs: number | undefined): void {
  if (ttlMs !== undefined && !(Number.isFinite(ttlMs) && ttlMs > 0)) {
    throw InvalidArgumentError.format('ttlMs', `must be a positive number; got ${String(ttlMs)}`)
  }
}

/** Whether a server version string such as `2.9.10` is at least `major.minor`. */
function versionAtLeast(version: string | undefined, major: number, minor: number): boolean {
  const match = /^v?(\d+)\.(\d+)/.exec(version ?? '')
  if (match === null) return false
  const [have, haveMinor] = [Number(match[1]), Number(match[2])]
  return have > major || (have === major && haveMinor >= minor)
}

function isWrongSequence(error: unknown): boolean {
  return (
    error instanceof JetStreamApiError &&
    (error.code === JetStreamApiCodes.StreamWrongLastSequence ||
      error.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  )
}

/** A revision of this store as a sequence number, or `undefined` when it cannot be one. */
function parseRevision(revision: Revision): number | undefined {
  if (typeof revision !== 'string' || !/^[1-9]\d{0,15}$/.test(revision)) return undefined
  const seq = Number(revision)
  return Number.isSafeInteger(seq) ? seq : undefined
}

function messageOf(error: unknown): string {
  if (error instanceof natsErrors.TimeoutError) return 'the server did not answer in time'
  if (error instanceof Error) return error.message
  return String(error)
}

/** `raw` when it holds a value whose deadline, if any, is after `now`. */
function liveEntry(raw: RawEntry | undefined, now: number): RawEntry | undefined {
  return raw !== undefined && !raw.deleted && (raw.expiresAt === null || raw.expiresAt > now)
    ? raw
    : undefined
}

/** `raw` when it holds a value whose deadline has passed at `now`. */
function expiredEntry(raw: RawEntry | undefined, now: number): RawEntry | undefined {
  return raw !== undefined && !raw.deleted && raw.expiresAt !== null && raw.expiresAt <= now
    ? raw
    : undefined
}

/** Runs `fn` over `items` with at most `limit` calls in flight. */
async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<void>,
): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      await fn(items[index] as T, index)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** Short, jittered pause between compare-and-set rounds, so racing writers spread out. */
function casBackoff(attempt: number): Promise<void> {
  const ms = Math.random() * Math.min(20, attempt)
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The NATS JetStream KV store. Create it with {@link natsStore}. */
export class NatsStore implements Store {
  readonly name = 'nats'
  /** Name of the KV bucket. */
  readonly bucket: string

  readonly #clock: Clock
  readonly #history: number
  readonly #maxAgeMs: number | undefined
  readonly #tombstoneTtlMs: number
  readonly #requestTimeoutMs: number
  readonly #maxKeyBytes: number
  readonly #given: NatsConnection | undefined
  readonly #connectOptions: NodeConnectionOptions
  readonly #sweepTimer: NodeJS.Timeout | undefined
  readonly #touchTimer: NodeJS.Timeout
  /** Namespace quotas: definitions, shared ledgers, recent reads. */
  readonly #quotas = new NatsQuotas()
  /** Fire-and-forget work (lazy purges, background sweeps) that `close()` waits for. */
  readonly #background = new Set<Promise<unknown>>()
  /** The background flush of noted reads in flight; a tick while it runs is skipped. */
  #flushing: Promise<void> | undefined
  #opening: Promise<Session> | undefined
  #owned: NatsConnection | undefined
  #stopStatus: (() => void) | undefined
  #watched: NatsConnection | undefined
  #nativeTtl = false
  #capabilities: StoreCapabilities
  #sweeping: Promise<number> | undefined
  /** Set while the connection is down; calls fail fast instead of queueing behind a reconnect. */
  #disconnectedSince: number | undefined
  #lastError: { reason: string; since: number } | undefined
  readonly #healthySince = Date.now()
  #closed = false
  #closing: Promise<void> | undefined

  constructor(options: NatsStoreOptions = {}) {
    this.bucket = checkBucket(options.bucket ?? DEFAULT_BUCKET)
    this.#clock = options.clock ?? systemClock
    this.#history = positiveInteger(options.history, 'history', 1)
    if (this.#history > MAX_HISTORY) {
      throw InvalidArgumentError.format('history', `must be at most ${MAX_HISTORY} (NATS ADR-8)`)
    }
    this.#capabilities = capabilitiesOf('emulated', this.#history)
    this.#maxAgeMs =
      options.maxAge === undefined ? undefined : parseDuration(options.maxAge, 'maxAge')
    this.#tombstoneTtlMs =
      options.tombstoneTtl === undefined
        ? DEFAULT_TOMBSTONE_TTL_MS
        : parseDuration(options.tombstoneTtl, 'tombstoneTtl')
    if (this.#tombstoneTtlMs < 1000) {
      throw InvalidArgumentError.format('tombstoneTtl', 'must be at least 1s (the NATS minimum)')
    }
    this.#requestTimeoutMs = positiveInteger(
      options.requestTimeoutMs,
      'requestTimeoutMs',
      DEFAULT_REQUEST_TIMEOUT_MS,
    )
    this.#maxKeyBytes = maxKeyBytes(this.bucket)
    if (options.connection !== undefined && (options.servers ?? options.url) !== undefined) {
      throw InvalidArgumentError.format(
        'connection',
        'cannot be combined with servers or url; the connection already has its servers',
      )
    }
    this.#given = options.connection
    this.#connectOptions = this.#buildConnectOptions(options)
    const sweepMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS
    if (!Number.isSafeInteger(sweepMs) || sweepMs < 0) {
      throw InvalidArgumentError.format(
        'sweepIntervalMs',
        `must be an integer >= 0; got ${String(sweepMs)}`,
      )
    }
    if (sweepMs > 0) {
      this.#sweepTimer = setInterval(() => this.#backgroundSweep(), sweepMs)
      this.#sweepTimer.unref()
    }
    this.#touchTimer = setInterval(() => this.#backgroundFlush(), TOUCH_FLUSH_MS)
    this.#touchTimer.unref()
  }

  /**
   * `ttl` is `native` only once connected to a server >= 2.11 whose bucket accepts per-message
   * TTL and where the server's TTL is used (system clock, history 1); otherwise `emulated`.
   */
  get capabilities(): StoreCapabilities {
    return this.#capabilities
  }

  // ---- Store ----------------------------------------------------------------------------------

  async get(key: string): Promise<StoreEntry | undefined> {
    this.#checkOpen()
    checkKey(key, this.#maxKeyBytes)
    return this.#run('get', async (session) =>
      this.#toEntry(session, key, await this.#read(session, key, false)),
    )
  }

  async peek(key: string): Promise<StoreEntry | undefined> {
    this.#checkOpen()
    checkKey(key, this.#maxKeyBytes)
    return this.#run('peek', async (session) =>
      this.#toEntry(session, key, await this.#read(session, key, false), false),
    )
  }

  async getMany(keys: readonly string[]): Promise<Array<StoreEntry | undefined>> {
    this.#checkOpen()
    for (const key of keys) checkKey(key, this.#maxKeyBytes)
    if (keys.length === 0) return []
    return this.#run('getMany', async (session) => {
      const unique = [...new Set(keys)]
      const found = new Map<string, StoreEntry | undefined>()
      await forEachLimited(unique, PARALLELISM, async (key) => {
        found.set(key, this.#toEntry(session, key, await this.#read(session, key, false)))
      })
      return keys.map((key) => found.get(key))
    })
  }

  async set(key: string, value: Uint8Array, options?: StoreWriteOptions): Promise<Revision> {
    this.#checkOpen()
    checkKey(key, this.#maxKeyBytes)
    checkTtl(options?.ttlMs)
    return this.#run('set', async (session) => {
      const expiresAt = this.#deadline(options?.ttlMs)
      const quotas = await this.#quotasFor(session, key)
      const seq =
        quotas.length === 0
          ? await this.#write(session, key, value, expiresAt)
          : await this.#setUnderQuota(session, quotas, key, value, expiresAt)
      return String(seq)
    })
  }

  /** Writes the items in parallel; not atomic: when it rejects, some items may be written. */
  async setMany(items: readonly StoreWriteItem[]): Promise<Revision[]> {
    this.#checkOpen()
    for (const item of items) {
      checkKey(item.key, this.#maxKeyBytes)
      checkTtl(item.ttlMs)
    }
    if (items.length === 0) return []
    return this.#run('setMany', async (session) => {
      const revisions: Revision[] = new Array<Revision>(items.length)
      await forEachLimited(items, PARALLELISM, async (item, index) => {
        const expiresAt = this.#deadline(item.ttlMs)
        const quotas = await this.#quotasFor(session, item.key)
        const seq =
          quotas.length === 0
            ? await this.#write(session, item.key, item.value, expiresAt)
            : await this.#setUnderQuota(session, quotas, item.key, item.value, expiresAt)
        revisions[index] = String(seq)
      })
      return revisions
    })
  }

  async create(
    key: string,
    value: Uint8Array,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    this.#checkOpen()
    checkKey(key, this.#maxKeyBytes)
    checkTtl(options?.ttlMs)
    return this.#run('create', async (session) => {
      const expiresAt = this.#deadline(options?.ttlMs)
      const quotas = await this.#quotasFor(session, key)
      if (quotas.length > 0) {
        this.#quotas.checkFits(key, entrySize(key, value.byteLength), quotas)
        for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
          const raw = await this.#read(session, key, true)
          if (liveEntry(raw, this.#clock.now()) !== undefined) return undefined
          const seq = await this.#quotaPut(session, quotas, key, raw, value, expiresAt)
          if (seq !== undefined) return String(seq)
        }
        throw this.#contention('create', key)
      }
      // First as a fresh key (expected sequence 0); when the key has a message, a marker or an
      // expired entry counts as absent and is replaced at its own sequence, so a racing writer
      // makes the replacement fail instead of being overwritten.
      let expected = 0
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        const seq = await this.#write(session, key, value, expiresAt, expected)
        if (seq !== undefined) return String(seq)
        const raw = await this.#read(session, key, true)
        if (liveEntry(raw, this.#clock.now()) !== undefined) return undefined
        expected = raw?.seq ?? 0
      }
      throw this.#contention('create', key)
    })
  }

  async compareAndSet(
    key: string,
    value: Uint8Array,
    expected: Revision,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    this.#checkOpen()
    checkKey(key, this.#maxKeyBytes)
    checkTtl(options?.ttlMs)
    const expectedSeq = parseRevision(expected)
    if (expectedSeq === undefined) return undefined
    return this.#run('compareAndSet', async (session) => {
      // The server checks the revision, but not the deadline: read first so an expired entry
      // is never updated (a create racing us replaces it at the same sequence; one of us wins).
      const raw = await this.#read(session, key, true)
      const now = this.#clock.now()
      const expired = expiredEntry(raw, now)
      if (expired !== undefined) this.#purgeLater(session, key, expired)
      if (liveEntry(raw, now)?.seq !== expectedSeq) return undefined
      const expiresAt = this.#deadline(options?.ttlMs)
      const quotas = await this.#quotasFor(session, key)
      if (quotas.length > 0) this.#quotas.checkFits(key, entrySize(key, value.byteLength), quotas)
      const seq =
        quotas.length === 0
          ? await this.#write(session, key, value, expiresAt, expectedSeq)
          : await this.#quotaPut(session, quotas, key, raw, value, expiresAt)
      return seq === undefined ? undefined : String(seq)
    })
  }

  async delete(key: string, options?: { expected?: Revision }): Promise<boolean> {
    this.#checkOpen()
    checkKey(key, this.#maxKeyBytes)
    const expected = options?.expected
    const expectedSeq = expected === undefined ? undefined : parseRevision(expected)
    if (expected !== undefined && expectedSeq === undefined) return false
    return this.#run('delete', (session) => this.#deleteLive(session, key, expectedSeq))
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    this.#checkOpen()
    for (const key of keys) checkKey(key, this.#maxKeyBytes)
    if (keys.length === 0) return 0
    return this.#run('deleteMany', async (session) => {
      let deleted = 0
      await forEachLimited([...new Set(keys)], PARALLELISM, async (key) => {
        if (await this.#deleteLive(session, key, undefined)) deleted++
      })
      return deleted
    })
  }

  async increment(
    key: string,
    by: number,
    codec: Codec,
    options?: StoreWriteOptions,
  ): Promise<number> {
    this.#checkOpen()
    checkKey(key, this.#maxKeyBytes)
    checkTtl(options?.ttlMs)
    return this.#run('increment', async (session) => {
      const quotas = await this.#quotasFor(session, key)
      const put = (
        raw: RawEntry | undefined,
        value: Uint8Array,
        expiresAt: number | null,
      ): Promise<number | undefined> =>
        quotas.length === 0
          ? this.#write(session, key, value, expiresAt, raw?.seq ?? 0)
          : this.#quotaPut(session, quotas, key, raw, value, expiresAt)
      for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
        if (attempt > 0) await casBackoff(attempt)
        const raw = await this.#read(session, key, true)
        const live = liveEntry(raw, this.#clock.now())
        if (live === undefined) {
          // Missing, deleted or expired: start again from `by`, replacing whatever is there.
          const seq = await put(raw, codec.encode(by), this.#deadline(options?.ttlMs))
          if (seq !== undefined) return by
          continue
        }
        const current = codec.decode(live.value)
        const next = incremented(current, by)
        // The deadline is carried over unchanged: an increment never extends a counter's life.
        const seq = await put(live, codec.encode(next), live.expiresAt)
        if (seq !== undefined) return next
      }
      throw this.#contention('increment', key)
    })
  }

  async *list(prefix: string, options?: StoreListOptions): AsyncIterable<string> {
    this.#checkOpen()
    const limit = options?.limit ?? Number.POSITIVE_INFINITY
    const filter = filterForPrefix(prefix)
    if (limit <= 0 || filter === undefined) return
    // Collected before yielding: a scan holds a server-side consumer, which should not wait on
    // whatever the caller does between keys.
    const keys = await this.#run('list', async (session) => {
      const now = this.#clock.now()
      const found: string[] = []
      for await (const { key, raw } of this.#scan(session, filter, true, true)) {
        if (!key.startsWith(prefix) || liveEntry(raw, now) === undefined) continue
        found.push(key)
        if (found.length >= limit) break
      }
      return found
    })
    yield* keys
  }

  async clear(prefix: string): Promise<number> {
    this.#checkOpen()
    const filter = filterForPrefix(prefix)
    if (filter === undefined) return 0
    return this.#run('clear', async (session) => {
      const now = this.#clock.now()
      const live: Array<{ key: string; raw: RawEntry }> = []
      const expired: Array<{ key: string; raw: RawEntry }> = []
      for await (const { key, raw } of this.#scan(session, filter, true, true)) {
        if (!key.startsWith(prefix) || !isUserKey(key)) continue
        if (liveEntry(raw, now) !== undefined) live.push({ key, raw })
        else if (expiredEntry(raw, now) !== undefined) expired.push({ key, raw })
      }
      const removed: Array<{ key: string; raw: RawEntry }> = []
      await forEachLimited(live, PARALLELISM, async (item) => {
        // Fenced: a key rewritten since the scan is a write that came after the clear.
        if (await this.#deleteAt(session, item.key, item.raw.seq)) removed.push(item)
      })
      const cleared = removed.length
      await forEachLimited(expired, PARALLELISM, async (item) => {
        if (await this.#expire(session, item.key, item.raw)) removed.push(item)
      })
      await this.#accountRemovals(session, removed)
      return cleared
    })
  }

  /**
   * Sets or replaces the quota of the user entries under `prefix` (a namespace prefix ending in
   * `.`). It applies to this store's writes at once; the returned promise settles once the
   * quota is recorded in the bucket, where every process sharing it finds it, its usage is
   * counted (the first time) and the prefix is brought within it. A quota set again, here or by
   * a restarted process, keeps the usage and eviction count recorded so far.
   */
  setQuota(prefix: string, limits: QuotaLimits): Promise<void> {
    this.#checkOpen()
    const checked = checkQuota(prefix, limits)
    // Its bookkeeping keys are a few bytes longer than the prefix; they must fit a request too.
    checkKey(recentKeyOf(prefix), this.#maxKeyBytes)
    const state = this.#quotas.define(prefix, checked)
    return this.#run('setQuota', (session) =>
      this.#quotas.record(this.#quotaIo(session), state, checked),
    )
  }

  /**
   * The usage of the quota on `prefix` as recorded in the bucket, shared by every process:
   * entries and bytes (payload + key) of its user entries, and how many were evicted since the
   * quota was first set. An entry past its deadline counts until it is removed (by a read, the
   * sweep, `prune()` or the next eviction, which removes expired entries first).
   */
  async quotaUsage(prefix: string): Promise<QuotaUsage | undefined> {
    this.#checkOpen()
    return this.#run('quotaUsage', (session) => this.#quotas.usage(this.#quotaIo(session), prefix))
  }

  /**
   * Writes the reads noted for the LRU order of quotas to the bucket now, where every process's
   * evictions see them. The store does it on its own every 50 ms, before it evicts and when it
   * closes; this is for a caller that needs a read to count at once.
   */
  async flushReads(): Promise<void> {
    this.#checkOpen()
    if (!this.#quotas.pendingTouches) return
    await this.#run('flushReads', (session) => this.#quotas.flushAll(this.#quotaIo(session)))
  }

  /**
   * Removes entries whose deadline has passed (fenced on their revision, so a newer write is
   * never deleted) and delete markers older than `tombstoneTtl`. Scans only headers.
   * @returns how many expired entries it removed
   */
  async prune(): Promise<number> {
    this.#checkOpen()
    // A background sweep already running may be acting on an older clock reading; let it finish
    // so this sweep sees the state after it.
    await this.#sweeping?.catch(() => undefined)
    return this.#run('prune', (session) => this.#startSweep(session))
  }

  /**
   * Previous versions of a key, oldest first, with revision, server time and operation. The
   * bucket keeps as many versions per key as its `history` setting (delete markers included,
   * until the sweep removes markers older than `tombstoneTtl`). When the newest version is a
   * value whose deadline has passed and no sweep or read has removed it yet, an `expire` version
   * without revision is added at its deadline.
   */
  async history(key: string, options?: NatsHistoryOptions): Promise<NatsHistoryEntry[]> {
    this.#checkOpen()
    checkKey(key, this.#maxKeyBytes)
    const limit = historyLimit(options)
    return this.#run('history', async (session) => {
      const versions: NatsHistoryEntry[] = []
      for await (const { raw, message } of this.#scan(session, key, false, false)) {
        versions.push(toHistoryEntry(raw, message))
      }
      const expiry = inferredExpiry(versions.at(-1), this.#clock.now())
      if (expiry !== undefined) {
        versions.push({ ...expiry, kvOperation: 'DEL', time: expiry.at, expired: true })
      }
      return lastVersions(versions, limit)
    })
  }

  /**
   * Reports changes to user entries under `prefix` from every process sharing the bucket,
   * through an ordered push consumer of new messages only (a KV watch). Expiries are reported
   * when flowcache writes their marker (the first read or sweep after the deadline, in any
   * process); a marker's `at` is the deadline. After a disconnect the watch resumes where it
   * was, so no change is lost while the stream keeps it.
   */
  async watch(prefix: string, listener: StoreWatchListener): Promise<StoreWatch> {
    this.#checkOpen()
    const filter = filterForPrefix(prefix)
    if (filter === undefined) return { close: async () => undefined }
    return this.#run('watch', async (session) => {
      const consumer = await session.js.consumers.get(session.stream, {
        filter_subjects: session.subjects + filter,
        deliver_policy: DeliverPolicy.New,
        headers_only: false,
      })
      const messages = await consumer.consume()
      const prefixLength = session.subjects.length
      let closed = false
      const pump = async (): Promise<void> => {
        for await (const message of messages) {
          const key = message.subject.slice(prefixLength)
          if (!key.startsWith(prefix) || !isUserKey(key)) continue
          const change = toChange(
            key,
            toRawEntry(message.seq, message.data, message.headers),
            message,
          )
          try {
            listener.change(change)
          } catch {
            // A listener's bug must not stop the watch.
          }
        }
      }
      pump().then(
        () => {
          if (!closed) listener.interrupted?.('the NATS watch ended')
        },
        (error: unknown) => {
          if (!closed) listener.interrupted?.(`the NATS watch failed: ${messageOf(error)}`)
        },
      )
      return {
        close: async () => {
          if (closed) return
          closed = true
          await messages.close().catch(() => undefined)
        },
      }
    })
  }

  now(): number {
    return this.#clock.now()
  }

  /**
   * The L1 invalidation bus on this store's connection: subject `flowcache.l1.<bucket>.<channel>`.
   * @see InvalidationBus
   */
  createBus(channel: string): InvalidationBus {
    return new NatsInvalidationBus(
      async () => {
        this.#checkOpen()
        return (await this.#session()).nc
      },
      busSubject(this.bucket, channel),
    )
  }

  /** Connects and opens (or creates) the bucket; rejects with `StoreUnavailableError` when the server cannot be reached. */
  async connect(): Promise<void> {
    this.#checkOpen()
    await this.#session()
  }

  health(): StoreHealth {
    if (this.#closed) return { status: 'down', reason: 'the store is closed', since: Date.now() }
    if (this.#disconnectedSince !== undefined) {
      return {
        status: 'down',
        reason: 'connection to NATS lost; reconnecting',
        since: this.#disconnectedSince,
      }
    }
    if (this.#lastError !== undefined && this.#opening === undefined) {
      return { status: 'down', reason: this.#lastError.reason, since: this.#lastError.since }
    }
    return { status: 'ok', since: this.#healthySince }
  }

  /** Stops the sweep, waits for background work, and drains the connection if the store opened it. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  // ---- connection -----------------------------------------------------------------------------

  #buildConnectOptions(options: NatsStoreOptions): NodeConnectionOptions {
    const servers = options.servers ?? options.url
    const result: NodeConnectionOptions = {
      name: 'flowcache',
      // Reconnect forever: the store is long-lived and must come back after any outage without
      // being recreated (nats.js gives up after 10 attempts by default).
      maxReconnectAttempts: -1,
      ...options.connectOptions,
      timeout: this.#requestTimeoutMs,
    }
    if (servers !== undefined) result.servers = servers
    const credentials = options.credentials
    if (credentials !== undefined) {
      if ('creds' in credentials) {
        const bytes =
          typeof credentials.creds === 'string'
            ? new TextEncoder().encode(credentials.creds)
            : credentials.creds
        result.authenticator = credsAuthenticator(bytes)
      } else if ('token' in credentials) {
        result.token = credentials.token
      } else {
        result.user = credentials.user
        result.pass = credentials.pass
      }
    }
    return result
  }

  /** The open session; connects (again, after a failed attempt) when there is none. */
  async #session(): Promise<Session> {
    if (this.#opening === undefined) {
      const opening = this.#open()
      this.#opening = opening
      opening.catch((error: unknown) => {
        // The next call tries again: a store must recover from a server that was down at start.
        if (this.#opening === opening) this.#opening = undefined
        this.#lastError = { reason: messageOf(error), since: Date.now() }
      })
    }
    const session = await this.#opening
    if (this.#disconnectedSince !== undefined) {
      // nats.js would queue the request until it reconnects and then drop it anyway (it resets
      // its outbound buffer on reconnect), so fail now rather than after the timeout.
      throw new StoreUnavailableError(
        `the connection to NATS was lost ${Date.now() - this.#disconnectedSince} ms ago; the client is reconnecting in the background`,
      )
    }
    return session
  }

  async #open(): Promise<Session> {
    let nc = this.#given
    if (nc === undefined) {
      try {
        nc = await connect(this.#connectOptions)
      } catch (error) {
        const where = this.#connectOptions.servers ?? 'nats://127.0.0.1:4222'
        throw new StoreUnavailableError(
          `cannot connect to NATS at ${String(where)}: ${messageOf(error)}`,
          { cause: error },
        )
      }
      this.#owned = nc
      this.#disconnectedSince = undefined
      if (this.#closed) {
        await nc.close()
        throw new ClosedError('this nats store was closed while connecting')
      }
    }
    this.#watchStatus(nc)
    try {
      const timeout = this.#requestTimeoutMs
      const js = jetstream(nc, { timeout })
      const jsm = await jetstreamManager(nc, { timeout })
      const ttlServer = versionAtLeast(nc.info?.version, 2, 11)
      await new Kvm(js).create(this.bucket, {
        history: this.#history,
        ...(this.#maxAgeMs === undefined ? {} : { ttl: this.#maxAgeMs }),
        // Only 2.11+ knows this setting; it turns on allow_msg_ttl, which native TTL needs.
        ...(ttlServer ? { markerTTL: this.#tombstoneTtlMs } : {}),
        description: 'flowcache store',
      })
      const stream = `KV_${this.bucket}`
      const { config } = await jsm.streams.info(stream)
      const direct = config.allow_direct === true
      // Native TTL only where it cannot change what readers see: with the system clock (the
      // server's TTL runs on real time) and history 1 (with older versions kept, removing the
      // newest would resurface the previous value, ADR-8). The deadline header stays the truth.
      this.#nativeTtl =
        ttlServer &&
        config.allow_msg_ttl === true &&
        config.max_msgs_per_subject === 1 &&
        this.#clock === systemClock
      // An existing bucket keeps its own history setting, whatever this store was given.
      this.#capabilities = capabilitiesOf(
        this.#nativeTtl ? 'native' : 'emulated',
        Math.max(1, Math.min(MAX_HISTORY, config.max_msgs_per_subject)),
      )
      const session: Session = {
        nc,
        js,
        jsm,
        stream,
        subjects: `$KV.${this.bucket}.`,
        direct,
        directIsLeader: direct && config.num_replicas === 1 && config.mirror === undefined,
        nativeTtl: this.#nativeTtl,
      }
      // The quotas other processes recorded, so that the first write already respects them.
      await this.#quotas.refresh(this.#quotaIo(session))
      this.#lastError = undefined
      return session
    } catch (error) {
      if (this.#owned === nc) {
        this.#owned = undefined
        await nc.close().catch(() => undefined)
      }
      throw this.#fault('open the bucket', error)
    }
  }

  #watchStatus(nc: NatsConnection): void {
    // Once per connection: a given connection outlives failed attempts to open the bucket.
    if (this.#watched === nc) return
    this.#watched = nc
    const statuses = nc.status()
    // Typed as an AsyncIterable, it is nats.js's QueuedIterator: stop() ends the iteration, so a
    // store on a shared connection leaves no listener behind when it closes.
    if ('stop' in statuses && typeof statuses.stop === 'function') {
      const stop = statuses.stop as () => void
      this.#stopStatus = () => stop.call(statuses)
    }
    const watch = async (): Promise<void> => {
      for await (const status of statuses) {
        if (status.type === 'disconnect') this.#disconnectedSince ??= Date.now()
        else if (status.type === 'reconnect') this.#disconnectedSince = undefined
      }
    }
    watch().catch(() => undefined)
  }

  async #shutdown(): Promise<void> {
    clearInterval(this.#touchTimer)
    // Reads noted for LRU go to the bucket before the connection does.
    if (
      this.#quotas.pendingTouches &&
      this.#opening !== undefined &&
      this.#disconnectedSince === undefined
    ) {
      await this.#flushTouches().catch(() => undefined)
    }
    this.#closed = true
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer)
    await Promise.allSettled([...this.#background])
    await this.#opening?.catch(() => undefined)
    this.#stopStatus?.()
    const nc = this.#owned
    this.#owned = undefined
    if (nc === undefined || nc.isClosed()) return
    if (this.#disconnectedSince === undefined) {
      // Drain flushes what is in flight; it waits on the server, so it is bounded.
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.#requestTimeoutMs)
      })
      await Promise.race([nc.drain().catch(() => undefined), timeout])
      clearTimeout(timer)
    }
    if (!nc.isClosed()) await nc.close().catch(() => undefined)
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('this nats store is closed; create a new one')
  }

  /** Runs one operation on the session, turning every unexpected failure into `StoreUnavailableError`. */
  async #run<R>(operation: string, body: (session: Session) => Promise<R>): Promise<R> {
    const session = await this.#session()
    try {
      return await body(session)
    } catch (error) {
      throw this.#fault(operation, error)
    }
  }

  #fault(operation: string, error: unknown): FlowcacheError {
    if (error instanceof FlowcacheError) return error
    if (this.#closed) {
      return new ClosedError(`this nats store was closed during ${operation}`, { cause: error })
    }
    // A request that timed out may still reach the server (it was sent, or sits in a socket
    // buffer of a paused server), so a write's outcome is unknown, not "not applied".
    const unknown =
      error instanceof natsErrors.TimeoutError && !READ_OPERATIONS.has(operation)
        ? '; it may still have been applied'
        : ''
    return new StoreUnavailableError(
      `nats store (bucket ${this.bucket}) could not ${operation}: ${messageOf(error)}${unknown}`,
      { cause: error },
    )
  }

  #contention(operation: string, key: string): StoreUnavailableError {
    return new StoreUnavailableError(
      `nats store: ${operation} of ${key} lost ${MAX_CAS_ATTEMPTS} compare-and-set rounds in a row to concurrent writers; retry later`,
    )
  }

  // ---- entries --------------------------------------------------------------------------------

  #deadline(ttlMs: number | undefined): number | null {
    return ttlMs === undefined ? null : Math.ceil(this.#clock.now() + ttlMs)
  }

  /**
   * The last message of a key. `leader`: the read decides a conditional write, so it must not
   * come from a lagging replica; direct get is used only when it reads the one copy there is.
   */
  async #read(session: Session, key: string, leader: boolean): Promise<RawEntry | undefined> {
    const query = { last_by_subj: session.subjects + key }
    const message =
      session.direct && (!leader || session.directIsLeader)
        ? await session.jsm.direct.getMessage(session.stream, query)
        : await session.jsm.streams.getMessage(session.stream, query)
    return message === null ? undefined : toRawEntry(message.seq, message.data, message.header)
  }

  #toEntry(
    session: Session,
    key: string,
    raw: RawEntry | undefined,
    use = true,
  ): StoreEntry | undefined {
    const now = this.#clock.now()
    const expired = expiredEntry(raw, now)
    if (expired !== undefined) this.#purgeLater(session, key, expired)
    const live = liveEntry(raw, now)
    if (live === undefined) return undefined
    // A hit is a use for LRU: noted here, written to the bucket in batches.
    if (use && this.#quotas.active) this.#quotas.touch(key)
    return { value: live.value, revision: String(live.seq), expiresAt: live.expiresAt }
  }

  /**
   * Publishes a value. With `expectedSeq`, only if the key's last sequence is that one (0: no
   * message yet); returns `undefined` when it is not.
   */
  async #write(
    session: Session,
    key: string,
    value: Uint8Array,
    expiresAt: number | null,
    expectedSeq?: number,
    native = true,
  ): Promise<number | undefined> {
    const nativeTtlSeconds =
      native && session.nativeTtl && expiresAt !== null
        ? Math.max(1, Math.ceil((expiresAt - this.#clock.now()) / 1000))
        : undefined
    const headers = writeHeaders({ expiresAt, expectedSeq, nativeTtlSeconds })
    return this.#publish(session, key, value, headers, expectedSeq !== undefined)
  }

  async #publish(
    session: Session,
    key: string,
    value: Uint8Array,
    headers: MsgHdrs | undefined,
    conditional: boolean,
  ): Promise<number | undefined> {
    checkPayload(value, headers, session.nc.info?.max_payload ?? 1024 * 1024)
    try {
      const ack = await session.js.publish(
        session.subjects + key,
        value,
        headers === undefined ? undefined : { headers },
      )
      return ack.seq
    } catch (error) {
      if (conditional && isWrongSequence(error)) return undefined
      throw error
    }
  }

  /** Writes a DEL marker if the key's last sequence is still `seq`. */
  async #deleteAt(
    session: Session,
    key: string,
    seq: number,
    expiredAt?: number,
  ): Promise<boolean> {
    return (
      (await this.#publish(session, key, EMPTY, deleteHeaders(seq, expiredAt), true)) !== undefined
    )
  }

  /** Removes an entry found past its deadline, unless it was rewritten since it was read. */
  #expire(session: Session, key: string, raw: RawEntry): Promise<boolean> {
    return this.#deleteAt(session, key, raw.seq, raw.expiresAt ?? undefined)
  }

  /** Expires an entry in the background; a failure is left for the next read or sweep. */
  #purgeLater(session: Session, key: string, raw: RawEntry): void {
    if (this.#closed) return
    const purge = this.#expire(session, key, raw)
      .then(async (removed) => {
        if (removed) await this.#accountRemovals(session, [{ key, raw }])
        return removed
      })
      .catch(() => false)
    this.#background.add(purge)
    void purge.finally(() => this.#background.delete(purge))
  }

  /** Deletes the live entry of a key (only at `expectedSeq` when given); whether one was deleted. */
  async #deleteLive(
    session: Session,
    key: string,
    expectedSeq: number | undefined,
  ): Promise<boolean> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const raw = await this.#read(session, key, true)
      if (raw === undefined || raw.deleted) return false
      if (expiredEntry(raw, this.#clock.now()) !== undefined) {
        if (await this.#expire(session, key, raw))
          await this.#accountRemovals(session, [{ key, raw }])
        return false
      }
      if (expectedSeq !== undefined && raw.seq !== expectedSeq) return false
      if (await this.#deleteAt(session, key, raw.seq)) {
        await this.#accountRemovals(session, [{ key, raw }])
        return true
      }
      // Fenced on the revision we read: someone wrote in between. A fenced delete is decided;
      // an unfenced one looks again.
      if (expectedSeq !== undefined) return false
    }
    throw this.#contention('delete', key)
  }

  // ---- quotas ---------------------------------------------------------------------------------

  /** What the quota bookkeeping needs, bound to a session. */
  #quotaIo(session: Session): QuotaIo {
    return {
      read: (key) => this.#read(session, key, true),
      put: (key, value, expectedSeq) =>
        this.#publish(session, key, value, writeHeaders({ expiresAt: null, expectedSeq }), true),
      remove: (key, raw, expired) =>
        expired ? this.#expire(session, key, raw) : this.#deleteAt(session, key, raw.seq),
      scan: (filter) => withTimes(this.#scan(session, filter, true, true)),
      now: () => this.#clock.now(),
    }
  }

  /** The quotas a write to `key` counts toward (none for system keys). */
  #quotasFor(session: Session, key: string): Promise<QuotaState[]> | QuotaState[] {
    if (!isUserKey(key)) return []
    return this.#quotas.forWrite(this.#quotaIo(session), key)
  }

  /** `set` of a user key under quotas: read, then publish at the revision read. */
  async #setUnderQuota(
    session: Session,
    quotas: readonly QuotaState[],
    key: string,
    value: Uint8Array,
    expiresAt: number | null,
  ): Promise<number> {
    this.#quotas.checkFits(key, entrySize(key, value.byteLength), quotas)
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      if (attempt > 0) await casBackoff(attempt)
      const raw = await this.#read(session, key, true)
      const seq = await this.#quotaPut(session, quotas, key, raw, value, expiresAt)
      if (seq !== undefined) return seq
    }
    throw this.#contention('set', key)
  }

  /**
   * Publishes a user entry under quotas, only if the key's last message is still `raw` (none:
   * no message). Growth is reserved in the ledgers first (evicting when it does not fit), so
   * what the bucket holds never exceeds a ledger; shrinkage is given back once written, and a
   * lost race gives the reservation back. `undefined` when the key changed since `raw`.
   */
  async #quotaPut(
    session: Session,
    quotas: readonly QuotaState[],
    key: string,
    raw: RawEntry | undefined,
    value: Uint8Array,
    expiresAt: number | null,
  ): Promise<number | undefined> {
    const io = this.#quotaIo(session)
    const size = entrySize(key, value.byteLength)
    const delta: UsageDelta = counted(raw)
      ? { entries: 0, bytes: size - entrySize(key, raw.size), evictions: 0 }
      : { entries: 1, bytes: size, evictions: 0 }
    const grows = delta.entries > 0 || delta.bytes > 0
    if (grows) await this.#quotas.admit(io, quotas, delta, key)
    // No native TTL under a quota: the store removes expired entries itself, so it can count them.
    // A write that fails with an unknown outcome keeps its reservation: the ledger may then
    // count more than the bucket holds, never less.
    const seq = await this.#write(session, key, value, expiresAt, raw?.seq ?? 0, false)
    if (seq === undefined) {
      if (grows) await this.#quotas.apply(io, quotas, negated(delta))
      return undefined
    }
    if (delta.bytes < 0) await this.#quotas.apply(io, quotas, delta)
    return seq
  }

  /** Subtracts removed user entries (deleted, expired, cleared) from their quotas' ledgers. */
  async #accountRemovals(
    session: Session,
    removed: ReadonlyArray<{ key: string; raw: RawEntry }>,
  ): Promise<void> {
    if (!this.#quotas.active || removed.length === 0) return
    const deltas = new Map<QuotaState, UsageDelta>()
    for (const { key, raw } of removed) {
      for (const quota of this.#quotas.of(key)) {
        const delta = deltas.get(quota) ?? { entries: 0, bytes: 0, evictions: 0 }
        delta.entries--
        delta.bytes -= entrySize(key, raw.size)
        deltas.set(quota, delta)
      }
    }
    const io = this.#quotaIo(session)
    for (const [quota, delta] of deltas) await this.#quotas.apply(io, [quota], delta)
  }

  #backgroundFlush(): void {
    if (this.#closed || !this.#quotas.pendingTouches || this.#opening === undefined) return
    if (this.#disconnectedSince !== undefined) return
    // A flush slower than the tick (a slow round trip, contention) is not overlapped by the next
    // one: that would only race it on the same record.
    if (this.#flushing !== undefined) return
    const run = this.#flushTouches()
      .catch(() => undefined)
      .finally(() => {
        this.#flushing = undefined
        this.#background.delete(run)
      })
    this.#flushing = run
    this.#background.add(run)
  }

  async #flushTouches(): Promise<void> {
    const session = await this.#opening
    if (session === undefined) return
    await this.#quotas.flushAll(this.#quotaIo(session))
  }

  // ---- scans and sweeping ---------------------------------------------------------------------

  /**
   * Streams the messages of the keys matching `filter` (relative to the bucket) through an
   * ephemeral consumer: the last message per key, or every kept message. `headersOnly` scans move
   * no values. The consumer's snapshot is taken when it is created, so a scan ends even while
   * others keep writing.
   */
  async *#scan(
    session: Session,
    filter: string,
    lastPerKey: boolean,
    headersOnly: boolean,
  ): AsyncGenerator<{ key: string; raw: RawEntry; message: JsMsg }> {
    const info = await session.jsm.consumers.add(session.stream, {
      filter_subject: session.subjects + filter,
      deliver_policy: lastPerKey ? DeliverPolicy.LastPerSubject : DeliverPolicy.All,
      ack_policy: AckPolicy.None,
      headers_only: headersOnly,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(SCAN_IDLE_MS),
    })
    try {
      const total = info.num_pending
      if (total === 0) return
      const consumer = session.js.consumers.getConsumerFromInfo(info)
      const expires = Math.max(MIN_FETCH_EXPIRES_MS, this.#requestTimeoutMs)
      const prefixLength = session.subjects.length
      let received = 0
      while (received < total) {
        const batch = await consumer.fetch({
          max_messages: Math.min(SCAN_BATCH, total - received),
          expires,
        })
        let got = 0
        for await (const message of batch) {
          got++
          received++
          const key = message.subject.slice(prefixLength)
          yield { key, raw: toRawEntry(message.seq, message.data, message.headers), message }
          // Messages removed since the snapshot are skipped by the server: none left is the end.
          if (message.info.pending === 0) return
          if (received >= total) break
        }
        if (got === 0) {
          throw new StoreUnavailableError(
            `nats store: a scan of bucket ${this.bucket} received nothing for ${expires} ms with ${total - received} messages pending`,
          )
        }
      }
    } finally {
      // The server would drop the idle consumer anyway; deleting it now frees it sooner.
      session.jsm.consumers.delete(session.stream, info.name).catch(() => undefined)
    }
  }

  #backgroundSweep(): void {
    if (this.#closed || this.#sweeping !== undefined || this.#opening === undefined) return
    if (this.#disconnectedSince !== undefined) return
    const run = this.#opening.then((session) => this.#startSweep(session)).catch(() => 0)
    this.#background.add(run)
    void run.finally(() => this.#background.delete(run))
  }

  #startSweep(session: Session): Promise<number> {
    const sweep = this.#sweep(session)
    this.#sweeping = sweep
    const clear = (): void => {
      if (this.#sweeping === sweep) this.#sweeping = undefined
    }
    sweep.then(clear, clear)
    return sweep
  }

  async #sweep(session: Session): Promise<number> {
    // One clock reading for the whole sweep: what counts as expired must not move under it.
    const now = this.#clock.now()
    const markerDeadline = Date.now() - this.#tombstoneTtlMs
    const expired: Array<{ key: string; raw: RawEntry }> = []
    const markers: Array<{ subject: string; seq: number }> = []
    for await (const { key, raw, message } of this.#scan(session, '>', true, true)) {
      if (raw.deleted) {
        if (timeOf(message) <= markerDeadline)
          markers.push({ subject: message.subject, seq: raw.seq })
      } else if (expiredEntry(raw, now) !== undefined) {
        expired.push({ key, raw })
      }
    }
    const gone: Array<{ key: string; raw: RawEntry }> = []
    await forEachLimited(expired, PARALLELISM, async (item) => {
      if (await this.#expire(session, item.key, item.raw)) gone.push(item)
    })
    const removed = gone.length
    await this.#accountRemovals(session, gone)
    await forEachLimited(markers, PARALLELISM, async ({ subject, seq }) => {
      // Purges the marker and anything older on that key; a write after it has a higher
      // sequence and survives.
      await session.jsm.streams.purge(session.stream, { filter: subject, seq: seq + 1 })
    })
    if (this.#quotas.active) {
      await this.#quotas.reconcile(
        this.#quotaIo(session),
        Math.max(MIN_QUIET_MS, 3 * this.#requestTimeoutMs),
      )
    }
    return removed
  }
}

function negated(delta: UsageDelta): UsageDelta {
  return { entries: -delta.entries, bytes: -delta.bytes, evictions: -delta.evictions }
}

/** A scan's messages with their server timestamps. */
async function* withTimes(
  scan: AsyncIterable<{ key: string; raw: RawEntry; message: JsMsg }>,
): AsyncGenerator<{ key: string; raw: RawEntry; time: number }> {
  for await (const { key, raw, message } of scan) yield { key, raw, time: timeOf(message) }
}

/** Server timestamp of a consumer message, in ms since the epoch. */
function timeOf(message: JsMsg): number {
  return Math.floor(message.info.timestampNanos / 1_000_000)
}

/** The KV operation of a message and, for an expiry marker, the deadline it expired. */
function kvOperationOf(message: { headers?: MsgHdrs | undefined }): {
  kvOperation: 'PUT' | 'DEL' | 'PURGE'
  expiredAt: number | undefined
} {
  const headers = message.headers
  const operationHeader = headers?.get(OPERATION_HEADER) ?? ''
  const marker = (headers?.get(MARKER_REASON_HEADER) ?? '') !== ''
  const kvOperation =
    operationHeader === 'DEL' || operationHeader === 'PURGE'
      ? operationHeader
      : marker
        ? 'PURGE'
        : 'PUT'
  const expiredText = headers?.get(EXPIRED_HEADER) ?? ''
  const expiredAt =
    kvOperation === 'DEL' && expiredText !== ''
      ? Number(expiredText)
      : marker && operationHeader === ''
        ? Number.NaN // removed by the server's own per-message TTL
        : undefined
  return { kvOperation, expiredAt }
}

function toHistoryEntry(raw: RawEntry, message: JsMsg): NatsHistoryEntry {
  const { kvOperation, expiredAt } = kvOperationOf(message)
  const time = timeOf(message)
  const expired = expiredAt !== undefined
  const at = expired && Number.isSafeInteger(expiredAt) ? expiredAt : time
  return {
    operation: kvOperation === 'PUT' ? 'set' : expired ? 'expire' : 'delete',
    revision: String(raw.seq),
    at,
    value: kvOperation === 'PUT' ? raw.value : undefined,
    expiresAt: kvOperation === 'PUT' ? raw.expiresAt : null,
    kvOperation,
    time,
    expired: kvOperation === 'DEL' && expired,
  }
}

/** A watched message as a change. */
function toChange(key: string, raw: RawEntry, message: JsMsg): StoreChange {
  const { kvOperation, expiredAt } = kvOperationOf(message)
  const time = timeOf(message)
  if (kvOperation === 'PUT') {
    return { type: 'set', key, revision: String(raw.seq), value: raw.value, at: time }
  }
  const expired = expiredAt !== undefined
  return {
    type: expired ? 'expire' : 'delete',
    key,
    revision: String(raw.seq),
    at: expired && Number.isSafeInteger(expiredAt) ? expiredAt : time,
  }
}

/**
 * Creates a store on a NATS JetStream KV bucket (created when missing). It connects on first use
 * (or on `connect()`), reconnects on its own, and fails calls with `StoreUnavailableError` while
 * the server cannot be reached. Works with any JetStream server; on servers before 2.11 it
 * enforces per-key TTL itself.
 */
export function natsStore(options?: NatsStoreOptions): NatsStore {
  return new NatsStore(options)
}
