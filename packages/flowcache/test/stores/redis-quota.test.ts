/**
 * Namespace quotas on the Redis store, beyond the store contract: replicas writing into one
 * namespace at once, a replica that never set the quota, expiry, accounting through every kind
 * of write and delete, keys written before the quota, and the store-wide limit (on a private
 * server, since it covers every user key of the database).
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest'

import { jsonCodec } from '../../src/core/codec.js'
import { childPrefix, KeyKind, rootPrefix, systemKey, userKey } from '../../src/core/keyspace.js'
import { redisStore, type RedisStore } from '../../src/stores/redis/index.js'
import { QUOTA_DIRECTORY, quotaDefinitionsKey, toRedisKey } from '../../src/stores/redis/keys.js'
import {
  ADOPT,
  QUOTA_EVICTION_BUDGET,
  QUOTA_USAGE,
  SET_QUOTA,
  WRITE_EVICTION_BUDGET,
} from '../../src/stores/redis/scripts.js'
import { startRedisServer, type ServerHandle } from '../helpers/servers.js'
import { redisUrl } from '../helpers/services.js'

const MAX_KEY_BYTES = 1024

function filled(size: number, byte = 7): Uint8Array {
  return new Uint8Array(size).fill(byte)
}

/** The bytes of an entry as a plain Uint8Array (the store returns Buffers), or undefined. */
function bytesOf(entry: { value: Uint8Array } | undefined): Uint8Array | undefined {
  return entry === undefined ? undefined : new Uint8Array(entry.value)
}

function randomSize(low: number, high: number): number {
  return low + Math.floor(Math.random() * (high - low + 1))
}

