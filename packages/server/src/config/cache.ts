/**
 * {@link createCacheFromConfig}: the flowcache `Cache` a resolved configuration describes. Store
 * modules are loaded only when asked for, so a memory or SQLite cache never loads a Redis or
 * NATS client.
 */
import { readFile } from 'node:fs/promises'
import {
  createCache,
  memoryStore,
  type Cache,
  type CacheOptions,
  type Logger,
  type Store,
} from '../flowcache.js'
import { ConfigError } from './errors.js'
import type { ResolvedCacheConfig, ResolvedConfig } from './types.js'

const MIB = 1024 * 1024

/** Options of {@link createCacheFromConfig}. */
export interface CacheFromConfigOptions {
  /** Where the cache reports state changes (fallback, reconnects). @default the cache's (stderr) */
  logger?: Logger
}

/** NATS credentials from `credentials_path`: JSON `{ user, pass }` or `{ token }`, else a `.creds` file. */
async function natsCredentials(
  file: string,
): Promise<{ user: string; pass: string } | { token: string } | { creds: string }> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (cause) {
    throw new ConfigError(
      [
        {
          source: file,
          path: 'cache.credentials_path',
          message: `cannot read the NATS credentials file: ${(cause as Error).message}`,
        },
      ],
      { cause },
    )
  }
  if (text.trimStart().startsWith('{')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (cause) {
      throw new ConfigError(
        [
          {
            source: file,
            path: 'cache.credentials_path',
            message: `is not valid JSON (${(cause as Error).message}); write {"user":…,"pass":…} or {"token":…}, or use a .creds file`,
          },
        ],
        { cause },
      )
    }
    const fields = parsed as Record<string, unknown>
    if (typeof fields.user === 'string' && typeof fields.pass === 'string') {
      return { user: fields.user, pass: fields.pass }
    }
    if (typeof fields.token === 'string') return { token: fields.token }
    throw new ConfigError([
      {
        source: file,
        path: 'cache.credentials_path',
        message: 'must hold {"user":…,"pass":…} or {"token":…} (or be a NATS .creds file)',
      },
    ])
  }
  return { creds: text }
}

/** The store of `cache` (not connected yet); `undefined` for the default memory store. */
async function storeOf(cache: ResolvedCacheConfig): Promise<Store | undefined> {
  const limits = {
    ...(cache.maxEntries === undefined ? {} : { maxEntries: cache.maxEntries }),
    ...(cache.maxMemoryMb === undefined ? {} : { maxBytes: cache.maxMemoryMb * MIB }),
    ...(cache.history === undefined ? {} : { history: cache.history }),
  }
  switch (cache.type) {
    case 'memory':
      return memoryStore(limits)
    case 'sqlite': {
      const { sqliteStore } = await import('../../../flowcache/src/stores/sqlite/index.js')
      return sqliteStore({ path: cache.path, ...limits })
    }
    case 'redis': {
      const { redisStore } = await import('../../../flowcache/src/stores/redis/index.js')
      return redisStore({
        ...(cache.url === undefined ? {} : { url: cache.url }),
        ...(cache.history === undefined ? {} : { history: cache.history }),
      })
    }
    case 'nats': {
      const { natsStore } = await import('../../../flowcache/src/stores/nats/index.js')
      const credentials =
        cache.credentialsPath === undefined
          ? undefined
          : await natsCredentials(cache.credentialsPath)
      return natsStore({
        ...(cache.url === undefined ? {} : { url: cache.url }),
        ...(credentials === undefined ? {} : { credentials }),
        ...(cache.dbName === undefined ? {} : { bucket: cache.dbName }),
        ...(cache.history === undefined ? {} : { history: cache.history }),
        ...(cache.tombstoneTtlMs === undefined ? {} : { tombstoneTtl: cache.tombstoneTtlMs }),
      })
    }
  }
}

/**
 * Creates the cache `config.cache` describes: its store (memory, SQLite at `cache.path`, Redis
 * or NATS), prefix, start-up fallback, L1 tier and namespace quotas (`user_cache_limit_mb` as
 * every top-level namespace's default allocation, `quotas:` per namespace). Resolves without waiting for the store: call
 * `cache.ready()` to wait for the connection (with `fallback: 'fail'` it rejects when the store
 * is unreachable). Rejects with `ConfigError` when the NATS credentials file cannot be read,
 * and with `InvalidArgumentError` when the store refuses an option. Close the cache when done.
 */
export async function createCacheFromConfig(
  config: ResolvedConfig,
  options: CacheFromConfigOptions = {},
): Promise<Cache> {
  const cache = config.cache
  const store = await storeOf(cache)
  const cacheOptions: CacheOptions = { fallback: cache.fallback }
  if (store !== undefined) cacheOptions.store = store
  if (cache.prefix !== undefined) cacheOptions.prefix = cache.prefix
  if (options.logger !== undefined) cacheOptions.logger = options.logger
  const namespaces = Object.entries(cache.quotas ?? {})
  if (cache.userCacheLimitMb !== undefined || namespaces.length > 0) {
    cacheOptions.quotas = {
      ...(cache.userCacheLimitMb === undefined
        ? {}
        : { default: { maxBytes: cache.userCacheLimitMb * MIB } }),
      namespaces: Object.fromEntries(
        namespaces.map(([name, quota]) => [
          name,
          {
            ...(quota.maxEntries === undefined ? {} : { maxEntries: quota.maxEntries }),
            ...(quota.maxMemoryMb === undefined ? {} : { maxBytes: quota.maxMemoryMb * MIB }),
          },
        ]),
      ),
    }
  }
  if (cache.l1 !== undefined) {
    cacheOptions.l1 = {
      ...(cache.l1.maxEntries === undefined ? {} : { maxEntries: cache.l1.maxEntries }),
      ...(cache.l1.maxMemoryMb === undefined ? {} : { maxBytes: cache.l1.maxMemoryMb * MIB }),
      ...(cache.l1.maxTtlMs === undefined ? {} : { maxTtl: cache.l1.maxTtlMs }),
    }
  }
  try {
    return createCache(cacheOptions)
  } catch (error) {
    await store?.close()
    throw error
  }
}
