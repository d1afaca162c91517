import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import * as vitest from 'vitest'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'

import { createCache } from '../../src/core/cache.js'
import { jsonCodec } from '../../src/core/codec.js'
import { childPrefix, KeyKind, rootPrefix, systemKey, userKey } from '../../src/core/keyspace.js'
import { DecodeError } from '../../src/errors.js'
import { redisStore, type RedisStore } from '../../src/stores/redis/index.js'
import { fromRedisKey, scanPattern, toRedisKey } from '../../src/stores/redis/keys.js'
import { runStoreContract } from '../../src/testing/index.js'
import type { Codec } from '../../src/types/codec.js'
import type { Store } from '../../src/types/store.js'
import { getFreePort, startRedisServer, type ServerHandle } from '../helpers/servers.js'
import { redisUrl } from '../helpers/services.js'

runStoreContract(vitest, {
  name: 'redis',
  clock: 'real',
  createStore: () => redisStore({ url: redisUrl(), history: 4 }),
})

const utf8 = new TextEncoder()
const bytes = (text: string): Uint8Array => utf8.encode(text)
const MAX_KEY_BYTES = 1024

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = []
  for await (const item of iterable) out.push(item)
  return out.sort()
}

/** The error code a promise rejects with, and how long it took to settle. */
async function failure(run: () => Promise<unknown>): Promise<{ code: unknown; ms: number }> {
  const started = performance.now()
  try {
    await run()
  } catch (error) {
    return { code: (error as { code?: unknown }).code, ms: performance.now() - started }
  }
  throw new Error('expected the call to reject')
}

/** Every store call once, so that an outage test covers them all. */
function everyCall(store: Store, prefix: string): Record<string, () => Promise<unknown>> {
  const key = userKey(prefix, 'x', MAX_KEY_BYTES)
  return {
    get: () => store.get(key),
    getMany: () => store.getMany([key, userKey(prefix, 'y', MAX_KEY_BYTES)]),
    set: () => store.set(key, bytes('v')),
    setMany: () => store.setMany([{ key, value: bytes('v') }]),
    create: () => store.create(key, bytes('v')),
    compareAndSet: () => store.compareAndSet(key, bytes('v'), '1'),
    delete: () => store.delete(key),
    fencedDelete: () => store.delete(key, { expected: '1' }),
    deleteMany: () => store.deleteMany([key]),
    increment: () => store.increment!(key, 1, jsonCodec),
    list: () => collect(store.list(prefix)),
    clear: () => store.clear(prefix),
  }
}

