import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as vitest from 'vitest'
import { afterAll, describe, expect, it, onTestFinished } from 'vitest'
import { ManualClock, systemClock } from '../../src/core/clock.js'
import { jsonCodec } from '../../src/core/codec.js'
import { KeyKind, rootPrefix, systemKey } from '../../src/core/keyspace.js'
import { DEFAULT_LIMITS } from '../../src/core/limits.js'
import { silentLogger } from '../../src/core/logger.js'
import {
  RateLimiter,
  type RateLimitContext,
  type RateLimitOptions,
  type RateLimitStats,
} from '../../src/coord/rate-limit.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { memoryStore } from '../../src/stores/memory/index.js'
import { natsStore } from '../../src/stores/nats/index.js'
import { redisStore } from '../../src/stores/redis/index.js'
import { sqliteStore } from '../../src/stores/sqlite/index.js'
import {
  runRateLimitContract,
  type RateLimitContractRequest,
  type RateLimitContractSetup,
} from '../../src/testing/rate-limit-contract.js'
import { FallbackStore } from '../../src/tiers/fallback.js'
import type { Store } from '../../src/types/store.js'
import { destroyNatsBucket, natsUrl, redisUrl } from '../helpers/services.js'

const dir = mkdtempSync(join(tmpdir(), 'flowcache-rate-limit-'))
const bucket = `ratelimit-${randomBytes(4).toString('hex')}`
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  await destroyNatsBucket(bucket)
})

/** The context the cache will give a namespace's limiter, over `store` under `root`. */
function contextOver(
  store: Store,
  root: string,
  extra: Partial<RateLimitContext> = {},
): RateLimitContext {
  const prefix = rootPrefix(root)
  return {
    store: () => store,
    codec: jsonCodec,
    keyOf: (key) => systemKey(prefix, KeyKind.limiter, key, DEFAULT_LIMITS.maxKeyBytes),
    maxTtlMs: DEFAULT_LIMITS.maxTtlMs,
    ...extra,
  }
}

function randomRoot(): string {
  return `r${randomBytes(5).toString('hex')}`
}

/**
 * Contract setup: `replicas` limiters over stores from `makeStore` (one store for all when
 * `shared`, as for the in-process memory store), keys under a random root, removed on close.
 */
function setupWith(makeStore: () => Store, shared = false) {
  return async (request: RateLimitContractRequest): Promise<RateLimitContractSetup> => {
    const root = randomRoot()
    const otherRoot = randomRoot()
    const raw: Store[] = []
    const wrapped: Store[] = []
    for (let i = 0; i < (shared ? 1 : request.replicas); i++) {
      const store = makeStore()
      raw.push(store)
      wrapped.push(request.wrap(store))
    }
    const storeOf = (i: number): Store => wrapped[shared ? 0 : i] as Store
    return {
      limiters: Array.from(
        { length: request.replicas },
        (_, i) => new RateLimiter(contextOver(storeOf(i), root)),
      ),
      otherNamespace: new RateLimiter(contextOver(storeOf(0), otherRoot)),
      async close() {
        const store = raw[0] as Store
        for (const prefix of [rootPrefix(root), rootPrefix(otherRoot)]) {
          const keys: string[] = []
          for await (const key of store.list(prefix)) keys.push(key)
          if (keys.length > 0) await store.deleteMany(keys)
        }
        await Promise.all(raw.map((s) => s.close()))
      },
    }
  }
}

runRateLimitContract(vitest, {
  name: 'memory',
  createLimiter: setupWith(() => memoryStore({ maxEntries: 100 }), true),
})
runRateLimitContract(vitest, {
  name: 'sqlite',
  createLimiter: (request) => {
    const path = join(dir, `${randomBytes(4).toString('hex')}.db`)
    return setupWith(() => sqliteStore({ path }))(request)
  },
})
runRateLimitContract(vitest, {
  name: 'redis',
  createLimiter: setupWith(() => redisStore({ url: redisUrl() })),
})
runRateLimitContract(vitest, {
  name: 'nats',
  createLimiter: setupWith(() => natsStore({ servers: natsUrl(), bucket })),
})

