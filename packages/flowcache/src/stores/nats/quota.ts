/**
 * Namespace quotas on a NATS JetStream KV bucket, shared by every process that opens the bucket.
 *
 * Three kinds of bookkeeping keys, all outside every namespace (their first token holds `=`,
 * which no keyspace root can) and never user entries:
 * - `==flowcache-quotas`: the registry, `{ "<prefix>": { maxEntries?, maxBytes? } }`. Every
 *   process reads it (at its first write, then again in the background once it is a second old),
 *   so a quota set by one replica is enforced by all.
 * - `==flowcache-quota.<prefix>`: the ledger of one quota, `{ entries, bytes, evictions }`,
 *   changed only by compare-and-set on its revision. A write reserves its growth in the ledger
 *   before it publishes the value (evicting first when the reservation would not fit) and gives
 *   back shrinkage after; deletes, expiries and evictions are subtracted after the entry is gone.
 *   So the bytes really stored never exceed the ledger, and the ledger never exceeds the limit.
 * - `==flowcache-recent.<prefix>`: recent reads, `{ "<key>": [last, previous] }` (ms since the
 *   epoch). Reads are only noted in memory; each process merges them in with one
 *   compare-and-set every {@link TOUCH_FLUSH_MS}, before it evicts and when it closes.
 *
 * Eviction order is LRU-2: by each key's second most recent use (its write, at the server's
 * timestamp, or one of its last two reads), so keys used once go first, oldest first, and a key
 * read often outranks keys a scan read once, even while the latest reads are still unflushed.
 *
 * (`<prefix>` is the namespace prefix without its final dot.)
 */
import { positiveInteger } from '../../core/checks.js'
import { isUserKey, underPrefixes } from '../../core/keyspace.js'
import { InvalidArgumentError, StoreUnavailableError, ValueTooLargeError } from '../../errors.js'
import type { QuotaLimits, QuotaUsage } from '../../types/store.js'
import { filterForPrefix, type RawEntry } from './layout.js'

/** Key of the registry of quota definitions. */
export const REGISTRY_KEY = '==flowcache-quotas'
const LEDGER_TOKEN = '==flowcache-quota'
const RECENT_TOKEN = '==flowcache-recent'
/** How often a process flushes the reads it noted, at most. */
export const TOUCH_FLUSH_MS = 50
/** The registry is read again (in the background) once the copy in memory is this old. */
const REGISTRY_REFRESH_MS = 1000
/** Recent reads kept per quota; the least recent are dropped first. */
const RECENT_MAX = 256
/** A list of eviction candidates older than this is made again before it is used. */
const LIST_MAX_AGE_MS = 1000
/** Entries removed per eviction round at most. */
const VICTIMS_PER_ROUND = 64
/** Share of `maxBytes` an eviction round frees beyond what the write needs… */
const SLACK = 0.05
/** …on quotas of at least this many bytes (smaller ones evict exactly what they need). */
const SLACK_FROM = 100_000
/** Share of `maxEntries` an eviction round frees beyond what the write needs… */
const SLACK_ENTRIES = 0.01
/** …on quotas of at least this many entries. */
const SLACK_ENTRIES_FROM = 1000
/** A ledger that keeps changing is counted (and raised when it counts too little) this often at most. */
const BUSY_COUNT_MS = 10_000
/** Scans a count of a busy ledger makes before it gives up until the next time. */
const BUSY_COUNT_TRIES = 3
/** Compare-and-set rounds on one ledger before a write gives up. */
const MAX_ROUNDS = 200
/** The last two reads of a key, ms since the epoch (newest first); `prev` is 0 when unknown. */
type Reads = readonly [last: number, prev: number]

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** What the quota bookkeeping needs from the store, bound to one session. */
export interface QuotaIo {
  /** The last message of a key, read from the stream leader. */
  read(key: string): Promise<RawEntry | undefined>
  /** Publishes `value` if the key's last sequence is `expectedSeq` (0: none); `undefined` if not. */
  put(key: string, value: Uint8Array, expectedSeq: number): Promise<number | undefined>
  /** Deletes the key if its last message is still `raw` (an expiry marker when `expired`). */
  remove(key: string, raw: RawEntry, expired: boolean): Promise<boolean>
  /**
   * The last message of every key matching a subject filter (relative to the bucket), headers
   * only, with the time the server stored it (ms since the epoch).
   */
  scan(filter: string): AsyncIterable<{ key: string; raw: RawEntry; time: number }>
  /** The store clock (TTL deadlines). */
  now(): number
}

