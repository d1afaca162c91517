import { mkdtempSync, openSync, closeSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import * as vitest from 'vitest'

import { createCache } from '../../src/core/cache.js'
import { ManualClock } from '../../src/core/clock.js'
import { KeyKind, rootPrefix, childPrefix, systemKey, userKey } from '../../src/core/keyspace.js'
import {
  ClosedError,
  InvalidArgumentError,
  StoreUnavailableError,
  ValueTooLargeError,
} from '../../src/errors.js'
import {
  APPLICATION_ID,
  SCHEMA_VERSION,
  sqliteStore,
  type SqliteStoreOptions,
} from '../../src/stores/sqlite/index.js'
import { runStoreContract } from '../../src/testing/index.js'
import type { Store } from '../../src/types/store.js'

const { afterAll, afterEach, describe, expect, it } = vitest

const root = mkdtempSync(join(tmpdir(), 'flowcache-sqlite-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

let next = 0
/** A path in a directory that does not exist yet: the store must create it. */
function freshPath(): string {
  return join(root, `db-${next++}`, 'nested', 'cache.db')
}

// ---- contract -----------------------------------------------------------------------------------

// One database file per test: the suite gives each test its own ManualClock, so the clock names
// the test. The extra stores a test opens (the cross-connection races) share its file, which is
// what makes those races run against SQLite's locking instead of being skipped.
const files = new WeakMap<object, string>()

runStoreContract(vitest, {
  name: 'sqlite',
  clock: 'manual',
  createStore: ({ clock }) => {
    const owner: object = clock ?? {}
    let path = files.get(owner)
    if (path === undefined) {
      path = freshPath()
      files.set(owner, path)
    }
    // With a version log, so the contract's history tests run and every write path logs.
    return sqliteStore({ path, clock, history: 4 })
  },
})

// ---- helpers ------------------------------------------------------------------------------------

const text = new TextEncoder()
const bytes = (value: string): Uint8Array => text.encode(value)
const decode = (value: Uint8Array | undefined): string | undefined =>
  value === undefined ? undefined : new TextDecoder().decode(value)

const ns = rootPrefix('fc')
const user = (key: string, prefix = ns): string => userKey(prefix, key, 1024)
const lock = (key: string, prefix = ns): string => systemKey(prefix, KeyKind.lock, key, 1024)

/** Stores opened by a test, closed after it even when it fails. */
const opened: Store[] = []
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close()
})

function open(options: SqliteStoreOptions): ReturnType<typeof sqliteStore> {
  const store = sqliteStore({ sweepIntervalMs: 0, ...options })
  opened.push(store)
  return store
}

async function keysOf(store: Store, prefix: string): Promise<string[]> {
  const keys: string[] = []
  for await (const key of store.list(prefix)) keys.push(key)
  return keys.sort()
}

function expectUnavailable(run: () => unknown, message: RegExp): void {
  let caught: unknown
  try {
    run()
  } catch (error) {
    caught = error
  }
  expect(caught).toBeInstanceOf(StoreUnavailableError)
  expect((caught as StoreUnavailableError).code).toBe('E_STORE_UNAVAILABLE')
  expect((caught as Error).message).toMatch(message)
}

// ---- persistence --------------------------------------------------------------------------------

describe('sqlite store: persistence', () => {
  it('keeps entries, revisions and deadlines across close and reopen, and honours TTLs by the clock', async () => {
    const path = freshPath()
    const clock = new ManualClock()
    const start = clock.now()
    const first = open({ path, clock })
    const rForever = await first.set(user('forever'), bytes('f'))
    const rShort = await first.set(user('short'), bytes('s'), { ttlMs: 60_000 })
    await first.set(user('long'), bytes('l'), { ttlMs: 600_000 })
    const rLock = await first.set(lock('job'), bytes('holder'), { ttlMs: 60_000 })
    await first.close()

    clock.set(start + 59_999)
    const second = open({ path, clock })
    const short = await second.get(user('short'))
    expect(decode(short?.value)).toBe('s')
    expect(short?.revision).toBe(rShort)
    expect(short?.expiresAt).toBe(start + 60_000)
    expect((await second.get(user('forever')))?.revision).toBe(rForever)
    expect((await second.get(lock('job')))?.revision).toBe(rLock)
    await second.close()

    // The process was down while the deadline passed: the entry is gone after the restart.
    clock.set(start + 60_000)
    const third = open({ path, clock })
    expect(await third.get(user('short'))).toBeUndefined()
    expect(await third.get(lock('job'))).toBeUndefined()
    expect(decode((await third.get(user('long')))?.value)).toBe('l')
    expect(decode((await third.get(user('forever')))?.value)).toBe('f')
    expect(await keysOf(third, ns)).toEqual([user('forever'), user('long')].sort())
    expect(await third.prune()).toBe(2)
    expect(third.stats().entries).toBe(2)
  })

  it('never hands out a revision twice, across restarts and after delete and recreate', async () => {
    const path = freshPath()
    const seen = new Set<string>()
    const key = user('aba')
    let previous: string | undefined
    for (let run = 0; run < 3; run++) {
      const store = open({ path })
      if (previous !== undefined) {
        expect(await store.compareAndSet(key, bytes('x'), previous)).toBeUndefined()
        expect(await store.delete(key, { expected: previous })).toBe(false)
      }
      const created = await store.create(key, bytes(`run ${run}`))
      expect(created).toBeDefined()
      const written = await store.setMany([
        { key: user('a'), value: bytes('a') },
        { key: user('b'), value: bytes('b') },
      ])
      for (const revision of [created as string, ...written]) {
        expect(seen.has(revision)).toBe(false)
        seen.add(revision)
      }
      expect(await store.delete(key, { expected: created as string })).toBe(true)
      previous = created
      await store.close()
    }
    expect(seen.size).toBe(9)
  })

  it('remembers recent reads across a restart: the key read before close survives eviction', async () => {
    const path = freshPath()
    const clock = new ManualClock()
    const first = open({ path, clock, maxEntries: 3 })
    for (const key of ['k0', 'k1', 'k2']) await first.set(user(key), bytes(key))
    expect(await first.get(user('k0'))).toBeDefined()
    await first.close()
    const second = open({ path, clock, maxEntries: 3 })
    await second.set(user('k3'), bytes('k3'))
    expect(await keysOf(second, ns)).toEqual([user('k0'), user('k2'), user('k3')].sort())
  })

  it('uses WAL and marks the file as a flowcache store of the current schema version', async () => {
    const path = freshPath()
    await open({ path, durability: 'fast' }).close()
    const raw = new Database(path)
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal')
    expect(raw.pragma('application_id', { simple: true })).toBe(APPLICATION_ID)
    expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION)
    raw.close()
  })

  it('works on a private in-memory database', async () => {
    const store = open({ path: ':memory:' })
    expect(store.capabilities.persistent).toBe(true)
    await store.set(user('x'), bytes('v'))
    expect(decode((await store.get(user('x')))?.value)).toBe('v')
  })
})

