import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

import { MAX_TRACKED_NAMESPACES, createCache } from '../src/core/cache.js'
import { TopKeys } from '../src/core/namespace-stats.js'
import { InvalidArgumentError, StoreUnavailableError } from '../src/errors.js'
import { MemoryStore, memoryStore } from '../src/stores/memory/index.js'
import type { QuotaLimits, QuotaUsage } from '../src/types/store.js'
import { sqliteStore } from '../src/stores/sqlite/index.js'

const dir = mkdtempSync(join(tmpdir(), 'flowcache-nsstats-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const value = (bytes: number): string => 'x'.repeat(bytes)

async function keysOf(cache: ReturnType<typeof createCache>): Promise<string[]> {
  return (await cache.keys()).sort()
}

describe('createCache quotas: a default allocation per top-level namespace, with overrides', () => {
  it('gives every top-level namespace the default, separately, and an override replaces it field by field', async () => {
    const cache = createCache({
      store: memoryStore({ sweepIntervalMs: 0 }),
      quotas: { default: { maxEntries: 3 }, namespaces: { big: { maxEntries: 6 } } },
    })
    const [a, b, big] = [cache.namespace('a'), cache.namespace('b'), cache.namespace('big')]
    for (let i = 0; i < 10; i++) {
      await a.set(`k${i}`, i)
      await b.set(`k${i}`, i)
      await big.set(`k${i}`, i)
      await cache.set(`root${i}`, i)
    }
    expect(await keysOf(a)).toEqual(['k7', 'k8', 'k9'])
    expect(await keysOf(b)).toEqual(['k7', 'k8', 'k9'])
    expect((await keysOf(big)).length).toBe(6)
    // Keys of the root cache are in no namespace: no quota applies to them.
    expect((await cache.keys()).filter((key) => key.startsWith('root')).length).toBe(10)
    const stats = await a.namespaceStats()
    expect(stats.quota).toEqual({ maxEntries: 3 })
    expect(stats).toMatchObject({ entries: 3, evictions: 7 })
    expect((await big.namespaceStats()).quota).toEqual({ maxEntries: 6 })
    await cache.close()
  })

  it('limits given to namespace() win over the configured ones field by field; nested namespaces get no default', async () => {
    const cache = createCache({
      quotas: {
        default: { maxEntries: 100, maxBytes: 10_000 },
        namespaces: { acme: { maxBytes: 50_000 } },
      },
    })
    const acme = cache.namespace('acme', { maxEntries: 5 })
    expect((await acme.namespaceStats()).quota).toEqual({ maxEntries: 5, maxBytes: 50_000 })
    const nested = acme.namespace('flows')
    expect(await nested.namespaceStats()).toMatchObject({ tracked: false, quota: undefined })
    const other = cache.namespace('other', { maxBytes: 2000 })
    expect((await other.namespaceStats()).quota).toEqual({ maxEntries: 100, maxBytes: 2000 })
    for (let i = 0; i < 20; i++) await other.set(`k${i}`, value(400))
    const usage = await other.namespaceStats()
    expect(usage.bytes).toBeLessThanOrEqual(2000)
    expect(usage.evictions).toBeGreaterThan(0)
    await cache.close()
  })

  it('refuses bad quota options with an error naming the field', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ default: { maxBytes: 0 } }, /quotas\.default\.maxBytes/],
      [{ default: { maxEntries: 1.5 } }, /quotas\.default\.maxEntries/],
      [{ default: { maxMemory: 5 } }, /quotas\.default\.maxMemory/],
      [{ default: {} }, /quotas\.default.*maxEntries, maxBytes or both/],
      [{ namespaces: { acme: { maxBytes: -1 } } }, /quotas\.namespaces\.acme\.maxBytes/],
      [{ namespaces: [] }, /quotas\.namespaces/],
      [{ perTenant: {} }, /quotas\.perTenant/],
      ['30mb', /quotas/],
    ]
    for (const [quotas, message] of bad) {
      let caught: unknown
      try {
        createCache({ quotas: quotas as never })
      } catch (error) {
        caught = error
      }
      expect(caught, JSON.stringify(quotas)).toBeInstanceOf(InvalidArgumentError)
      expect((caught as Error).message).toMatch(message)
    }
    expect(() => createCache({ topKeySlots: 0 })).toThrow(/topKeySlots/)
    expect(() => createCache({ topKeySampleEvery: 0.5 })).toThrow(/topKeySampleEvery/)
    const cache = createCache()
    expect(() => cache.namespace('a', { trackStats: 'yes' as never })).toThrow(/trackStats/)
    expect(() => cache.namespace('a', { maxEntries: 0 })).toThrow(InvalidArgumentError)
  })
})

