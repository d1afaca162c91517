/**
 * `cache.history()` and `cache.watch()` on every store: the order of events, namespace isolation,
 * delete and expire events, abort, overflow, and two caches (replicas) on Redis and NATS seeing
 * each other's writes. Waits are bounded polls for liveness only; nothing asserts a duration.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'

import { createCache, type Cache } from '../src/core/cache.js'
import { ManualClock } from '../src/core/clock.js'
import type { CacheEvent, CacheWatch } from '../src/core/watch.js'
import { InvalidArgumentError } from '../src/errors.js'
import { memoryStore } from '../src/stores/memory/index.js'
import { natsStore } from '../src/stores/nats/index.js'
import { redisStore } from '../src/stores/redis/index.js'
import { sqliteStore } from '../src/stores/sqlite/index.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from './helpers/services.js'

const run = randomBytes(4).toString('hex')
const bucket = `fc-test-history-watch-${run}`
const redisPrefix = `hw${run}`
const dir = mkdtempSync(join(tmpdir(), 'flowcache-history-watch-'))
const opened: Cache[] = []

afterAll(async () => {
  await Promise.all(opened.splice(0).map((cache) => cache.close()))
  rmSync(dir, { recursive: true, force: true })
  await deleteRedisKeys(`{${redisPrefix}*`)
  await destroyNatsBucket(bucket)
})

interface Setup {
  name: string
  /** A cache on the store; `clock` is used by stores that take one. */
  open(clock?: ManualClock): Cache
  /** Whether a second cache (another replica) sees this one's writes. */
  shared: boolean
  /** Whether `set` events carry the value. */
  values: boolean
  /** Whether expiries are reported, and how to make one happen after the TTL passed. */
  expire?: (cache: Cache, clock: ManualClock, key: string) => Promise<void>
}

let files = 0
const setups: Setup[] = [
  {
    name: 'memory',
    open: (clock) => track(createCache({ store: memoryStore({ clock, history: 5 }) })),
    shared: false,
    values: true,
    expire: async (cache, clock, key) => {
      clock.advance(2000)
      await cache.get(key) // the read finds it past its deadline and removes it
    },
  },
  {
    name: 'sqlite',
    open: (clock) =>
      track(
        createCache({
          store: sqliteStore({ path: join(dir, `s${files++}.db`), clock, history: 5 }),
        }),
      ),
    shared: false,
    values: true,
    expire: async (cache, clock) => {
      clock.advance(2000)
      await cache.store.prune?.()
    },
  },
  {
    name: 'redis',
    open: () =>
      track(
        createCache({ prefix: redisPrefix, store: redisStore({ url: redisUrl(), history: 5 }) }),
      ),
    shared: true,
    values: false,
  },
  {
    name: 'nats',
    open: (clock) =>
      track(
        createCache({
          store: natsStore({ servers: natsUrl(), bucket, history: 5, clock, sweepIntervalMs: 0 }),
        }),
      ),
    shared: true,
    values: true,
    expire: async (cache, clock, key) => {
      clock.advance(2000)
      await cache.get(key) // the read finds it past its deadline and writes the expiry marker
    },
  },
]

function track(cache: Cache): Cache {
  opened.push(cache)
  return cache
}

/** Reads events from a watch in the background. */
function collector(watch: CacheWatch): { events: CacheEvent[]; done: Promise<void> } {
  const events: CacheEvent[] = []
  const done = (async () => {
    for await (const event of watch) events.push(event)
  })()
  return { events, done }
}

