/**
 * The on-disk schema of the SQLite store, and how a file is brought to it.
 *
 * The file is marked with `PRAGMA application_id` and versioned with `PRAGMA user_version`, so
 * that opening someone else's database, or one written by a newer flowcache, fails with a clear
 * error instead of adding tables to it or misreading it.
 */
import type BetterSqlite3 from 'better-sqlite3'

import { StoreUnavailableError } from '../../errors.js'

/** Schema version this code reads and writes, kept in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 2

/** `PRAGMA application_id` of flowcache files: the ASCII bytes `fcSQ`. */
export const APPLICATION_ID = 0x66635351

/**
 * Version 2 (a new file gets it directly).
 *
 * - `meta` is one row: the revision counter and running totals, so that `stats()` and the
 *   global `maxEntries` / `maxBytes` checks read one row instead of scanning. The counter lives
 *   in the same transactions as the writes that use it, so a revision is never handed out twice,
 *   across restarts and across connections to the same file.
 * - `quotas` holds the running count and bytes of the user entries under each prefix a quota was
 *   ever set on, so enforcing a quota reads one row instead of counting its namespace on every
 *   write. The limits themselves are not stored: the cache sets them each time it starts.
 * - Triggers keep both up to date inside every transaction, whichever connection writes.
 * - `entries` keeps the small columns before `value`: SQLite reads a row's columns in order,
 *   so a column after a large blob would cost a walk through the blob's overflow pages.
 * - `entries_expiry` serves the sweep and `entries_lru` the eviction order; both are partial, so
 *   entries without a TTL and system keys cost nothing in them.
 * - `size` is the value's bytes plus the key's length (keys are ASCII), as in the memory store.
 */
const SCHEMA = `
CREATE TABLE meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL,
  entries INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  user_entries INTEGER NOT NULL,
  user_bytes INTEGER NOT NULL
);
INSERT INTO meta (id, revision, entries, bytes, user_entries, user_bytes) VALUES (1, 0, 0, 0, 0, 0);

CREATE TABLE quotas (
  prefix TEXT PRIMARY KEY NOT NULL,
  hi TEXT NOT NULL,
  entries INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  evictions INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE entries (
  key TEXT PRIMARY KEY NOT NULL,
  revision INTEGER NOT NULL,
  expires_at INTEGER,
  size INTEGER NOT NULL,
  used_at INTEGER NOT NULL,
  is_user INTEGER NOT NULL CHECK (is_user IN (0, 1)),
  value BLOB NOT NULL
);
CREATE INDEX entries_expiry ON entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX entries_lru ON entries (used_at) WHERE is_user = 1;

CREATE TRIGGER entries_counted_insert AFTER INSERT ON entries BEGIN
  UPDATE meta SET
    entries = entries + 1,
    bytes = bytes + NEW.size,
    user_entries = user_entries + NEW.is_user,
    user_bytes = user_bytes + NEW.is_user * NEW.size
  WHERE id = 1;
  UPDATE quotas SET entries = entries + 1, bytes = bytes + NEW.size
  WHERE NEW.is_user = 1 AND prefix <= NEW.key AND hi > NEW.key;
END;
CREATE TRIGGER entries_counted_delete AFTER DELETE ON entries BEGIN
  UPDATE meta SET
    entries = entries - 1,
    bytes = bytes - OLD.size,
    user_entries = user_entries - OLD.is_user,
    user_bytes = user_bytes - OLD.is_user * OLD.size
  WHERE id = 1;
  UPDATE quotas SET entries = entries - 1, bytes = bytes - OLD.size
  WHERE OLD.is_user = 1 AND prefix <= OLD.key AND hi > OLD.key;
END;
CREATE TRIGGER entries_counted_resize AFTER UPDATE OF size ON entries BEGIN
  UPDATE meta SET
    bytes = bytes + NEW.size - OLD.size,
    user_bytes = user_bytes + NEW.is_user * (NEW.size - OLD.size)
  WHERE id = 1;
  UPDATE quotas SET bytes = bytes + NEW.size - OLD.size
  WHERE NEW.is_user = 1 AND prefix <= NEW.key AND hi > NEW.key;
END;
`

/**
 * Version 1 → 2: `quotas.evictions` counts the entries each quota evicted, in the file, so every
 * process sharing it reports the same number. Version 1 files start from 0.
 */
const MIGRATE_V1_V2 = `ALTER TABLE quotas ADD COLUMN evictions INTEGER NOT NULL DEFAULT 0;`

/**
 * Creates the schema in an empty file, or checks that an existing file is a flowcache store of a
 * version this code can use. Runs in one immediate transaction, so two processes opening a new
 * file at once cannot both create it.
 *
 * @param path shown in error messages
 */
export function prepareSchema(db: BetterSqlite3.Database, path: string): void {
  db.transaction(() => {
    const applicationId = db.pragma('application_id', { simple: true }) as number
    const version = db.pragma('user_version', { simple: true }) as number
    if (applicationId !== 0 && applicationId !== APPLICATION_ID) {
      throw new StoreUnavailableError(
        `${path} is an SQLite database of another application (application_id ${applicationId}); point the sqlite store at a file of its own`,
      )
    }
    if (version > SCHEMA_VERSION) {
      throw new StoreUnavailableError(
        `${path} has sqlite store schema version ${version}, written by a newer flowcache; this one reads up to version ${SCHEMA_VERSION}. Upgrade flowcache or use another file`,
      )
    }
    if (version === SCHEMA_VERSION) {
      if (applicationId !== APPLICATION_ID) {
        throw new StoreUnavailableError(
          `${path} has user_version ${version} but is not marked as a flowcache file; point the sqlite store at a file of its own`,
        )
      }
      return
    }
    if (version === 1) {
      if (applicationId !== APPLICATION_ID) {
        throw new StoreUnavailableError(
          `${path} has user_version ${version} but is not marked as a flowcache file; point the sqlite store at a file of its own`,
        )
      }
      db.exec(MIGRATE_V1_V2)
      db.pragma(`user_version = ${SCHEMA_VERSION}`)
      return
    }
    // Version 0: a new file. Refuse one that already holds tables: it belongs to someone else.
    const tables = db
      .prepare<[], { name: string }>(
        `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'`,
      )
      .all()
    if (tables.length > 0) {
      throw new StoreUnavailableError(
        `${path} is an SQLite database with tables of its own (${tables
          .slice(0, 3)
          .map((table) => table.name)
          .join(', ')}); point the sqlite store at a file of its own`,
      )
    }
    db.exec(SCHEMA)
    db.pragma(`application_id = ${APPLICATION_ID}`)
    db.pragma(`user_version = ${SCHEMA_VERSION}`)
  }).immediate()
}