/** A change of a quota's usage. */
export interface UsageDelta {
  entries: number
  bytes: number
  evictions: number
}

interface Ledger {
  /** Revision of the ledger key. */
  seq: number
  usage: QuotaUsage
  /** Read from the server just now (not our own last write). */
  fresh: boolean
}

interface Candidate {
  key: string
  raw: RawEntry
  /** Quota size: payload bytes + key length. */
  size: number
  /** When the server stored its value, ms since the epoch. */
  writtenAt: number
  /** Eviction order, least valuable first; see {@link rankOf}. */
  rank: Rank
}

/**
 * LRU-2 order: by the time of a key's second most recent use (its write or a read; a key used
 * once ranks before every key used twice), then by its most recent use, then by revision.
 */
type Rank = readonly [second: number, last: number, seq: number]

function rankOf(writtenAt: number, seq: number, reads: Reads | undefined): Rank {
  const uses = [writtenAt, reads?.[0] ?? 0, reads?.[1] ?? 0].sort((x, y) => y - x)
  const [last = 0, second = 0] = uses
  return [second > 0 ? second : Number.NEGATIVE_INFINITY, last, seq]
}

function compareRanks(a: Rank, b: Rank): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2]
}

/** Entries past their deadline at `now` first, then by rank. */
function byEvictionOrder(now: number): (a: Candidate, b: Candidate) => number {
  const expired = (c: Candidate): boolean => c.raw.expiresAt !== null && c.raw.expiresAt <= now
  return (a, b) => {
    const [x, y] = [expired(a), expired(b)]
    return x === y ? compareRanks(a.rank, b.rank) : x ? -1 : 1
  }
}

/** The two most recent of two pairs of reads. */
function mergeReads(a: Reads | undefined, b: Reads): Reads {
  const [last = 0, prev = 0] = [...(a ?? []), ...b].sort((x, y) => y - x)
  return [last, prev]
}

/** One quota as this process knows it. */
export class QuotaState {
  readonly prefix: string
  readonly ledgerKey: string
  readonly recentKey: string
  maxEntries: number
  maxBytes: number
  /** Our last view of the ledger; a compare-and-set on a stale one fails and reads again. */
  ledger: { seq: number; usage: QuotaUsage } | undefined
  /** Least recently used entries as of the last scan, consumed from `next`. */
  candidates: Candidate[] = []
  next = 0
  /** When `candidates` was listed (local ms). */
  listedAt = 0
  /** Reads noted since the last flush (keys relative to the prefix), least recent first. */
  readonly touched = new Map<string, Reads>()
  /** Creation of the ledger in progress (by this process). */
  creating: Promise<void> | undefined
  /** Ledger revision seen by the last {@link NatsQuotas.reconcile}, and since when (local ms). */
  idle: { seq: number; since: number } | undefined
  /** When the last count of a busy ledger was tried (local ms); see {@link NatsQuotas.reconcile}. */
  countedBusyAt = Number.NEGATIVE_INFINITY

  constructor(prefix: string, limits: Required<QuotaLimits>) {
    this.prefix = prefix
    this.ledgerKey = `${LEDGER_TOKEN}.${prefix.slice(0, -1)}`
    this.recentKey = recentKeyOf(prefix)
    this.maxEntries = limits.maxEntries
    this.maxBytes = limits.maxBytes
  }

  fits(usage: { entries: number; bytes: number }): boolean {
    return usage.entries <= this.maxEntries && usage.bytes <= this.maxBytes
  }
}

