import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../src/core/cache.js'
import { silentLogger } from '../src/core/logger.js'
import { WriteTargetError } from '../src/errors.js'
import { redisStore } from '../src/stores/redis/index.js'
import { RecordingTarget } from './helpers/recording-target.js'
import { deleteRedisKeys, redisUrl } from './helpers/services.js'

const prefix = `wp${randomBytes(5).toString('hex')}`
afterAll(() => deleteRedisKeys(`{${prefix}*`))

function redisCache(): Cache {
  return createCache({
    store: redisStore({ url: redisUrl() }),
    prefix,
    fallback: 'fail',
    logger: silentLogger,
  })
}

describe('write patterns on Redis', () => {
  it('write-behind: 10 000 writes then cache.close(): all 10 000 in the target and in Redis', async () => {
    const cache = redisCache()
    const target = new RecordingTarget<{ n: number }>()
    const writer = cache.namespace('behind').writeBehind(target, { flushEvery: '1h' })
    for (let start = 0; start < 10_000; start += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, i) => writer.set(`o:${start + i}`, { n: start + i })),
      )
    }
    await cache.close()
    expect(target.rows.size).toBe(10_000)
    const wrong = Array.from({ length: 10_000 }, (_, i) => i).filter(
      (i) => target.rows.get(`o:${i}`)?.n !== i,
    )
    expect(wrong).toEqual([])
    expect(cache.stats().writeBehind).toMatchObject({ pending: 0, flushed: 10_000, writers: 0 })

    const check = redisCache()
    expect(await check.namespace('behind').get('o:9999')).toEqual({ n: 9999 })
    expect((await check.namespace('behind').keys('o:')).length).toBe(10_000)
    await check.close()
  })

  it('write-behind: a target failing for a while loses nothing and counts the failures', async () => {
    const cache = redisCache()
    const target = new RecordingTarget<number>()
    target.failNext = 4
    const writer = cache.namespace('retry').writeBehind(target, {
      flushEvery: 5,
      batchSize: 40,
      retry: { baseMs: 1, maxMs: 8 },
    })
    for (let i = 0; i < 500; i++) await writer.set(`k${i % 100}`, i)
    await cache.close()
    expect(target.rows.size).toBe(100)
    for (let k = 0; k < 100; k++) expect(target.rows.get(`k${k}`)).toBe(400 + k)
    expect(cache.stats().writeBehind).toMatchObject({ failures: 4, retries: 4, pending: 0 })
    expect(cache.stats().writeBehind.lastError?.message).toContain('target refused')
  })

  it('write-through: a target failure leaves no value in Redis for the key', async () => {
    const cache = redisCache()
    const target = new RecordingTarget<number>()
    const writer = cache.namespace('through').writeThrough(target)
    await writer.set('a', 1)
    expect(await cache.namespace('through').get('a')).toBe(1)
    target.failNext = 1
    await expect(writer.set('a', 2)).rejects.toBeInstanceOf(WriteTargetError)
    expect(await cache.namespace('through').has('a')).toBe(false)
    await cache.close()
  })

  it('warm: loads into Redis with the TTL, skips cached keys', async () => {
    const cache = redisCache()
    const ns = cache.namespace('warm')
    await ns.set('k0', 'cached')
    const summary = await ns.warm(
      Array.from({ length: 200 }, (_, i) => `k${i}`),
      async (key) => `loaded ${key}`,
      { concurrency: 16, ttl: '10m' },
    )
    expect(summary).toMatchObject({ total: 200, loaded: 199, skipped: 1, failed: 0 })
    expect(await ns.get('k0')).toBe('cached')
    expect(await ns.get('k199')).toBe('loaded k199')
    expect(await ns.ttl('k199')).toBeLessThanOrEqual(600_000)
    const batched = await ns.warm(['b1', 'b2', 'b3'], {
      loadMany: async (keys) => keys.map((key) => key.length),
      batchSize: 2,
    })
    expect(batched).toMatchObject({ loaded: 3 })
    expect(await ns.getMany(['b1', 'b3'])).toEqual([2, 2])
    await cache.close()
  })
})
