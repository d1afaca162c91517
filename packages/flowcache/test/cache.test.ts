import { describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../src/core/cache.js'
import { ManualClock } from '../src/core/clock.js'
import { systemKey } from '../src/core/keyspace.js'
import {
  BatchTooLargeError,
  ClosedError,
  InvalidArgumentError,
  KeyTooLongError,
  NotANumberError,
  UnsupportedValueError,
  ValueTooLargeError,
} from '../src/errors.js'
import { memoryStore } from '../src/stores/memory/index.js'
import type { Store } from '../src/types/store.js'

function setup(options: Parameters<typeof memoryStore>[0] = {}) {
  const clock = new ManualClock()
  const store = memoryStore({ clock, sweepIntervalMs: 0, ...options })
  const cache = createCache({ store })
  return { clock, store, cache }
}

/** A store that counts every call that reaches it, to prove checks happen before any I/O. */
function countingStore(inner: Store): { store: Store; calls: () => number } {
  let calls = 0
  const store = new Proxy(inner, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver)
      if (property === 'local') {
        const local = target.local
        if (local === undefined) return undefined
        return {
          codec: local.codec,
          read: (key: string) => (calls++, local.read(key)),
          has: (key: string) => (calls++, local.has(key)),
          write: (...args: Parameters<typeof local.write>) => (calls++, local.write(...args)),
        }
      }
      if (typeof value === 'function' && property !== 'now' && property !== 'stats') {
        return (...args: unknown[]) => {
          calls++
          return (value as (...a: unknown[]) => unknown).apply(target, args)
        }
      }
      return value
    },
  })
  return { store, calls: () => calls }
}

describe('get and set', () => {
  it('a miss is undefined, or the default when one is given', async () => {
    const { cache } = setup()
    expect(await cache.get('missing')).toBeUndefined()
    expect(await cache.get('missing', 42)).toBe(42)
  })

  it('a stored null is a hit, distinct from a miss', async () => {
    const { cache } = setup()
    await cache.set('nothing', null)
    expect(await cache.get('nothing', 'default')).toBeNull()
    expect(await cache.has('nothing')).toBe(true)
    expect(cache.stats().hits).toBe(1)
  })

  it('set returns true and overwrites', async () => {
    const { cache } = setup()
    expect(await cache.set('k', 1)).toBe(true)
    expect(await cache.set('k', 2)).toBe(true)
    expect(await cache.get('k')).toBe(2)
  })

  it('every value type round-trips through the cache with its type', async () => {
    const { cache } = setup()
    const value = {
      date: new Date('2026-01-02T03:04:05.006Z'),
      big: 12345678901234567890n,
      map: new Map<unknown, unknown>([
        [1, 'one'],
        ['two', new Set([2])],
      ]),
      bytes: new Uint8Array([0, 255]),
      buffer: Buffer.from('hi'),
      specials: [Number.NaN, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY],
      nested: { deep: [null, true, 'x'] },
    }
    await cache.set('v', value)
    const back = await cache.get<typeof value>('v')
    expect(back?.date).toBeInstanceOf(Date)
    expect(back?.date.toISOString()).toBe('2026-01-02T03:04:05.006Z')
    expect(back?.big).toBe(12345678901234567890n)
    expect(back?.map.get('two')).toEqual(new Set([2]))
    expect(back?.bytes).toBeInstanceOf(Uint8Array)
    expect(Buffer.isBuffer(back?.buffer)).toBe(true)
    expect(Object.is(back?.specials[1], -0)).toBe(true)
    expect(Number.isNaN(back?.specials[0])).toBe(true)
    expect(await cache.exists('v', value)).toBe(true)
  })

  it('a value changed by the caller after set does not change what is stored', async () => {
    const { cache } = setup()
    const order = { id: 1, items: ['a'] }
    await cache.set('order', order)
    order.items.push('b')
    expect(await cache.get('order')).toEqual({ id: 1, items: ['a'] })
  })

  it('by default a returned object is frozen, so it cannot corrupt the stored entry', async () => {
    const { cache } = setup()
    await cache.set('order', { id: 1, items: ['a'] })
    const got = await cache.get<{ id: number; items: string[] }>('order')
    expect(() => got?.items.push('b')).toThrow(TypeError)
    expect(await cache.get('order')).toEqual({ id: 1, items: ['a'] })
  })

  it('values holding a Map are copied on every read, since freezing cannot protect a Map', async () => {
    const { cache } = setup()
    await cache.set('m', { m: new Map([['a', 1]]) })
    const first = await cache.get<{ m: Map<string, number> }>('m')
    first?.m.set('b', 2)
    expect((await cache.get<{ m: Map<string, number> }>('m'))?.m.size).toBe(1)
  })

  it("values: 'copied' returns mutable copies and 'shared' returns the stored object", async () => {
    const copied = setup({ values: 'copied' }).cache
    await copied.set('o', { n: 1 })
    const mine = await copied.get<{ n: number }>('o')
    if (mine) mine.n = 2
    expect(await copied.get('o')).toEqual({ n: 1 })

    const shared = setup({ values: 'shared' }).cache
    const original = { n: 1 }
    await shared.set('o', original)
    expect(await shared.get('o')).toBe(original)
  })

  it('rejects functions, symbols, class instances, cycles and undefined with typed errors', async () => {
    const { cache } = setup()
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    class Point {
      x = 1
    }
    for (const bad of [() => 1, Symbol('s'), new Point(), cyclic, undefined, { f: () => 1 }]) {
      await expect(cache.set('bad', bad)).rejects.toBeInstanceOf(UnsupportedValueError)
    }
    expect(await cache.has('bad')).toBe(false)
  })
})

