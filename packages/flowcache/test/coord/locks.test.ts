import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as vitest from 'vitest'
import { afterAll, describe, expect, it } from 'vitest'
import { createCache } from '../../src/core/cache.js'
import { silentLogger } from '../../src/core/logger.js'
import { memoryStore } from '../../src/stores/memory/index.js'
import { natsStore } from '../../src/stores/nats/index.js'
import { redisStore } from '../../src/stores/redis/index.js'
import { sqliteStore } from '../../src/stores/sqlite/index.js'
import { runLockContract } from '../../src/testing/index.js'
import type { Store } from '../../src/types/store.js'
import { destroyNatsBucket, natsUrl, redisUrl } from '../helpers/services.js'

const dir = mkdtempSync(join(tmpdir(), 'flowcache-locks-'))
const bucket = `locks-${randomBytes(4).toString('hex')}`
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  await destroyNatsBucket(bucket)
})

function setupWith(makeStore: () => Store) {
  return () => {
    const prefix = `l${randomBytes(5).toString('hex')}`
    const store = makeStore()
    const cache = createCache({ store, prefix, fallback: 'fail', logger: silentLogger })
    return { cache, store: cache.store, prefix }
  }
}

runLockContract(vitest, {
  name: 'memory',
  createCache: setupWith(() => memoryStore({ maxEntries: 100 })),
})
runLockContract(vitest, {
  name: 'sqlite',
  createCache: setupWith(() =>
    sqliteStore({ path: join(dir, `${randomBytes(4).toString('hex')}.db`), maxEntries: 100 }),
  ),
})
runLockContract(vitest, {
  name: 'redis',
  createCache: setupWith(() => redisStore({ url: redisUrl() })),
})
runLockContract(vitest, {
  name: 'nats',
  createCache: setupWith(() => natsStore({ servers: natsUrl(), bucket })),
})

describe('locks fail closed', () => {
  it('never grants a lock from the memory fallback of an unreachable store', async () => {
    const cache = createCache({
      store: redisStore({ url: 'redis://127.0.0.1:1', connectTimeoutMs: 200 }),
      logger: silentLogger,
    })
    await cache.ready()
    expect(cache.health().status).toBe('degraded')
    await expect(cache.locks.acquire('job', { ttl: '1s' })).rejects.toMatchObject({
      code: 'E_STORE_UNAVAILABLE',
    })
    await cache.close()
  })
})
