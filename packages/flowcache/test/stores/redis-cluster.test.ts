import { randomBytes } from 'node:crypto'
import { Cluster } from 'ioredis'
import * as vitest from 'vitest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

import { childPrefix, KeyKind, rootPrefix, systemKey, userKey } from '../../src/core/keyspace.js'
import { redisStore, type RedisStore } from '../../src/stores/redis/index.js'
import { runStoreContract } from '../../src/testing/index.js'
import { startRedisCluster, type RedisClusterHandle } from '../helpers/servers.js'

let cluster: RedisClusterHandle | undefined

beforeAll(async () => {
  cluster = await startRedisCluster({ nodes: 3 })
}, 60_000)

afterAll(async () => {
  await cluster?.stop()
})

function seedNodes(): Array<{ host: string; port: number }> {
  if (cluster === undefined) throw new Error('the Redis Cluster was not started')
  return [...cluster.nodes]
}

runStoreContract(vitest, {
  name: 'redis cluster',
  clock: 'real',
  createStore: () => redisStore({ cluster: seedNodes() }),
})

const utf8 = new TextEncoder()
const bytes = (text: string): Uint8Array => utf8.encode(text)
const text = (value: Uint8Array | undefined): string | undefined =>
  value === undefined ? undefined : Buffer.from(value).toString('utf8')

async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = []
  for await (const item of iterable) out.push(item)
  return out.sort()
}

