/**
 * The published `@keyv/test-suite` (keyv 5) against `flowcache/keyv` on every store: the API,
 * value and namespace tests Keyv's own adapters must pass. Each store gets one cache, and every
 * adapter the suite creates wraps that cache, so separate adapters see the same data, as the
 * suite requires.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'

import keyvTestSuite from '@keyv/test-suite'
import Keyv from 'keyv'
import * as vitest from 'vitest'

import { createCache, type Cache } from '../../src/core/cache.js'
import { silentLogger } from '../../src/core/logger.js'
import { KeyvFlowcache } from '../../src/keyv/index.js'
import { natsStore } from '../../src/stores/nats/index.js'
import { redisStore } from '../../src/stores/redis/index.js'
import { sqliteStore } from '../../src/stores/sqlite/index.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from '../helpers/services.js'

const run = randomBytes(4).toString('hex')
const dir = mkdtempSync(join(tmpdir(), 'flowcache-keyv-'))
const bucket = `fc-test-keyv-${run}`
const root = `kv${run}`

const stores: Record<string, () => Cache> = {
  memory: () => createCache({ logger: silentLogger }),
  sqlite: () =>
    createCache({ store: sqliteStore({ path: join(dir, 'keyv.db') }), logger: silentLogger }),
  redis: () =>
    createCache({
      store: redisStore({ url: redisUrl() }),
      prefix: root,
      fallback: 'fail',
      logger: silentLogger,
    }),
  nats: () =>
    createCache({
      store: natsStore({ servers: natsUrl(), bucket }),
      prefix: root,
      fallback: 'fail',
      logger: silentLogger,
    }),
}

const caches: Cache[] = []

vitest.afterAll(async () => {
  await Promise.all(caches.map((cache) => cache.close()))
  await deleteRedisKeys(`${root}.*`)
  await destroyNatsBucket(bucket)
  rmSync(dir, { recursive: true, force: true })
})

for (const [name, make] of Object.entries(stores)) {
  vitest.describe(`@keyv/test-suite on flowcache/keyv (${name})`, () => {
    const cache = make()
    caches.push(cache)
    keyvTestSuite(vitest, Keyv, () => new KeyvFlowcache(cache))
  })
}