describe('TTL', () => {
  it('accepts ms, duration strings and { ttl }', async () => {
    const { cache } = setup()
    await cache.set('a', 1, 1500)
    await cache.set('b', 1, '2s')
    await cache.set('c', 1, { ttl: '1m' })
    expect(await cache.ttl('a')).toBe(1500)
    expect(await cache.ttl('b')).toBe(2000)
    expect(await cache.ttl('c')).toBe(60_000)
  })

  it.each([0, -5, Number.NaN, 'abc', '0s', '10', Number.POSITIVE_INFINITY])(
    'TTL %s is a typed error and nothing is stored',
    async (ttl) => {
      const { cache } = setup()
      await expect(cache.set('k', 'v', ttl)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' })
      await expect(cache.add('k', 'v', ttl)).rejects.toBeInstanceOf(InvalidArgumentError)
      await expect(cache.increment('k', 1, ttl)).rejects.toBeInstanceOf(InvalidArgumentError)
      expect(await cache.has('k')).toBe(false)
    },
  )

  it('a TTL over limits.maxTtl is refused', async () => {
    const cache = createCache({ limits: { maxTtl: '1h' } })
    await expect(cache.set('k', 1, '2h')).rejects.toThrow(/longer than limits.maxTtl/)
  })

  it('an expired entry is never returned, by any read', async () => {
    const { cache, clock } = setup()
    await cache.set('k', 'v', 1000)
    clock.advance(999)
    expect(await cache.get('k')).toBe('v')
    expect(await cache.ttl('k')).toBe(1)
    clock.advance(1)
    expect(await cache.get('k')).toBeUndefined()
    expect(await cache.has('k')).toBe(false)
    expect(await cache.getMany(['k'])).toEqual([undefined])
    expect(await cache.keys()).toEqual([])
    expect(await cache.entry('k')).toBeUndefined()
    expect(await cache.ttl('k')).toBeUndefined()
    expect(await cache.exists('k', 'v')).toBe(false)
  })

  it('an expired entry is absent for has, keys and add even before any get touched it', async () => {
    const { cache, clock } = setup()
    await cache.set('k', 'v', 10)
    clock.advance(10)
    expect(await cache.keys()).toEqual([])
    expect(await cache.add('k', 'new')).toBe(true)
    expect(await cache.get('k')).toBe('new')
  })

  it('ttl() is null for entries without expiry and undefined for missing keys', async () => {
    const { cache } = setup()
    await cache.set('forever', 1)
    expect(await cache.ttl('forever')).toBeNull()
    expect(await cache.ttl('missing')).toBeUndefined()
  })

  it('the background sweep removes expired entries and counts them', async () => {
    const { cache, clock, store } = setup()
    for (let i = 0; i < 100; i++) await cache.set(`k${i}`, i, i < 60 ? 100 : 10_000)
    clock.advance(100)
    expect(await store.prune()).toBe(60)
    expect(cache.stats()).toMatchObject({ entries: 40, expirations: 60 })
  })

  it('a namespace default TTL applies to writes without one, and children inherit it', async () => {
    const { cache } = setup()
    const sessions = cache.namespace('sessions', { defaultTtl: '30m' })
    await sessions.set('s1', { user: 1 })
    expect(await sessions.ttl('s1')).toBe(1_800_000)
    await sessions.namespace('web').set('s2', 1)
    expect(await sessions.namespace('web').ttl('s2')).toBe(1_800_000)
    await sessions.namespace('short', { defaultTtl: '1s' }).set('s3', 1)
    // A TTL belongs to the entry: any view of the namespace reads the same remaining time.
    expect(await sessions.namespace('short').ttl('s3')).toBe(1000)
    await sessions.set('explicit', 1, '5s')
    expect(await sessions.ttl('explicit')).toBe(5000)
    await cache.set('root', 1)
    expect(await cache.ttl('root')).toBeNull()
  })
})

describe('atomic operations', () => {
  it('of 100 concurrent adds on one key exactly one wins', async () => {
    const { cache } = setup()
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => cache.add('event:1', i)),
    )
    expect(results.filter(Boolean)).toHaveLength(1)
    const winner = results.indexOf(true)
    expect(await cache.get('event:1')).toBe(winner)
  })

  it('add does not overwrite a live entry but does replace an expired one', async () => {
    const { cache, clock } = setup()
    expect(await cache.add('k', 1, 100)).toBe(true)
    expect(await cache.add('k', 2)).toBe(false)
    expect(await cache.get('k')).toBe(1)
    clock.advance(100)
    expect(await cache.add('k', 3)).toBe(true)
    expect(await cache.get('k')).toBe(3)
  })

  it('increment creates, adds and keeps the first TTL', async () => {
    const { cache, clock } = setup()
    expect(await cache.increment('hits', 1, '1m')).toBe(1)
    clock.advance(10_000)
    expect(await cache.increment('hits')).toBe(2)
    expect(await cache.increment('hits', 5, '1h')).toBe(7)
    expect(await cache.increment('hits', -10)).toBe(-3)
    expect(await cache.ttl('hits')).toBe(50_000)
  })

  it('increment refuses a stored value that is not a number', async () => {
    const { cache } = setup()
    await cache.set('name', 'bob')
    await expect(cache.increment('name')).rejects.toBeInstanceOf(NotANumberError)
    await expect(cache.increment('n', Number.NaN)).rejects.toBeInstanceOf(InvalidArgumentError)
    expect(await cache.get('name')).toBe('bob')
  })

  it('1000 concurrent increments add up exactly', async () => {
    const { cache } = setup()
    await Promise.all(Array.from({ length: 1000 }, () => cache.increment('counter')))
    expect(await cache.get('counter')).toBe(1000)
  })

  it('compareAndSet succeeds with the current revision only', async () => {
    const { cache } = setup()
    await cache.set('doc', { v: 1 })
    const entry = await cache.entry('doc')
    expect(entry?.value).toEqual({ v: 1 })
    const next = await cache.compareAndSet('doc', { v: 2 }, entry!.revision)
    expect(next).toEqual(expect.any(String))
    expect(await cache.compareAndSet('doc', { v: 3 }, entry!.revision)).toBe(false)
    expect(await cache.get('doc')).toEqual({ v: 2 })
    expect(await cache.compareAndSet('missing', 1, entry!.revision)).toBe(false)
    await expect(cache.compareAndSet('doc', 1, '')).rejects.toBeInstanceOf(InvalidArgumentError)
  })

  it('of 50 concurrent compareAndSets with one revision exactly one wins', async () => {
    const { cache } = setup()
    await cache.set('doc', 0)
    const { revision } = (await cache.entry('doc'))!
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => cache.compareAndSet('doc', i, revision)),
    )
    expect(results.filter((r) => r !== false)).toHaveLength(1)
  })

  it('exists compares deeply, by type, ignoring key order', async () => {
    const { cache } = setup()
    await cache.set('o', { a: 1, b: [1, 2], c: new Set(['x', 'y']) })
    expect(await cache.exists('o', { c: new Set(['y', 'x']), b: [1, 2], a: 1 })).toBe(true)
    expect(await cache.exists('o', { a: '1', b: [1, 2], c: new Set(['x', 'y']) })).toBe(false)
    expect(await cache.exists('o', { a: 1, b: [2, 1], c: new Set(['x', 'y']) })).toBe(false)
    expect(await cache.exists('missing', undefined)).toBe(false)
  })
})

