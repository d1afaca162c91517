/**
 * getOrSet: single flight (per process and `distributed`), grace, soft and hard timeouts, early
 * refresh, the factory context and the counters, on the memory store and on real Redis and NATS.
 * Time-dependent logic runs on a ManualClock where the store accepts one (memory, NATS); Redis
 * expires by its own clock, so its TTL checks wait past short TTLs.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest'
import { createCache, type Cache } from '../src/core/cache.js'
import { ManualClock } from '../src/core/clock.js'
import { rootPrefix, systemKey } from '../src/core/keyspace.js'
import { silentLogger } from '../src/core/logger.js'
import type { FactoryContext } from '../src/core/get-or-set.js'
import {
  FactoryTimeoutError,
  InvalidArgumentError,
  StoreUnavailableError,
  UnsupportedValueError,
} from '../src/errors.js'
import { MemoryStore, memoryStore } from '../src/stores/memory/index.js'
import { natsStore } from '../src/stores/nats/index.js'
import { redisStore } from '../src/stores/redis/index.js'
import type { Store, StoreCapabilities } from '../src/types/store.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from './helpers/services.js'

const run = randomBytes(4).toString('hex')
const bucket = `fc-test-gos-${run}`
/** Root prefix of every cache of this file: `gos<run>_<n>`. */
const rootOfRun = `gos${run}`
let counter = 0

type Kind = 'memory' | 'redis' | 'nats'
const KINDS: Kind[] = ['memory', 'redis', 'nats']

const open: Cache[] = []

interface Setup {
  cache: Cache
  clock: ManualClock
  prefix: string
  /** Whether the store follows `clock` (Redis expires on its own clock). */
  manualTime: boolean
}

/** A cache over a fresh prefix; `share` reuses another setup's prefix (a second replica). */
function setup(kind: Kind, share?: Setup): Setup {
  const clock = share?.clock ?? new ManualClock(Date.now())
  const prefix = share?.prefix ?? `${rootOfRun}_${++counter}`
  const store: Store =
    kind === 'memory'
      ? memoryStore({ clock, sweepIntervalMs: 0 })
      : kind === 'redis'
        ? redisStore({ url: redisUrl() })
        : natsStore({ servers: natsUrl(), bucket, clock })
  const cache = createCache({ store, prefix, fallback: 'fail', logger: silentLogger })
  open.push(cache)
  return { cache, clock, prefix, manualTime: kind !== 'redis' }
}

