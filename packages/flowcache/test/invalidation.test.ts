/**
 * Tags (`set(…, { tags })`, `invalidateTags`) and dependencies (`set(…, { dependsOn })`, cascade
 * on change and on delete) on every store, then with the L1 tier on two replicas over Redis and
 * over NATS. Waits are bounded polls for liveness only; nothing asserts a duration.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../src/core/cache.js'
import { ManualClock } from '../src/core/clock.js'
import { silentLogger } from '../src/core/logger.js'
import { InvalidArgumentError, StoreUnavailableError } from '../src/errors.js'
import { memoryStore } from '../src/stores/memory/index.js'
import { natsStore } from '../src/stores/nats/index.js'
import { redisStore } from '../src/stores/redis/index.js'
import { sqliteStore } from '../src/stores/sqlite/index.js'
import type { Store } from '../src/types/store.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from './helpers/services.js'

const run = randomBytes(4).toString('hex')
const dir = mkdtempSync(join(tmpdir(), 'flowcache-invalidation-'))
const bucket = `fc-test-inv-${run}`
/** Root prefix of every cache of this file: `inv<run>_<n>`, one per test. */
const rootOfRun = `inv${run}`
let counter = 0
const caches: Cache[] = []

afterEach(async () => {
  await Promise.all(caches.splice(0).map((cache) => cache.close()))
})

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  await deleteRedisKeys(`{${rootOfRun}*`)
  await destroyNatsBucket(bucket)
})

interface Backend {
  name: string
  store: () => Store
}

const backends: Backend[] = [
  { name: 'memory', store: () => memoryStore({ sweepIntervalMs: 0 }) },
  {
    name: 'sqlite',
    store: () => sqliteStore({ path: join(dir, `${++counter}.db`), sweepIntervalMs: 0 }),
  },
  { name: 'redis', store: () => redisStore({ url: redisUrl() }) },
  { name: 'nats', store: () => natsStore({ servers: natsUrl(), bucket, sweepIntervalMs: 0 }) },
]

function open(store: Store, extra: Parameters<typeof createCache>[0] = {}) {
  const prefix = `${rootOfRun}_${++counter}`
  const cache = createCache({ store, prefix, fallback: 'fail', logger: silentLogger, ...extra })
  caches.push(cache)
  return { cache, prefix: `${prefix}.` }
}

async function listed(store: Store, prefix: string): Promise<string[]> {
  const keys: string[] = []
  for await (const key of store.list(prefix)) keys.push(key)
  return keys.sort()
}