describe('redis store quotas', () => {
  let raw: Redis
  let root: string
  const stores: RedisStore[] = []
  const open = (url = redisUrl()): RedisStore => {
    const store = redisStore({ url })
    stores.push(store)
    return store
  }
  const ns = (...names: string[]): string =>
    names.reduce((prefix, name) => childPrefix(prefix, name, MAX_KEY_BYTES), rootPrefix(root))
  const user = (prefix: string, key: string): string => userKey(prefix, key, MAX_KEY_BYTES)

  /** What the user entries under `prefix` really use, read from Redis: entries and bytes. */
  async function measured(
    store: RedisStore,
    prefix: string,
    client: Redis = raw,
  ): Promise<{ entries: number; bytes: number; keys: string[] }> {
    const keys: string[] = []
    for await (const key of store.list(prefix)) {
      if (key.slice(key.lastIndexOf('.') + 1).startsWith('k/')) keys.push(key)
    }
    let bytes = 0
    for (const key of keys) bytes += (await client.hstrlen(toRedisKey(key), 'v')) + key.length
    return { entries: keys.length, bytes, keys }
  }

  beforeAll(async () => {
    raw = new Redis(redisUrl())
    await raw.ping()
  })

  afterAll(async () => {
    await raw.quit()
  })

  beforeEach(() => {
    root = `q${randomBytes(8).toString('hex')}`
  })

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()))
    // Entries, counters and quota accounting are under the root's hash tags; the directory is not.
    let cursor = '0'
    do {
      const [next, keys] = await raw.scan(cursor, 'MATCH', `{${root}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await raw.unlink(...keys)
    } while (cursor !== '0')
    const fields = (await raw.hkeys(QUOTA_DIRECTORY)).filter((field) => field.startsWith(root))
    if (fields.length > 0) await raw.hdel(QUOTA_DIRECTORY, ...fields)
  })

  it('two replicas writing into one namespace at once stay within maxBytes + one value, and a replica that never set the quota enforces it', async () => {
    const [a, b] = [open(), open()]
    const space = ns('tenant')
    const maxBytes = 50_000
    const largest = 3_000
    await a.setQuota(space, { maxBytes })
    let peak = 0
    let written = 0
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        [a, b].flatMap((store, r) =>
          Array.from({ length: 10 }, (_, i) => {
            written++
            return store.set(
              user(space, `r${r}-${round}-${i}`),
              filled(randomSize(200, largest - 100)),
            )
          }),
        ),
      )
      const now = await measured(a, space)
      peak = Math.max(peak, now.bytes)
      expect(now.bytes).toBeLessThanOrEqual(maxBytes + largest)
    }
    // Quiescent: the shared accounting matches Redis exactly, and the limit holds.
    const usage = await b.quotaUsage(space)
    const actual = await measured(a, space)
    expect(usage).toMatchObject({ entries: actual.entries, bytes: actual.bytes })
    expect(actual.bytes).toBeLessThanOrEqual(maxBytes)
    expect(usage!.evictions).toBe(written - actual.entries)
    // b alone, without a setQuota of its own: still held to the quota a recorded in Redis.
    for (let i = 0; i < 40; i++) await b.set(user(space, `b-only-${i}`), filled(2_000))
    expect((await measured(b, space)).bytes).toBeLessThanOrEqual(maxBytes)
    console.log(`two replicas: peak ${peak} B sampled against maxBytes ${maxBytes}`)
  })

  it('expired entries stop counting, and never cost a live entry its place', async () => {
    const store = open()
    const space = ns('expiring')
    await store.setQuota(space, { maxEntries: 3 })
    for (let i = 0; i < 3; i++)
      await store.set(user(space, `short${i}`), filled(100), { ttlMs: 50 })
    expect(await store.quotaUsage(space)).toMatchObject({ entries: 3, evictions: 0 })
    await sleep(120)
    expect(await store.quotaUsage(space)).toEqual({ entries: 0, bytes: 0, evictions: 0 })
    for (let i = 0; i < 3; i++) await store.set(user(space, `short${i}`), filled(10), { ttlMs: 50 })
    await sleep(120)
    // Three live writes after three expiries: nothing is evicted, all three stay.
    const live = [0, 1, 2].map((i) => user(space, `live${i}`))
    for (const key of live) await store.set(key, filled(100))
    expect((await measured(store, space)).keys.sort()).toEqual([...live].sort())
    expect(await store.quotaUsage(space)).toMatchObject({ entries: 3, evictions: 0 })
  })

  it('never touches system keys, the parent namespace or a sibling namespace, and reports usage figures that match Redis', async () => {
    const store = open()
    const space = ns('tenant', 'flows')
    const systemKeys = [
      systemKey(space, KeyKind.lock, 'job', MAX_KEY_BYTES),
      systemKey(space, KeyKind.lease, 'leader', MAX_KEY_BYTES),
      systemKey(space, KeyKind.limiter, 'api', MAX_KEY_BYTES),
      systemKey(space, KeyKind.meta, 'schema', MAX_KEY_BYTES),
    ]
    const others = [user(ns('tenant'), 'parent'), user(ns('tenant', 'flowsx'), 'sibling')]
    for (const key of [...systemKeys, ...others]) await store.set(key, filled(5_000, 1))
    expect(await store.quotaUsage(space)).toBeUndefined()
    await store.setQuota(space, { maxBytes: 2_000, maxEntries: 100 })
    for (let i = 0; i < 50; i++) await store.set(user(space, `k${i}`), filled(300))
    for (const key of [...systemKeys, ...others]) {
      expect(bytesOf(await store.get(key)), key).toEqual(filled(5_000, 1))
    }
    const actual = await measured(store, space)
    const usage = await store.quotaUsage(space)
    expect(usage).toEqual({
      entries: actual.entries,
      bytes: actual.bytes,
      evictions: 50 - actual.entries,
    })
    expect(actual.bytes).toBeLessThanOrEqual(2_000)
    expect(actual.entries).toBeGreaterThan(0)
  })

  it('keeps the accounting exact through overwrites, deletes, clear, setMany, deleteMany, increment and compare-and-set', async () => {
    const store = open()
    const space = ns('acct')
    await store.setQuota(space, { maxBytes: 1_000_000 })
    const check = async (step: string): Promise<void> => {
      const actual = await measured(store, space)
      expect(await store.quotaUsage(space), step).toEqual({
        entries: actual.entries,
        bytes: actual.bytes,
        evictions: 0,
      })
    }
    const [x, y, z] = ['x', 'y', 'z'].map((key) => user(space, key)) as [string, string, string]
    await store.set(x, filled(100))
    await store.set(x, filled(700))
    await check('overwrite with a larger value')
    await store.set(x, filled(10))
    await check('overwrite with a smaller value')
    const revisions = await store.setMany([
      { key: y, value: filled(300) },
      { key: z, value: filled(400), ttlMs: 60_000 },
    ])
    await check('setMany')
    expect(await store.compareAndSet(y, filled(50), revisions[0]!)).toBeDefined()
    expect(await store.compareAndSet(y, filled(5_000), 'stale')).toBeUndefined()
    await check('compare-and-set')
    expect(await store.create(z, filled(9_000))).toBeUndefined()
    await check('create of an existing key')
    const counter = user(space, 'counter')
    await store.increment(counter, 1, jsonCodec)
    await store.increment(counter, 123_456, jsonCodec)
    await check('increment')
    expect(await store.delete(x, { expected: 'stale' })).toBe(false)
    await check('fenced delete with a stale revision')
    expect(await store.delete(x)).toBe(true)
    await check('delete')
    expect(await store.deleteMany([y, counter, x])).toBe(2)
    await check('deleteMany')
    await store.setMany(
      Array.from({ length: 20 }, (_, i) => ({ key: user(space, `m${i}`), value: filled(i) })),
    )
    await check('setMany of 20')
    expect(await store.clear(space)).toBe(21)
    expect(await store.quotaUsage(space)).toEqual({ entries: 0, bytes: 0, evictions: 0 })
  })

  it('counts entries written before the quota as the least recently used, and evicts them first', async () => {
    const store = open()
    const space = ns('before')
    const old = Array.from({ length: 5 }, (_, i) => user(space, `old${i}`))
    for (const key of old) await store.set(key, filled(100))
    await store.setQuota(space, { maxEntries: 8 })
    expect(await store.quotaUsage(space)).toMatchObject({ entries: 5, evictions: 0 })
    const fresh = Array.from({ length: 5 }, (_, i) => user(space, `new${i}`))
    for (const key of fresh) await store.set(key, filled(100))
    const left = (await measured(store, space)).keys
    expect(left.length).toBe(8)
    for (const key of fresh) expect(left).toContain(key)
    // Lowering the limit evicts at once.
    await store.setQuota(space, { maxEntries: 2 })
    expect((await measured(store, space)).keys.sort()).toEqual([fresh[3], fresh[4]].sort())
  })

  /** Writes `count` entries of 10 bytes under `space`, oldest first; returns their store keys. */
  async function fill(store: RedisStore, space: string, count: number, ttlMs?: number) {
    const keys = Array.from({ length: count }, (_, i) => user(space, `k${i}`))
    for (let i = 0; i < count; i += 500) {
      await store.setMany(keys.slice(i, i + 500).map((key) => ({ key, value: filled(10), ttlMs })))
    }
    return keys
  }

  /** The three quota arguments of a script run by hand, defining `def` on `space`. */
  const head = (space: string, def: string): string[] => [QUOTA_DIRECTORY, `${space}|${def};`, '0']
  /** A definition of maxEntries, set at `setAt` ms (none: older than any setQuota). */
  const entriesOnly = (maxEntries: number, setAt?: number): string =>
    `${maxEntries} ${Number.MAX_SAFE_INTEGER}${setAt === undefined ? '' : ` ${setAt}`}`
  /** Now on the Redis clock, in ms. */
  const redisNow = async (): Promise<number> => {
    const [seconds, micros] = (await raw.time()).map(Number)
    return seconds! * 1000 + Math.floor(micros! / 1000)
  }

  it('lowering a quota on a namespace with many entries evicts in bounded batches and ends within the limit', async () => {
    const store = open()
    const space = ns('lower')
    const total = 2 * QUOTA_EVICTION_BUDGET + 500
    await store.setQuota(space, { maxEntries: total })
    const keys = await fill(store, space, total)
    // One enforcement script, as setQuota runs it, removes at most the budget and says it is not done.
    const once = await raw.eval(
      SET_QUOTA.lua,
      1,
      quotaDefinitionsKey(space),
      ...head(space, entriesOnly(10, await redisNow())),
      space,
      String(QUOTA_EVICTION_BUDGET),
    )
    expect(once).toEqual([1, QUOTA_EVICTION_BUDGET, 1])
    expect(await store.quotaUsage(space)).toMatchObject({
      entries: total - QUOTA_EVICTION_BUDGET,
      evictions: QUOTA_EVICTION_BUDGET,
    })
    // setQuota calls it again until the quota fits: the 10 most recent keys are left.
    await store.setQuota(space, { maxEntries: 10 })
    expect((await measured(store, space)).keys.sort()).toEqual(keys.slice(-10).sort())
    expect(await store.quotaUsage(space)).toMatchObject({ entries: 10, evictions: total - 10 })
  })

  it('a quota set over more entries than one budget adopts them and evicts down to the limit', async () => {
    const store = open()
    const space = ns('adoptall')
    const total = 2 * QUOTA_EVICTION_BUDGET + 500
    const keys = await fill(store, space, total)
    await store.setQuota(space, { maxEntries: 10 })
    // Adopted keys are all equally old: any 10 of them may stay.
    const left = (await measured(store, space)).keys
    expect(left.length).toBe(10)
    for (const key of left) expect(keys).toContain(key)
    expect(await store.quotaUsage(space)).toMatchObject({ entries: 10, evictions: total - 10 })
  })

  it('a write right after the adoption of many keys evicts at most its budget, and setQuota evicts the rest', async () => {
    const writer = open()
    const space = ns('adopted')
    const total = 3 * WRITE_EVICTION_BUDGET
    const keys = await fill(writer, space, total)
    // The last step of an adoption with no eviction budget: every key counted, none evicted.
    const adopted = await raw.eval(
      ADOPT.lua,
      1,
      quotaDefinitionsKey(space),
      ...head(space, entriesOnly(10)),
      space,
      '1',
      '0',
      ...keys,
    )
    expect(adopted).toEqual([0, 1])
    expect(await writer.quotaUsage(space)).toMatchObject({ entries: total, evictions: 0 })
    // writer never set the quota: it enforces the one in Redis, within one write's budget.
    const fresh = user(space, 'fresh')
    await writer.set(fresh, filled(10))
    expect(await writer.quotaUsage(space)).toMatchObject({
      entries: total + 1 - WRITE_EVICTION_BUDGET,
      evictions: WRITE_EVICTION_BUDGET,
    })
    await open().setQuota(space, { maxEntries: 10 })
    const left = (await measured(writer, space)).keys
    expect(left.length).toBe(10)
    expect(left).toContain(fresh)
    expect(await writer.quotaUsage(space)).toMatchObject({ entries: 10, evictions: total + 1 - 10 })
  })

  it('quotaUsage drops expired keys in bounded batches and still reports none of them', async () => {
    const store = open()
    const space = ns('expired')
    const total = QUOTA_EVICTION_BUDGET + 200
    await store.setQuota(space, { maxEntries: 10 * total })
    await fill(store, space, total, 300)
    const live = user(space, 'live')
    await store.set(live, filled(10))
    await sleep(400)
    const once = await raw.eval(
      QUOTA_USAGE.lua,
      1,
      quotaDefinitionsKey(space),
      ...head(space, entriesOnly(10 * total)),
      space,
    )
    // One call drops one budget of them and says more are left; quotaUsage goes on until none is.
    expect(once).toEqual([201, expect.any(Number), 0, 1])
    expect(await store.quotaUsage(space)).toEqual({
      entries: 1,
      bytes: live.length + 10,
      evictions: 0,
    })
  })

  it('refuses an increment whose result is larger than the quota, and leaves the counter and the other keys', async () => {
    root = `q${randomBytes(3).toString('hex')}` // short keys, so that two entries fit
    const store = open()
    const space = ns('n')
    const [counter, other] = [user(space, 'c'), user(space, 'o')]
    expect(other.length).toBeLessThan(16)
    // Room for the counter at 3 characters and the other key, empty.
    await store.setQuota(space, { maxBytes: counter.length + 3 + other.length })
    await store.set(other, new Uint8Array(0))
    expect(await store.increment(counter, 0.1, jsonCodec)).toBe(0.1)
    // 0.1 + 0.2 is 0.30000000000000004: 19 characters, more than the whole quota holds.
    await expect(store.increment(counter, 0.2, jsonCodec)).rejects.toMatchObject({
      code: 'E_VALUE_TOO_LARGE',
    })
    expect(new TextDecoder().decode(bytesOf(await store.get(counter)))).toBe('0.1')
    expect(bytesOf(await store.get(other))).toEqual(new Uint8Array(0))
    expect(await store.quotaUsage(space)).toEqual({
      entries: 2,
      bytes: counter.length + 3 + other.length,
      evictions: 0,
    })
  })

  it('the quota set last wins: over an older definition still in Redis, and on a replica that set an older one', async () => {
    const [a, b] = [open(), open()]
    const space = ns('last')
    const defs = quotaDefinitionsKey(space)
    await a.setQuota(space, { maxEntries: 100 })
    await b.setQuota(space, { maxEntries: 5 })
    // An older definition in Redis (as before b's registration lands) gives way to b's own.
    await raw.hset(defs, space, entriesOnly(100))
    await raw.hset(`${defs}:${space}:stat`, 'set', '1')
    for (let i = 0; i < 8; i++) await b.set(user(space, `b${i}`), filled(10))
    expect((await measured(b, space)).entries).toBe(5)
    expect(await raw.hget(defs, space)).toMatch(/^5 \d+$/)
    // a set its quota before b did: its writes are held to b's.
    for (let i = 0; i < 8; i++) await a.set(user(space, `a${i}`), filled(10))
    expect((await measured(a, space)).entries).toBe(5)
    expect(await raw.hget(defs, space)).toMatch(/^5 \d+$/)
  })

  it('refuses an entry larger than the quota with E_VALUE_TOO_LARGE and writes nothing', async () => {
    const store = open()
    const space = ns('small')
    await store.setQuota(space, { maxBytes: 1_000 })
    const key = user(space, 'big')
    await expect(store.set(key, filled(2_000))).rejects.toMatchObject({ code: 'E_VALUE_TOO_LARGE' })
    await expect(store.setMany([{ key, value: filled(2_000) }])).rejects.toMatchObject({
      code: 'E_VALUE_TOO_LARGE',
    })
    expect(await store.get(key)).toBeUndefined()
    expect(await store.quotaUsage(space)).toEqual({ entries: 0, bytes: 0, evictions: 0 })
  })

  it('a read makes a key the most recently used for every replica: the cold keys go first', async () => {
    const [a, b] = [open(), open()]
    const space = ns('lru')
    await a.setQuota(space, { maxEntries: 10 })
    // b never set the quota, and connected before it existed: it learns of it from the directory
    // it reads every 5 s. Until then its reads are plain HMGETs; wait until a read of b moves it.
    await b.connect()
    const hot = user(space, 'hot')
    await a.set(hot, filled(10))
    const lru = `{${root}.lru}#quotas:${space}:lru`
    const before = await raw.zscore(lru, hot)
    expect(before).not.toBeNull()
    await vi.waitFor(
      async () => {
        await b.get(hot)
        expect(await raw.zscore(lru, hot)).not.toBe(before)
      },
      { timeout: 15_000, interval: 50 },
    )
    for (let i = 0; i < 100; i++) {
      await a.set(user(space, `cold${i}`), filled(10))
      if (i % 5 === 0) {
        await sleep(0)
        expect(bytesOf(await b.get(hot))).toEqual(filled(10))
      }
    }
    const left = (await measured(a, space)).keys
    expect(left).toContain(hot)
    expect(left.length).toBe(10)
  }, 30_000)

  describe('store-wide limit (a private server)', () => {
    let server: ServerHandle | undefined

    afterEach(async () => {
      await server?.stop({ graceMs: 1000 })
      server = undefined
    })

    it('a quota on the empty prefix caps every user key of the database, and leaves system keys alone', async () => {
      server = await startRedisServer()
      const client = new Redis(server.url)
      try {
        const [a, b] = [open(server.url), open(server.url)]
        await a.setQuota('', { maxBytes: 20_000 })
        const lock = systemKey(ns('t1'), KeyKind.lock, 'job', MAX_KEY_BYTES)
        await a.set(lock, filled(10_000, 2))
        await Promise.all(
          Array.from({ length: 60 }, (_, i) =>
            (i % 2 === 0 ? a : b).set(user(ns(`t${i % 3}`, 'sub'), `k${i}`), filled(1_000)),
          ),
        )
        const actual = await measured(a, '', client)
        expect(actual.bytes).toBeLessThanOrEqual(20_000)
        expect(await b.quotaUsage('')).toEqual({
          entries: actual.entries,
          bytes: actual.bytes,
          evictions: 60 - actual.entries,
        })
        expect(bytesOf(await a.get(lock))).toEqual(filled(10_000, 2))
        // A namespace quota inside the store-wide one: both hold.
        await b.setQuota(ns('t0'), { maxEntries: 2 })
        for (let i = 0; i < 5; i++) await b.set(user(ns('t0'), `n${i}`), filled(1_000))
        expect((await measured(a, ns('t0'), client)).entries).toBe(2)
        expect((await measured(a, '', client)).bytes).toBeLessThanOrEqual(20_000)
      } finally {
        await client.quit()
      }
    }, 30_000)
  })
})