// ---- quota usage shared through the file ---------------------------------------------------------

describe('sqlite store: quota usage', () => {
  it('every store on one file reports the same entries, bytes and evictions of a quota', async () => {
    const path = freshPath()
    const clock = new ManualClock()
    const tenant = childPrefix(ns, 'shared-quota', 1024)
    const first = open({ path, clock })
    const second = open({ path, clock })
    first.setQuota(tenant, { maxEntries: 3 })
    second.setQuota(tenant, { maxEntries: 3 })
    for (let i = 0; i < 5; i++) {
      await (i % 2 === 0 ? first : second).set(user(`k${i}`, tenant), bytes('v'))
      clock.advance(1)
    }
    const fromFirst = await first.quotaUsage(tenant)
    expect(fromFirst).toMatchObject({ entries: 3, evictions: 2 })
    expect(await second.quotaUsage(tenant)).toEqual(fromFirst)
    // A store that never set the quota reads it from the file too.
    const third = open({ path, clock })
    expect(await third.quotaUsage(tenant)).toEqual(fromFirst)
    expect(await third.quotaUsage(childPrefix(ns, 'no-quota', 1024))).toBeUndefined()
  })
})

// ---- opening bad files and bad options ----------------------------------------------------------

describe('sqlite store: opening', () => {
  it('refuses a file that is not SQLite with StoreUnavailableError at open', () => {
    const garbage = join(root, `garbage-${next++}.db`)
    writeFileSync(garbage, 'this is not a database\n'.repeat(200))
    expectUnavailable(
      () => sqliteStore({ path: garbage }),
      /cannot open the sqlite store at .*garbage.*SQLITE_NOTADB.*not a readable SQLite database/,
    )
  })

  it('refuses a flowcache file whose schema pages are overwritten', async () => {
    const path = freshPath()
    const store = open({ path })
    for (let i = 0; i < 200; i++) await store.set(user(`k${i}`), new Uint8Array(100).fill(i))
    await store.close()
    // Page 1 holds the schema table right after the 100-byte file header.
    const fd = openSync(path, 'r+')
    writeSync(fd, Buffer.alloc(4000, 0xa5), 0, 4000, 100)
    closeSync(fd)
    expectUnavailable(() => sqliteStore({ path }), /SQLITE_CORRUPT|SQLITE_NOTADB/)
  })

  it("refuses another application's database instead of adding tables to it", () => {
    const path = join(root, `foreign-${next++}.db`)
    const raw = new Database(path)
    raw.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY)')
    raw.close()
    expectUnavailable(() => sqliteStore({ path }), /tables of its own \(orders\)/)
    const marked = join(root, `marked-${next++}.db`)
    const other = new Database(marked)
    other.pragma('application_id = 12345')
    other.close()
    expectUnavailable(() => sqliteStore({ path: marked }), /another application/)
  })

  it('brings a version 1 file to the current version, keeping its entries and quota usage', async () => {
    const path = freshPath()
    const tenant = childPrefix(ns, 'tenant', 1024)
    const first = open({ path })
    first.setQuota(tenant, { maxEntries: 10 })
    await first.set(user('a', tenant), bytes('a'))
    await first.close()
    // Version 1 had no quotas.evictions column.
    const raw = new Database(path)
    raw.exec('ALTER TABLE quotas DROP COLUMN evictions')
    raw.pragma('user_version = 1')
    raw.close()
    const reopened = open({ path })
    expect(await reopened.quotaUsage(tenant)).toMatchObject({ entries: 1, evictions: 0 })
    await reopened.close()
    const check = new Database(path)
    expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION)
    check.close()
  })

  it('refuses a file written by a newer schema version', async () => {
    const path = freshPath()
    await open({ path }).close()
    const raw = new Database(path)
    raw.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
    raw.close()
    expectUnavailable(() => sqliteStore({ path }), /newer flowcache/)
  })

  it('refuses a directory as the path', () => {
    expectUnavailable(() => sqliteStore({ path: root }), /SQLITE_CANTOPEN/)
  })

  it('checks its options', () => {
    const path = freshPath()
    const bad: Array<Partial<SqliteStoreOptions>> = [
      { path: '' },
      { path, durability: 'eventual' as 'fast' },
      { path, maxEntries: 0 },
      { path, maxBytes: 1.5 },
      { path, sweepIntervalMs: -1 },
      { path, busyTimeoutMs: Number.NaN },
      { path, busyTimeoutMs: 1.5 },
    ]
    for (const options of bad) {
      expect(() => sqliteStore(options as SqliteStoreOptions)).toThrow(InvalidArgumentError)
    }
  })

  it('reports a lock held by another connection as StoreUnavailableError with the SQLite cause', async () => {
    const path = freshPath()
    const store = open({ path, busyTimeoutMs: 20 })
    const raw = new Database(path)
    raw.exec('BEGIN IMMEDIATE')
    try {
      const failure = await store.set(user('x'), bytes('v')).then(
        () => undefined,
        (error: unknown) => error,
      )
      expect(failure).toBeInstanceOf(StoreUnavailableError)
      expect((failure as Error).message).toMatch(/SQLITE_BUSY.*busyTimeoutMs \(20 ms\)/)
      expect((failure as Error).cause).toBeInstanceOf(Database.SqliteError)
    } finally {
      raw.exec('ROLLBACK')
      raw.close()
    }
    // Nothing half-done: the store works again once the lock is gone.
    await store.set(user('x'), bytes('v'))
    expect(decode((await store.get(user('x')))?.value)).toBe('v')
  })

  it('close is idempotent; calls after close throw ClosedError; stats still answer', async () => {
    const store = sqliteStore({ path: freshPath() })
    await store.set(user('x'), bytes('v'))
    await Promise.all([store.close(), store.close()])
    await store.close()
    await expect(store.get(user('x'))).rejects.toBeInstanceOf(ClosedError)
    await expect(store.set(user('x'), bytes('v'))).rejects.toBeInstanceOf(ClosedError)
    expect(store.stats().entries).toBe(1)
  })
})