/** Moves past `ms` of store time: the manual clock, or real time on Redis. */
async function pass(s: Setup, ms: number): Promise<void> {
  if (s.manualTime) s.clock.advance(ms)
  else await sleep(ms)
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

afterEach(async () => {
  vi.restoreAllMocks()
  await Promise.all(open.splice(0).map((cache) => cache.close()))
})

afterAll(async () => {
  await deleteRedisKeys(`*${rootOfRun}*`)
  await destroyNatsBucket(bucket)
})

describe.each(KINDS)('getOrSet on %s', (kind) => {
  it('tags and dependsOn of the cached value: invalidation makes the next call load again', async () => {
    const { cache } = setup(kind)
    let calls = 0
    const load = () =>
      cache.getOrSet('report:7', () => ++calls, {
        ttl: '1m',
        tags: ['reports'],
        dependsOn: ['source:7'],
      })
    await cache.set('source:7', 'v1')
    expect(await load()).toBe(1)
    expect(await load()).toBe(1)
    expect(await cache.invalidateTags(['reports'])).toBe(1)
    expect(await load()).toBe(2)
    await cache.set('source:7', 'v2')
    expect(await cache.get('report:7')).toBeUndefined()
    expect(await load()).toBe(3)
    // Bad tags are refused before the factory runs.
    await expect(cache.getOrSet('x', () => ++calls, { tags: [''] })).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT',
    })
    await expect(cache.getOrSet('x', () => ++calls, { dependsOn: ['x'] })).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT',
    })
    expect(calls).toBe(3)
  })

  it('1000 concurrent calls on one missing key, 50 ms factory: 1 factory call, all get the value', async () => {
    const { cache } = setup(kind)
    let calls = 0
    const factory = async () => {
      calls++
      await delay(50)
      return { computed: true, n: calls }
    }
    const started = performance.now()
    const results = await Promise.all(
      Array.from({ length: 1000 }, () => cache.getOrSet('report', factory, { ttl: '1m' })),
    )
    const settleMs = performance.now() - started
    expect(calls).toBe(1)
    expect(results.every((result) => result.computed && result.n === 1)).toBe(true)
    expect(await cache.get('report')).toEqual({ computed: true, n: 1 })
    expect(cache.stats().getOrSet).toMatchObject({ factoryCalls: 1, hits: 0, misses: 1000 })
    expect(settleMs).toBeLessThan(10_000) // liveness only
  })

  it('a failing factory caches nothing, every waiter gets its error, and the next call retries', async () => {
    const { cache } = setup(kind)
    let calls = 0
    const factory = async () => {
      calls++
      await delay(5)
      throw new Error('upstream down')
    }
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, () => cache.getOrSet('k', factory)),
    )
    expect(calls).toBe(1)
    expect(
      results.every((r) => r.status === 'rejected' && /upstream down/.test(String(r.reason))),
    ).toBe(true)
    expect(await cache.has('k')).toBe(false)
    expect(await cache.getOrSet('k', () => 'recovered')).toBe('recovered')
    expect(cache.stats().getOrSet).toMatchObject({ factoryCalls: 2, factoryErrors: 1 })
  })

  it('plain get returns the value getOrSet wrote and misses after its TTL, even with grace', async () => {
    const s = setup(kind)
    const { cache } = s
    expect(await cache.getOrSet('k', () => 'v1', { ttl: 300, grace: '1h' })).toBe('v1')
    expect(await cache.get('k')).toBe('v1')
    expect(await cache.keys()).toEqual(['k'])
    const ttl = await cache.ttl('k')
    expect(ttl).toBeGreaterThan(0)
    expect(ttl).toBeLessThanOrEqual(350) // Redis measures on its own clock
    await pass(s, 400)
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.has('k')).toBe(false)
    expect(await cache.keys()).toEqual([])
  })

  it('ctx.skip() returns the result without caching it; ctx.setTtl() sets its TTL', async () => {
    const { cache } = setup(kind)
    const skipped = await cache.getOrSet('skip', (ctx) => {
      ctx.skip()
      return 'not cached'
    })
    expect(skipped).toBe('not cached')
    expect(await cache.has('skip')).toBe(false)

    await cache.getOrSet(
      'short',
      (ctx) => {
        ctx.setTtl('2s')
        return 'x'
      },
      { ttl: '1h' },
    )
    const ttl = await cache.ttl('short')
    expect(ttl).toBeGreaterThan(1000)
    expect(ttl).toBeLessThanOrEqual(2050) // Redis measures on its own clock
  })

  it('an undefined result is returned but not cached; a cached null is a hit', async () => {
    const { cache } = setup(kind)
    let calls = 0
    const factory = () => {
      calls++
      return undefined
    }
    expect(await cache.getOrSet('u', factory)).toBeUndefined()
    expect(await cache.getOrSet('u', factory)).toBeUndefined()
    expect(calls).toBe(2)
    await cache.set('n', null)
    expect(await cache.getOrSet('n', () => 'fresh')).toBeNull()
  })

  it('grace: a factory failing for 30 s serves the stale value; factory calls stay within the backoff', async () => {
    const s = setup(kind)
    const { cache } = s
    const ttl = 200
    const backoffMs = s.manualTime ? 5000 : 300
    await cache.getOrSet('rate', () => 1.08, { ttl, grace: '1h', graceBackoff: backoffMs })
    await pass(s, ttl + 50)
    expect(await cache.get('rate')).toBeUndefined()

    let calls = 0
    const failing = async () => {
      calls++
      await delay(1)
      throw new Error('rates API down')
    }
    // 30 s of store time in 1 s steps (Redis: the backoff runs on the same clock as the cache).
    const options = { ttl, grace: '1h', graceBackoff: backoffMs }
    let served = 0
    for (let second = 0; second < 30; second++) {
      const values = await Promise.all(
        Array.from({ length: 10 }, () => cache.getOrSet('rate', failing, options)),
      )
      expect(values.every((value) => value === 1.08)).toBe(true)
      served += values.length
      if (s.manualTime) s.clock.advance(1000)
      else break // Redis: real time cannot be skipped; one round proves the stale serve
    }
    const stats = cache.stats().getOrSet
    expect(stats.graceServed).toBe(served)
    if (s.manualTime) {
      // One call per backoff window: at 0 s, 5 s, 10 s, … 25 s.
      expect(calls).toBeGreaterThanOrEqual(6)
      expect(calls).toBeLessThanOrEqual(7)
    } else {
      expect(calls).toBe(1)
    }
    expect(stats.factoryErrors).toBe(calls)

    // Once the backoff has passed, a working factory is called and its value is fresh again.
    if (s.manualTime) s.clock.advance(backoffMs)
    else await sleep(backoffMs)
    expect(await cache.getOrSet('rate', () => 1.1, options)).toBe(1.1)
    expect(await cache.get('rate')).toBe(1.1)
  }, 30_000)

  it('ctx.stale holds the grace copy; without grace there is none', async () => {
    const s = setup(kind)
    const { cache } = s
    await cache.getOrSet('k', () => 'old', { ttl: 200, grace: '1h' })
    await pass(s, 250)
    const seen: unknown[] = []
    await cache.getOrSet(
      'k',
      (ctx) => {
        seen.push(ctx.stale)
        return 'new'
      },
      { ttl: 200, grace: '1h' },
    )
    await pass(s, 250)
    await cache.getOrSet('k', (ctx) => {
      seen.push(ctx.stale)
      return 'newer'
    })
    expect(seen).toEqual(['old', undefined])
  })
})