describe.each(backends)('tags and dependencies on $name', (backend) => {
  it('invalidateTags deletes the entries carrying any of the tags, and their index entries', async () => {
    const { cache, prefix } = open(backend.store())
    await cache.set('p:1', 'one', { tags: ['product', 'product:1'] })
    await cache.set('p:2', 'two', { ttl: '1h', tags: ['product', 'product:2'] })
    await cache.set('c:1', 'cat', { tags: ['category'] })
    await cache.set('plain', 'x')
    await cache.setMany([
      { key: 'p:3', value: 'three', tags: ['product:3'] },
      { key: 'o:1', value: 'order', tags: ['order'] },
    ])

    expect(await cache.invalidateTags(['product:1'])).toBe(1)
    expect(await cache.get('p:1')).toBeUndefined()
    expect(await cache.get('p:2')).toBe('two')

    expect(await cache.invalidateTags(['product', 'product:3'])).toBe(2)
    expect(await cache.getMany(['p:2', 'p:3', 'c:1', 'plain', 'o:1'])).toEqual([
      undefined,
      undefined,
      'cat',
      'x',
      'order',
    ])
    expect(await cache.invalidateTags('order')).toBe(1)
    expect(await cache.invalidateTags(['nothing-has-this'])).toBe(0)
    // Left: the index entry of the entry that still carries its tag, and the one of a tag that
    // was not invalidated on an entry that is gone (it expires with that entry's TTL).
    const index = await listed(cache.store, `${prefix}t/`)
    expect(index).toEqual([`${prefix}t/category=00c=3A1`, `${prefix}t/product=3A2=00p=3A2`])
  })

  it('a tag in one namespace never drops entries of another namespace or of the parent', async () => {
    const { cache } = open(backend.store())
    const a = cache.namespace('tenant:a')
    const b = cache.namespace('tenant:b')
    const child = a.namespace('child')
    for (const view of [cache, a, b, child]) await view.set('k', 'v', { tags: ['shared'] })
    expect(await a.invalidateTags(['shared'])).toBe(1)
    expect(await a.get('k')).toBeUndefined()
    expect(await b.get('k')).toBe('v')
    expect(await child.get('k')).toBe('v')
    expect(await cache.get('k')).toBe('v')
  })

  it('deleting a key deletes its dependents, transitively, and nothing else', async () => {
    const { cache } = open(backend.store())
    await cache.set('user', { id: 1 })
    await cache.set('profile', 'p', { dependsOn: ['user'] })
    await cache.set('page', 'html', { dependsOn: ['profile'] })
    await cache.set('badge', 'b', { dependsOn: ['page', 'other'] })
    await cache.set('unrelated', 'u')

    expect(await cache.delete('user')).toBe(true)
    expect(await cache.getMany(['user', 'profile', 'page', 'badge', 'unrelated'])).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      'u',
    ])
    expect(cache.stats().deletes).toBe(4)
  })

  it('deleteMany and invalidateTags cascade to dependents too', async () => {
    const { cache } = open(backend.store())
    await cache.set('a', 1)
    await cache.set('b', 2, { tags: ['t'] })
    await cache.set('a-view', 'x', { dependsOn: ['a'] })
    await cache.set('b-view', 'y', { dependsOn: ['b'] })
    await cache.set('b-view-view', 'z', { dependsOn: ['b-view'] })
    expect(await cache.deleteMany(['a'])).toBe(1)
    expect(await cache.get('a-view')).toBeUndefined()
    expect(await cache.invalidateTags(['t'])).toBe(3)
    expect(await cache.getMany(['b', 'b-view', 'b-view-view'])).toEqual([
      undefined,
      undefined,
      undefined,
    ])
  })

  it('changing a key by set, setMany, add, increment or compareAndSet deletes its dependents', async () => {
    const { cache } = open(backend.store())
    const changes: Array<[string, () => Promise<unknown>]> = [
      ['set', () => cache.set('parent', 2)],
      ['setMany', () => cache.setMany([{ key: 'parent', value: 3 }])],
      ['increment', () => cache.increment('parent')],
      [
        'compareAndSet',
        async () => {
          const entry = await cache.entry('parent')
          return cache.compareAndSet('parent', 10, entry?.revision as string)
        },
      ],
      [
        'add',
        async () => {
          await cache.delete('parent')
          await cache.set('child', 'c', { dependsOn: ['parent'] })
          expect(await cache.get('child')).toBe('c')
          return cache.add('parent', 1)
        },
      ],
    ]
    await cache.set('parent', 1)
    for (const [name, change] of changes) {
      await cache.set('child', 'c', { dependsOn: ['parent'] })
      await cache.set('grandchild', 'g', { dependsOn: ['child'] })
      await change()
      expect(await cache.get('child'), `${name} deletes the dependent`).toBeUndefined()
      expect(await cache.get('grandchild'), `${name} deletes it transitively`).toBeUndefined()
      expect(await cache.get('parent'), `${name} keeps the parent`).toBeDefined()
    }
  })

  it('a write whose compare-and-set or add loses deletes nothing', async () => {
    const { cache } = open(backend.store())
    await cache.set('parent', 1)
    await cache.set('child', 'c', { dependsOn: ['parent'] })
    expect(await cache.add('parent', 2)).toBe(false)
    expect(await cache.compareAndSet('parent', 2, 'not-the-revision')).toBe(false)
    expect(await cache.get('child')).toBe('c')
  })

  it('cycles stop: the changed key stays, every other key of the cycle goes', async () => {
    const { cache } = open(backend.store())
    // setMany reads the dependency records before writing, so the items can depend on each other.
    await cache.setMany([
      { key: 'a', value: 1, dependsOn: ['c'] },
      { key: 'b', value: 2, dependsOn: ['a'] },
      { key: 'c', value: 3, dependsOn: ['b'] },
    ])
    expect(await cache.getMany(['a', 'b', 'c'])).toEqual([1, 2, 3])
    await cache.set('a', 'changed')
    expect(await cache.getMany(['a', 'b', 'c'])).toEqual(['changed', undefined, undefined])

    await cache.setMany([
      { key: 'x', value: 1, dependsOn: ['y'] },
      { key: 'y', value: 2, dependsOn: ['x'] },
    ])
    expect(await cache.delete('x')).toBe(true)
    expect(await cache.getMany(['x', 'y'])).toEqual([undefined, undefined])
  })

  it('a dependent never outlives its parent: its TTL is capped by the parent’s deadline', async () => {
    const { cache } = open(backend.store())
    await cache.set('parent', 1, '1h')
    await cache.set('forever', 2, { dependsOn: ['parent'] })
    await cache.set('longer', 3, { ttl: '2h', dependsOn: ['parent'] })
    await cache.set('shorter', 4, { ttl: '10m', dependsOn: ['parent'] })
    const parent = await cache.entry('parent')
    const deadline = parent?.expiresAt as number
    for (const key of ['forever', 'longer']) {
      const entry = await cache.entry(key)
      expect(entry?.expiresAt, key).not.toBeNull()
      // The cap is computed on the store's clock as the cache sees it; for Redis that is an
      // estimate of the server's clock, good to a few ms, hence the allowance.
      expect(entry?.expiresAt as number, key).toBeLessThanOrEqual(deadline + 1_000)
    }
    expect((await cache.entry('shorter'))?.expiresAt as number).toBeLessThan(deadline - 40 * 60_000)
    // A missing parent caps nothing, and the link still holds once the parent is written.
    await cache.set('orphan', 5, { dependsOn: ['missing'] })
    expect(await cache.ttl('orphan')).toBeNull()
    await cache.set('missing', 6)
    expect(await cache.get('orphan')).toBeUndefined()
  })

  it('clear() removes the namespace’s index entries, so a cleared tag no longer drops a new entry', async () => {
    const { cache, prefix } = open(backend.store())
    const ns = cache.namespace('ns')
    const nsPrefix = `${prefix}ns.`
    await ns.set('k', 1, { tags: ['t'] })
    await ns.set('p', 1)
    await ns.set('c', 2, { dependsOn: ['p'] })
    await ns.namespace('deeper').set('k', 1, { tags: ['t'] })
    await cache.set('outside', 1, { tags: ['t'] })
    const lock = await ns.locks.acquire('job', { ttl: '1m' })
    expect(lock).not.toBeNull()

    expect(await ns.clear()).toBe(4)
    const left = await listed(cache.store, nsPrefix)
    expect(left.filter((key) => /\.[td]\//.test(key))).toEqual([])
    expect(left.some((key) => key.includes('.l/'))).toBe(true)
    expect(await listed(cache.store, `${prefix}t/`)).toHaveLength(1)

    // Written again without the tag or the dependency: the old links are gone.
    await ns.set('k', 'new')
    await ns.set('c', 'new')
    expect(await ns.invalidateTags(['t'])).toBe(0)
    await ns.set('p', 2)
    expect(await ns.getMany(['k', 'c'])).toEqual(['new', 'new'])
    expect(await cache.get('outside')).toBe(1)
    await lock?.release()
  })

  it('entries tagged before invalidateTags began are gone; concurrent writes stay indexed', async () => {
    const { cache } = open(backend.store())
    const before = Array.from({ length: 40 }, (_, i) => `before:${i}`)
    const during = Array.from({ length: 40 }, (_, i) => `during:${i}`)
    await cache.setMany(before.map((key) => ({ key, value: key, tags: ['race'] })))
    const invalidation = cache.invalidateTags(['race'])
    await Promise.all(during.map((key) => cache.set(key, key, { tags: ['race'] })))
    await invalidation
    expect((await cache.getMany(before)).filter((value) => value !== undefined)).toEqual([])
    // Whatever a concurrent write left alive is still indexed: a second call finds all of it.
    await cache.invalidateTags(['race'])
    expect((await cache.getMany(during)).filter((value) => value !== undefined)).toEqual([])
  })

  it('rejects bad tags and dependsOn before any I/O, with typed errors', async () => {
    const { cache } = open(backend.store())
    const bad: unknown[] = [
      { tags: [''] },
      { tags: ['x'.repeat(129)] },
      { tags: ['é'.repeat(65)] },
      { tags: ['a\u0000b'] },
      { tags: ['line\nbreak'] },
      { tags: [42] },
      { tags: 'not-an-array-of-strings-but-ok' },
      { tags: Array.from({ length: 65 }, (_, i) => `t${i}`) },
      { tags: {} },
      { dependsOn: ['k'] },
      { dependsOn: 'parent' },
      { dependsOn: [1] },
      { dependsOn: Array.from({ length: 65 }, (_, i) => `p${i}`) },
      { dependsOn: [''] },
      { tag: ['typo'] },
    ]
    for (const options of bad.slice(0, 6)) {
      await expect(cache.set('k', 1, options as never), JSON.stringify(options)).rejects.toThrow(
        InvalidArgumentError,
      )
    }
    // A single string is one tag.
    await expect(cache.set('k', 1, bad[6] as never)).resolves.toBe(true)
    await cache.delete('k')
    for (const options of bad.slice(7)) {
      await expect(cache.set('k', 1, options as never), JSON.stringify(options)).rejects.toThrow(
        InvalidArgumentError,
      )
    }
    await expect(
      cache.setMany([
        { key: 'ok', value: 1 },
        { key: 'bad', value: 1, tags: [''] },
      ]),
    ).rejects.toThrow(/items\[1\]\.tags/)
    await expect(cache.invalidateTags([''])).rejects.toThrow(InvalidArgumentError)
    await expect(cache.invalidateTags(5 as never)).rejects.toThrow(InvalidArgumentError)
    expect(await cache.keys()).toEqual([])
    await expect(cache.set('k', 1, { tags: ['é'.repeat(64)] })).resolves.toBe(true)
  })
})