describe('rate limits on the store clock (memory store, manual clock)', () => {
  const setup = () => {
    const clock = new ManualClock()
    const store = memoryStore({ clock })
    const context = contextOver(store, randomRoot())
    return { clock, store, context, limiter: new RateLimiter(context) }
  }

  it('a sliding-window admission counts until exactly `per` after it', async () => {
    const { clock, limiter } = setup()
    const opts = { max: 2, per: 1000 } as const
    const start = clock.now()
    expect((await limiter.limit('k', opts)).checkedAt).toBe(start)
    clock.advance(400)
    await limiter.limit('k', opts)
    clock.advance(599)
    const denied = await limiter.limit('k', opts)
    expect(denied).toMatchObject({ allowed: false, retryAfterMs: 1, resetAt: start + 1400 })
    clock.advance(1)
    expect(await limiter.limit('k', opts)).toMatchObject({ allowed: true, remaining: 0 })
    expect(await limiter.status('k', opts)).toMatchObject({ allowed: false, retryAfterMs: 400 })
  })

  it('a token bucket refills one token every per / max, to the millisecond', async () => {
    const { clock, limiter } = setup()
    const opts = { max: 4, per: 1000, algorithm: 'token-bucket' } as const
    for (let i = 0; i < 4; i++) await limiter.limit('k', opts)
    expect(await limiter.limit('k', opts)).toMatchObject({
      allowed: false,
      retryAfterMs: 250,
      resetAt: clock.now() + 1000,
    })
    clock.advance(249)
    expect(await limiter.limit('k', opts)).toMatchObject({ allowed: false, retryAfterMs: 1 })
    clock.advance(1)
    expect(await limiter.limit('k', opts)).toMatchObject({ allowed: true, remaining: 0 })
    clock.advance(10_000)
    expect(await limiter.status('k', opts)).toMatchObject({ remaining: 4 })
  })

  it('a clock that goes backwards never frees capacity or moves times back', async () => {
    const { clock, limiter } = setup()
    const opts = { max: 2, per: 1000 } as const
    await limiter.limit('k', opts)
    clock.advance(900)
    const newest = await limiter.limit('k', opts)
    clock.set(newest.checkedAt - 5000)
    const denied = await limiter.limit('k', opts)
    expect(denied).toMatchObject({ allowed: false, checkedAt: newest.checkedAt, retryAfterMs: 100 })
    const bucket = { max: 1, per: 1000, algorithm: 'token-bucket' } as const
    const taken = await limiter.limit('b', bucket)
    clock.set(taken.checkedAt - 60_000)
    expect(await limiter.limit('b', bucket)).toMatchObject({ allowed: false, retryAfterMs: 1000 })
  })

  it('the state expires `per` after the last admission; denied calls and status do not extend it', async () => {
    const { clock, store, context, limiter } = setup()
    const opts = { max: 1, per: 5000 } as const
    const admitted = await limiter.limit('idle', opts)
    const storeKey = context.keyOf('idle')
    const expiresAt = (await store.get(storeKey))?.expiresAt
    expect(expiresAt).toBeGreaterThanOrEqual(admitted.checkedAt + 5000)
    expect(expiresAt).toBeLessThanOrEqual(admitted.checkedAt + 5000 + 1000)
    clock.advance(4000)
    expect((await limiter.limit('idle', opts)).allowed).toBe(false)
    await limiter.status('idle', opts)
    expect((await store.get(storeKey))?.expiresAt).toBe(expiresAt)
    clock.set((expiresAt as number) + 1)
    expect(await store.get(storeKey)).toBeUndefined()
    expect((await limiter.limit('idle', opts)).allowed).toBe(true)
  })

  it('a key used with the other algorithm starts afresh', async () => {
    const { limiter } = setup()
    await limiter.limit('k', { max: 1, per: '1h' })
    expect((await limiter.limit('k', { max: 1, per: '1h' })).allowed).toBe(false)
    const bucket = await limiter.limit('k', { max: 1, per: '1h', algorithm: 'token-bucket' })
    expect(bucket).toMatchObject({ allowed: true, remaining: 0 })
  })

  it('a full window of 10 000 spread over a day stays around 50 KB', async () => {
    const { clock, store, context, limiter } = setup()
    const opts = { max: 10_000, per: '1d' } as const
    for (let i = 0; i < 10_000; i++) {
      clock.advance(8_640)
      expect((await limiter.limit('big', opts)).allowed).toBe(true)
    }
    expect((await limiter.limit('big', opts)).allowed).toBe(false)
    const bytes = (await store.get(context.keyOf('big')))?.value.byteLength ?? 0
    console.log(`sliding window, max 10000 per day, evenly spread: state ${bytes} bytes`)
    expect(bytes).toBeLessThan(60_000)
    const burst = await limiter.limit('burst', { ...opts, cost: 10_000 })
    expect(burst.allowed).toBe(true)
    const burstBytes = (await store.get(context.keyOf('burst')))?.value.byteLength ?? 0
    console.log(`sliding window, max 10000 admitted in one ms: state ${burstBytes} bytes`)
    expect(burstBytes).toBeLessThan(25_000)
  })

  it('limiters of several namespaces can share one set of counters', async () => {
    const store = memoryStore()
    const counters: RateLimitStats = {
      allowed: 0,
      denied: 0,
      failedOpen: 0,
      failedClosed: 0,
      conflicts: 0,
    }
    const a = new RateLimiter(contextOver(store, randomRoot(), { counters }))
    const b = new RateLimiter(contextOver(store, randomRoot(), { counters }))
    const opts = { max: 1, per: '1h' } as const
    await a.limit('k', opts)
    await b.limit('k', opts)
    await b.limit('k', opts)
    expect(counters).toMatchObject({ allowed: 2, denied: 1 })
    expect(a.stats()).toEqual(b.stats())
  })
})