/** Polls until `ready()` holds; fails after 10 s (a liveness bound, not a timing assertion). */
async function until(ready: () => boolean, what: string): Promise<void> {
  const giveUpAt = Date.now() + 10_000
  while (!ready()) {
    if (Date.now() > giveUpAt) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

const brief = (events: CacheEvent[]): string[] =>
  events.map((event) => (event.type === 'overflow' ? 'overflow' : `${event.type} ${event.key}`))

for (const setup of setups) {
  describe(`history and watch on ${setup.name}`, () => {
    it('history returns sets, deletes and the newest versions first dropped, oldest first', async () => {
      const clock = new ManualClock(Date.now())
      const cache = setup.open(clock).namespace(`h-${randomBytes(3).toString('hex')}`)
      const before = Date.now() - 60_000
      await cache.set('k', { n: 1 })
      await cache.set('k', { n: 2 }, 60_000)
      await cache.delete('k')
      await cache.set('k', { n: 3 })
      const versions = await cache.history('k')
      expect(versions.map((v) => [v.operation, v.value])).toEqual([
        ['set', { n: 1 }],
        ['set', { n: 2 }],
        ['delete', undefined],
        ['set', { n: 3 }],
      ])
      expect(versions[1]?.expiresAt).toBeTypeOf('number')
      expect(versions[0]?.expiresAt).toBeNull()
      const entry = await cache.entry('k')
      expect(versions.at(-1)?.revision).toBe(entry?.revision)
      for (const v of versions) expect(v.at).toBeGreaterThan(before)
      expect((await cache.history('k', { limit: 2 })).map((v) => v.operation)).toEqual([
        'delete',
        'set',
      ])
      // Five versions kept: two more writes push the oldest two out.
      await cache.set('k', 4)
      await cache.set('k', 5)
      expect((await cache.history('k')).map((v) => v.value ?? v.operation)).toEqual([
        { n: 2 },
        'delete',
        { n: 3 },
        4,
        5,
      ])
      expect(await cache.history('never-written')).toEqual([])
      await expect(cache.history('k', { limit: 0 })).rejects.toBeInstanceOf(InvalidArgumentError)
    })

    it('history is scoped to the namespace: the same key elsewhere has its own', async () => {
      const cache = setup.open(new ManualClock(Date.now()))
      const a = cache.namespace(`a-${randomBytes(3).toString('hex')}`)
      const b = cache.namespace(`b-${randomBytes(3).toString('hex')}`)
      await a.set('same', 'in a')
      await b.set('same', 'in b')
      expect((await a.history('same')).map((v) => v.value)).toEqual(['in a'])
      expect((await b.history('same')).map((v) => v.value)).toEqual(['in b'])
    })

    it('watch reports sets and deletes of its namespace in order, key stripped', async () => {
      const cache = setup.open(new ManualClock(Date.now()))
      const ns = `w-${randomBytes(3).toString('hex')}`
      const view = cache.namespace(ns)
      const other = cache.namespace(`${ns}-other`)
      const child = view.namespace('child')
      const watch = view.watch()
      await watch.ready()
      const { events, done } = collector(watch)
      await other.set('x', 1) // another namespace
      await child.set('x', 1) // a child namespace
      await view.locks.acquire('lock', { ttl: 60_000 }) // a system key
      await view.set('a', { v: 1 })
      await view.set('b', 2)
      await view.delete('a')
      await view.increment('c')
      await until(() => events.length >= 4, 'four events')
      await sleep(50) // anything that should not arrive has had a chance to
      expect(brief(events)).toEqual(['set a', 'set b', 'delete a', 'set c'])
      const first = events[0]
      if (first?.type !== 'set') throw new Error('expected a set event')
      if (setup.values) expect(first.value).toEqual({ v: 1 })
      expect(first.revision).toBeTypeOf('string')
      const revisions = events.map((e) => (e.type === 'overflow' ? 0 : Number(e.revision)))
      expect(revisions).toEqual([...revisions].sort((x, y) => x - y))
      await watch.close()
      await done
    })

    it('watch(prefix) reports only keys that start with the prefix', async () => {
      const view = setup
        .open(new ManualClock(Date.now()))
        .namespace(`p-${randomBytes(3).toString('hex')}`)
      const watch = view.watch('order:')
      await watch.ready()
      const { events, done } = collector(watch)
      await view.set('user:1', 1)
      await view.set('order:1', 1)
      await view.set('order:2', 2)
      await until(() => events.length >= 2, 'two events')
      await sleep(50)
      expect(brief(events)).toEqual(['set order:1', 'set order:2'])
      await watch.close()
      await done
    })

    it('aborting the signal ends the iteration; breaking the loop unsubscribes', async () => {
      const view = setup
        .open(new ManualClock(Date.now()))
        .namespace(`s-${randomBytes(3).toString('hex')}`)
      const controller = new AbortController()
      const watch = view.watch(undefined, { signal: controller.signal })
      await watch.ready()
      const { events, done } = collector(watch)
      await view.set('a', 1)
      await until(() => events.length >= 1, 'one event')
      controller.abort()
      await done // the loop ends
      await view.set('b', 2)
      await sleep(50)
      expect(brief(events)).toEqual(['set a'])

      const second = view.watch()
      await second.ready()
      await view.set('c', 3)
      for await (const event of second) {
        expect(event.type === 'set' && event.key).toBe('c')
        break
      }
      expect(await second.next()).toEqual({ value: undefined, done: true })
    })

    if (setup.expire !== undefined) {
      const expire = setup.expire
      it('an entry whose TTL passes is reported as expire, and history ends with the marker', async () => {
        const clock = new ManualClock(Date.now())
        const view = setup.open(clock).namespace(`e-${randomBytes(3).toString('hex')}`)
        const watch = view.watch()
        await watch.ready()
        const { events, done } = collector(watch)
        await view.set('short', 'soon gone', 1000)
        await until(() => events.length >= 1, 'the set event')
        await expire(view, clock, 'short')
        await until(() => events.length >= 2, 'the expire event')
        expect(brief(events)).toEqual(['set short', 'expire short'])
        const versions = await view.history('short')
        expect(versions.map((v) => v.operation)).toEqual(['set', 'expire'])
        expect(versions[1]?.at).toBe(versions[0]?.expiresAt)
        await watch.close()
        await done
      })
    } else {
      it('an expired last value shows as an expire version in history', async () => {
        const view = setup.open().namespace(`e-${randomBytes(3).toString('hex')}`)
        await view.set('short', 1, 50)
        await sleep(100)
        const versions = await view.history('short')
        expect(versions.map((v) => [v.operation, v.revision === undefined])).toEqual([
          ['set', false],
          ['expire', true],
        ])
      })
    }

    if (setup.shared) {
      it('two caches on the store (replicas) see each other’s writes', async () => {
        const ns = `r-${randomBytes(3).toString('hex')}`
        const one = setup.open().namespace(ns)
        const two = setup.open().namespace(ns)
        const watchOne = one.watch()
        const watchTwo = two.watch()
        await Promise.all([watchOne.ready(), watchTwo.ready()])
        const a = collector(watchOne)
        const b = collector(watchTwo)
        await one.set('from-one', 1)
        await two.set('from-two', 2)
        await two.delete('from-one')
        await until(() => a.events.length >= 3 && b.events.length >= 3, 'three events each')
        const expected = ['set from-one', 'set from-two', 'delete from-one']
        expect(brief(a.events)).toEqual(expected)
        expect(brief(b.events)).toEqual(expected)
        await Promise.all([watchOne.close(), watchTwo.close()])
        await Promise.all([a.done, b.done])
      })
    }
  })
}

describe('watch: buffering, arguments and capabilities', () => {
  it('a consumer that falls behind gets an overflow event in place of the dropped events', async () => {
    const cache = track(createCache())
    const watch = cache.watch(undefined, { buffer: 3 })
    await watch.ready()
    for (let i = 0; i < 10; i++) await cache.set(`k${i}`, i)
    const seen: CacheEvent[] = []
    for await (const event of watch) {
      seen.push(event)
      if (event.type === 'overflow') await cache.set('after', true)
      if (event.type === 'set' && event.key === 'after') break
    }
    expect(brief(seen)).toEqual(['set k0', 'set k1', 'set k2', 'overflow', 'set after'])
    const overflow = seen[3]
    expect(overflow?.type === 'overflow' && [overflow.reason, overflow.dropped]).toEqual([
      'buffer',
      7,
    ])
  })

  it('closing the cache ends its watches', async () => {
    const cache = createCache()
    const watch = cache.watch()
    await watch.ready()
    const { events, done } = collector(watch)
    await cache.set('a', 1)
    await cache.close()
    await done
    expect(brief(events)).toEqual(['set a'])
  })

  it('rejects bad arguments and stores without the capability, before any I/O', async () => {
    const cache = track(createCache())
    expect(() => cache.watch('', { buffer: 0 })).toThrow(InvalidArgumentError)
    expect(() => cache.watch(undefined, { signal: {} as AbortSignal })).toThrow(
      InvalidArgumentError,
    )
    await expect(cache.history('k')).rejects.toThrow(/keeps none/)
    await expect(cache.history('')).rejects.toBeInstanceOf(InvalidArgumentError)
    const quiet = track(
      createCache({ prefix: redisPrefix, store: redisStore({ url: redisUrl(), changes: false }) }),
    )
    expect(() => quiet.watch()).toThrow(/reports changes/)
  })

  it('redis reports expiries when keyspace notifications are on', async () => {
    const admin = new Redis(redisUrl())
    const reply = (await admin.config('GET', 'notify-keyspace-events')) as string[]
    const previous = reply[1] ?? ''
    try {
      await admin.config('SET', 'notify-keyspace-events', `${previous}Ex`)
      const cache = track(
        createCache({ prefix: redisPrefix, store: redisStore({ url: redisUrl() }) }),
      ).namespace(`x-${randomBytes(3).toString('hex')}`)
      const watch = cache.watch()
      await watch.ready()
      const { events, done } = collector(watch)
      await cache.set('short', 1, 50)
      await sleep(100)
      expect(await cache.get('short')).toBeUndefined() // a read makes Redis expire it now
      await until(() => events.length >= 2, 'the expire event')
      expect(brief(events)).toEqual(['set short', 'expire short'])
      await watch.close()
      await done
    } finally {
      await admin.config('SET', 'notify-keyspace-events', previous)
      admin.disconnect()
    }
  })
})