/** Key of the recent reads of the quota on `prefix`, the longest of its bookkeeping keys. */
export function recentKeyOf(prefix: string): string {
  return `${RECENT_TOKEN}.${prefix.slice(0, -1)}`
}

/** Size an entry counts for: payload plus key, as the memory and sqlite stores count it. */
export function entrySize(key: string, payloadBytes: number): number {
  return payloadBytes + key.length
}

/** Whether a message holds a value that a ledger counts (live or past its deadline). */
export function counted(raw: RawEntry | undefined): raw is RawEntry {
  return raw !== undefined && !raw.deleted
}

/** Checks and normalises the limits of `setQuota`. */
export function checkQuota(prefix: string, limits: QuotaLimits): Required<QuotaLimits> {
  if (
    typeof prefix !== 'string' ||
    !prefix.endsWith('.') ||
    filterForPrefix(prefix) !== `${prefix.slice(0, -1)}.>`
  ) {
    throw InvalidArgumentError.format(
      'prefix',
      `must be a namespace prefix: dot-separated tokens of [-/=A-Za-z0-9_] ending with '.'; got ${JSON.stringify(prefix)}`,
    )
  }
  return {
    maxEntries: positiveInteger(limits.maxEntries, 'maxEntries', Number.MAX_SAFE_INTEGER),
    maxBytes: positiveInteger(limits.maxBytes, 'maxBytes', Number.MAX_SAFE_INTEGER),
  }
}

function parseJson(raw: RawEntry | undefined): unknown {
  if (!counted(raw) || raw.value.byteLength === 0) return undefined
  try {
    return JSON.parse(decoder.decode(raw.value)) as unknown
  } catch {
    return undefined
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : 0
}

function parseUsage(raw: RawEntry | undefined): QuotaUsage | undefined {
  const json = parseJson(raw)
  if (!isRecord(json)) return undefined
  return {
    entries: count(json.entries),
    bytes: count(json.bytes),
    evictions: count(json.evictions),
  }
}

function parseRegistry(raw: RawEntry | undefined): Map<string, Required<QuotaLimits>> {
  const found = new Map<string, Required<QuotaLimits>>()
  const json = parseJson(raw)
  if (!isRecord(json)) return found
  for (const [prefix, limits] of Object.entries(json)) {
    if (!isRecord(limits)) continue
    const maxEntries = count(limits.maxEntries) || Number.MAX_SAFE_INTEGER
    const maxBytes = count(limits.maxBytes) || Number.MAX_SAFE_INTEGER
    found.set(prefix, { maxEntries, maxBytes })
  }
  return found
}

function encodeLimits(limits: Required<QuotaLimits>): Record<string, number> {
  const out: Record<string, number> = {}
  if (limits.maxEntries !== Number.MAX_SAFE_INTEGER) out.maxEntries = limits.maxEntries
  if (limits.maxBytes !== Number.MAX_SAFE_INTEGER) out.maxBytes = limits.maxBytes
  return out
}

/** The reads a recent-read record holds. */
function parseRecent(raw: RawEntry | undefined): Map<string, Reads> {
  const found = new Map<string, Reads>()
  const json = parseJson(raw)
  if (!isRecord(json)) return found
  for (const [key, value] of Object.entries(json)) {
    if (!Array.isArray(value)) continue
    const [last, prev] = value as unknown[]
    if (typeof last !== 'number' || typeof prev !== 'number') continue
    found.set(key, [last, prev])
  }
  return found
}

function encode(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value))
}

function contention(what: string): StoreUnavailableError {
  return new StoreUnavailableError(
    `nats store: ${what} lost ${MAX_ROUNDS} compare-and-set rounds in a row to concurrent writers; retry later`,
  )
}