describe('rate limits never use the memory fallback', () => {
  it('while only the fallback is available, closed rejects and open admits, both counted', async () => {
    const fallback = new FallbackStore(
      redisStore({ url: 'redis://127.0.0.1:1', connectTimeoutMs: 200 }),
      { mode: 'memory', logger: silentLogger, clock: systemClock },
    )
    await fallback.ready()
    expect(fallback.inFallback).toBe(true)
    // What the cache's coordination store does: the primary, or a typed error in fallback.
    const limiter = new RateLimiter(
      contextOver(fallback, randomRoot(), {
        store: () => {
          if (fallback.inFallback) {
            throw new StoreUnavailableError('the redis store is unreachable (fallback)')
          }
          return fallback.primary
        },
      }),
    )
    const opts = { max: 5, per: '1m' } as const
    await expect(limiter.limit('k', opts)).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' })
    await expect(limiter.status('k', opts)).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' })
    expect(await limiter.limit('k', { ...opts, failure: 'open' })).toMatchObject({
      allowed: true,
      failedOpen: true,
    })
    expect(limiter.stats()).toMatchObject({ failedClosed: 2, failedOpen: 1, allowed: 0 })
    await fallback.close()
  })
})

/**
 * A real store where another writer updates the limiter state right before each of this
 * replica's writes, so every compare-and-set genuinely loses.
 */
function alwaysOvertaken(store: Store): Store {
  const rival = async (key: string): Promise<void> => {
    const entry = await store.get(key)
    await store.set(key, entry?.value ?? jsonCodec.encode({ a: 'tb', n: 1, at: 0 }), {
      ttlMs: 60_000,
    })
  }
  return new Proxy(store, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function') return value
      const method = value as (...args: unknown[]) => unknown
      if (property !== 'create' && property !== 'compareAndSet') return method.bind(target)
      return async (...args: unknown[]): Promise<unknown> => {
        await rival(args[0] as string)
        return Reflect.apply(method, target, args)
      }
    },
  })
}

describe('rate limits under endless contention', () => {
  it('give up after maxAttempts lost rounds and apply the failure policy', async () => {
    const store = alwaysOvertaken(memoryStore())
    const limiter = new RateLimiter(contextOver(store, randomRoot(), { maxAttempts: 5 }))
    const opts: RateLimitOptions = { max: 5, per: '1m', algorithm: 'token-bucket' }
    await expect(limiter.limit('k', opts)).rejects.toMatchObject({
      code: 'E_STORE_UNAVAILABLE',
      message: expect.stringContaining('5 compare-and-set rounds') as unknown,
    })
    expect(await limiter.limit('k', { ...opts, failure: 'open' })).toMatchObject({
      failedOpen: true,
    })
    expect(limiter.stats()).toMatchObject({ conflicts: 10, failedClosed: 1, failedOpen: 1 })
  })
})

/** Counts the writes of `store` that succeeded. */
function countingWrites(store: Store, counts: { writes: number }): Store {
  return new Proxy(store, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function') return value
      const method = value as (...args: unknown[]) => unknown
      if (property !== 'create' && property !== 'compareAndSet') return method.bind(target)
      return async (...args: unknown[]): Promise<unknown> => {
        const result = await Reflect.apply(method, target, args)
        if (result !== undefined) counts.writes++
        return result
      }
    },
  })
}

