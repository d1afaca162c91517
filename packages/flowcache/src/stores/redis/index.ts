/**
 * `flowcache/redis`: the Redis store, for standalone Redis, Sentinel and Redis Cluster (and
 * Redis-compatible servers such as Valkey), over ioredis 5, an optional peer dependency.
 *
 * Layout, readable with `redis-cli`:
 * - The store key `fc.tenant=3Aacme.flow=3Aorders.k/order=3A42` is the Redis key
 *   `{fc.tenant=3Aacme}.flow=3Aorders.k/order=3A42`: root and first namespace are the Cluster
 *   hash tag, so a top-level namespace lives in one slot (see ./keys.ts).
 * - Each entry is a HASH: `v` = the value bytes (`HGET <key> v` shows the JSON of the default
 *   codec), `r` = the revision, and `x` = the deadline in ms since the epoch when it has a TTL.
 *   The native expiry is set to the same deadline (PEXPIREAT), so Redis expires entries itself.
 * - `{<tag>}#revision` is the revision counter of a hash tag: a STRING that expires an hour after
 *   it was (re)started and then restarts above every revision it gave out (see ./scripts.ts).
 * - Namespace quotas: `{<tag>}#quotas` holds the definitions (prefix → limits) and
 *   `{<tag>}#quotas:<prefix>:size|lru|exp|stat` the accounting of each, updated and enforced by
 *   the write scripts; `flowcache#quotas` lists every quota (and, on a single server, defines
 *   those above a first-level namespace). See `setQuota` and the quota helpers in ./scripts.ts.
 *
 * Needs Redis 5.0 or later. Writes are Lua scripts (EVALSHA); `list` and `clear` use SCAN with
 * MATCH on every master, never KEYS or FLUSHDB. Every call fails within `commandTimeoutMs` with
 * `StoreUnavailableError` when Redis cannot answer: no offline queue, no replay of commands that
 * timed out, and reconnection with capped, jittered exponential backoff.
 */
import { Buffer } from 'node:buffer'
import { performance } from 'node:perf_hooks'
import { Cluster, Redis, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis'

import { incremented, positiveInteger } from '../../core/checks.js'
import { isUserKey, namespacePrefixes } from '../../core/keyspace.js'
import {
  ClosedError,
  DecodeError,
  FlowcacheError,
  InvalidArgumentError,
  StoreUnavailableError,
  ValueTooLargeError,
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
  StoreVersion,
  StoreWatch,
  StoreWatchListener,
  StoreWriteItem,
  StoreWriteOptions,
} from '../../types/store.js'
import {
  checkStoreKey,
  counterKey,
  fromRedisKey,
  hashTagOf,
  QUOTA_DIRECTORY,
  quotaDefinitionsKey,
  scanPattern,
  toRedisKey,
} from './keys.js'
import { busChannel, RedisInvalidationBus } from './bus.js'
import {
  ADOPT,
  DELETE_MANY,
  FORGET_MANY,
  GET_MANY,
  GET_TOUCH,
  INCREMENT,
  QUOTA_EVICTION_BUDGET,
  QUOTA_USAGE,
  SET_MANY,
  SET_QUOTA,
  WRITE,
  type LuaScript,
} from './scripts.js'
import { changeChannel, historyKey, parseVersion, RedisWatch } from './changes.js'
import { historyDepth, historyLimit, inferredExpiry, lastVersions } from '../changes.js'

/** Options of {@link redisStore}. Give at most one of `url`, `client` and `cluster`. */
export interface RedisStoreOptions {
  /**
   * `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS.
   * @default ioredis' default, 127.0.0.1:6379 (or the Sentinels given in `redisOptions`)
   */
  url?: string
  /**
   * An existing ioredis client (standalone, Sentinel or Cluster) to use as it is configured. The
   * store never closes it unless `closeClient` is set. Give it `enableOfflineQueue: false` to
   * fail fast like the clients the store creates.
   */
  client?: Redis | Cluster
  /** Close `client` when the store is closed. @default false */
  closeClient?: boolean
  /** Seed nodes of a Redis Cluster; the store creates an ioredis `Cluster` client over them. */
  cluster?: readonly ClusterNode[]
  /**
   * ioredis options applied over the store's fail-fast defaults: `password`, `tls`, `db`,
   * `sentinels` with `name` for Sentinel, and so on. Per node in Cluster mode.
   */
  redisOptions?: RedisOptions
  /** ioredis Cluster options (`natMap`, `scaleReads`, …) applied over the store's defaults. */
  clusterOptions?: Omit<ClusterOptions, 'redisOptions'>
  /**
   * Longest time one store call may take, in ms, waiting for a connection in progress included;
   * then it rejects with `StoreUnavailableError`. `list` and `clear` apply it per SCAN page.
   * @default 1000
   */
  commandTimeoutMs?: number
  /** Longest time `connect()` and each connection attempt may take, in ms. @default 2000 */
  connectTimeoutMs?: number
  /** Ceiling of the first reconnect delay, in ms; doubles per failed attempt, full jitter. @default 100 */
  reconnectBaseMs?: number
  /** Longest reconnect delay, in ms. @default 2000 */
  reconnectMaxMs?: number
  /**
   * Versions kept per user key for `history()`, the current one included, up to 64 (flowgen's
   * `history`): a LIST next to each entry, written by the same script as the entry. Each version
   * holds its value, so history multiplies what a key costs in Redis; `0` keeps no log.
   * @default 0
   */
  history?: number
  /**
   * Publish a change message (`set`/`delete`, revision, time, key; no value) from every write
   * script to the channel of the key's hash tag, so that `watch()` works on every replica.
   * Every process writing to the same keys should use the same setting. @default true
   */
  changes?: boolean
}

type Client = Redis | Cluster

const DEFAULT_COMMAND_TIMEOUT_MS = 1000
const DEFAULT_CONNECT_TIMEOUT_MS = 2000
const DEFAULT_RECONNECT_BASE_MS = 100
const DEFAULT_RECONNECT_MAX_MS = 2000
/** Longest TTL, in ms (about 278 years): deadlines stay exact integers in Lua's doubles. */
const MAX_TTL_MS = 2 ** 43
/** Entries per script call: a big batch is split so one script never blocks Redis for long. */
const BATCH_SIZE = 500
/** SCAN COUNT: keys Redis looks at per page. */
const SCAN_COUNT = 1000
/** Attempts of the compare-and-set loop that increments values of codecs Lua cannot read. */
const CAS_ATTEMPTS = 1000
/** How often the offset to the Redis clock is measured again, in ms. */
const CLOCK_SAMPLE_MS = 30_000
/** How often a replica reads the quota directory again, in ms. */
const QUOTA_REFRESH_MS = 5_000
/** Marks the error reply of a write that could never fit its quota (see scripts.ts). */
const TOO_LARGE_MARK = 'FLOWCACHE_TOO_LARGE '

const noop = (): void => undefined

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message
  return typeof error === 'string' ? error : 'unknown error'
}

