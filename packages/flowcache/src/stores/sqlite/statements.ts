/**
 * The prepared statements of the SQLite store, typed by their parameters and rows.
 *
 * Prefix ranges are `key >= @lo AND key < @hi` with `hi = lo + U+10FFFF` (see `prefixRange`):
 * the primary-key index serves them, and no `LIKE` pattern means no wildcard in a key can widen
 * a match.
 */
import type BetterSqlite3 from 'better-sqlite3'

/** A live or expired entry as read for the byte API. */
export interface EntryRow {
  revision: number
  expires_at: number | null
  value: Buffer
}

/** The columns conditional writes decide on, without reading the value. */
export interface HeadRow {
  revision: number
  expires_at: number | null
}

/** An eviction candidate. */
export interface VictimRow {
  key: string
  size: number
  used_at: number
  expires_at: number | null
}

/** The current state of an eviction candidate, to check it is still one. */
export interface CandidateRow {
  size: number
  used_at: number
  expires_at: number | null
}

/** Running totals kept by the triggers of the schema. */
export interface TotalsRow {
  entries: number
  bytes: number
  user_entries: number
  user_bytes: number
}

/** Count and bytes of the user entries under one prefix. */
export interface UsageRow {
  entries: number
  bytes: number
}

/** A quota's row: usage and the entries it evicted. */
export interface QuotaRow extends UsageRow {
  evictions: number
}

/** Parameters of a prefix range. */
export interface RangeParams {
  lo: string
  hi: string
}

/** The code point above every character a store key can hold, so `prefix + END` bounds its range. */
const RANGE_END = String.fromCodePoint(0x10ffff)

/** The `[lo, hi)` key range of the keys that start with `prefix`. */
export function prefixRange(prefix: string): RangeParams {
  return { lo: prefix, hi: prefix + RANGE_END }
}

/** Every statement the store runs, prepared once per connection. */
export interface Statements {
  readonly get: BetterSqlite3.Statement<[{ key: string; now: number }], EntryRow>
  readonly full: BetterSqlite3.Statement<[string], EntryRow>
  readonly head: BetterSqlite3.Statement<[string], HeadRow>
  readonly upsert: BetterSqlite3.Statement<
    [
      {
        key: string
        revision: number
        expiresAt: number | null
        size: number
        usedAt: number
        isUser: number
        value: Uint8Array
      },
    ]
  >
  readonly nextRevision: BetterSqlite3.Statement<[number], { revision: number }>
  readonly maxTick: BetterSqlite3.Statement<[], { tick: number }>
  readonly touch: BetterSqlite3.Statement<[{ key: string; tick: number }]>
  readonly deleteLive: BetterSqlite3.Statement<[{ key: string; now: number }]>
  readonly deleteFenced: BetterSqlite3.Statement<[{ key: string; now: number; expected: string }]>
  readonly deleteKey: BetterSqlite3.Statement<[string]>
  readonly listFirst: BetterSqlite3.Statement<
    [RangeParams & { now: number; limit: number }],
    string
  >
  readonly listNext: BetterSqlite3.Statement<
    [{ after: string; hi: string; now: number; limit: number }],
    string
  >
  readonly clearLive: BetterSqlite3.Statement<[RangeParams & { now: number }]>
  readonly clearExpired: BetterSqlite3.Statement<[RangeParams & { now: number }]>
  readonly quotaUsage: BetterSqlite3.Statement<[string], UsageRow>
  readonly registerQuota: BetterSqlite3.Statement<[RangeParams]>
  readonly quotaRow: BetterSqlite3.Statement<[string], QuotaRow>
  readonly countEvictions: BetterSqlite3.Statement<[{ prefix: string; count: number }]>
  readonly candidate: BetterSqlite3.Statement<[string], CandidateRow>
  readonly rangeVictims: BetterSqlite3.Statement<[RangeParams & { limit: number }], VictimRow>
  readonly globalVictims: BetterSqlite3.Statement<[number], VictimRow>
  readonly totals: BetterSqlite3.Statement<[], TotalsRow>
  readonly anyExpired: BetterSqlite3.Statement<[number], { found: number }>
  readonly sweepBatch: BetterSqlite3.Statement<[{ now: number; limit: number }]>
}

const LIVE = '(expires_at IS NULL OR expires_at > @now)'