describe('timeouts', () => {
  it('a hanging factory releases every waiter at the hard timeout with FactoryTimeoutError', async () => {
    const { cache } = setup('memory')
    let signal: AbortSignal | undefined
    let calls = 0
    const hanging = (ctx: FactoryContext<string>) => {
      calls++
      signal = ctx.signal
      return new Promise<string>(() => undefined)
    }
    const started = performance.now()
    const results = await Promise.allSettled(
      Array.from({ length: 100 }, () => cache.getOrSet('k', hanging, { timeout: { hard: 100 } })),
    )
    expect(performance.now() - started).toBeLessThan(10_000) // liveness only
    expect(calls).toBe(1)
    for (const result of results) {
      expect(result.status).toBe('rejected')
      if (result.status === 'rejected') {
        expect(result.reason).toBeInstanceOf(FactoryTimeoutError)
        expect((result.reason as FactoryTimeoutError).code).toBe('E_FACTORY_TIMEOUT')
      }
    }
    expect(signal?.aborted).toBe(true)
    expect(signal?.reason).toBeInstanceOf(FactoryTimeoutError)
    expect(await cache.has('k')).toBe(false)
    expect(cache.stats().getOrSet.timeouts).toBe(1)
    // The flight is over: the next call runs the factory again.
    expect(await cache.getOrSet('k', () => 'later')).toBe('later')
  })

  it('a late result after the hard timeout is not cached', async () => {
    const { cache } = setup('memory')
    let finish: (value: string) => void = () => undefined
    const slow = () => new Promise<string>((resolve) => (finish = resolve))
    await expect(cache.getOrSet('k', slow, { timeout: 50 })).rejects.toBeInstanceOf(
      FactoryTimeoutError,
    )
    finish('late')
    await delay(10)
    expect(await cache.has('k')).toBe(false)
  })

  it('at the hard timeout the grace copy is served instead of the error', async () => {
    const s = setup('memory')
    await s.cache.getOrSet('k', () => 'stale', { ttl: 100, grace: '1h' })
    s.clock.advance(200)
    const value = await s.cache.getOrSet('k', () => new Promise<string>(() => undefined), {
      ttl: 100,
      grace: '1h',
      timeout: { hard: 50 },
    })
    expect(value).toBe('stale')
    expect(s.cache.stats().getOrSet).toMatchObject({ timeouts: 1, graceServed: 1 })
  })

  it('soft timeout: stale value at once, the factory finishes in the background and updates the cache', async () => {
    const s = setup('memory')
    const options = { ttl: 100, grace: '1h', timeout: { soft: 30, hard: 5000 } }
    await s.cache.getOrSet('k', () => 'v1', options)
    s.clock.advance(200)
    let finished = false
    const slow = async () => {
      await delay(300)
      finished = true
      return 'v2'
    }
    const values = await Promise.all(
      Array.from({ length: 5 }, () => s.cache.getOrSet('k', slow, options)),
    )
    expect(values).toEqual(['v1', 'v1', 'v1', 'v1', 'v1'])
    expect(finished).toBe(false)
    expect(s.cache.stats().getOrSet).toMatchObject({ softTimeouts: 1, graceServed: 5 })
    const deadline = Date.now() + 5000
    while ((await s.cache.get('k')) !== 'v2' && Date.now() < deadline) await delay(10)
    expect(await s.cache.get('k')).toBe('v2')
  })

  it('soft timeout without a stale value waits for the factory', async () => {
    const { cache } = setup('memory')
    const value = await cache.getOrSet(
      'k',
      async () => {
        await delay(60)
        return 'fresh'
      },
      { ttl: 1000, grace: '1h', timeout: { soft: 10 } },
    )
    expect(value).toBe('fresh')
    expect(cache.stats().getOrSet.softTimeouts).toBe(0)
  })
})