describe('batches, listing and clear', () => {
  it('getMany, setMany and deleteMany work in order', async () => {
    const { cache } = setup()
    await cache.setMany([
      { key: 'a', value: 1 },
      { key: 'b', value: null, ttl: '1m' },
    ])
    expect(await cache.getMany(['a', 'missing', 'b'])).toEqual([1, undefined, null])
    expect(await cache.ttl('b')).toBe(60_000)
    expect(await cache.deleteMany(['a', 'missing', 'b'])).toBe(2)
    expect(await cache.getMany(['a', 'b'])).toEqual([undefined, undefined])
  })

  it('a batch over limits.maxBatchSize is refused before anything is written', async () => {
    const cache = createCache({ limits: { maxBatchSize: 2 } })
    const items = ['a', 'b', 'c'].map((key) => ({ key, value: 1 }))
    await expect(cache.setMany(items)).rejects.toBeInstanceOf(BatchTooLargeError)
    await expect(cache.getMany(['a', 'b', 'c'])).rejects.toBeInstanceOf(BatchTooLargeError)
    await expect(cache.deleteMany(['a', 'b', 'c'])).rejects.toBeInstanceOf(BatchTooLargeError)
    expect(await cache.keys()).toEqual([])
  })

  it('setMany writes nothing when one item is invalid', async () => {
    const { cache } = setup()
    await expect(
      cache.setMany([
        { key: 'good', value: 1 },
        { key: 'bad', value: () => 1 },
      ]),
    ).rejects.toBeInstanceOf(UnsupportedValueError)
    expect(await cache.has('good')).toBe(false)
  })

  it('keys and listKeys return sorted keys of this namespace only, namespace stripped', async () => {
    const { cache } = setup()
    const orders = cache.namespace('orders')
    await orders.set('o:2', 1)
    await orders.set('o:1', 1)
    await orders.set('x', 1)
    await orders.namespace('archive').set('o:0', 1)
    await cache.set('o:9', 1)
    expect(await orders.keys()).toEqual(['o:1', 'o:2', 'x'])
    expect(await orders.keys('o:')).toEqual(['o:1', 'o:2'])
    expect(await orders.listKeys(undefined, { limit: 2 })).toHaveLength(2)
    expect(await cache.keys()).toEqual(['o:9'])
    await expect(orders.listKeys('', { limit: 0 })).rejects.toBeInstanceOf(InvalidArgumentError)
  })

  it('clear removes this namespace and its children only, and never system keys', async () => {
    const { cache, store } = setup()
    const tenant = cache.namespace('tenant:a')
    await tenant.set('k', 1)
    await tenant.namespace('flow').set('k', 1)
    await cache.namespace('tenant:b').set('k', 1)
    await cache.set('k', 1)
    const lockKey = systemKey('fc.tenant=3Aa.', 'l', 'job', 1024)
    await store.set(lockKey, new Uint8Array([1]))
    expect(await tenant.clear()).toBe(2)
    expect(await tenant.get('k')).toBeUndefined()
    expect(await tenant.namespace('flow').get('k')).toBeUndefined()
    expect(await cache.namespace('tenant:b').get('k')).toBe(1)
    expect(await cache.get('k')).toBe(1)
    expect(await store.get(lockKey)).toBeDefined()
  })
})