function positive(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw InvalidArgumentError.format(name, `must be a positive number of ms; got ${String(value)}`)
  }
  return value
}

/** `ttlMs` as the scripts take it: `''` for none, else whole ms, rounded up so never early. */
function ttlArgument(ttlMs: number | undefined): string {
  if (ttlMs === undefined) return ''
  if (typeof ttlMs !== 'number' || !(ttlMs > 0) || ttlMs > MAX_TTL_MS) {
    throw InvalidArgumentError.format(
      'ttlMs',
      `must be a positive number of ms up to ${MAX_TTL_MS}; got ${String(ttlMs)}`,
    )
  }
  return String(Math.ceil(ttlMs))
}

/** The bytes as a Buffer over the same memory: ioredis sends Buffers as they are. */
function toBuffer(value: Uint8Array): Buffer {
  if (!(value instanceof Uint8Array)) {
    throw InvalidArgumentError.format('value', `must be a Uint8Array; got ${typeof value}`)
  }
  return Buffer.isBuffer(value)
    ? value
    : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
}

function unexpectedReply(what: string, reply: unknown): StoreUnavailableError {
  return new StoreUnavailableError(
    `redis store: unexpected reply to ${what}: ${JSON.stringify(reply)?.slice(0, 200)}; is this a Redis-compatible server?`,
  )
}

function replyArray(what: string, reply: unknown): unknown[] {
  if (!Array.isArray(reply)) throw unexpectedReply(what, reply)
  return reply as unknown[]
}

function bufferOrNull(what: string, value: unknown): Buffer | null {
  if (value === null || Buffer.isBuffer(value)) return value
  throw unexpectedReply(what, value)
}

/** A StoreEntry from the `v`, `r`, `x` fields of a hash; `undefined` when there is no entry. */
function toEntry(
  storeKey: string,
  value: Buffer | null,
  revision: Buffer | null,
  deadline: Buffer | null,
): StoreEntry | undefined {
  if (value === null && revision === null) return undefined
  if (value === null || revision === null) {
    throw new DecodeError(
      `redis key ${toRedisKey(storeKey)} is a hash without the "v" and "r" fields of a flowcache entry; it was written by something else: delete it or use another key`,
    )
  }
  return {
    value,
    revision: revision.toString('latin1'),
    expiresAt: deadline === null ? null : Number(deadline.toString('latin1')),
  }
}

const utf8 = new TextEncoder()
const plainJsonNumbers = new WeakMap<Codec, boolean>()

/**
 * Whether a codec writes numbers as plain JSON number text and reads such text back as the
 * number: then Lua can add to stored values itself. Other codecs increment by compare-and-set.
 */
function writesPlainJsonNumbers(codec: Codec): boolean {
  let known = plainJsonNumbers.get(codec)
  if (known === undefined) {
    try {
      const text = (value: number): string => Buffer.from(codec.encode(value)).toString('utf8')
      known =
        text(-12.5) === '-12.5' &&
        text(3) === '3' &&
        codec.decode(utf8.encode('1e+21')) === 1e21 &&
        codec.decode(utf8.encode('-0.25')) === -0.25
    } catch {
      known = false
    }
    plainJsonNumbers.set(codec, known)
  }
  return known
}

/** Where the store connects, for error messages; never includes credentials. */
function describeTarget(options: RedisStoreOptions): string {
  if (options.client !== undefined) return 'the given ioredis client'
  if (options.cluster !== undefined) {
    return `Redis Cluster ${options.cluster.map((node) => (typeof node === 'object' ? `${node.host ?? '127.0.0.1'}:${node.port ?? 6379}` : String(node))).join(', ')}`
  }
  if (options.url !== undefined) {
    // ioredis also takes a Unix socket path; a URL is shown without its credentials.
    if (options.url.startsWith('/')) return `Redis at ${options.url}`
    try {
      const url = new URL(options.url)
      return `Redis at ${url.hostname}:${url.port === '' ? '6379' : url.port}`
    } catch {
      return 'Redis at the given url'
    }
  }
  if (options.redisOptions?.sentinels !== undefined) {
    return `Redis Sentinel master ${options.redisOptions.name ?? '(no name)'}`
  }
  return `Redis at ${options.redisOptions?.host ?? '127.0.0.1'}:${options.redisOptions?.port ?? 6379}`
}

/** ioredis' `keyPrefix` would hide the hash tags and show SCAN keys the store cannot map back. */
function checkNoKeyPrefix(options: RedisStoreOptions): void {
  const prefixes = [
    options.redisOptions?.keyPrefix,
    options.clusterOptions?.keyPrefix,
    options.client?.options.keyPrefix,
    options.client?.isCluster === true
      ? (options.client.options as ClusterOptions).redisOptions?.keyPrefix
      : undefined,
  ]
  if (prefixes.some((prefix) => prefix !== undefined && prefix !== '')) {
    throw InvalidArgumentError.format(
      'keyPrefix',
      'is not supported by the redis store: keys come from the keyspace; use createCache({ prefix }) or a namespace instead',
    )
  }
}

let offlineQueueWarned = false

/** The Redis store. Create it with {@link redisStore}. */
export class RedisStore implements Store {
  readonly name = 'redis'
  readonly capabilities: StoreCapabilities