// ---- limits -------------------------------------------------------------------------------------

describe('sqlite store: limits', () => {
  it('maxEntries evicts the least recently used user entry; a key read recently survives', async () => {
    const store = open({ path: freshPath(), maxEntries: 3 })
    for (const key of ['k0', 'k1', 'k2']) await store.set(user(key), bytes(key))
    expect(await store.getMany([user('k0')])).toHaveLength(1)
    await store.set(user('k3'), bytes('k3'))
    expect(await keysOf(store, ns)).toEqual([user('k0'), user('k2'), user('k3')].sort())
    expect(store.stats().evictions).toBe(1)
  })

  it('system keys neither count toward maxEntries nor get evicted', async () => {
    const store = open({ path: freshPath(), maxEntries: 2 })
    const locks = ['a', 'b', 'c', 'd'].map((key) => lock(key))
    for (const key of locks) await store.set(key, bytes('held'))
    for (let i = 0; i < 6; i++) await store.set(user(`u${i}`), bytes('v'))
    for (const key of locks) expect(decode((await store.get(key))?.value)).toBe('held')
    expect(await keysOf(store, ns)).toEqual([...locks, user('u4'), user('u5')].sort())
    expect(store.stats().entries).toBe(6)
  })

  it('maxBytes keeps user bytes (keys + values) within the limit and refuses an entry that cannot fit', async () => {
    const store = open({ path: freshPath(), maxBytes: 1000 })
    for (let i = 0; i < 20; i++) await store.set(user(`e${i}`), new Uint8Array(100))
    const live = await keysOf(store, ns)
    const total = live.reduce((sum, key) => sum + key.length + 100, 0)
    expect(total).toBeLessThanOrEqual(1000)
    expect(live).toContain(user('e19'))
    expect(live).not.toContain(user('e0'))
    await expect(store.set(user('huge'), new Uint8Array(1000))).rejects.toBeInstanceOf(
      ValueTooLargeError,
    )
    // A system key is not held to the user limit.
    await store.set(lock('big'), new Uint8Array(5000))
    expect((await store.get(lock('big')))?.value.byteLength).toBe(5000)
  })

  it('a quota evicts only its own namespace, never system keys, and leaves other namespaces alone', async () => {
    const store = open({ path: freshPath() })
    const cache = createCache({ store })
    const a = cache.namespace('tenant:a', { maxEntries: 3 })
    const b = cache.namespace('tenant:b')
    const aPrefix = childPrefix(ns, 'tenant:a', 1024)
    const aLocks = [lock('job', aPrefix), systemKey(aPrefix, KeyKind.lease, 'leader', 1024)]
    for (const key of aLocks) await store.set(key, bytes('system'))
    for (let i = 0; i < 5; i++) await b.set(`k${i}`, i)
    for (let i = 0; i < 10; i++) await a.set(`k${i}`, i)
    expect((await a.keys()).sort()).toEqual(['k7', 'k8', 'k9'])
    expect((await b.keys()).sort()).toEqual(['k0', 'k1', 'k2', 'k3', 'k4'])
    for (const key of aLocks) expect(decode((await store.get(key))?.value)).toBe('system')
    expect(store.stats().evictions).toBe(7)
    // Reading a's oldest entry protects it from the next eviction.
    expect(await a.get('k7')).toBe(7)
    await a.set('k10', 10)
    expect((await a.keys()).sort()).toEqual(['k10', 'k7', 'k9'])
  })

  it('applies recorded reads once 10 000 wait, so another connection evicts by them', async () => {
    const path = freshPath()
    const count = 10_001
    const keys = Array.from({ length: count }, (_, i) => user(`k${i}`))
    const first = open({ path, durability: 'fast', maxEntries: count })
    await first.setMany(keys.map((key) => ({ key, value: bytes('v') })))
    // Reads every key but the last: the 10 000th recorded read writes them all to the file.
    await first.getMany(keys.slice(0, -1))
    const second = open({ path, durability: 'fast', maxEntries: count })
    await second.set(user('new'), bytes('v'))
    expect(await second.get(keys[count - 1] as string)).toBeUndefined()
    expect(await second.get(keys[0] as string)).toBeDefined()
  })

  it('lowering a quota enforces it at once', async () => {
    const store = open({ path: freshPath() })
    const prefix = childPrefix(ns, 'q', 1024)
    for (let i = 0; i < 5; i++) await store.set(user(`k${i}`, prefix), bytes('v'))
    store.setQuota(prefix, { maxEntries: 2 })
    expect(await keysOf(store, prefix)).toEqual([user('k3', prefix), user('k4', prefix)])
  })
})