describe('early refresh', () => {
  async function primed(s: Setup, factoryMs: number): Promise<void> {
    await s.cache.getOrSet(
      'k',
      async () => {
        await delay(factoryMs)
        return 'v1'
      },
      { ttl: '10s', earlyRefresh: true },
    )
  }

  it('is never triggered when the draw gives no head start (random = 1) before expiry', async () => {
    const s = setup('memory')
    await primed(s, 5)
    vi.spyOn(Math, 'random').mockReturnValue(1)
    s.clock.advance(9_990)
    let calls = 0
    for (let i = 0; i < 50; i++) {
      expect(await s.cache.getOrSet('k', () => (calls++, 'v2'), { earlyRefresh: true })).toBe('v1')
    }
    expect(calls).toBe(0)
    expect(s.cache.stats().getOrSet.refreshes).toBe(0)
  })

  it('refreshes once in the background without blocking callers when the draw is early', async () => {
    const s = setup('memory')
    await primed(s, 5)
    s.clock.advance(8_000)
    vi.spyOn(Math, 'random').mockReturnValue(1e-300) // −ln ≈ 690: a head start of ≥ 3.4 s
    let calls = 0
    let release: () => void = () => undefined
    const gate = new Promise<void>((resolve) => (release = resolve))
    const refresh = async () => {
      calls++
      await gate
      return 'v2'
    }
    const options = { ttl: '10s', earlyRefresh: { beta: 1 } }
    const values = await Promise.all(
      Array.from({ length: 20 }, () => s.cache.getOrSet('k', refresh, options)),
    )
    // Every caller got the current value while the refresh is still held at the gate.
    expect(values.every((value) => value === 'v1')).toBe(true)
    expect(calls).toBe(1)
    release()
    const deadline = Date.now() + 5000
    while ((await s.cache.get('k')) !== 'v2' && Date.now() < deadline) await delay(5)
    expect(await s.cache.get('k')).toBe('v2')
    expect(await s.cache.ttl('k')).toBe(10_000)
    expect(s.cache.stats().getOrSet.refreshes).toBe(1)
  })

  it('refreshes more often the closer expiry is', async () => {
    const s = setup('memory')
    await primed(s, 20)
    let calls = 0
    const options = { ttl: '10s', earlyRefresh: { beta: 1 } }
    const countRefreshes = async (remainingMs: number, trials: number): Promise<number> => {
      const before = s.cache.stats().getOrSet.refreshes
      const slowAgain = async () => {
        calls++
        await delay(20)
        return 'v1'
      }
      for (let i = 0; i < trials; i++) {
        await s.cache.set('k', 'v1', '10s')
        s.clock.advance(10_000 - remainingMs)
        const refreshes = s.cache.stats().getOrSet.refreshes
        await s.cache.getOrSet('k', slowAgain, options)
        // Wait for a refresh to finish before time is moved back.
        if (s.cache.stats().getOrSet.refreshes > refreshes) await delay(40)
        s.clock.set(s.clock.now() - (10_000 - remainingMs))
      }
      return s.cache.stats().getOrSet.refreshes - before
    }
    // Factory ≥ 20 ms: 5 s before expiry the chance is below e^-250; 1 ms before, above 95 %.
    expect(await countRefreshes(5_000, 100)).toBe(0)
    expect(await countRefreshes(1, 100)).toBeGreaterThanOrEqual(80)
    expect(calls).toBe(s.cache.stats().getOrSet.refreshes)
  })
})