/** Jittered pause between compare-and-set rounds, so racing writers spread out. */
function backoff(round: number): Promise<void> {
  const ms = Math.random() * Math.min(10, round)
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The quotas of one store: definitions, ledgers, recency and eviction. */
export class NatsQuotas {
  readonly #states = new Map<string, QuotaState>()
  /** Limits set in this process whose registry write has not completed; they win over a read. */
  readonly #local = new Map<string, Required<QuotaLimits>>()
  #fetchedAt = Number.NEGATIVE_INFINITY
  #fetching: Promise<void> | undefined

  /** Whether any quota is known. */
  get active(): boolean {
    return this.#states.size > 0
  }

  /** Sets the limits of `prefix` in this process at once; `record` stores them in the bucket. */
  define(prefix: string, limits: Required<QuotaLimits>): QuotaState {
    this.#local.set(prefix, limits)
    return this.#upsert(prefix, limits)
  }

  /** The quotas a key counts toward (user keys only), as known now. */
  of(key: string): QuotaState[] {
    if (this.#states.size === 0 || !isUserKey(key)) return []
    return underPrefixes(this.#states, key)
  }

  /**
   * The quotas a write to `key` must respect. The first call reads the registry; later calls
   * use the copy in memory and refresh it in the background once it is a second old.
   */
  async forWrite(io: QuotaIo, key: string): Promise<QuotaState[]> {
    if (this.#fetchedAt === Number.NEGATIVE_INFINITY) await this.refresh(io)
    else if (Date.now() - this.#fetchedAt > REGISTRY_REFRESH_MS) {
      this.refresh(io).catch(() => undefined)
    }
    return this.of(key)
  }

  /** Reads the registry again (one read at a time). */
  refresh(io: QuotaIo): Promise<void> {
    this.#fetching ??= (async () => {
      try {
        const registry = parseRegistry(await io.read(REGISTRY_KEY))
        for (const [prefix, limits] of registry) {
          if (!this.#local.has(prefix)) this.#upsert(prefix, limits)
        }
        this.#fetchedAt = Date.now()
      } finally {
        this.#fetching = undefined
      }
    })()
    return this.#fetching
  }

  #upsert(prefix: string, limits: Required<QuotaLimits>): QuotaState {
    let state = this.#states.get(prefix)
    if (state === undefined) {
      state = new QuotaState(prefix, limits)
      this.#states.set(prefix, state)
    } else {
      state.maxEntries = limits.maxEntries
      state.maxBytes = limits.maxBytes
    }
    return state
  }

  /**
   * Stores a quota defined with {@link define} in the bucket: creates its ledger (counting what
   * the prefix already holds) unless one exists, records the limits in the registry, then
   * enforces them.
   */
  async record(io: QuotaIo, state: QuotaState, limits: Required<QuotaLimits>): Promise<void> {
    await this.#ledger(io, state, true)
    for (let round = 0; ; round++) {
      if (round >= MAX_ROUNDS) throw contention('setQuota')
      const raw = await io.read(REGISTRY_KEY)
      const json = parseJson(raw)
      const registry: Record<string, unknown> = isRecord(json) ? json : {}
      registry[state.prefix] = encodeLimits(limits)
      const seq = await io.put(REGISTRY_KEY, encode(registry), raw?.seq ?? 0)
      if (seq !== undefined) break
      await backoff(round)
    }
    if (this.#local.get(state.prefix) === limits) this.#local.delete(state.prefix)
    await this.admit(io, [state], { entries: 0, bytes: 0, evictions: 0 }, undefined)
  }

  /** The shared usage of the quota on `prefix`, or `undefined` when there is none. */
  async usage(io: QuotaIo, prefix: string): Promise<QuotaUsage | undefined> {
    await this.refresh(io)
    const state = this.#states.get(prefix)
    if (state === undefined) return undefined
    return { ...(await this.#ledger(io, state, true)).usage }
  }

  /** Refuses an entry that could never fit one of its quotas, before anything is written. */
  checkFits(key: string, size: number, states: readonly QuotaState[]): void {
    for (const state of states) {
      if (size > state.maxBytes) {
        throw new ValueTooLargeError(
          `entry ${key} needs ${size} bytes but its namespace quota (maxBytes) is ${state.maxBytes}; raise the quota or store less`,
        )
      }
    }
  }

  /** Notes a read of a user key for LRU; flushed later, in one write per quota. */
  touch(key: string): void {
    const now = Date.now()
    for (const state of this.of(key)) {
      const relative = key.slice(state.prefix.length)
      // Most recent last; only the most recent RECENT_MAX are kept (also while flushes fail).
      const before = state.touched.get(relative)
      state.touched.delete(relative)
      state.touched.set(relative, [now, before?.[0] ?? 0])
      if (state.touched.size > RECENT_MAX) {
        const oldest = state.touched.keys().next().value
        if (oldest !== undefined) state.touched.delete(oldest)
      }
    }
  }

  /** Whether reads are waiting to be flushed. */
  get pendingTouches(): boolean {
    for (const state of this.#states.values()) if (state.touched.size > 0) return true
    return false
  }

  /** Flushes the noted reads of every quota; a failure keeps them for the next flush. */
  async flushAll(io: QuotaIo): Promise<void> {
    for (const state of this.#states.values()) await this.#flush(io, state)
  }

  async #flush(io: QuotaIo, state: QuotaState): Promise<void> {
    if (state.touched.size === 0) return
    const noted = [...state.touched]
    state.touched.clear()
    try {
      for (let round = 0; ; round++) {
        if (round >= MAX_ROUNDS) throw contention('recording reads')
        const raw = await io.read(state.recentKey)
        const merged = parseRecent(raw)
        for (const [key, reads] of noted) merged.set(key, mergeReads(merged.get(key), reads))
        // The most recently read keys stay.
        const kept = [...merged].sort((a, b) => b[1][0] - a[1][0]).slice(0, RECENT_MAX)
        const record = Object.fromEntries(kept)
        if ((await io.put(state.recentKey, encode(record), raw?.seq ?? 0)) !== undefined) return
        await backoff(round)
      }
    } catch (error) {
      // Kept for the next flush, behind any read noted since.
      const since = [...state.touched]
      state.touched.clear()
      for (const [key, reads] of [...noted, ...since].slice(-RECENT_MAX)) {
        state.touched.set(key, mergeReads(state.touched.get(key), reads))
      }
      throw error
    }
  }

  /**
   * Reserves `delta` (growth: entries and bytes >= 0) in every quota of a key before the key is
   * written, evicting least recently used entries of a quota first when it would not fit.
   * `exclude` (the key being written) is never evicted. When one quota refuses (or its ledger
   * cannot be reached), the reservations already made in the others are given back before the
   * error is thrown, as far as their ledgers can be reached.
   */
  async admit(
    io: QuotaIo,
    states: readonly QuotaState[],
    delta: UsageDelta,
    exclude: string | undefined,
  ): Promise<void> {
    const admitted: QuotaState[] = []
    try {
      for (const state of states) {
        await this.#admitOne(io, state, delta, exclude)
        admitted.push(state)
      }
    } catch (error) {
      // The evictions made stay counted; only the reservation is given back. A ledger that
      // cannot be reached now keeps it: it then counts more than the bucket holds, never less.
      const back = { entries: -delta.entries, bytes: -delta.bytes, evictions: 0 }
      if (!isZero(back)) {
        for (const state of admitted) await this.apply(io, [state], back).catch(() => undefined)
      }
      throw error
    }
  }

  /** Applies a change that needs no room (a removal, a shrink, a rollback) to every quota. */
  async apply(io: QuotaIo, states: readonly QuotaState[], delta: UsageDelta): Promise<void> {
    for (const state of states) {
      for (let round = 0; ; round++) {
        if (round >= MAX_ROUNDS) throw contention('quota accounting')
        const current = await this.#ledger(io, state, round > 0)
        if (await this.#putLedger(io, state, current.seq, add(current.usage, delta))) break
        await backoff(round)
      }
    }
  }

  async #admitOne(
    io: QuotaIo,
    state: QuotaState,
    delta: UsageDelta,
    exclude: string | undefined,
  ): Promise<void> {
    // Removed by this admission but not yet subtracted from the ledger.
    let freed: UsageDelta = { entries: 0, bytes: 0, evictions: 0 }
    let fresh = false
    let fruitless = 0
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const current = await this.#ledger(io, state, fresh)
      if (isZero(delta) && isZero(freed) && state.fits(current.usage)) return
      const next = add(
        current.usage,
        { ...delta, evictions: delta.evictions + freed.evictions },
        freed,
      )
      if (state.fits(next)) {
        if (await this.#putLedger(io, state, current.seq, next)) return
        fresh = true
        await backoff(round)
        continue
      }
      // Decide to evict only on what the server holds now, not on a copy another writer may
      // have changed since.
      if (!current.fresh) {
        fresh = true
        continue
      }
      // Large quotas free a little more than needed, so that the next few writes (from any
      // process) fit without an eviction round of their own.
      const need = {
        entries:
          next.entries -
          state.maxEntries +
          (state.maxEntries >= SLACK_ENTRIES_FROM
            ? Math.floor(state.maxEntries * SLACK_ENTRIES)
            : 0),
        bytes:
          next.bytes - state.maxBytes + (state.maxBytes >= SLACK_FROM ? state.maxBytes * SLACK : 0),
      }
      const result = await this.#evict(io, state, need, exclude)
      freed = sum(freed, result.freed)
      fresh = false
      if (result.freed.entries > 0) {
        fruitless = 0
        continue
      }
      if (++fruitless < 3 || result.present === undefined) {
        await backoff(round + 1)
        continue
      }
      // Nothing left to evict, yet the ledger is over: it counts more than the prefix holds
      // (a process died between a write and its accounting, or other writers' values are in
      // flight). Count again from what the scan found, keeping the evictions.
      const recount = add(
        { ...result.present, evictions: current.usage.evictions },
        { ...delta, evictions: freed.evictions },
      )
      if (await this.#putLedger(io, state, current.seq, recount)) return
      fresh = true
    }
    throw contention(`admission to the quota on ${state.prefix}`)
  }

  /**
   * Removes least recently used entries of a quota (expired ones first) until `need` is
   * covered, fenced on the revision listed, so an entry written or read since is spared.
   */
  async #evict(
    io: QuotaIo,
    state: QuotaState,
    need: { entries: number; bytes: number },
    exclude: string | undefined,
  ): Promise<{ freed: UsageDelta; present: { entries: number; bytes: number } | undefined }> {
    // This process's own reads count before it picks a victim.
    await this.#flush(io, state)
    const recent = parseRecent(await io.read(state.recentKey))
    let present: { entries: number; bytes: number } | undefined
    let rescanned = false
    if (state.next < state.candidates.length && Date.now() - state.listedAt > LIST_MAX_AGE_MS) {
      // An old list misses the entries written since; list again.
      present = await this.#rescan(io, state, recent)
      rescanned = true
    } else if (state.next < state.candidates.length) {
      // Reads since the list was made move entries: order what is left by what is known now.
      state.candidates = state.candidates.slice(state.next)
      state.next = 0
      for (const candidate of state.candidates) {
        const reads = recent.get(candidate.key.slice(state.prefix.length))
        candidate.rank = rankOf(candidate.writtenAt, candidate.raw.seq, reads)
      }
      state.candidates.sort(byEvictionOrder(io.now()))
    }
    const chosen: Candidate[] = []
    let bytes = 0
    while (
      (chosen.length < need.entries || bytes < need.bytes) &&
      chosen.length < VICTIMS_PER_ROUND
    ) {
      if (state.next >= state.candidates.length) {
        if (rescanned) break
        present = await this.#rescan(io, state, recent)
        rescanned = true
        continue
      }
      const candidate = state.candidates[state.next] as Candidate
      if (!rescanned && candidate.rank[0] !== Number.NEGATIVE_INFINITY) {
        // Entries used once go before this one, and some may have been written since the list
        // was made: list again before evicting an entry used more than once.
        present = await this.#rescan(io, state, recent)
        rescanned = true
        continue
      }
      state.next++
      if (candidate.key === exclude) continue
      chosen.push(candidate)
      bytes += candidate.size
    }
    const freed: UsageDelta = { entries: 0, bytes: 0, evictions: 0 }
    // What the removals take from the other quotas covering the removed keys (nested quotas):
    // subtracted from their ledgers here, while `freed` is left to the admission of `state`.
    const others = new Map<QuotaState, UsageDelta>()
    const now = io.now()
    await Promise.all(
      chosen.map(async (candidate) => {
        const expired = candidate.raw.expiresAt !== null && candidate.raw.expiresAt <= now
        if (!(await io.remove(candidate.key, candidate.raw, expired))) return
        freed.entries++
        freed.bytes += candidate.size
        if (!expired) freed.evictions++
        for (const other of this.of(candidate.key)) {
          if (other === state) continue
          const delta = others.get(other) ?? { entries: 0, bytes: 0, evictions: 0 }
          delta.entries--
          delta.bytes -= candidate.size
          others.set(other, delta)
        }
      }),
    )
    for (const [other, delta] of others) await this.apply(io, [other], delta)
    return { freed, present: chosen.length === 0 ? present : undefined }
  }

  /** Lists the prefix's user entries, expired first, then least recently used first. */
  async #rescan(
    io: QuotaIo,
    state: QuotaState,
    recent: Map<string, Reads>,
  ): Promise<{ entries: number; bytes: number }> {
    const found: Candidate[] = []
    let bytes = 0
    for await (const { key, raw, time } of io.scan(`${state.prefix.slice(0, -1)}.>`)) {
      if (!key.startsWith(state.prefix) || !isUserKey(key) || !counted(raw)) continue
      const size = entrySize(key, raw.size)
      bytes += size
      const rank = rankOf(time, raw.seq, recent.get(key.slice(state.prefix.length)))
      found.push({ key, raw, size, rank, writtenAt: time })
    }
    found.sort(byEvictionOrder(io.now()))
    state.listedAt = Date.now()
    state.candidates = found
    state.next = 0
    return { entries: found.length, bytes }
  }

  /** The ledger of a quota: our last copy, or read (and created when missing) with `fresh`. */
  async #ledger(io: QuotaIo, state: QuotaState, fresh: boolean): Promise<Ledger> {
    if (!fresh && state.ledger !== undefined) return { ...state.ledger, fresh: false }
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const raw = await io.read(state.ledgerKey)
      const usage = parseUsage(raw)
      if (raw !== undefined && usage !== undefined) {
        state.ledger = { seq: raw.seq, usage }
        return { seq: raw.seq, usage, fresh: true }
      }
      state.creating ??= this.#create(io, state, raw?.seq ?? 0).finally(() => {
        state.creating = undefined
      })
      await state.creating
    }
    throw contention(`reading the ledger of ${state.prefix}`)
  }

  /**
   * Recounts the ledgers that nobody changed for at least `quietMs`: a ledger can drift when a
   * process dies between a write and its accounting. A quiet ledger has no reservation in
   * flight, and the recount is a compare-and-set on the revision it checked, so a write that
   * comes meanwhile makes it give up until the next time. A ledger that changed since the last
   * look is instead counted at most every {@link BUSY_COUNT_MS} and only raised (see `#raise`): the
   * writes of processes that did not know the quota yet are not left out until writes stop.
   * Called by the sweep.
   */
  async reconcile(io: QuotaIo, quietMs: number): Promise<void> {
    for (const state of this.#states.values()) {
      const raw = await io.read(state.ledgerKey)
      const usage = parseUsage(raw)
      if (raw === undefined || usage === undefined) continue
      const now = Date.now()
      if (state.idle?.seq !== raw.seq) {
        // Busy: changed since the last look (a first look only notes the revision, so a store
        // that knows many quotas does not scan them all on its first sweep).
        if (state.idle !== undefined && now - state.countedBusyAt >= BUSY_COUNT_MS) {
          state.countedBusyAt = now
          await this.#raise(io, state)
        }
        state.idle = { seq: state.ledger?.seq ?? raw.seq, since: now }
        continue
      }
      if (now - state.idle.since < quietMs) continue
      const present = await this.#rescan(io, state, parseRecent(await io.read(state.recentKey)))
      if (present.entries === usage.entries && present.bytes === usage.bytes) {
        // Checked: not scanned again until the ledger changes.
        state.idle = { seq: raw.seq, since: Number.POSITIVE_INFINITY }
        continue
      }
      if (await this.#putLedger(io, state, raw.seq, { ...present, evictions: usage.evictions })) {
        state.idle = undefined
      }
    }
  }

  /**
   * Counts what the prefix holds and raises a ledger that counts less: the writes of processes
   * that did not know the quota yet. Usable while others write, because it never lowers a ledger:
   * every value the scan finds was reserved before it was published, so a ledger unchanged since
   * the revision read before the scan already counts it, unless no reservation was ever made for
   * it. The raise is a compare-and-set on that revision; a few scans, then it gives up until the
   * next time. Not exact: a removal or a shrink whose accounting is still in flight makes the scan
   * find less than the ledger counts, which hides as much of the unaccounted writes (so the
   * ledger may still count too little by up to the entries being removed at that moment), and a
   * ledger that counts too much (entries the server removed on its own) is left to the quiet
   * recount, since it looks the same as such a removal in flight.
   */
  async #raise(io: QuotaIo, state: QuotaState): Promise<void> {
    for (let attempt = 0; attempt < BUSY_COUNT_TRIES; attempt++) {
      const raw = await io.read(state.ledgerKey)
      const usage = parseUsage(raw)
      if (raw === undefined || usage === undefined) return
      let entries = 0
      let bytes = 0
      for await (const { key, raw: entry } of io.scan(`${state.prefix.slice(0, -1)}.>`)) {
        if (!key.startsWith(state.prefix) || !isUserKey(key) || !counted(entry)) continue
        entries++
        bytes += entrySize(key, entry.size)
      }
      if (entries <= usage.entries && bytes <= usage.bytes) return
      const raised = {
        entries: Math.max(entries, usage.entries),
        bytes: Math.max(bytes, usage.bytes),
        evictions: usage.evictions,
      }
      if (await this.#putLedger(io, state, raw.seq, raised)) return
      await backoff(attempt + 1)
    }
  }

  /** Creates a missing ledger from a count of what the prefix holds; a racing creator wins. */
  async #create(io: QuotaIo, state: QuotaState, expectedSeq: number): Promise<void> {
    const present = await this.#rescan(io, state, new Map())
    await io.put(state.ledgerKey, encode({ ...present, evictions: 0 }), expectedSeq)
  }

  async #putLedger(
    io: QuotaIo,
    state: QuotaState,
    expectedSeq: number,
    usage: QuotaUsage,
  ): Promise<boolean> {
    const seq = await io.put(state.ledgerKey, encode(usage), expectedSeq)
    if (seq === undefined) {
      state.ledger = undefined
      return false
    }
    state.ledger = { seq, usage }
    return true
  }
}

/** `usage + delta - freed`, never below zero. */
function add(usage: QuotaUsage, delta: UsageDelta, freed?: UsageDelta): QuotaUsage {
  return {
    entries: Math.max(0, usage.entries + delta.entries - (freed?.entries ?? 0)),
    bytes: Math.max(0, usage.bytes + delta.bytes - (freed?.bytes ?? 0)),
    evictions: Math.max(0, usage.evictions + delta.evictions),
  }
}

function isZero(delta: UsageDelta): boolean {
  return delta.entries === 0 && delta.bytes === 0 && delta.evictions === 0
}

function sum(a: UsageDelta, b: UsageDelta): UsageDelta {
  return {
    entries: a.entries + b.entries,
    bytes: a.bytes + b.bytes,
    evictions: a.evictions + b.evictions,
  }
}