describe('limits are checked before any I/O', () => {
  it('oversized keys, values, TTLs and batches never reach the store', async () => {
    const counted = countingStore(memoryStore())
    const cache = createCache({
      store: counted.store,
      limits: { maxKeyBytes: 16, maxValueBytes: 64, maxBatchSize: 3 },
    })
    await expect(cache.set('k'.repeat(17), 1)).rejects.toBeInstanceOf(KeyTooLongError)
    await expect(cache.get('k'.repeat(17))).rejects.toBeInstanceOf(KeyTooLongError)
    await expect(cache.set('k', 'x'.repeat(100))).rejects.toBeInstanceOf(ValueTooLargeError)
    await expect(cache.add('k', 'x'.repeat(100))).rejects.toBeInstanceOf(ValueTooLargeError)
    await expect(cache.set('k', 1, -1)).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(cache.getMany(['a', 'b', 'c', 'd'])).rejects.toBeInstanceOf(BatchTooLargeError)
    await expect(cache.set('', 1)).rejects.toBeInstanceOf(InvalidArgumentError)
    expect(() => cache.namespace('')).toThrow(InvalidArgumentError)
    expect(counted.calls()).toBe(0)
    await cache.set('k', 1)
    expect(counted.calls()).toBeGreaterThan(0)
  })

  it('an unknown set() option is an error, not silently ignored', async () => {
    const { cache } = setup()
    await expect(cache.set('k', 1, { ttl: '1s', tagz: ['a'] } as never)).rejects.toThrow(/tagz/)
  })
})