describe('tags and dependencies with time (memory store, manual clock)', () => {
  function setup() {
    const clock = new ManualClock()
    const store = memoryStore({ clock, sweepIntervalMs: 0 })
    const { cache, prefix } = open(store)
    return { clock, store, cache, prefix }
  }

  it('index entries expire with the entries they point to', async () => {
    const { clock, cache, prefix } = setup()
    await cache.set('parent', 1, '10s')
    await cache.set('child', 2, { ttl: '5s', tags: ['a', 'b'], dependsOn: ['parent'] })
    await cache.set('other', 3, { ttl: '20s', dependsOn: ['parent'] })
    expect(await listed(cache.store, `${prefix}t/`)).toHaveLength(2)
    expect(await listed(cache.store, `${prefix}d/`)).toEqual([`${prefix}d/parent`])
    clock.advance(5_000)
    expect(await cache.get('child')).toBeUndefined()
    expect(await listed(cache.store, `${prefix}t/`)).toEqual([])
    // The record lives as long as its longest-lived dependent, capped by the parent: 10 s.
    expect(await listed(cache.store, `${prefix}d/`)).toHaveLength(1)
    clock.advance(5_000)
    expect(await cache.getMany(['parent', 'other'])).toEqual([undefined, undefined])
    expect(await listed(cache.store, `${prefix}d/`)).toEqual([])
  })

  it('a dependent without a TTL goes when its parent expires', async () => {
    const { clock, cache } = setup()
    await cache.set('parent', 1, '1m')
    await cache.set('child', 2, { dependsOn: ['parent'] })
    await cache.set('grandchild', 3, { dependsOn: ['child'] })
    clock.advance(59_999)
    expect(await cache.getMany(['parent', 'child', 'grandchild'])).toEqual([1, 2, 3])
    clock.advance(1)
    expect(await cache.getMany(['parent', 'child', 'grandchild'])).toEqual([
      undefined,
      undefined,
      undefined,
    ])
  })

  it('an expired link is not followed: a key written again without dependsOn stays', async () => {
    const { clock, cache } = setup()
    await cache.set('parent', 1)
    await cache.set('child', 2, { ttl: '1s', dependsOn: ['parent'] })
    clock.advance(1_000)
    await cache.set('child', 'independent')
    await cache.set('parent', 2)
    expect(await cache.get('child')).toBe('independent')
  })
})

