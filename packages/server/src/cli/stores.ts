/**
 * `--store` for CLI commands: `memory`, `sqlite:<path>`, `redis://…` / `rediss://…` or
 * `nats://…`, turned into a flowcache `Cache`. Store modules are loaded only when asked for, so
 * a command on the memory store never loads a Redis or NATS client.
 */
import { createCache, type Cache, type Store } from '../flowcache.js'
import { UsageError } from './io.js'

/** The `--store` values the CLI accepts, for help texts. */
export const STORE_SPEC_HELP = 'memory, sqlite:<path>, redis://host:6379[/db] or nats://host:4222'

/** Parses a `--store` value into the store it names (without connecting). */
export async function storeFromSpec(spec: string): Promise<Store | undefined> {
  if (spec === 'memory') return undefined
  if (spec.startsWith('sqlite:')) {
    const path = spec.slice('sqlite:'.length)
    if (path === '')
      throw new UsageError(`--store sqlite: needs a file path, e.g. sqlite:./.flowcache/cache.db`)
    const { sqliteStore } = await import('../../../flowcache/src/stores/sqlite/index.js')
    return sqliteStore({ path })
  }
  if (/^rediss?:\/\//.test(spec)) {
    const { redisStore } = await import('../../../flowcache/src/stores/redis/index.js')
    return redisStore({ url: spec })
  }
  if (spec.startsWith('nats://')) {
    const { natsStore } = await import('../../../flowcache/src/stores/nats/index.js')
    return natsStore({ url: spec })
  }
  throw new UsageError(`--store ${spec} is not a store; use ${STORE_SPEC_HELP}`)
}

/**
 * Opens the cache `--store` names and waits until its store is reachable. A distributed store
 * never falls back to memory here: a CLI command on an unreachable store fails instead.
 */
export async function openCache(spec: string): Promise<Cache> {
  const store = await storeFromSpec(spec)
  const cache = createCache(store === undefined ? {} : { store, fallback: 'fail' })
  try {
    await cache.ready()
  } catch (error) {
    await cache.close().catch(() => undefined)
    throw error
  }
  return cache
}