describe('namespace quotas and eviction', () => {
  it('a namespace over its quota evicts only its own least recently used entries', async () => {
    const { cache } = setup()
    const noisy = cache.namespace('tenant:noisy', { maxEntries: 10 })
    const quiet = cache.namespace('tenant:quiet')
    for (let i = 0; i < 5; i++) await quiet.set(`q${i}`, i)
    for (let i = 0; i < 10; i++) await noisy.set(`n${i}`, i)
    await noisy.get('n0') // recently used: must survive
    for (let i = 10; i < 100; i++) await noisy.set(`n${i}`, i)
    expect(await noisy.keys()).toHaveLength(10)
    expect(await noisy.get('n1')).toBeUndefined()
    expect(await quiet.keys()).toHaveLength(5)
    expect(cache.stats().evictions).toBe(90)
  })

  it('a byte quota keeps the namespace under its allocation', async () => {
    const { cache, store } = setup()
    const ns = cache.namespace('blobs', { maxBytes: 10_000 })
    for (let i = 0; i < 100; i++) await ns.set(`b${i}`, 'x'.repeat(500))
    expect((await ns.keys()).length).toBeLessThanOrEqual(19)
    expect(store.stats().bytes).toBeLessThanOrEqual(10_000)
    await expect(ns.set('huge', 'x'.repeat(20_000))).rejects.toBeInstanceOf(ValueTooLargeError)
  })

  it('system keys survive any eviction', async () => {
    const { cache, store } = setup({ maxEntries: 5 })
    const lock = systemKey('fc.', 'l', 'nightly-report', 1024)
    const lease = systemKey('fc.jobs.', 'e', 'leader', 1024)
    await store.set(lock, new Uint8Array([1]))
    await store.set(lease, new Uint8Array([2]))
    const ns = cache.namespace('jobs', { maxEntries: 2 })
    for (let i = 0; i < 50; i++) {
      await cache.set(`k${i}`, i)
      await ns.set(`j${i}`, i)
    }
    expect(await store.get(lock)).toBeDefined()
    expect(await store.get(lease)).toBeDefined()
    expect((await cache.keys()).length + (await ns.keys()).length).toBeLessThanOrEqual(5)
  })

  it('store-wide LRU keeps recently read keys', async () => {
    const { cache } = setup({ maxEntries: 100 })
    for (let i = 0; i < 100; i++) await cache.set(`k${i}`, i)
    for (let round = 0; round < 5; round++) {
      await cache.get('k0')
      for (let i = 0; i < 30; i++) await cache.set(`fresh${round}-${i}`, i)
    }
    expect(await cache.get('k0')).toBe(0)
  })

  it('a full store never evicts the entry it was just given', async () => {
    const { cache } = setup({ maxEntries: 3 })
    for (const key of ['a', 'b', 'c']) await cache.set(key, key)
    for (const key of ['a', 'b', 'c']) await cache.get(key)
    await cache.set('d', 'd')
    expect(await cache.get('d')).toBe('d')
    expect((await cache.keys()).length).toBe(3)
  })

  it('rewriting one key with a TTL keeps the deadline heap bounded without a sweep', async () => {
    const { cache, store } = setup()
    const before = process.memoryUsage().heapUsed
    for (let i = 0; i < 200_000; i++) await cache.set('hot', i, '1h')
    expect(store.stats().entries).toBe(1)
    // 200k stale deadline items would be several MB; the heap is rebuilt as it grows.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(32 * 1024 * 1024)
  })

  it('setMany writes nothing when one item does not fit its namespace quota', async () => {
    const { cache } = setup()
    const ns = cache.namespace('q', { maxBytes: 1000 })
    await ns.set('keep', 1)
    await expect(
      ns.setMany([
        { key: 'keep', value: 2 },
        { key: 'big', value: 'x'.repeat(5000) },
      ]),
    ).rejects.toBeInstanceOf(ValueTooLargeError)
    expect(await ns.get('keep')).toBe(1)
    expect(await ns.has('big')).toBe(false)
  })

  it('quotas need a store that supports them', () => {
    const store = memoryStore()
    const withoutQuotas: Store = Object.assign(Object.create(store) as Store, {
      capabilities: { ...store.capabilities, quotas: false },
      setQuota: undefined,
      local: store.local,
    })
    const cache = createCache({ store: withoutQuotas })
    expect(() => cache.namespace('x', { maxEntries: 1 })).toThrow(/quotas/)
  })
})

