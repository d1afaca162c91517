/**
 * The resolved configuration of `flowcache serve` and the CLI commands: `flowcache.yaml`, then
 * environment variables, then command-line options, checked and with every default filled in.
 */

/** The stores a configuration can name. */
export type CacheType = 'memory' | 'sqlite' | 'redis' | 'nats'

/** The `cache:` block, resolved. */
export interface ResolvedCacheConfig {
  /**
   * flowgen's `enabled`: `false` keeps the cache in process memory whatever `type` says (nothing
   * is shared between processes). @default true
   */
  enabled: boolean
  /** The store in use; `memory` when `enabled` is false. @default 'sqlite' */
  type: CacheType
  /** Redis or NATS server URL (Redis and NATS only). @default redis://127.0.0.1:6379, nats://127.0.0.1:4222 */
  url?: string
  /** Absolute path of the SQLite database file (SQLite only). @default `<cwd>/.flowcache/cache.db` */
  path: string
  /** Absolute path of the NATS credentials file: a `.creds` file, or JSON `{ user, pass }` / `{ token }` (NATS only). */
  credentialsPath?: string
  /** NATS KV bucket name, flowgen's `db_name` (NATS only). @default 'flowcache' */
  dbName?: string
  /** Versions kept per key for `history()`. @default the store's: 0 (memory, SQLite), 1 (NATS) */
  history?: number
  /** How long NATS delete markers are kept, in ms, flowgen's `tombstone_ttl` (NATS only). @default 1 h */
  tombstoneTtlMs?: number
  /** What a Redis or NATS store does when unreachable at start. @default 'memory' */
  fallback: 'memory' | 'fail'
  /** Most entries of a memory or SQLite store. @default the store's (50 000) */
  maxEntries?: number
  /** Soft limit, in MiB, on the bytes of a memory or SQLite store. @default the store's (32 MiB memory, 256 MiB SQLite) */
  maxMemoryMb?: number
  /**
   * Allocation, in MiB, of each top-level namespace (tenant, app) that has no entry in
   * `quotas`: its least recently used user entries are evicted beyond it (Enfyra's
   * `REDIS_USER_CACHE_LIMIT_MB`). `undefined`: no default allocation.
   */
  userCacheLimitMb?: number
  /** Quotas of particular top-level namespaces, by name; each replaces the default field by field. */
  quotas?: Record<string, { maxMemoryMb?: number; maxEntries?: number }>
  /** In-process tier over a Redis or NATS store; `undefined` when off. */
  l1?: {
    /** @default 10 000 */
    maxEntries?: number
    /** @default 16 MiB */
    maxMemoryMb?: number
    /** Longest time an entry stays in L1 without a read from the store, in ms. @default 1 min */
    maxTtlMs?: number
  }
  /** First token of every store key. @default 'fc' */
  prefix?: string
}

/** The `server:` block, resolved. */
export interface ResolvedServerConfig {
  /** Address the HTTP server binds. @default '127.0.0.1' */
  host: string
  /** TCP port; `0` picks a free one. @default 7700 */
  port: number
  /** Bearer token of the API; required when `host` is not a loopback address. */
  token?: string
  /** Largest request body, in bytes. @default 1 MiB */
  bodyLimit: number
}

/** The `flows:` block, resolved. */
export interface ResolvedFlowsConfig {
  /**
   * Absolute path of the folder of flow files; `undefined` when none is configured and the
   * example flows are not there (the server then runs no flows).
   */
  dir?: string
  /** Where `dir` came from: the configuration, or the bundled example flows. */
  dirSource?: 'config' | 'examples'
  /** Tenant of flows that name none. @default 'default' */
  tenant: string
}

/** What {@link loadConfig} returns. */
export interface ResolvedConfig {
  /** Absolute path of the configuration file read; `undefined` when none was found. */
  file?: string
  cache: ResolvedCacheConfig
  server: ResolvedServerConfig
  flows: ResolvedFlowsConfig
}