describe('distributed', () => {
  it.each(['memory', 'redis', 'nats'] as const)(
    'two caches on one %s store: one factory call between them',
    async (kind) => {
      const a = setup(kind)
      // Memory: a second cache over the same store object stands in for a second replica.
      const b =
        kind === 'memory'
          ? createCache({ store: a.cache.store, prefix: a.prefix, logger: silentLogger })
          : setup(kind, a).cache
      let calls = 0
      const factory = async () => {
        calls++
        await delay(50)
        return 'shared'
      }
      const options = { ttl: '1m', distributed: true, timeout: { hard: 5000 } }
      const results = await Promise.all([
        ...Array.from({ length: 50 }, () => a.cache.getOrSet('k', factory, options)),
        ...Array.from({ length: 50 }, () => b.getOrSet('k', factory, options)),
      ])
      expect(calls).toBe(1)
      expect(results.every((value) => value === 'shared')).toBe(true)
    },
  )

  it("a dead holder's flight lock expires and frees the key", async () => {
    const s = setup('redis')
    const lockKey = systemKey(rootPrefix(s.prefix), 'f', 'k', 1024)
    // A holder that took the lock and died: nobody releases it.
    await s.cache.store.create(lockKey, new TextEncoder().encode('{"owner":"dead"}'), {
      ttlMs: 300,
    })
    let calls = 0
    const started = performance.now()
    const value = await s.cache.getOrSet('k', () => (calls++, 'recovered'), {
      distributed: true,
    })
    expect(value).toBe('recovered')
    expect(calls).toBe(1)
    expect(performance.now() - started).toBeLessThan(10_000) // liveness only
    expect(s.cache.stats().getOrSet.lockWaits).toBeGreaterThan(0)
  })

  it('waiting replicas are released at the hard timeout while the holder hangs', async () => {
    const a = setup('redis')
    const b = setup('redis', a)
    const hanging = () => new Promise<string>(() => undefined)
    const options = { distributed: true, timeout: { hard: 200 } }
    const results = await Promise.allSettled([
      a.cache.getOrSet('k', hanging, options),
      b.cache.getOrSet('k', hanging, options),
    ])
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(FactoryTimeoutError)
    }
  })

  it('never calls the factory unguarded while the store is replaced by the memory fallback', async () => {
    const cache = createCache({ store: new UnreachableStore(), logger: silentLogger })
    open.push(cache)
    await cache.ready()
    expect(cache.health().status).toBe('degraded')
    let calls = 0
    await expect(
      cache.getOrSet('k', () => (calls++, 'v'), { distributed: true }),
    ).rejects.toBeInstanceOf(StoreUnavailableError)
    expect(calls).toBe(0)
    // Without distributed, the fallback serves as usual.
    expect(await cache.getOrSet('k', () => 'local')).toBe('local')
  })
})

/** A distributed-looking store that cannot be reached: the cache falls back to memory. */
class UnreachableStore extends MemoryStore {
  override readonly capabilities: StoreCapabilities = {
    ...new MemoryStore().capabilities,
    distributed: true,
    local: false,
  }
  override readonly local = undefined as never

  async connect(): Promise<void> {
    throw new StoreUnavailableError('connect ECONNREFUSED 127.0.0.1:1')
  }
}

describe('validation', () => {
  it('checks every option before touching the store', async () => {
    const { cache } = setup('memory')
    const bad: Array<[unknown, RegExp]> = [
      [{ tll: 1 }, /option "tll" is not supported/],
      [{ ttl: 0 }, /ttl/],
      [{ grace: 'soon' }, /grace/],
      [{ timeout: { soft: 100, hard: 50 } }, /timeout.soft/],
      [{ earlyRefresh: { beta: -1 } }, /earlyRefresh.beta/],
      [{ distributed: { lockTtl: 10 } }, /lockTtl/],
    ]
    for (const [options, message] of bad) {
      await expect(
        cache.getOrSet('k', () => 1, options as Parameters<Cache['getOrSet']>[2]),
      ).rejects.toThrow(message)
    }
    await expect(cache.getOrSet('k', 'nope' as unknown as () => number)).rejects.toBeInstanceOf(
      InvalidArgumentError,
    )
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 0 })
  })

  it('ctx.setTtl with a bad TTL fails the call and caches nothing', async () => {
    const { cache } = setup('memory')
    await expect(
      cache.getOrSet('k', (ctx) => {
        ctx.setTtl(-5)
        return 1
      }),
    ).rejects.toBeInstanceOf(InvalidArgumentError)
    expect(await cache.has('k')).toBe(false)
  })

  it('a result the codec rejects reaches every waiter and is not cached', async () => {
    const { cache } = setup('memory')
    const results = await Promise.allSettled(
      Array.from({ length: 3 }, () => cache.getOrSet('k', () => () => 'a function')),
    )
    for (const r of results) {
      expect(r.status).toBe('rejected')
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(UnsupportedValueError)
    }
    expect(await cache.has('k')).toBe(false)
  })
})