describe('namespace(name, { applyQuotas: false }): a view for reading', () => {
  /** A memory store that records the prefixes quotas are set on. */
  class RecordingStore extends MemoryStore {
    readonly quotaPrefixes: string[] = []
    override setQuota(prefix: string, limits: QuotaLimits): void {
      this.quotaPrefixes.push(prefix)
      super.setQuota(prefix, limits)
    }
  }

  it('sets no quota in the store and evicts nothing, where a normal namespace() does', async () => {
    const store = new RecordingStore({ sweepIntervalMs: 0 })
    // Another application wrote 'shared' with no quota, through the same store.
    const other = createCache({ store })
    for (let i = 0; i < 5; i++) await other.namespace('shared').set(`k${i}`, i)
    const cache = createCache({ store, quotas: { default: { maxEntries: 2 } } })

    const reader = cache.namespace('shared', { applyQuotas: false })
    const nested = cache
      .namespace('shared', { applyQuotas: false })
      .namespace('child', { applyQuotas: false })
    expect(await keysOf(reader)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4'])
    expect(await reader.get('k0')).toBe(0)
    expect(await nested.get('nothing')).toBeUndefined()
    expect(await reader.namespaceStats()).toMatchObject({
      tracked: false,
      quota: undefined,
      entries: undefined,
    })
    expect(store.quotaPrefixes).toEqual([])

    const writer = cache.namespace('shared')
    expect(store.quotaPrefixes).toHaveLength(1)
    const prefix = store.quotaPrefixes[0] as string
    expect(await store.quotaUsage(prefix)).toMatchObject({ entries: 2, evictions: 3 })
    expect(await keysOf(reader)).toEqual(['k3', 'k4'])
    // The quota is the store's, per prefix: writes through the reading view are held to it too.
    await reader.set('k5', 5)
    expect(await keysOf(writer)).toEqual(['k4', 'k5'])
    await other.close()
    await cache.close()
  })

  it('reads count toward the stats once the namespace is tracked, without setting its quota', async () => {
    const store = new RecordingStore({ sweepIntervalMs: 0 })
    const cache = createCache({ store, quotas: { default: { maxEntries: 10 } } })
    const watched = cache.namespace('watched', { applyQuotas: false, trackStats: true })
    await watched.get('missing')
    expect(await watched.namespaceStats()).toMatchObject({ tracked: true, misses: 1 })
    expect((await watched.namespaceStats()).quota).toBeUndefined()

    const reader = cache.namespace('tenant', { applyQuotas: false })
    await reader.get('a')
    expect((await reader.namespaceStats()).tracked).toBe(false)
    cache.namespace('tenant')
    await reader.get('b')
    expect(await reader.namespaceStats()).toMatchObject({
      tracked: true,
      quota: { maxEntries: 10 },
      misses: 1,
    })
    expect(store.quotaPrefixes).toHaveLength(1)
    await cache.close()
  })

  it('refuses limits or a non-boolean with it, naming the option', async () => {
    const cache = createCache({ quotas: { default: { maxEntries: 10 } } })
    expect(() => cache.namespace('a', { applyQuotas: false, maxEntries: 5 })).toThrow(
      /applyQuotas.*maxEntries/,
    )
    expect(() => cache.namespace('a', { applyQuotas: 'no' as never })).toThrow(/applyQuotas/)
    expect(() => cache.namespace('a', { applyQuotas: 'no' as never })).toThrow(InvalidArgumentError)
    await cache.close()
  })
})

describe('namespaceStats', () => {
  it('counts hits, misses and the most-read keys of a tracked namespace, children included, with the keys as written', async () => {
    // Every read feeds the most-read keys, so the counts are exact.
    const cache = createCache({ topKeySampleEvery: 1 })
    const orders = cache.namespace('orders', { trackStats: true })
    const eu = orders.namespace('eu')
    await orders.set('order:42', { total: 1 })
    await eu.set('order:7', { total: 2 })
    for (let i = 0; i < 5; i++) await orders.get('order:42')
    for (let i = 0; i < 3; i++) await eu.get('order:7')
    await orders.get('missing')
    await orders.getMany(['order:42', 'nope'])
    await orders.entry('order:42')
    await orders.getOrSet('computed', () => 1)
    await cache.get('outside')
    const stats = await orders.namespaceStats({ top: 2 })
    expect(stats.tracked).toBe(true)
    expect(stats.hits).toBe(5 + 3 + 1 + 1)
    // get('missing'), getMany 'nope', and getOrSet's first read of 'computed'.
    expect(stats.misses).toBeGreaterThanOrEqual(3)
    expect(stats.hitRatio).toBeCloseTo(stats.hits / (stats.hits + stats.misses))
    expect(stats.topKeys).toEqual([
      { key: 'order:42', namespace: [], count: 7, error: 0 },
      { key: 'order:7', namespace: ['eu'], count: 3, error: 0 },
    ])
    // No quota: the store is not asked, so the usage is unknown.
    expect(stats).toMatchObject({ entries: undefined, bytes: undefined, evictions: undefined })
    const euStats = await eu.namespaceStats()
    expect(euStats).toMatchObject({ tracked: false, hits: 0, misses: 0, topKeys: [] })
    await cache.close()
  })

  it('with the default sampling, finds the hot keys among many cold ones and estimates their reads', async () => {
    const cache = createCache({ topKeySlots: 16 })
    const ns = cache.namespace('sampled', { trackStats: true })
    await ns.set('hot', 1)
    for (let i = 0; i < 4000; i++) {
      await ns.get('hot')
      await ns.get(`cold${i}`)
    }
    const stats = await ns.namespaceStats({ top: 1 })
    expect(stats).toMatchObject({ hits: 4000, misses: 4000 })
    expect(stats.topKeys[0]?.key).toBe('hot')
    // About 4000 (sampled reads × 8): far from exact, but of the right size.
    expect(stats.topKeys[0]?.count).toBeGreaterThan(2000)
    expect(stats.topKeys[0]?.count).toBeLessThan(8000)
    await cache.close()
  })

  it('a view opened before its namespace was tracked counts once it is', async () => {
    const cache = createCache()
    const early = cache.namespace('late')
    await early.set('k', 1)
    await early.get('k')
    cache.namespace('late', { trackStats: true })
    await early.get('k')
    await early.get('gone')
    expect(await early.namespaceStats()).toMatchObject({ hits: 1, misses: 1 })
    await cache.close()
  })

  it('is refused on the root cache', async () => {
    const cache = createCache()
    await expect(cache.namespaceStats()).rejects.toThrow(/namespace views/)
    await expect(cache.namespace('a').namespaceStats({ top: -1 })).rejects.toThrow(/top/)
    await cache.close()
  })

  it('reads entries, bytes and evictions from a sqlite store shared by two caches', async () => {
    const path = join(dir, 'shared.db')
    const first = createCache({ store: sqliteStore({ path, sweepIntervalMs: 0 }) })
    const second = createCache({ store: sqliteStore({ path, sweepIntervalMs: 0 }) })
    const tenantA = first.namespace('tenant', { maxEntries: 4 })
    const tenantB = second.namespace('tenant', { maxEntries: 4 })
    for (let i = 0; i < 6; i++) await (i % 2 === 0 ? tenantA : tenantB).set(`k${i}`, i)
    const fromA = await tenantA.namespaceStats()
    expect(fromA).toMatchObject({ entries: 4, evictions: 2 })
    expect(fromA.bytes).toBeGreaterThan(0)
    const fromB = await tenantB.namespaceStats()
    expect([fromB.entries, fromB.bytes, fromB.evictions]).toEqual([
      fromA.entries,
      fromA.bytes,
      fromA.evictions,
    ])
    await first.close()
    await second.close()
  })

  it('trackedNamespaceStats lists every tracked namespace, and only those', async () => {
    const cache = createCache({ quotas: { default: { maxEntries: 10 } } })
    cache.namespace('t1')
    cache.namespace('t2').namespace('child')
    cache.namespace('t1').namespace('watched', { trackStats: true })
    const all = await cache.trackedNamespaceStats()
    expect(all.map((stats) => stats.namespace.join('/')).sort()).toEqual(['t1', 't1/watched', 't2'])
    await cache.close()
  })
})

describe('namespace usage when the store cannot report it', () => {
  class FailingUsage extends MemoryStore {
    override quotaUsage(): Promise<QuotaUsage | undefined> {
      return Promise.reject(new StoreUnavailableError('usage unavailable'))
    }
  }

  it('namespaceStats rejects, trackedNamespaceStats leaves the usage out and keeps the counts', async () => {
    const cache = createCache({ store: new FailingUsage() })
    const tenant = cache.namespace('t', { maxEntries: 5 })
    await tenant.set('k', 1)
    await tenant.get('k')
    await expect(tenant.namespaceStats()).rejects.toBeInstanceOf(StoreUnavailableError)
    const [stats] = await cache.trackedNamespaceStats()
    expect(stats).toMatchObject({ namespace: ['t'], entries: undefined, hits: 1, misses: 0 })
    await cache.close()
  })
})

describe('TopKeys (space-saving)', () => {
  it('finds keys read more often than reads / slots among many cold keys, in bounded slots', () => {
    const top = new TopKeys(8)
    let cold = 0
    for (let round = 0; round < 2000; round++) {
      top.record('hot', 'hot', [])
      if (round % 2 === 0) top.record('warm', 'warm', [])
      top.record(`cold${cold}`, `cold${cold}`, [])
      cold++
    }
    const found = top.top(3)
    expect(found.length).toBe(3)
    expect(found[0]?.key).toBe('hot')
    expect(found[1]?.key).toBe('warm')
    // Counts are upper bounds: never below the true count, at most `error` above it.
    expect(found[0]?.count).toBeGreaterThanOrEqual(2000)
    expect((found[0]?.count ?? 0) - (found[0]?.error ?? 0)).toBeLessThanOrEqual(2000)
    expect(top.top(100).length).toBe(8)
  })
})

describe('tracked namespaces are bounded', () => {
  it(`tracks at most ${MAX_TRACKED_NAMESPACES} namespaces: the longest-tracked goes first`, async () => {
    const cache = createCache()
    for (let i = 0; i <= MAX_TRACKED_NAMESPACES; i++) {
      cache.namespace(`tenant:${i}`, { trackStats: true })
    }
    const tracked = await cache.trackedNamespaceStats({ top: 0 })
    expect(tracked).toHaveLength(MAX_TRACKED_NAMESPACES)
    const names = new Set(tracked.map((stats) => stats.namespace.join('/')))
    expect(names.has('tenant:0')).toBe(false)
    expect(names.has('tenant:1')).toBe(true)
    expect(names.has(`tenant:${MAX_TRACKED_NAMESPACES}`)).toBe(true)
    // A dropped namespace is tracked again, from zero, when it is opened again.
    const again = cache.namespace('tenant:0', { trackStats: true })
    await again.get('missing')
    expect((await again.namespaceStats()).misses).toBe(1)
    await cache.close()
  })
})