describe('redis store on a Redis Cluster', () => {
  let raw: Cluster
  let store: RedisStore
  let root: string

  beforeAll(async () => {
    raw = new Cluster(seedNodes())
    await raw.ping()
  })

  afterAll(async () => {
    await raw?.quit()
  })

  vitest.beforeEach(() => {
    root = `t${randomBytes(8).toString('hex')}`
    store = redisStore({ cluster: seedNodes() })
  })

  vitest.afterEach(async () => {
    await store.deleteMany(await collect(store.list(rootPrefix(root))))
    await store.close()
  })

  const ns = (...names: string[]): string =>
    names.reduce((prefix, name) => childPrefix(prefix, name, 1024), rootPrefix(root))
  const keySlot = async (redisKey: string): Promise<number> =>
    Number(await raw.call('cluster', 'keyslot', redisKey))
  /** `host:port` of the master that owns the slot of a Redis key. */
  const ownerOf = async (redisKey: string): Promise<string> => {
    const owner = raw.slots[await keySlot(redisKey)]?.[0]
    if (owner === undefined) throw new Error(`no owner known for ${redisKey}`)
    return owner
  }
  /** Redis key of a store key, as the store writes it (the first two tokens are the hash tag). */
  const redisKeyOf = (storeKey: string): string => {
    const [first = '', second = '', ...rest] = storeKey.split('.')
    return rest.length === 0 ? `{${first}}.${second}` : `{${first}.${second}}.${rest.join('.')}`
  }

  /** One first-level namespace per master node, so that batches must be split by slot. */
  async function namespacesOnEveryNode(): Promise<string[]> {
    const byOwner = new Map<string, string>()
    for (let i = 0; byOwner.size < 3 && i < 200; i++) {
      const prefix = ns(`tenant:${i}`)
      const owner = await ownerOf(redisKeyOf(userKey(prefix, 'probe', 1024)))
      if (!byOwner.has(owner)) byOwner.set(owner, prefix)
    }
    expect(byOwner.size).toBe(3)
    return [...byOwner.values()]
  }

  it('puts every key of a top-level namespace, child namespaces and system keys included, in one slot', async () => {
    const tenant = ns('tenant:acme')
    const keys = [
      userKey(tenant, 'a', 1024),
      userKey(tenant, 'order:42', 1024),
      userKey(childPrefix(tenant, 'flow:orders', 1024), 'x', 1024),
      userKey(childPrefix(childPrefix(tenant, 'flow:orders', 1024), 'deep', 1024), 'y', 1024),
      systemKey(tenant, KeyKind.lock, 'job', 1024),
    ]
    await store.setMany(keys.map((key) => ({ key, value: bytes(key) })))
    const slots = new Set(await Promise.all(keys.map((key) => keySlot(redisKeyOf(key)))))
    expect(slots.size).toBe(1)
    // The keys are really stored under those names: each reads back through a raw client.
    for (const key of keys) expect(await raw.hget(redisKeyOf(key), 'v')).toBe(key)
    // Its revision counter lives in the same slot, which the write scripts rely on.
    expect(await keySlot(`{${root}.tenant=3Aacme}#revision`)).toBe([...slots][0])
  })

  it('getMany, setMany, deleteMany, list and clear work across namespaces on different nodes', async () => {
    const prefixes = await namespacesOnEveryNode()
    const keys = prefixes.flatMap((prefix) => [
      userKey(prefix, 'a', 1024),
      userKey(prefix, 'b', 1024),
      userKey(childPrefix(prefix, 'child', 1024), 'c', 1024),
    ])
    const locks = prefixes.map((prefix) => systemKey(prefix, KeyKind.lock, 'job', 1024))
    const revisions = await store.setMany(
      [...keys, ...locks].map((key) => ({ key, value: bytes(key) })),
    )
    expect(new Set(revisions).size).toBe(keys.length + locks.length)
    const owners = new Set(await Promise.all(keys.map((key) => ownerOf(redisKeyOf(key)))))
    expect(owners.size).toBe(3)

    const entries = await store.getMany([...keys, userKey(ns('missing'), 'x', 1024)])
    expect(entries.map((entry) => text(entry?.value))).toEqual([...keys, undefined])
    expect(entries.slice(0, keys.length).map((entry) => entry?.revision)).toEqual(
      revisions.slice(0, keys.length),
    )

    // The root prefix spans every node; a first-level prefix is one slot.
    expect(await collect(store.list(rootPrefix(root)))).toEqual([...keys, ...locks].sort())
    expect(await collect(store.list(prefixes[0] as string))).toEqual(
      [...keys.slice(0, 3), locks[0] as string].sort(),
    )

    expect(await store.deleteMany([keys[0] as string, keys[3] as string, keys[6] as string])).toBe(
      3,
    )
    expect(await store.clear(rootPrefix(root))).toBe(keys.length - 3)
    expect(await collect(store.list(rootPrefix(root)))).toEqual([...locks].sort())
  })

  it('a batch in one namespace runs as one script per slot, also past the batch size', async () => {
    const tenant = ns('tenant:big')
    const keys = Array.from({ length: 1200 }, (_, i) => userKey(tenant, `k${i}`, 1024))
    await store.setMany(keys.map((key, i) => ({ key, value: bytes(String(i)) })))
    const entries = await store.getMany(keys)
    expect(entries.map((entry) => text(entry?.value))).toEqual(keys.map((_, i) => String(i)))
    expect(await store.clear(tenant)).toBe(keys.length)
  })

  it('increment, create, compareAndSet and fenced delete work on keys of every node', async () => {
    const codec = {
      name: 'json',
      encode: (value: unknown) => bytes(JSON.stringify(value)),
      decode: (data: Uint8Array) => JSON.parse(Buffer.from(data).toString('utf8')) as unknown,
      encodedSize: (value: unknown) => bytes(JSON.stringify(value)).byteLength,
    }
    for (const prefix of await namespacesOnEveryNode()) {
      const counter = userKey(prefix, 'n', 1024)
      expect(await store.increment(counter, 2, codec)).toBe(2)
      expect(await store.increment(counter, 3, codec)).toBe(5)
      const lock = systemKey(prefix, KeyKind.lock, 'job', 1024)
      const revision = await store.create(lock, bytes('holder'))
      expect(revision).toBeDefined()
      expect(await store.create(lock, bytes('other'))).toBeUndefined()
      const next = await store.compareAndSet(lock, bytes('holder-2'), revision as string)
      expect(next).toBeDefined()
      expect(await store.delete(lock, { expected: revision as string })).toBe(false)
      expect(await store.delete(lock, { expected: next as string })).toBe(true)
    }
  })
})