describe('contention figures (compare-and-set retries per successful write)', () => {
  const backends: Array<[string, () => Store]> = [
    ['redis', () => redisStore({ url: redisUrl() })],
    ['nats', () => natsStore({ servers: natsUrl(), bucket })],
  ]
  for (const [name, makeStore] of backends) {
    it(`${name}: batched replicas, 200 unbatched callers and paced replicas stay within the limit`, async () => {
      const root = randomRoot()
      const stores = Array.from({ length: 4 }, makeStore)
      onTestFinished(async () => {
        const keys: string[] = []
        for await (const key of (stores[0] as Store).list(rootPrefix(root))) keys.push(key)
        if (keys.length > 0) await (stores[0] as Store).deleteMany(keys)
        await Promise.all(stores.map((store) => store.close()))
      })
      const counts = { writes: 0 }
      const limiters = stores.map(
        (store) => new RateLimiter(contextOver(countingWrites(store, counts), root)),
      )
      const lines: string[] = []
      for (const algorithm of ['sliding-window', 'token-bucket'] as const) {
        const opts = { max: 50, per: '1h', algorithm } as const
        const key = `spread-${algorithm}`
        counts.writes = 0
        const before = limiters.map((l) => l.stats().conflicts)
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) => (limiters[i % 4] as RateLimiter).limit(key, opts)),
        )
        const conflicts = limiters.reduce(
          (sum, l, i) => sum + l.stats().conflicts - (before[i] as number),
          0,
        )
        expect(results.filter((r) => r.allowed)).toHaveLength(50)
        lines.push(
          `${name} ${algorithm} 4 replicas: ${conflicts} conflicts / ${counts.writes} writes = ${(conflicts / counts.writes).toFixed(2)} retries per write`,
        )
        counts.writes = 0
        const single = limiters[0] as RateLimiter
        const conflictsBefore = single.stats().conflicts
        const alone = await Promise.all(
          Array.from({ length: 200 }, () => single.limit(`${key}-single`, opts)),
        )
        expect(alone.filter((r) => r.allowed)).toHaveLength(50)
        expect(single.stats().conflicts - conflictsBefore).toBe(0)
        lines.push(
          `${name} ${algorithm} 1 replica, 200 in one tick: 0 conflicts / ${counts.writes} writes`,
        )
      }
      // Worst case: 200 limiters with one call each (as 200 processes would be), so nothing is
      // batched and every call runs its own compare-and-set loop.
      for (const algorithm of ['sliding-window', 'token-bucket'] as const) {
        counts.writes = 0
        const storm = Array.from(
          { length: 200 },
          (_, i) =>
            new RateLimiter(contextOver(countingWrites(stores[i % 4] as Store, counts), root)),
        )
        const results = await Promise.allSettled(
          storm.map((limiter) =>
            limiter.limit(`storm-${algorithm}`, { max: 50, per: '1h', algorithm }),
          ),
        )
        const allowed = results.filter((r) => r.status === 'fulfilled' && r.value.allowed).length
        const gaveUp = results.filter((r) => r.status === 'rejected').length
        const conflicts = storm.reduce((sum, l) => sum + l.stats().conflicts, 0)
        const worst = Math.max(...storm.map((l) => l.stats().conflicts))
        // The bucket refills 1 token per 72 s, far longer than the test: 50 is exact for both.
        expect(allowed, `${algorithm} admitted`).toBeLessThanOrEqual(50)
        expect(allowed + gaveUp, `${algorithm} admitted or gave up`).toBeGreaterThanOrEqual(50)
        lines.push(
          `${name} ${algorithm} 200 single-call limiters over 4 connections: ${allowed} admitted, ${gaveUp} gave up, ${conflicts} conflicts / ${counts.writes} writes = ${(conflicts / Math.max(1, counts.writes)).toFixed(2)} retries per write (worst call ${worst})`,
        )
      }
      // Three replicas, 300 paced calls each at 5 ms apart on one key: steady contention.
      counts.writes = 0
      const before = limiters.map((l) => l.stats().conflicts)
      let admitted = 0
      await Promise.all(
        limiters.slice(0, 3).map(async (limiter) => {
          for (let i = 0; i < 300; i++) {
            if ((await limiter.limit('paced', { max: 20, per: 500 })).allowed) admitted++
            await new Promise((resolve) => setTimeout(resolve, Math.random() * 4))
          }
        }),
      )
      const conflicts = limiters.reduce(
        (sum, l, i) => sum + l.stats().conflicts - (before[i] as number),
        0,
      )
      lines.push(
        `${name} sliding-window 3 replicas x 300 paced calls: ${admitted} admitted, ${conflicts} conflicts / ${counts.writes} writes = ${(conflicts / Math.max(1, counts.writes)).toFixed(2)} retries per write`,
      )
      console.log(lines.join('\n'))
      expect(admitted).toBeGreaterThan(0)
    }, 60_000)
  }
})