describe('getOrSet', () => {
  it('1000 concurrent calls on a missing key run the factory once and all get the value', async () => {
    const { cache } = setup()
    let calls = 0
    const factory = async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 20))
      return { computed: true }
    }
    const results = await Promise.all(
      Array.from({ length: 1000 }, () => cache.getOrSet('report', factory, { ttl: '1m' })),
    )
    expect(calls).toBe(1)
    expect(results.every((r) => r.computed)).toBe(true)
    expect(await cache.ttl('report')).toBe(60_000)
  })

  it('a failing factory caches nothing and every waiter gets the error', async () => {
    const { cache } = setup()
    let calls = 0
    const factory = async () => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 5))
      throw new Error('upstream down')
    }
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => cache.getOrSet('k', factory)),
    )
    expect(calls).toBe(1)
    expect(results.every((r) => r.status === 'rejected')).toBe(true)
    expect(await cache.has('k')).toBe(false)
    expect(await cache.getOrSet('k', () => 'recovered')).toBe('recovered')
  })

  it('a factory that throws at once does not leave a failed flight behind', async () => {
    const { cache } = setup()
    await expect(
      cache.getOrSet('k', () => {
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(await cache.getOrSet('k', () => 'fresh')).toBe('fresh')
  })

  it('a value found on the second look does not leave a settled flight behind', async () => {
    const { cache } = setup()
    const racing = cache.getOrSet('k', () => 'from-factory')
    await cache.set('k', 'concurrent')
    expect(await racing).toBe('concurrent')
    await cache.delete('k')
    expect(await cache.getOrSet('k', () => 'fresh')).toBe('fresh')
  })

  it('returns a cached value without calling the factory', async () => {
    const { cache } = setup()
    await cache.set('k', null)
    expect(await cache.getOrSet('k', () => 'fresh')).toBeNull()
  })
})

describe('stats, health and close', () => {
  it('counts hits, misses, sets and deletes and reports sampled latency', async () => {
    const { cache } = setup()
    await cache.set('a', 1)
    await cache.get('a')
    await cache.get('b')
    await cache.delete('a')
    for (let i = 0; i < 100; i++) await cache.get('a')
    const stats = cache.stats()
    expect(stats).toMatchObject({ hits: 1, misses: 101, sets: 1, deletes: 1, entries: 0 })
    expect(stats.hitRatio).toBeCloseTo(1 / 102)
    expect(stats.latency.get?.samples).toBeGreaterThan(0)
  })

  it('health is ok while open and down after close; close is idempotent', async () => {
    const { cache } = setup()
    expect(cache.health()).toMatchObject({ status: 'ok', store: 'memory' })
    await cache.close()
    await cache.close()
    expect(cache.health().status).toBe('down')
    await expect(cache.get('k')).rejects.toBeInstanceOf(ClosedError)
    expect(() => cache.namespace('x')).toThrow(ClosedError)
  })

  it('createCache() with no options gives a working memory cache', async () => {
    const cache: Cache = createCache()
    await cache.set('k', 'v', '1s')
    expect(await cache.get('k')).toBe('v')
    expect(cache.store.name).toBe('memory')
    await cache.close()
  })

  it('a codec that differs from an in-process store codec is refused', () => {
    const store = memoryStore()
    expect(() => createCache({ store, codec: { ...store.local.codec, name: 'other' } })).toThrow(
      InvalidArgumentError,
    )
  })
})