  readonly #client: Client
  readonly #ownsClient: boolean
  readonly #target: string
  readonly #commandTimeoutMs: number
  readonly #connectTimeoutMs: number
  #closed = false
  #closing: Promise<void> | undefined
  #lastError: unknown
  /** A connection attempt failed since the client was last ready: Redis is known to be down. */
  #failing = false
  /** Whether the client was last seen ready, and since when that holds (for health()). */
  #up = false
  #statusSince = Date.now()
  /** Shared by every call waiting for the connection in progress; settled by the events. */
  #readyWait: { promise: Promise<void>; resolve(): void; reject(error: unknown): void } | undefined
  /** Redis clock at `#perfBase` (performance.now() ms), once measured. */
  #clockBase: number | undefined
  #perfBase = 0
  #clockTimer: NodeJS.Timeout | undefined
  readonly #listeners: Array<[string, (...args: unknown[]) => void]>
  /** Versions kept per user key ('0' = no log), as the scripts take it. */
  readonly #depth: string
  readonly #changes: boolean
  /**
   * Quotas set through this store: prefix → `<maxEntries> <maxBytes> <set at>`, passed to every
   * script.
   */
  readonly #localQuotas = new Map<string, string>()
  /** When this store last set a quota (ms on the Redis clock). */
  #lastQuotaAt = 0
  /** Prefixes with a quota, set here or read from the directory: their reads refresh recency. */
  readonly #knownQuotas = new Set<string>()
  #quotaTimer: NodeJS.Timeout | undefined