describe('redis store', () => {
  let raw: Redis
  let root: string
  const stores: RedisStore[] = []
  const open = (options: Parameters<typeof redisStore>[0] = {}): RedisStore => {
    const store = redisStore({ url: redisUrl(), ...options })
    stores.push(store)
    return store
  }
  const ns = (...names: string[]): string =>
    names.reduce((prefix, name) => childPrefix(prefix, name, MAX_KEY_BYTES), rootPrefix(root))

  beforeAll(async () => {
    raw = new Redis(redisUrl())
    await raw.ping()
  })

  afterAll(async () => {
    await raw.quit()
  })

  vitest.beforeEach(() => {
    root = `t${randomBytes(8).toString('hex')}`
  })

  afterEach(async () => {
    // Everything a test wrote is under its root's hash tags, revision counters included.
    let cursor = '0'
    do {
      const [next, keys] = await raw.scan(cursor, 'MATCH', `{${root}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await raw.unlink(...keys)
    } while (cursor !== '0')
    await Promise.all(stores.splice(0).map((store) => store.close()))
  })

  describe('layout in Redis', () => {
    it('stores an entry as a hash whose v field is the JSON text of the value, readable with HGET', async () => {
      const cache = createCache({ store: open(), prefix: root, fallback: 'fail' })
      const orders = cache.namespace('tenant:acme').namespace('flow:orders')
      await orders.set('order:42', { total: 12.5, items: ['a'] }, '1m')
      const redisKey = `{${root}.tenant=3Aacme}.flow=3Aorders.k/order=3A42`
      expect(await raw.type(redisKey)).toBe('hash')
      expect(await raw.hget(redisKey, 'v')).toBe('{"total":12.5,"items":["a"]}')
      const entry = await orders.entry('order:42')
      expect(await raw.hget(redisKey, 'r')).toBe(entry?.revision)
      // The deadline is both a readable field and the key's native expiry.
      const deadline = Number(await raw.hget(redisKey, 'x'))
      expect(entry?.expiresAt).toBe(deadline)
      const pttl = await raw.pttl(redisKey)
      expect(pttl).toBeGreaterThan(55_000)
      expect(pttl).toBeLessThanOrEqual(60_000)
      await cache.close()
    })

    it('maps store keys to Redis keys tagged with the root and first namespace, reversibly', () => {
      const cases: Array<[string, string]> = [
        [
          'fc.tenant=3Aacme.flow=3Aorders.k/order=3A42',
          '{fc.tenant=3Aacme}.flow=3Aorders.k/order=3A42',
        ],
        ['fc.tenant=3Aacme.k/x', '{fc.tenant=3Aacme}.k/x'],
        ['fc.k/x', '{fc}.k/x'],
        ['fc.l/job', '{fc}.l/job'],
      ]
      for (const [storeKey, redisKey] of cases) {
        expect(toRedisKey(storeKey)).toBe(redisKey)
        expect(fromRedisKey(redisKey)).toBe(storeKey)
      }
      // Counters, keys of other applications and non-canonical forms are not ours.
      for (const foreign of [
        '{fc.a}#revision',
        'fc.a.k/x',
        '{fc}.a.k/x',
        '{fc.a.b}.k/x',
        '{}',
        'x',
      ]) {
        expect(fromRedisKey(foreign)).toBeUndefined()
      }
    })

    it('turns store-key prefixes into SCAN patterns that match every key under them', () => {
      const keys = [
        'r.k/x',
        'r.k/xy',
        'r.l/x',
        'r.a.k/x',
        'r.ab.k/x',
        'r.a.b.k/x',
        'r.a.b.l/x',
        'r.k.k/x',
        'rr.k/x',
      ]
      // Redis glob semantics for what the patterns use: `*`, `[.}]` and `\` escapes.
      const matches = (pattern: string, key: string): boolean => {
        const source = pattern.replace(
          /\\(.)|\[\.\}\]|\*|[.*+?^${}()|[\]\\/]/g,
          (token, escaped: string | undefined) => {
            if (escaped !== undefined) return `\\${escaped}`
            if (token === '[.}]') return '[.}]'
            if (token === '*') return '.*'
            return `\\${token}`
          },
        )
        return new RegExp(`^${source}$`).test(key)
      }
      for (const prefix of [
        '',
        'r',
        'r.',
        'r.k',
        'r.k/',
        'r.k/x',
        'r.a',
        'r.a.',
        'r.a.b.',
        'r.a.b.k/',
      ]) {
        const pattern = scanPattern(prefix)
        for (const key of keys) {
          if (key.startsWith(prefix)) {
            expect(matches(pattern, toRedisKey(key)), `${pattern} must match ${key}`).toBe(true)
          }
        }
      }
      expect(scanPattern('r.a.b.')).toBe('{r.a}.b.*')
      expect(scanPattern('r.k/x')).toBe('{r}.k/x*')
      expect(() => scanPattern('r.{a}')).toThrow(/prefix/)
    })

    it('rejects keys outside the keyspace alphabet, which would break the mapping', async () => {
      const store = open()
      await expect(store.get('fc.{x}.k/a')).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' })
      await expect(store.set('', bytes('v'))).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' })
      await expect(store.set('fc.k/a b', bytes('v'))).rejects.toMatchObject({
        code: 'E_INVALID_ARGUMENT',
      })
    })

    it('reads a keyspace key that holds another Redis type as E_DECODE, not as a miss', async () => {
      const store = open()
      const key = userKey(ns(), 'foreign', MAX_KEY_BYTES)
      await raw.set(toRedisKey(key), 'written by something else')
      await expect(store.get(key)).rejects.toBeInstanceOf(DecodeError)
      await expect(store.getMany([key])).rejects.toMatchObject({ code: 'E_DECODE' })
      await raw.del(toRedisKey(key))
      // A hash with a value but no revision was not written by flowcache either.
      await raw.hset(toRedisKey(key), 'v', '1')
      await expect(store.get(key)).rejects.toMatchObject({ code: 'E_DECODE' })
    })
  })

  describe('revisions', () => {
    it('never repeat for a key across deletes and re-creates, even when the counter is lost', async () => {
      const store = open()
      const key = userKey(ns('locks'), 'job', MAX_KEY_BYTES)
      const seen: bigint[] = []
      for (let i = 0; i < 20; i++) {
        const revision = await store.create(key, bytes(`holder-${i}`))
        expect(revision).toBeDefined()
        seen.push(BigInt(revision as string))
        expect(await store.delete(key, { expected: revision as string })).toBe(true)
      }
      // As after a restart without persistence, or a FLUSHALL: the counter starts again.
      expect(await raw.del(`{${root}.locks}#revision`)).toBe(1)
      const after = await store.create(key, bytes('after-loss'))
      seen.push(BigInt(after as string))
      const ascending = [...seen].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
      expect(new Set(seen).size).toBe(seen.length)
      expect(seen).toEqual(ascending)
    })

    it('keep a revision counter per top-level namespace that expires when idle', async () => {
      const store = open()
      await store.set(userKey(ns('a', 'child'), 'x', MAX_KEY_BYTES), bytes('v'))
      const counter = `{${root}.a}#revision`
      expect(await raw.type(counter)).toBe('string')
      const ttl = await raw.pttl(counter)
      expect(ttl).toBeGreaterThan(0)
      expect(ttl).toBeLessThanOrEqual(3_600_000)
      // Counters are not entries: never listed, never cleared.
      expect(await collect(store.list(rootPrefix(root)))).toEqual([
        userKey(ns('a', 'child'), 'x', MAX_KEY_BYTES),
      ])
    })
  })

  describe('clear', () => {
    it('never touches other prefixes, system keys, counters or keys of other applications', async () => {
      const store = open()
      const [a, ab] = [ns('a'), ns('ab')]
      const cleared = [
        userKey(a, 'x', MAX_KEY_BYTES),
        userKey(childPrefix(a, 'child', MAX_KEY_BYTES), 'y', MAX_KEY_BYTES),
      ]
      const kept = [
        userKey(ab, 'x', MAX_KEY_BYTES),
        userKey(ns(), 'x', MAX_KEY_BYTES),
        systemKey(a, KeyKind.lock, 'job', MAX_KEY_BYTES),
        systemKey(a, KeyKind.lease, 'leader', MAX_KEY_BYTES),
      ]
      await store.setMany([...cleared, ...kept].map((key) => ({ key, value: bytes(key) })))
      const foreign = [`${root}.a.k/x`, `{${root}.a}:other`, `{${root}.a}.k/x:not-canonical`]
      for (const key of foreign) await raw.set(key, 'foreign')
      expect(await store.clear(a)).toBe(cleared.length)
      expect(await store.getMany(cleared)).toEqual([undefined, undefined])
      for (const key of kept)
        expect(Buffer.from((await store.get(key))!.value).toString()).toBe(key)
      for (const key of foreign) expect(await raw.get(key)).toBe('foreign')
      expect(await raw.exists(`{${root}.a}#revision`)).toBe(1)
      await raw.unlink(`${root}.a.k/x`)
    })

    it('clears, lists and batches thousands of keys', async () => {
      const store = open()
      const prefix = ns('many')
      const keys = Array.from({ length: 2500 }, (_, i) => userKey(prefix, `k${i}`, MAX_KEY_BYTES))
      await store.setMany(keys.map((key) => ({ key, value: bytes('v'), ttlMs: 60_000 })))
      expect((await store.getMany(keys)).every((entry) => entry !== undefined)).toBe(true)
      expect(await collect(store.list(prefix))).toEqual([...keys].sort())
      expect((await collect(store.list(prefix, { limit: 10 }))).length).toBe(10)
      expect(await store.clear(prefix)).toBe(keys.length)
      expect(await store.deleteMany(keys)).toBe(0)
    })
  })

  describe('increment', () => {
    it('adds in Lua with the precision of JavaScript numbers', async () => {
      const store = open()
      const key = userKey(ns(), 'n', MAX_KEY_BYTES)
      expect(await store.increment(key, 0.1, jsonCodec)).toBe(0.1)
      expect(await store.increment(key, 0.2, jsonCodec)).toBe(0.1 + 0.2)
      expect(await raw.hget(toRedisKey(key), 'v')).toBe(JSON.stringify(0.1 + 0.2))
      await store.set(key, jsonCodec.encode(2 ** 53 - 2))
      expect(await store.increment(key, 1, jsonCodec)).toBe(2 ** 53 - 1)
      expect(await raw.hget(toRedisKey(key), 'v')).toBe('9007199254740991')
      await store.set(key, jsonCodec.encode(1e300))
      expect(await store.increment(key, 1e300, jsonCodec)).toBe(2e300)
      expect(jsonCodec.decode((await store.get(key))!.value)).toBe(2e300)
      await store.set(key, jsonCodec.encode(-5))
      expect(await store.increment(key, 5, jsonCodec)).toBe(0)
      expect(await raw.hget(toRedisKey(key), 'v')).toBe('0')
    })

    it('leaves numbers JSON cannot write (NaN, -0, overflow) to the codec, like the memory store', async () => {
      const store = open()
      const key = userKey(ns(), 'n', MAX_KEY_BYTES)
      await store.set(key, jsonCodec.encode(Number.NaN))
      expect(await store.increment(key, 1, jsonCodec)).toBeNaN()
      await store.set(key, jsonCodec.encode(-0))
      expect(await store.increment(key, 2, jsonCodec)).toBe(2)
      await store.set(key, jsonCodec.encode(Number.MAX_VALUE))
      expect(await store.increment(key, Number.MAX_VALUE, jsonCodec)).toBe(Number.POSITIVE_INFINITY)
      expect(jsonCodec.decode((await store.get(key))!.value)).toBe(Number.POSITIVE_INFINITY)
      await store.set(key, jsonCodec.encode({ n: 1 }))
      await expect(store.increment(key, 1, jsonCodec)).rejects.toMatchObject({
        code: 'E_NOT_A_NUMBER',
      })
    })

    it('increments values of a codec Lua cannot read by compare-and-set, keeping the TTL', async () => {
      // A codec that writes numbers as "n:<digits>": not JSON, so Lua must not touch the bytes.
      const prefixed: Codec = {
        name: 'prefixed',
        encode: (value) => bytes(typeof value === 'number' ? `n:${value}` : `s:${String(value)}`),
        decode: (data) => {
          const text = Buffer.from(data).toString('utf8')
          return text.startsWith('n:') ? Number(text.slice(2)) : text.slice(2)
        },
        encodedSize: (value) => prefixed.encode(value).byteLength,
      }
      const store = open()
      const key = userKey(ns(), 'n', MAX_KEY_BYTES)
      expect(await store.increment(key, 2, prefixed, { ttlMs: 60_000 })).toBe(2)
      const deadline = (await store.get(key))?.expiresAt
      expect(await store.increment(key, 3, prefixed)).toBe(5)
      const entry = await store.get(key)
      expect(Buffer.from(entry!.value).toString()).toBe('n:5')
      expect(entry?.expiresAt).toBe(deadline)
      await store.set(key, prefixed.encode('text'))
      await expect(store.increment(key, 1, prefixed)).rejects.toMatchObject({
        code: 'E_NOT_A_NUMBER',
      })
    })
  })

  describe('under the Cache API', () => {
    it('round-trips values of every type and the operations built on the store', async () => {
      const cache = createCache({ store: open(), prefix: root, fallback: 'fail' })
      await cache.ready()
      expect(cache.health().status).toBe('ok')
      const value = {
        when: new Date('2024-05-01T10:00:00.000Z'),
        map: new Map<unknown, unknown>([
          ['a', 1],
          [2, { b: [1n] }],
        ]),
        big: 12345678901234567890n,
        set: new Set(['x']),
        bytes: new Uint8Array([1, 2, 3]),
        nothing: null,
        nested: { list: [1, 'two', { three: 3 }] },
      }
      const flows = cache.namespace('flows')
      expect(await flows.set('typed', value)).toBe(true)
      expect(await flows.get('typed')).toEqual(value)
      expect(await flows.get('missing', 'fallback')).toBe('fallback')

      expect(await flows.add('event:1', true, '1m')).toBe(true)
      expect(await flows.add('event:1', true, '1m')).toBe(false)
      expect(await flows.increment('count')).toBe(1)
      expect(await flows.increment('count', 41)).toBe(42)

      await flows.setMany([
        { key: 'a', value: 1 },
        { key: 'b', value: 2n, ttl: '1m' },
      ])
      expect(await flows.getMany(['a', 'b', 'c'])).toEqual([1, 2n, undefined])
      expect((await flows.keys()).sort()).toEqual(['a', 'b', 'count', 'event:1', 'typed'])
      expect(await flows.ttl('typed')).toBeNull()
      const ttl = await flows.ttl('b')
      expect(ttl).toBeGreaterThan(55_000)
      expect(ttl).toBeLessThanOrEqual(60_000)
      expect(await flows.ttl('c')).toBeUndefined()

      const entry = await flows.entry('a')
      const written = await flows.compareAndSet('a', 10, entry!.revision)
      expect(written).toEqual(expect.any(String))
      expect(written).not.toBe(entry!.revision)
      expect(await flows.compareAndSet('a', 11, entry!.revision)).toBe(false)
      expect(await flows.get('a')).toBe(10)

      await cache.set('outside', 'kept')
      expect(await flows.clear()).toBe(5)
      expect(await flows.keys()).toEqual([])
      expect(await cache.get('outside')).toBe('kept')
      await cache.close()
    })
  })

  describe('connection handling', () => {
    it('connect() resolves against a live server and health() reports ok', async () => {
      const store = open()
      await store.connect()
      expect(store.health().status).toBe('ok')
    })

    it('connect() and every call reject with E_STORE_UNAVAILABLE when nothing listens', async () => {
      const port = await getFreePort()
      const store = open({ url: `redis://127.0.0.1:${port}`, commandTimeoutMs: 500 })
      const connect = await failure(() => store.connect())
      expect(connect.code).toBe('E_STORE_UNAVAILABLE')
      expect(connect.ms).toBeLessThan(2000)
      for (const [name, call] of Object.entries(everyCall(store, ns()))) {
        const result = await failure(call)
        expect(result.code, name).toBe('E_STORE_UNAVAILABLE')
        expect(result.ms, name).toBeLessThan(2000)
      }
      expect(store.health()).toMatchObject({ status: 'down' })
    })

    it('does not close a client it was given, unless told to', async () => {
      const client = new Redis(redisUrl(), { enableOfflineQueue: false })
      await new Promise((resolve) => client.once('ready', resolve))
      const borrowed = redisStore({ client })
      await borrowed.set(userKey(ns(), 'x', MAX_KEY_BYTES), bytes('v'))
      await borrowed.close()
      await borrowed.close()
      expect(await client.ping()).toBe('PONG')
      await expect(borrowed.get(userKey(ns(), 'x', MAX_KEY_BYTES))).rejects.toMatchObject({
        code: 'E_CLOSED',
      })
      const owned = redisStore({ client, closeClient: true })
      await owned.close()
      expect(client.status).toBe('end')
    })

    it('rejects conflicting or unsupported options', () => {
      expect(() => redisStore({ url: redisUrl(), cluster: [{ port: 1 }] })).toThrow(/at most one/)
      expect(() => redisStore({ url: redisUrl(), redisOptions: { keyPrefix: 'app:' } })).toThrow(
        /keyPrefix/,
      )
      expect(() => redisStore({ url: redisUrl(), commandTimeoutMs: 0 })).toThrow(/commandTimeoutMs/)
    })
  })

  describe('when Redis goes down (a private server)', () => {
    let server: ServerHandle | undefined
    const COMMAND_TIMEOUT_MS = 500

    afterEach(async () => {
      await server?.stop({ graceMs: 1000 })
      server = undefined
    })

    /** Runs every call against the store and returns the slowest rejection, in ms. */
    async function everyCallFails(store: Store, prefix: string): Promise<number> {
      let slowest = 0
      for (const [name, call] of Object.entries(everyCall(store, prefix))) {
        const result = await failure(call)
        expect(result.code, name).toBe('E_STORE_UNAVAILABLE')
        expect(result.ms, name).toBeLessThan(2000)
        slowest = Math.max(slowest, result.ms)
      }
      return slowest
    }

    async function untilAnswering(store: Store, key: string): Promise<number> {
      const started = performance.now()
      for (;;) {
        try {
          await store.get(key)
          return performance.now() - started
        } catch (error) {
          if (performance.now() - started > 10_000) throw error
          await sleep(50)
        }
      }
    }

    it('every call rejects with E_STORE_UNAVAILABLE while it is down, and works again after a restart on the same port', async () => {
      server = await startRedisServer()
      const store = open({ url: server.url, commandTimeoutMs: COMMAND_TIMEOUT_MS })
      const prefix = ns()
      const key = userKey(prefix, 'x', MAX_KEY_BYTES)
      await store.set(key, bytes('before'))

      const port = server.port
      server.kill('SIGKILL')
      await server.exited
      await server.stop()
      const slowest = await everyCallFails(store, prefix)
      console.log(
        `redis killed: slowest rejection ${slowest.toFixed(1)} ms (commandTimeoutMs ${COMMAND_TIMEOUT_MS})`,
      )
      // ioredis notices the closed socket an event-loop turn or so after the calls above failed.
      await vi.waitFor(() => expect(store.health().status).toBe('down'))

      server = await startRedisServer({ port })
      const recovery = await untilAnswering(store, key)
      console.log(`redis restarted: the same store answered again after ${recovery.toFixed(0)} ms`)
      // The restarted server has no data (no persistence); the store works on it as it is.
      expect(await store.get(key)).toBeUndefined()
      const revision = await store.set(key, bytes('after'))
      expect((await store.get(key))?.revision).toBe(revision)
      expect(store.health().status).toBe('ok')
    }, 30_000)

    it('every call rejects within the command timeout while the server is paused, and nothing queued runs after it resumes', async () => {
      server = await startRedisServer()
      const store = open({ url: server.url, commandTimeoutMs: COMMAND_TIMEOUT_MS })
      const prefix = ns()
      const counter = userKey(prefix, 'counter', MAX_KEY_BYTES)
      expect(await store.increment(counter, 1, jsonCodec)).toBe(1)

      server.kill('SIGSTOP')
      const slowest = await everyCallFails(store, prefix)
      console.log(
        `redis paused: slowest rejection ${slowest.toFixed(1)} ms (commandTimeoutMs ${COMMAND_TIMEOUT_MS})`,
      )
      // A call may wait for the command timeout, never much longer.
      expect(slowest).toBeLessThan(COMMAND_TIMEOUT_MS + 250)
      server.kill('SIGCONT')

      await untilAnswering(store, counter)
      // The increment that timed out was sent before the pause was noticed, so Redis may still run
      // it once; no client-side queue may replay it (or anything else) on top.
      const after = jsonCodec.decode((await store.get(counter))!.value) as number
      expect(after).toBeGreaterThanOrEqual(1)
      expect(after).toBeLessThanOrEqual(2)
    }, 30_000)
  })
})