/** Prepares every statement on `db` (whose schema is already in place). */
export function prepareStatements(db: BetterSqlite3.Database): Statements {
  return {
    get: db.prepare(`SELECT revision, expires_at, value FROM entries WHERE key = @key AND ${LIVE}`),
    full: db.prepare('SELECT revision, expires_at, value FROM entries WHERE key = ?'),
    head: db.prepare('SELECT revision, expires_at FROM entries WHERE key = ?'),
    upsert: db.prepare(
      `INSERT INTO entries (key, revision, expires_at, size, used_at, is_user, value)
       VALUES (@key, @revision, @expiresAt, @size, @usedAt, @isUser, @value)
       ON CONFLICT (key) DO UPDATE SET
         revision = excluded.revision, expires_at = excluded.expires_at, size = excluded.size,
         used_at = excluded.used_at, value = excluded.value`,
    ),
    nextRevision: db.prepare(
      'UPDATE meta SET revision = revision + ? WHERE id = 1 RETURNING revision',
    ),
    maxTick: db.prepare('SELECT coalesce(max(used_at), 0) AS tick FROM entries WHERE is_user = 1'),
    // `used_at < @tick`: a touch recorded before a later write must not move that write back.
    touch: db.prepare('UPDATE entries SET used_at = @tick WHERE key = @key AND used_at < @tick'),
    deleteLive: db.prepare(`DELETE FROM entries WHERE key = @key AND ${LIVE}`),
    // Revisions are compared as the strings handed out, so `'01'` never matches revision 1.
    deleteFenced: db.prepare(
      `DELETE FROM entries WHERE key = @key AND ${LIVE} AND CAST(revision AS TEXT) = @expected`,
    ),
    deleteKey: db.prepare('DELETE FROM entries WHERE key = ?'),
    listFirst: db
      .prepare(
        `SELECT key FROM entries WHERE key >= @lo AND key < @hi AND ${LIVE} ORDER BY key LIMIT @limit`,
      )
      .pluck() as BetterSqlite3.Statement<[RangeParams & { now: number; limit: number }], string>,
    listNext: db
      .prepare(
        `SELECT key FROM entries WHERE key > @after AND key < @hi AND ${LIVE} ORDER BY key LIMIT @limit`,
      )
      .pluck() as BetterSqlite3.Statement<
      [{ after: string; hi: string; now: number; limit: number }],
      string
    >,
    clearLive: db.prepare(
      `DELETE FROM entries WHERE is_user = 1 AND key >= @lo AND key < @hi AND ${LIVE}`,
    ),
    clearExpired: db.prepare(
      'DELETE FROM entries WHERE is_user = 1 AND key >= @lo AND key < @hi AND expires_at <= @now',
    ),
    quotaUsage: db.prepare('SELECT entries, bytes FROM quotas WHERE prefix = ?'),
    // Counted once when the quota is set; the triggers keep the row current from then on.
    registerQuota: db.prepare(
      `INSERT INTO quotas (prefix, hi, entries, bytes)
       SELECT @lo, @hi, count(*), total(size) FROM entries
       WHERE is_user = 1 AND key >= @lo AND key < @hi
       ON CONFLICT (prefix) DO UPDATE SET entries = excluded.entries, bytes = excluded.bytes`,
    ),
    quotaRow: db.prepare('SELECT entries, bytes, evictions FROM quotas WHERE prefix = ?'),
    countEvictions: db.prepare(
      'UPDATE quotas SET evictions = evictions + @count WHERE prefix = @prefix',
    ),
    candidate: db.prepare('SELECT size, used_at, expires_at FROM entries WHERE key = ?'),
    // `+used_at`: sort the prefix's own rows. Ordering by the global LRU index instead would read
    // every older entry of every other namespace before it found one under the prefix.
    rangeVictims: db.prepare(
      `SELECT key, size, used_at, expires_at FROM entries
       WHERE is_user = 1 AND key >= @lo AND key < @hi ORDER BY +used_at LIMIT @limit`,
    ),
    globalVictims: db.prepare(
      `SELECT key, size, used_at, expires_at FROM entries INDEXED BY entries_lru
       WHERE is_user = 1 ORDER BY used_at LIMIT ?`,
    ),
    totals: db.prepare('SELECT entries, bytes, user_entries, user_bytes FROM meta WHERE id = 1'),
    anyExpired: db.prepare('SELECT 1 AS found FROM entries WHERE expires_at <= ? LIMIT 1'),
    sweepBatch: db.prepare(
      `DELETE FROM entries WHERE rowid IN
         (SELECT rowid FROM entries WHERE expires_at <= @now LIMIT @limit)`,
    ),
  }
}