  constructor(options: RedisStoreOptions = {}) {
    const depth = historyDepth(options.history, 0)
    this.#depth = String(depth)
    this.#changes = options.changes ?? true
    if (typeof this.#changes !== 'boolean') {
      throw InvalidArgumentError.format(
        'changes',
        `must be a boolean; got ${String(this.#changes)}`,
      )
    }
    this.capabilities = {
      persistent: true,
      distributed: true,
      ttl: 'native',
      injectableClock: false,
      quotas: true,
      local: false,
      ...(depth > 0 ? { history: depth } : {}),
      ...(this.#changes ? { watch: 'shared' as const } : {}),
      watchExpiry: false,
    }
    const given = [options.url, options.client, options.cluster].filter((o) => o !== undefined)
    checkNoKeyPrefix(options)
    if (given.length > 1) {
      throw InvalidArgumentError.format(
        'options',
        'take at most one of url, client and cluster; got several',
      )
    }
    this.#commandTimeoutMs = positive(
      options.commandTimeoutMs,
      'commandTimeoutMs',
      DEFAULT_COMMAND_TIMEOUT_MS,
    )
    this.#connectTimeoutMs = positive(
      options.connectTimeoutMs,
      'connectTimeoutMs',
      DEFAULT_CONNECT_TIMEOUT_MS,
    )
    const baseMs = positive(options.reconnectBaseMs, 'reconnectBaseMs', DEFAULT_RECONNECT_BASE_MS)
    const maxMs = positive(options.reconnectMaxMs, 'reconnectMaxMs', DEFAULT_RECONNECT_MAX_MS)
    this.#target = describeTarget(options)
    // Full jitter: replicas that lost Redis together do not reconnect in lockstep.
    const backoff = (attempt: number): number =>
      Math.max(10, Math.floor(Math.random() * Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30))))
    const failFast: RedisOptions = {
      connectTimeout: this.#connectTimeoutMs,
      commandTimeout: this.#commandTimeoutMs,
      // Queued commands would run late, after their caller was told they failed: a stale write.
      enableOfflineQueue: false,
      // In-flight commands fail as soon as the connection drops, and are never sent again.
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: backoff,
    }

    if (options.client !== undefined) {
      this.#client = options.client
      this.#ownsClient = options.closeClient === true
      if (options.client.options.enableOfflineQueue !== false && !offlineQueueWarned) {
        offlineQueueWarned = true
        process.emitWarning(
          'the ioredis client given to redisStore() has enableOfflineQueue on: commands issued while it reconnects are queued and may run after flowcache reported them as failed; create it with enableOfflineQueue: false',
          { code: 'FLOWCACHE_REDIS_OFFLINE_QUEUE' },
        )
      }
    } else if (options.cluster !== undefined) {
      this.#client = new Cluster([...options.cluster], {
        enableOfflineQueue: false,
        clusterRetryStrategy: backoff,
        slotsRefreshTimeout: this.#connectTimeoutMs,
        ...options.clusterOptions,
        // Node connections reconnect through the cluster, which refreshes the slot map.
        redisOptions: { ...failFast, retryStrategy: undefined, ...options.redisOptions },
      })
      this.#ownsClient = true
    } else {
      const redisOptions = { ...failFast, ...options.redisOptions }
      this.#client =
        options.url === undefined ? new Redis(redisOptions) : new Redis(options.url, redisOptions)
      this.#ownsClient = true
    }

    this.#listeners = [
      ['ready', () => this.#onReady()],
      ['error', (error) => this.#onError(error)],
      // One node failing is not the cluster failing (another seed may answer): keep it for messages.
      ['node error', (error) => (this.#lastError = error)],
      ['close', () => this.#onDown()],
      ['end', () => this.#onDown()],
    ]
    for (const [event, listener] of this.#listeners) this.#client.on(event, listener)
    // A client given to us may be connected already: no 'ready' event will come.
    if (this.#client.status === 'ready') this.#onReady()
  }

  // ---- byte API -------------------------------------------------------------------------------

  /**
   * Reads one entry: one HMGET, or, for a user key under a quota this replica knows of, one
   * script that also marks the key as recently used.
   */
  async get(key: string): Promise<StoreEntry | undefined> {
    checkStoreKey(key)
    if (this.#knownQuotas.size > 0 && this.#underQuota(key)) {
      const reply = replyArray(
        'get',
        await this.#call('get', () =>
          this.#eval(GET_TOUCH, [toRedisKey(key)], [...this.#quotaHead([key]), key], true),
        ),
      )
      const field = (k: number): Buffer | null => bufferOrNull('get', reply[k] ?? null)
      return toEntry(key, field(0), field(1), field(2))
    }
    const fields = await this.#call('get', () =>
      this.#client.hmgetBuffer(toRedisKey(key), 'v', 'r', 'x'),
    )
    return toEntry(key, fields[0] ?? null, fields[1] ?? null, fields[2] ?? null)
  }

  async peek(key: string): Promise<StoreEntry | undefined> {
    checkStoreKey(key)
    const fields = await this.#call('peek', () =>
      this.#client.hmgetBuffer(toRedisKey(key), 'v', 'r', 'x'),
    )
    return toEntry(key, fields[0] ?? null, fields[1] ?? null, fields[2] ?? null)
  }

  async getMany(keys: readonly string[]): Promise<Array<StoreEntry | undefined>> {
    for (const key of keys) checkStoreKey(key)
    const entries = new Array<StoreEntry | undefined>(keys.length)
    if (keys.length === 0) return entries
    await this.#call('getMany', () =>
      Promise.all(
        this.#batches(keys).map(async (batch) => {
          const batchKeys = batch.map((i) => keys[i] as string)
          const touch = this.#knownQuotas.size > 0 && batchKeys.some((k) => this.#underQuota(k))
          const reply = replyArray(
            'getMany',
            await this.#eval(
              touch ? GET_TOUCH : GET_MANY,
              batchKeys.map(toRedisKey),
              touch ? [...this.#quotaHead(batchKeys), ...batchKeys] : [],
              true,
            ),
          )
          batch.forEach((index, j) => {
            const field = (k: number): Buffer | null =>
              bufferOrNull('getMany', reply[3 * j + k] ?? null)
            entries[index] = toEntry(keys[index] as string, field(0), field(1), field(2))
          })
        }),
      ),
    )
    return entries
  }

  async set(key: string, value: Uint8Array, options?: StoreWriteOptions): Promise<Revision> {
    const revision = await this.#write('set', 'set', key, value, '', ttlArgument(options?.ttlMs))
    if (revision === undefined) throw unexpectedReply('set', null)
    return revision
  }

  async setMany(items: readonly StoreWriteItem[]): Promise<Revision[]> {
    const keys = items.map((item) => item.key)
    for (const key of keys) checkStoreKey(key)
    const values = items.map((item) => toBuffer(item.value))
    const ttls = items.map((item) => ttlArgument(item.ttlMs))
    const revisions = new Array<Revision>(items.length)
    if (items.length === 0) return revisions
    await this.#call('setMany', () =>
      Promise.all(
        this.#batches(keys).map(async (batch) => {
          const scriptKeys: string[] = []
          const scriptArgs: Array<string | Buffer> = [
            ...this.#quotaHead(batch.map((i) => keys[i] as string)),
          ]
          for (const index of batch) {
            const key = keys[index] as string
            scriptKeys.push(toRedisKey(key), counterKey(hashTagOf(key)), historyKey(key))
            scriptArgs.push(values[index] as Buffer, ttls[index] as string, ...this.#trackArgs(key))
          }
          const reply = replyArray('setMany', await this.#eval(SET_MANY, scriptKeys, scriptArgs))
          batch.forEach((index, j) => {
            const revision = reply[j]
            if (typeof revision !== 'string') throw unexpectedReply('setMany', reply)
            revisions[index] = revision
          })
        }),
      ),
    )
    return revisions
  }

  async create(
    key: string,
    value: Uint8Array,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    return this.#write('create', 'create', key, value, '', ttlArgument(options?.ttlMs))
  }

  async compareAndSet(
    key: string,
    value: Uint8Array,
    expected: Revision,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    if (typeof expected !== 'string') {
      throw InvalidArgumentError.format(
        'expected',
        `must be a revision string; got ${typeof expected}`,
      )
    }
    return this.#write('compareAndSet', 'cas', key, value, expected, ttlArgument(options?.ttlMs))
  }

  async delete(key: string, options?: { expected?: Revision }): Promise<boolean> {
    checkStoreKey(key)
    const redisKey = toRedisKey(key)
    const expected = options?.expected
    // A user key may count toward a quota (of this replica or another): a script forgets it.
    if (expected === undefined && !isUserKey(key)) {
      return (await this.#call('delete', () => this.#client.unlink(redisKey))) > 0
    }
    if (expected !== undefined && typeof expected !== 'string') return false
    const deleted = await this.#call('delete', () =>
      this.#eval(
        DELETE_MANY,
        [redisKey, counterKey(hashTagOf(key)), historyKey(key)],
        [...this.#quotaHead([key]), expected ?? '', ...this.#trackArgs(key)],
      ),
    )
    return deleted === 1
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    for (const key of keys) checkStoreKey(key)
    if (keys.length === 0) return 0
    const tracked = keys.some((key) => isUserKey(key))
    const counts = await this.#call('deleteMany', () =>
      Promise.all(
        this.#batches(keys).map(async (batch) => {
          if (!tracked)
            return this.#client.unlink(...batch.map((i) => toRedisKey(keys[i] as string)))
          // One marker per key: a key given twice is deleted once.
          const unique = [...new Set(batch.map((i) => keys[i] as string))]
          const reply = await this.#eval(
            DELETE_MANY,
            unique.flatMap((key) => [toRedisKey(key), counterKey(hashTagOf(key)), historyKey(key)]),
            [...this.#quotaHead(unique), '', ...unique.flatMap((key) => this.#trackArgs(key))],
          )
          if (typeof reply !== 'number') throw unexpectedReply('deleteMany', reply)
          return reply
        }),
      ),
    )
    return counts.reduce((sum, count) => sum + count, 0)
  }

  async increment(
    key: string,
    by: number,
    codec: Codec,
    options?: StoreWriteOptions,
  ): Promise<number> {
    checkStoreKey(key)
    if (typeof by !== 'number' || !Number.isFinite(by)) {
      throw InvalidArgumentError.format('by', `must be a finite number; got ${String(by)}`)
    }
    const ttl = ttlArgument(options?.ttlMs)
    if (writesPlainJsonNumbers(codec)) {
      const initial = toBuffer(codec.encode(by))
      const reply = replyArray(
        'increment',
        await this.#call('increment', () =>
          this.#eval(
            INCREMENT,
            [toRedisKey(key), counterKey(hashTagOf(key)), historyKey(key)],
            [...this.#quotaHead([key]), String(by), initial, ttl, ...this.#trackArgs(key)],
          ),
        ),
      )
      if (reply[0] === 'new') return by
      if (reply[0] === 'sum' && typeof reply[1] === 'string') return Number(reply[1])
      if (reply[0] !== 'codec') throw unexpectedReply('increment', reply)
    }
    return this.#incrementWithCodec(key, by, codec, ttl)
  }

  async *list(prefix: string, options?: StoreListOptions): AsyncIterable<string> {
    const pattern = scanPattern(prefix)
    const limit = options?.limit ?? Number.POSITIVE_INFINITY
    if (limit <= 0) return
    // SCAN may return a key twice (the table was resized between pages), or from two nodes while
    // a slot migrates; the set keeps `list` to one yield per key.
    const seen = new Set<string>()
    for (const node of await this.#call('list', async () => this.#masters())) {
      let cursor = '0'
      do {
        const [next, redisKeys] = await this.#call('list', () =>
          node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT),
        )
        cursor = next
        for (const redisKey of redisKeys) {
          const storeKey = fromRedisKey(redisKey)
          if (storeKey === undefined || !storeKey.startsWith(prefix) || seen.has(storeKey)) continue
          seen.add(storeKey)
          yield storeKey
          if (seen.size >= limit) return
        }
      } while (cursor !== '0')
    }
  }

  async clear(prefix: string): Promise<number> {
    const pattern = scanPattern(prefix)
    let removed = 0
    for (const node of await this.#call('clear', async () => this.#masters())) {
      let cursor = '0'
      do {
        const [next, redisKeys] = await this.#call('clear', () =>
          node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT),
        )
        cursor = next
        const doomed: string[] = []
        for (const redisKey of redisKeys) {
          const storeKey = fromRedisKey(redisKey)
          if (storeKey !== undefined && storeKey.startsWith(prefix) && isUserKey(storeKey)) {
            doomed.push(storeKey)
          }
        }
        if (doomed.length === 0) continue
        // Through the main client, not the node: it follows a slot that moved since the SCAN.
        // A script drops each key's log, reports the delete and stops counting it in its quotas.
        const counts = await this.#call('clear', () =>
          Promise.all(
            this.#batches(doomed).map(async (batch) => {
              const batchKeys = batch.map((i) => doomed[i] as string)
              const reply = await this.#eval(
                FORGET_MANY,
                batchKeys.flatMap((key) => [toRedisKey(key), historyKey(key)]),
                [
                  ...this.#quotaHead(batchKeys),
                  ...batchKeys.flatMap((key) => [this.#trackArgs(key)[1], key]),
                ],
              )
              if (typeof reply !== 'number') throw unexpectedReply('clear', reply)
              return reply
            }),
          ),
        )
        for (const count of counts) removed += count
      } while (cursor !== '0')
    }
    return removed
  }

  /**
   * Sets or replaces the quota of the user entries under `prefix` (a namespace prefix, or `''`
   * for every user key) and enforces it at once. The definition is kept in Redis, so every
   * replica enforces it, and each write script accounts and evicts atomically: concurrent
   * writers overshoot `maxBytes` by at most the value being written. Entries written before the
   * quota are found with SCAN and counted as the least recently used. On a Redis Cluster the
   * prefix must name a first-level namespace or deeper (one hash slot). The definition set last
   * (by the Redis clock) wins: this replica enforces it from the moment of the call, before its
   * registration reaches Redis, even over an older one stored there, and a replica that set an
   * older one follows the newer one from Redis.
   */
  setQuota(prefix: string, limits: QuotaLimits): Promise<void> {
    this.#checkOpen()
    scanPattern(prefix) // checks the alphabet
    if (prefix !== '' && !prefix.endsWith('.')) {
      throw InvalidArgumentError.format(
        'prefix',
        `of a quota must be a namespace prefix ending with "."; got ${JSON.stringify(prefix)}`,
      )
    }
    const dots = prefix.split('.').length - 1
    if (this.#client.isCluster && dots < 2) {
      throw InvalidArgumentError.format(
        'prefix',
        `of a quota on Redis Cluster must name a namespace inside the root (one hash slot); got ${JSON.stringify(prefix)}: put the quota on a namespace`,
      )
    }
    const maxEntries = positiveInteger(limits.maxEntries, 'maxEntries', Number.MAX_SAFE_INTEGER)
    const maxBytes = positiveInteger(limits.maxBytes, 'maxBytes', Number.MAX_SAFE_INTEGER)
    // When it was set, on the Redis clock: the definition set last wins (see quota_on in
    // ./scripts.ts), and a replica's own setQuota calls are strictly ordered.
    const setAt = Math.max(this.now(), this.#lastQuotaAt + 1)
    this.#lastQuotaAt = setAt
    const def = `${maxEntries} ${maxBytes}`
    this.#localQuotas.set(prefix, `${def} ${setAt}`)
    this.#knownQuotas.add(prefix)
    return this.#registerQuota(prefix, def)
  }

  async #registerQuota(prefix: string, def: string): Promise<void> {
    const head = this.#quotaHead([prefix])
    // Each call removes at most QUOTA_EVICTION_BUDGET keys, so a quota far over its limits is
    // brought back in several short scripts rather than one that blocks Redis.
    const enforce = async (): Promise<[adopted: number, more: boolean]> => {
      const reply = replyArray(
        'setQuota',
        await this.#call('setQuota', () =>
          this.#eval(
            SET_QUOTA,
            [quotaDefinitionsKey(prefix)],
            [...head, prefix, String(QUOTA_EVICTION_BUDGET)],
          ),
        ),
      )
      const [adopted, evicted, more] = reply
      if (typeof adopted !== 'number' || typeof evicted !== 'number' || typeof more !== 'number') {
        throw unexpectedReply('setQuota', reply)
      }
      return [adopted, more === 1]
    }
    const [adopted, first] = await enforce()
    let more = first
    // The directory lets other replicas learn of the quota, so that their reads refresh recency.
    // When it is the quota's definitions hash too, SET_QUOTA has registered it (unless another
    // replica set a newer one, which must stay).
    if (quotaDefinitionsKey(prefix) !== QUOTA_DIRECTORY) {
      await this.#call('setQuota', () => this.#client.hset(QUOTA_DIRECTORY, prefix, def))
    }
    if (adopted === 0) more = await this.#adopt(prefix)
    while (more) [, more] = await enforce()
  }

  /**
   * What the user entries under the quota on `prefix` use now, shared by every replica: entries
   * and bytes as the scripts account them (expired entries dropped first), and evictions since
   * the quota was first set. `undefined` when no quota is defined on `prefix`.
   */
  async quotaUsage(prefix: string): Promise<QuotaUsage | undefined> {
    this.#checkOpen()
    scanPattern(prefix)
    const reply = await this.#call('quotaUsage', () =>
      this.#eval(
        QUOTA_USAGE,
        [quotaDefinitionsKey(prefix)],
        [...this.#quotaHead([prefix]), prefix],
      ),
    )
    if (reply === null) return undefined
    const [entries, bytes, evictions, more] = replyArray('quotaUsage', reply)
    if (
      typeof entries !== 'number' ||
      typeof bytes !== 'number' ||
      typeof evictions !== 'number' ||
      typeof more !== 'number'
    ) {
      throw unexpectedReply('quotaUsage', reply)
    }
    // Each call drops a bounded batch of expired keys; the figures count none once it is done.
    if (more === 1) return this.quotaUsage(prefix)
    return { entries, bytes, evictions }
  }

  /**
   * Versions of a user key, oldest first, from the LIST next to the entry: up to `history` of
   * them (the store option), sets with their value and deletes as markers. A deleted key's log
   * expires an hour after the delete; `clear()` drops the logs of the keys it removes. Redis
   * expires entries without running a script, so an expiry leaves no marker: when the newest
   * version is a value whose deadline has passed, an `expire` without revision is added at it.
   */
  async history(key: string, options?: StoreHistoryOptions): Promise<StoreVersion[]> {
    checkStoreKey(key)
    const limit = historyLimit(options)
    if (this.#depth === '0') {
      throw InvalidArgumentError.format(
        'history',
        'is off in this redis store; create it with redisStore({ history: n }) to keep n versions per key',
      )
    }
    const items = await this.#call('history', () =>
      this.#client.lrangeBuffer(historyKey(key), 0, -1),
    )
    const versions = items.reverse().map((item) => parseVersion(item))
    const expiry = inferredExpiry(versions.at(-1), this.now())
    if (expiry !== undefined) versions.push(expiry)
    return lastVersions(versions, limit)
  }

  /**
   * Reports changes to user entries under `prefix` from every process writing with `changes`
   * on, over Redis pub/sub on a connection of its own: the channel of the prefix's hash tag, or
   * a pattern over the tags when the prefix is above a first-level namespace. Values are not
   * sent. Expiries are reported only on a standalone server whose `notify-keyspace-events`
   * includes `Ex` (keyspace notifications); otherwise Redis expires entries silently.
   * Pub/sub is at-most-once: a dropped connection is reported as `interrupted`.
   */
  async watch(prefix: string, listener: StoreWatchListener): Promise<StoreWatch> {
    this.#checkOpen()
    if (!this.#changes) {
      throw InvalidArgumentError.format(
        'watch',
        'needs a redis store with changes on; create it with redisStore({ changes: true })',
      )
    }
    scanPattern(prefix) // checks the prefix
    const watch = new RedisWatch(this.#client, prefix, listener, () => this.now())
    try {
      await this.#call('watch', () => watch.start())
    } catch (error) {
      await watch.close()
      throw error
    }
    return watch
  }

  /** Whether a user key lies under a quota this replica knows of (its reads refresh recency). */
  #underQuota(key: string): boolean {
    if (!isUserKey(key)) return false
    if (this.#knownQuotas.has('')) return true
    return namespacePrefixes(key).some((prefix) => this.#knownQuotas.has(prefix))
  }

  /**
   * The three arguments every quota-aware script starts with: the directory key (`''` on a
   * Cluster, where a script cannot reach it), the quotas this replica set over `keys` (so that
   * they are enforced before their registration lands, or after it was lost), and whether
   * evictions are published as deletes.
   */
  #quotaHead(keys: readonly string[]): [string, string, string] {
    let local = ''
    if (this.#localQuotas.size > 0) {
      const seen = new Set<string>()
      const add = (prefix: string): void => {
        const def = this.#localQuotas.get(prefix)
        if (def === undefined || seen.has(prefix)) return
        seen.add(prefix)
        local += `${prefix}|${def};`
      }
      for (const key of keys) {
        add('')
        for (const prefix of namespacePrefixes(key)) add(prefix)
      }
    }
    return [this.#client.isCluster ? '' : QUOTA_DIRECTORY, local, this.#changes ? '1' : '0']
  }

  /** Reads the quota directory, so that reads under quotas set by other replicas refresh recency. */
  async #refreshQuotas(): Promise<void> {
    try {
      const prefixes = await this.#call('quotas', () => this.#client.hkeys(QUOTA_DIRECTORY))
      for (const prefix of prefixes) this.#knownQuotas.add(prefix)
    } catch {
      // Best effort: the quotas known so far stay; enforcement never depends on this list.
    }
  }

  /**
   * History depth, change channel and store key a script records a change of `key` with: no
   * log and no channel for system keys.
   */
  #trackArgs(key: string): [string, string, string] {
    const user = isUserKey(key)
    return [user ? this.#depth : '0', this.#changes && user ? changeChannel(key) : '', key]
  }

  /**
   * The Redis server's time in ms since the epoch, the clock of `expiresAt`: measured on connect
   * and every 30 s, and carried forward on the local monotonic clock in between (so a jump of
   * the local wall clock does not move it). `Date.now()` until the first measurement.
   */
  now(): number {
    if (this.#clockBase === undefined) return Date.now()
    return Math.floor(this.#clockBase + (performance.now() - this.#perfBase))
  }

  /**
   * Resolves once Redis answers; rejects with `StoreUnavailableError` on a connection error or
   * after `connectTimeoutMs`. Calls do not need it: they wait for a connection in progress.
   */
  async connect(): Promise<void> {
    this.#checkOpen()
    if (this.#client.status === 'ready') return
    if (this.#client.status === 'wait') this.#client.connect().catch(noop)
    if (this.#client.status === 'end') throw this.#ended()
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreUnavailableError(
              `${this.#target} did not answer within connectTimeoutMs (${this.#connectTimeoutMs} ms)${this.#lastErrorText()}`,
              { cause: this.#lastError },
            ),
          ),
        this.#connectTimeoutMs,
      )
    })
    try {
      await Promise.race([this.#readyEvent(), timeout])
    } catch (error) {
      throw this.#translate('connect', error)
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * The L1 invalidation bus on Redis pub/sub, channel `flowcache:l1:<channel>`; it opens one
   * extra connection for its subscription. @see InvalidationBus
   */
  createBus(channel: string): InvalidationBus {
    this.#checkOpen()
    return new RedisInvalidationBus(this.#client, busChannel(channel))
  }

  /** `ok` while connected, else `down` with the last connection error. */
  health(): StoreHealth {
    if (this.#closed)
      return { status: 'down', reason: 'the store is closed', since: this.#statusSince }
    if (this.#client.status === 'ready') return { status: 'ok', since: this.#statusSince }
    return {
      status: 'down',
      reason: `${this.#target} is unreachable (${this.#client.status})${this.#lastErrorText()}`,
      since: this.#statusSince,
    }
  }

  /** Stops the store; quits the client if the store created it (or `closeClient`). Idempotent. */
  async close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing
    this.#closed = true
    this.#statusSince = Date.now()
    if (this.#clockTimer !== undefined) clearInterval(this.#clockTimer)
    if (this.#quotaTimer !== undefined) clearInterval(this.#quotaTimer)
    for (const [event, listener] of this.#listeners) this.#client.off(event, listener)
    this.#readyWait?.reject(new ClosedError('the redis store was closed'))
    this.#readyWait = undefined
    this.#closing = this.#ownsClient ? this.#quit() : Promise.resolve()
    return this.#closing
  }

  // ---- internals ------------------------------------------------------------------------------

  async #quit(): Promise<void> {
    const client = this.#client
    // Events of a client we own are ours alone; without a listener ioredis would print them.
    client.on('error', noop)
    if (client.status !== 'ready') {
      client.disconnect()
      return
    }
    // QUIT is answered before the socket closes: wait for 'end', so that close() leaves nothing
    // open, but no longer than a command may take.
    const ended = new Promise<void>((resolve) => client.once('end', resolve))
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        client.quit().then(() => ended),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('quit timed out')), this.#commandTimeoutMs)
        }),
      ])
    } catch {
      client.disconnect()
    } finally {
      clearTimeout(timer)
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ClosedError('this redis store is closed; create a new one')
  }

  #onReady(): void {
    this.#lastError = undefined
    this.#failing = false
    if (!this.#up) {
      this.#up = true
      this.#statusSince = Date.now()
    }
    this.#readyWait?.resolve()
    this.#readyWait = undefined
    void this.#sampleClock()
    if (this.#clockTimer === undefined) {
      this.#clockTimer = setInterval(() => void this.#sampleClock(), CLOCK_SAMPLE_MS)
      this.#clockTimer.unref()
    }
    void this.#refreshQuotas()
    if (this.#quotaTimer === undefined) {
      this.#quotaTimer = setInterval(() => void this.#refreshQuotas(), QUOTA_REFRESH_MS)
      this.#quotaTimer.unref()
    }
  }

  #onError(error: unknown): void {
    this.#lastError = error
    this.#failing = true
    // A connection attempt failed: calls waiting for it fail now rather than at their timeout.
    this.#readyWait?.reject(error)
    this.#readyWait = undefined
  }

  #onDown(): void {
    if (this.#up && this.#client.status !== 'ready') {
      this.#up = false
      this.#statusSince = Date.now()
    }
    if (this.#client.status === 'end') {
      this.#readyWait?.reject(this.#ended())
      this.#readyWait = undefined
    }
  }

  #ended(): FlowcacheError {
    return this.#closed
      ? new ClosedError('this redis store is closed; create a new one')
      : new StoreUnavailableError(
          `the connection to ${this.#target} was closed with quit() or disconnect() and will not reconnect; create a new client`,
        )
  }

  #lastErrorText(): string {
    const error = this.#lastError
    if (error === undefined) return ''
    return `: ${messageOf(error)}`
  }

  /** A promise for the next `ready` event, shared by every waiter; rejected by a connection error. */
  #readyEvent(): Promise<void> {
    if (this.#readyWait === undefined) {
      let resolve = noop
      let reject: (error: unknown) => void = noop
      const promise = new Promise<void>((res, rej) => {
        resolve = res
        reject = rej
      })
      // Nobody may be waiting any more when it settles.
      promise.catch(noop)
      this.#readyWait = { promise, resolve, reject }
    }
    return this.#readyWait.promise
  }

  /**
   * `undefined` when commands can be sent now, a promise while a connection attempt is under
   * way; throws when Redis is known to be unreachable, so calls fail at once during an outage.
   */
  #readiness(): Promise<void> | undefined {
    const status = this.#client.status
    switch (status) {
      case 'ready':
        return undefined
      case 'wait':
        // A lazyConnect client given by the user: connect on first use, like ioredis does.
        this.#client.connect().catch(noop)
        return this.#readyEvent()
      case 'connect':
        // Connected, handshake under way: ready in a round trip or two.
        return this.#readyEvent()
      case 'connecting':
        // The first connection is worth waiting for; a retry during an outage is not.
        if (!this.#failing) return this.#readyEvent()
        throw this.#unreachable()
      case 'end':
        throw this.#ended()
      default:
        throw this.#unreachable()
    }
  }

  #unreachable(): StoreUnavailableError {
    return new StoreUnavailableError(
      `${this.#target} is unreachable, reconnecting in the background${this.#lastErrorText()}`,
      { cause: this.#lastError },
    )
  }

  /**
   * Runs one Redis round trip within `commandTimeoutMs`, waiting for a connection in progress
   * within the same budget, and turns every failure into a flowcache error.
   */
  async #call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    this.#checkOpen()
    if (this.#client.status === 'ready') {
      // Connected: the client's own commandTimeout bounds each command, no extra timer needed.
      try {
        return await run()
      } catch (error) {
        throw this.#translate(operation, error)
      }
    }
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreUnavailableError(
              `redis ${operation} got no answer from ${this.#target} within commandTimeoutMs (${this.#commandTimeoutMs} ms)`,
            ),
          ),
        this.#commandTimeoutMs,
      )
    })
    const work = (async () => {
      const waiting = this.#readiness()
      if (waiting !== undefined) await waiting
      return run()
    })()
    try {
      return await Promise.race([work, timeout])
    } catch (error) {
      throw this.#translate(operation, error)
    } finally {
      clearTimeout(timer)
    }
  }

  #translate(operation: string, error: unknown): FlowcacheError {
    if (error instanceof FlowcacheError) return error
    const message = messageOf(error)
    const tooLarge = message.indexOf(TOO_LARGE_MARK)
    if (tooLarge !== -1)
      return new ValueTooLargeError(message.slice(tooLarge + TOO_LARGE_MARK.length))
    if (message.includes('WRONGTYPE')) {
      return new DecodeError(
        `redis ${operation}: a key of the flowcache keyspace holds another Redis type; it was not written by flowcache: delete it or use another key`,
        { cause: error },
      )
    }
    return new StoreUnavailableError(
      `redis ${operation} failed on ${this.#target}: ${message}; check that Redis is up and reachable`,
      { cause: error },
    )
  }

  /** EVALSHA, falling back to EVAL (which also caches the script) when the server lacks it. */
  async #eval(
    script: LuaScript,
    keys: readonly string[],
    args: ReadonlyArray<string | Buffer>,
    buffers = false,
  ): Promise<unknown> {
    const client = this.#client
    // callBuffer returns bulk strings as Buffers: values are bytes, not text.
    const send = (command: 'evalsha' | 'eval', body: string): Promise<unknown> =>
      buffers
        ? client.callBuffer(command, body, keys.length, ...keys, ...args)
        : client.call(command, body, keys.length, ...keys, ...args)
    try {
      return await send('evalsha', script.sha)
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
      return send('eval', script.lua)
    }
  }

  async #write(
    operation: string,
    mode: 'set' | 'create' | 'cas',
    key: string,
    value: Uint8Array,
    expected: string,
    ttl: string,
  ): Promise<Revision | undefined> {
    checkStoreKey(key)
    const bytes = toBuffer(value)
    const reply = await this.#call(operation, () =>
      this.#eval(
        WRITE,
        [toRedisKey(key), counterKey(hashTagOf(key)), historyKey(key)],
        [...this.#quotaHead([key]), mode, expected, bytes, ttl, ...this.#trackArgs(key)],
      ),
    )
    if (reply === null) return undefined
    if (typeof reply !== 'string') throw unexpectedReply(operation, reply)
    return reply
  }

  /** Increment for codecs whose bytes Lua cannot read: read, decode, add, compare-and-set. */
  async #incrementWithCodec(key: string, by: number, codec: Codec, ttl: string): Promise<number> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const entry = await this.get(key)
      if (entry === undefined) {
        const created = await this.#write('increment', 'create', key, codec.encode(by), '', ttl)
        if (created !== undefined) return by
        continue
      }
      const current = codec.decode(entry.value)
      const next = incremented(current, by)
      const written = await this.#write(
        'increment',
        'cas',
        key,
        codec.encode(next),
        entry.revision,
        'keep',
      )
      if (written !== undefined) return next
    }
    throw new StoreUnavailableError(
      `increment lost ${CAS_ATTEMPTS} compare-and-set races in a row; the key is too contended`,
    )
  }

  /**
   * Indices of `keys` in groups that one script or UNLINK may take: per hash tag on a Cluster
   * (one slot each), all together on a single server; at most {@link BATCH_SIZE} per group.
   */
  #batches(keys: readonly string[]): number[][] {
    const groups: number[][] = []
    if (!this.#client.isCluster) {
      groups.push(keys.map((_, i) => i))
    } else {
      const byTag = new Map<string, number[]>()
      keys.forEach((key, i) => {
        const tag = hashTagOf(key)
        const group = byTag.get(tag)
        if (group === undefined) byTag.set(tag, [i])
        else group.push(i)
      })
      groups.push(...byTag.values())
    }
    return groups.flatMap((group) => {
      if (group.length <= BATCH_SIZE) return [group]
      const chunks: number[][] = []
      for (let i = 0; i < group.length; i += BATCH_SIZE) chunks.push(group.slice(i, i + BATCH_SIZE))
      return chunks
    })
  }

  /** The clients SCAN has to visit: every master of a Cluster, or the one server. */
  #masters(): Redis[] {
    const client = this.#client
    if (!client.isCluster) return [client as Redis]
    const masters = (client as Cluster).nodes('master')
    if (masters.length === 0) {
      throw new StoreUnavailableError(`${this.#target} has no reachable master node`)
    }
    return masters
  }

  /**
   * Counts the user entries under a new quota's prefix that were written before it (SCAN), then
   * enforces it within one budget of evictions. Idempotent: keys counted already are skipped, so
   * replicas may race on it. Returns whether the quota is still over (the caller evicts the rest).
   */
  async #adopt(prefix: string): Promise<boolean> {
    const head = this.#quotaHead([prefix])
    const run = async (keys: string[], complete: boolean): Promise<boolean> => {
      const reply = replyArray(
        'setQuota',
        await this.#call('setQuota', () =>
          this.#eval(
            ADOPT,
            [quotaDefinitionsKey(prefix)],
            [...head, prefix, complete ? '1' : '0', String(QUOTA_EVICTION_BUDGET), ...keys],
          ),
        ),
      )
      const [evicted, more] = reply
      if (typeof evicted !== 'number' || typeof more !== 'number') {
        throw unexpectedReply('setQuota', reply)
      }
      return more === 1
    }
    const pending: string[] = []
    for await (const key of this.list(prefix)) {
      if (!isUserKey(key)) continue
      pending.push(key)
      if (pending.length >= BATCH_SIZE) await run(pending.splice(0), false)
    }
    return run(pending, true)
  }

  async #sampleClock(): Promise<void> {
    try {
      const before = performance.now()
      const reply = await this.#call('time', () => this.#client.time())
      const after = performance.now()
      const [seconds, micros] = reply.map(Number)
      if (seconds === undefined || micros === undefined) return
      this.#clockBase = seconds * 1000 + micros / 1000
      this.#perfBase = (before + after) / 2
    } catch {
      // Best effort: the previous measurement (or Date.now()) stays in use.
    }
  }
}

/**
 * Creates a Redis store: standalone (`url`), Sentinel (`redisOptions.sentinels`), Cluster
 * (`cluster`), or over your own ioredis client (`client`). Pass it to `createCache({ store })`.
 */
export function redisStore(options?: RedisStoreOptions): RedisStore {
  return new RedisStore(options)
}