describe('tags and dependencies across caches and under failures (memory store)', () => {
  it('a dependent registered through one cache is deleted by a write through another', async () => {
    const store = memoryStore({ sweepIntervalMs: 0 })
    const prefix = `${rootOfRun}_${++counter}`
    const a = createCache({ store, prefix })
    const b = createCache({ store, prefix })
    caches.push(b)
    await a.set('parent', 1)
    await a.set('child', 2, { dependsOn: ['parent'] })
    await b.set('parent', 3)
    expect(await a.get('child')).toBeUndefined()
  })

  it('when the index cannot be written, set rejects and the entry is not left behind', async () => {
    const inner = memoryStore({ sweepIntervalMs: 0 })
    let failIndex = true
    const store = new Proxy(inner, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver)
        if (typeof value !== 'function') return value
        return (...args: unknown[]) => {
          if (failIndex && (property === 'setMany' || property === 'create')) {
            return Promise.reject(new Error('disk full'))
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args)
        }
      },
    })
    const { cache } = open(store)
    await expect(cache.set('tagged', 1, { tags: ['t'] })).rejects.toThrow(StoreUnavailableError)
    expect(await cache.get('tagged')).toBeUndefined()
    await expect(cache.set('child', 1, { dependsOn: ['parent'] })).rejects.toThrow(
      StoreUnavailableError,
    )
    expect(await cache.get('child')).toBeUndefined()
    failIndex = false
    await cache.set('tagged', 1, { tags: ['t'] })
    expect(await cache.invalidateTags(['t'])).toBe(1)
  })
})

