import { describe, expect, it } from 'vitest'
import { createCache } from '../../src/core/cache.js'
import { silentLogger } from '../../src/core/logger.js'
import { memoryStore } from '../../src/stores/memory/index.js'
import { redisStore } from '../../src/stores/redis/index.js'

describe('cache.rateLimit', () => {
  it('admits max calls per window, then denies, and reports it in stats', async () => {
    const cache = createCache()
    const results = []
    for (let i = 0; i < 5; i++)
      results.push(await cache.rateLimit('api:user-1', { max: 3, per: '1m' }))
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, false, false])
    expect(results[3]?.retryAfterMs).toBeGreaterThan(0)
    expect((await cache.rateLimits.status('api:user-1', { max: 3, per: '1m' })).remaining).toBe(0)
    expect(cache.stats().rateLimits).toMatchObject({ allowed: 3, denied: 2 })
    await cache.rateLimits.reset('api:user-1')
    expect((await cache.rateLimit('api:user-1', { max: 3, per: '1m' })).allowed).toBe(true)
    await cache.close()
  })

  it('limiter state is a system key: clear() and eviction never reset a limit', async () => {
    const cache = createCache({ store: memoryStore({ maxEntries: 10 }) })
    for (let i = 0; i < 3; i++) await cache.rateLimit('login', { max: 3, per: '1m' })
    for (let i = 0; i < 100; i++) await cache.set(`k${i}`, i)
    await cache.clear()
    expect((await cache.rateLimit('login', { max: 3, per: '1m' })).allowed).toBe(false)
    await cache.close()
  })

  it('fails closed by default and open on request when the store is unreachable at start', async () => {
    const cache = createCache({
      store: redisStore({ url: 'redis://127.0.0.1:1', connectTimeoutMs: 200 }),
      logger: silentLogger,
    })
    await cache.ready()
    await expect(cache.rateLimit('x', { max: 1, per: '1s' })).rejects.toMatchObject({
      code: 'E_STORE_UNAVAILABLE',
    })
    const open = await cache.rateLimit('x', { max: 1, per: '1s', failure: 'open' })
    expect(open).toMatchObject({ allowed: true, failedOpen: true })
    expect(cache.stats().rateLimits).toMatchObject({ failedOpen: 1, failedClosed: 1 })
    await cache.close()
  })
})