// ---- expiry ---------------------------------------------------------------------------------------

describe('sqlite store: expiry', () => {
  it('the background sweep deletes expired rows and counts them', async () => {
    const clock = new ManualClock()
    const store = open({ path: freshPath(), clock, sweepIntervalMs: 10 })
    for (let i = 0; i < 5; i++) await store.set(user(`t${i}`), bytes('v'), { ttlMs: 1000 })
    await store.set(user('forever'), bytes('v'))
    clock.advance(1000)
    const deadline = Date.now() + 5000
    while (store.stats().expirations < 5 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    expect(store.stats()).toMatchObject({ entries: 1, expirations: 5 })
  })

  it('increment keeps the deadline of an existing counter across a restart', async () => {
    const path = freshPath()
    const clock = new ManualClock()
    const first = open({ path, clock })
    const cache = createCache({ store: first })
    expect(await cache.increment('hits', 1, 10_000)).toBe(1)
    const deadline = (await first.get(user('hits')))?.expiresAt
    await first.close()
    clock.advance(5000)
    const second = open({ path, clock })
    const again = createCache({ store: second })
    expect(await again.increment('hits', 2)).toBe(3)
    expect((await second.get(user('hits')))?.expiresAt).toBe(deadline)
    clock.advance(5000)
    expect(await again.get('hits')).toBeUndefined()
  })
})

// ---- through the cache ----------------------------------------------------------------------------

describe('sqlite store: under the Cache API', () => {
  it('round-trips every value type, also after a restart', async () => {
    const path = freshPath()
    const values: Record<string, unknown> = {
      string: 'héllo ✓',
      empty: '',
      integer: 42,
      float: 1.5,
      negativeZero: -0,
      nan: Number.NaN,
      infinity: Number.POSITIVE_INFINITY,
      minusInfinity: Number.NEGATIVE_INFINITY,
      true: true,
      false: false,
      null: null,
      array: [1, 'two', [3], { four: 4 }],
      object: { a: 1, nested: { b: [true, null] } },
      date: new Date('2024-05-01T10:00:00.000Z'),
      bigint: 12345678901234567890n,
      map: new Map<unknown, unknown>([
        ['a', 1],
        [2, { b: 'c' }],
      ]),
      set: new Set(['x', 1]),
      bytes: new Uint8Array([0, 1, 254, 255]),
      buffer: Buffer.from('buffer'),
      nested: { when: new Date(0), ids: new Set([1n]), blob: new Uint8Array([7]) },
    }
    const check = async (cache: ReturnType<typeof createCache>): Promise<void> => {
      for (const [key, value] of Object.entries(values)) {
        const got = await cache.get(key)
        if (typeof value === 'number') expect(Object.is(got, value), key).toBe(true)
        else expect(got, key).toEqual(value)
        if (value instanceof Buffer) expect(Buffer.isBuffer(got), key).toBe(true)
        else if (value instanceof Uint8Array) expect(got, key).toBeInstanceOf(Uint8Array)
      }
    }
    const cache = createCache({ store: sqliteStore({ path, sweepIntervalMs: 0 }) })
    for (const [key, value] of Object.entries(values)) await cache.set(key, value)
    await check(cache)
    expect(await cache.get('missing')).toBeUndefined()
    await cache.close()

    const reopened = createCache({ store: sqliteStore({ path, sweepIntervalMs: 0 }) })
    try {
      await check(reopened)
      expect(await reopened.add('string', 'again')).toBe(false)
      expect(await reopened.delete('string')).toBe(true)
      expect(await reopened.add('string', 'again')).toBe(true)
    } finally {
      await reopened.close()
    }
  })
})
