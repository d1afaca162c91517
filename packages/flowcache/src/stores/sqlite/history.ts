/**
 * The version log of the SQLite store (`history` option above 0).
 *
 * - `history` holds the last versions of each user key: sets with their value, deletes and
 *   expiries as markers, at most `history` rows per key (trimmed on every append).
 * - `history_tombstones` lists the keys whose log ends with a marker, with the marker's time, so
 *   the sweep can drop the logs of keys deleted more than an hour ago without scanning the log.
 *
 * The tables are created (empty) when a store opens the file; they are additive, so a file
 * without them is still a valid version-1 file and older flowcache versions ignore them.
 */
import type BetterSqlite3 from 'better-sqlite3'

import type { RangeParams } from './statements.js'

const SCHEMA = `
CREATE TABLE IF NOT EXISTS history (
  key TEXT NOT NULL,
  revision INTEGER NOT NULL,
  operation TEXT NOT NULL,
  at INTEGER NOT NULL,
  expires_at INTEGER,
  value BLOB,
  PRIMARY KEY (key, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history_tombstones (
  key TEXT PRIMARY KEY NOT NULL,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS history_tombstones_at ON history_tombstones (at);
`

/** One logged version. */
export interface HistoryRow {
  revision: number
  operation: 'set' | 'delete' | 'expire'
  at: number
  expires_at: number | null
  value: Buffer | null
}

/** The statements of the version log. */
export interface HistoryStatements {
  readonly append: BetterSqlite3.Statement<
    [
      {
        key: string
        revision: number
        operation: string
        at: number
        expiresAt: number | null
        value: Uint8Array | null
      },
    ]
  >
  readonly trim: BetterSqlite3.Statement<[{ key: string; keep: number }]>
  readonly versions: BetterSqlite3.Statement<[string], HistoryRow>
  readonly forget: BetterSqlite3.Statement<[string]>
  readonly forgetRange: BetterSqlite3.Statement<[RangeParams]>
  readonly mark: BetterSqlite3.Statement<[{ key: string; at: number }]>
  readonly unmark: BetterSqlite3.Statement<[string]>
  readonly unmarkRange: BetterSqlite3.Statement<[RangeParams]>
  readonly dropOld: BetterSqlite3.Statement<[number]>
  readonly unmarkOld: BetterSqlite3.Statement<[number]>
  readonly anyOld: BetterSqlite3.Statement<[number], { found: number }>
  readonly sweepReturning: BetterSqlite3.Statement<
    [{ now: number; limit: number }],
    { key: string; expires_at: number; is_user: number }
  >
  readonly rangeKeys: BetterSqlite3.Statement<
    [RangeParams],
    { key: string; expires_at: number | null }
  >
}

/** Creates the tables when missing (they stay empty while `history` is 0) and prepares the statements. */
export function prepareHistory(db: BetterSqlite3.Database): HistoryStatements {
  db.exec(SCHEMA)
  return {
    append: db.prepare(
      `INSERT OR REPLACE INTO history (key, revision, operation, at, expires_at, value)
       VALUES (@key, @revision, @operation, @at, @expiresAt, @value)`,
    ),
    trim: db.prepare(
      `DELETE FROM history WHERE key = @key AND revision NOT IN
         (SELECT revision FROM history WHERE key = @key ORDER BY revision DESC LIMIT @keep)`,
    ),
    versions: db.prepare(
      'SELECT revision, operation, at, expires_at, value FROM history WHERE key = ? ORDER BY revision',
    ),
    forget: db.prepare('DELETE FROM history WHERE key = ?'),
    forgetRange: db.prepare('DELETE FROM history WHERE key >= @lo AND key < @hi'),
    mark: db.prepare(
      'INSERT INTO history_tombstones (key, at) VALUES (@key, @at) ON CONFLICT (key) DO UPDATE SET at = excluded.at',
    ),
    unmark: db.prepare('DELETE FROM history_tombstones WHERE key = ?'),
    unmarkRange: db.prepare('DELETE FROM history_tombstones WHERE key >= @lo AND key < @hi'),
    dropOld: db.prepare(
      'DELETE FROM history WHERE key IN (SELECT key FROM history_tombstones WHERE at <= ?)',
    ),
    unmarkOld: db.prepare('DELETE FROM history_tombstones WHERE at <= ?'),
    anyOld: db.prepare('SELECT 1 AS found FROM history_tombstones WHERE at <= ? LIMIT 1'),
    sweepReturning: db.prepare(
      `DELETE FROM entries WHERE rowid IN
         (SELECT rowid FROM entries WHERE expires_at <= @now LIMIT @limit)
       RETURNING key, expires_at, is_user`,
    ),
    rangeKeys: db.prepare(
      'SELECT key, expires_at FROM entries WHERE is_user = 1 AND key >= @lo AND key < @hi',
    ),
  }
}