describe.each([
  { name: 'redis', store: () => redisStore({ url: redisUrl() }) },
  { name: 'nats', store: () => natsStore({ servers: natsUrl(), bucket, sweepIntervalMs: 0 }) },
])('two replicas with L1 on $name', (backend) => {
  /** Two caches over separate store connections, one prefix and one invalidation channel. */
  async function replicas(): Promise<[Cache, Cache]> {
    const prefix = `${rootOfRun}_${++counter}`
    const options = {
      prefix,
      fallback: 'fail' as const,
      logger: silentLogger,
      l1: { channel: prefix },
    }
    const a = createCache({ store: backend.store(), ...options })
    await a.ready()
    const b = createCache({ store: backend.store(), ...options })
    await b.ready()
    caches.push(a, b)
    return [a, b]
  }

  /** Reads `key` on `cache` until it misses; L1 keeps entries a minute, so a miss within 10 s came from an invalidation. */
  async function missesSoon(cache: Cache, key: string): Promise<boolean> {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(5)) {
      if ((await cache.get(key)) === undefined) return true
    }
    return false
  }

  /**
   * Reads `key` on `cache` until a read is served by L1 (a store read that raced an earlier
   * write's invalidation is not kept in L1, so the first reads may all go to the store).
   */
  async function inL1(cache: Cache, key: string, value: unknown): Promise<void> {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(5)) {
      const hits = cache.stats().l1?.hits ?? 0
      expect(await cache.get(key)).toEqual(value)
      if ((cache.stats().l1?.hits ?? 0) === hits + 1) return
    }
    expect.fail(`${key} never got into L1`)
  }

  it('tag and dependency invalidation on one replica drops the entries from the other’s L1', async () => {
    const [a, b] = await replicas()
    await a.set('product:1', { price: 10 }, { tags: ['products'] })
    await a.set('product:2', { price: 20 }, { tags: ['products'] })
    await a.set('config', { currency: 'EUR' })
    await a.set('price-list', ['10 EUR'], { dependsOn: ['config'] })
    await a.set('page', '<ul>', { dependsOn: ['price-list'] })
    await a.set('keep', 'k', { tags: ['other'] })
    for (const key of ['product:1', 'product:2', 'price-list', 'page', 'keep']) {
      await inL1(b, key, await a.get(key))
    }
    const received = b.stats().l1?.invalidationsReceived ?? 0

    expect(await a.invalidateTags(['products'])).toBe(2)
    expect(await missesSoon(b, 'product:1')).toBe(true)
    expect(await missesSoon(b, 'product:2')).toBe(true)

    await a.set('config', { currency: 'USD' })
    expect(await missesSoon(b, 'price-list')).toBe(true)
    expect(await missesSoon(b, 'page')).toBe(true)
    expect(await b.get('config')).toEqual({ currency: 'USD' })
    expect(b.stats().l1?.invalidationsReceived).toBeGreaterThan(received)
    await inL1(b, 'keep', 'k')

    // And the other way round: B tags, A invalidates; B deletes a parent, A's dependent goes.
    await b.set('b-item', 1, { tags: ['b-tag'] })
    await b.set('b-view', 2, { dependsOn: ['b-item'] })
    await inL1(a, 'b-item', 1)
    await inL1(a, 'b-view', 2)
    expect(await b.invalidateTags(['b-tag'])).toBe(2)
    expect(await missesSoon(a, 'b-item')).toBe(true)
    expect(await missesSoon(a, 'b-view')).toBe(true)
  })
})
