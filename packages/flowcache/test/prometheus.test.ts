import { randomUUID } from 'node:crypto'
import { channel } from 'node:diagnostics_channel'
import { Histogram, Registry } from 'prom-client'
import { afterAll, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../src/core/cache.js'
import { channels, type OperationEvent } from '../src/core/diagnostics.js'
import { silentLogger } from '../src/core/logger.js'
import { InvalidArgumentError } from '../src/errors.js'
import { DEFAULT_BUCKETS, registerMetrics } from '../src/prometheus/index.js'
import { memoryStore } from '../src/stores/memory/index.js'
import { redisStore } from '../src/stores/redis/index.js'
import { parseExposition, valueOf, type Family } from './helpers/exposition.js'
import { deleteRedisKeys, redisUrl } from './helpers/services.js'

const REDIS_PREFIX = `fcprom${randomUUID().slice(0, 8)}`
const caches: Cache[] = []

afterAll(async () => {
  await Promise.all(caches.map((cache) => cache.close()))
  await deleteRedisKeys(`${REDIS_PREFIX}*`)
})

async function scrape(registry: Registry): Promise<Map<string, Family>> {
  return parseExposition(await registry.metrics())
}

/** `_count` of the latency histogram for one cache, operation and outcome. */
function calls(families: Map<string, Family>, cache: string, operation: string, outcome: string) {
  return valueOf(families, 'flowcache_operation_duration_seconds_count', {
    cache,
    operation,
    outcome,
  })
}

describe('the exposition parser', () => {
  it('rejects what Prometheus would reject', () => {
    expect(() => parseExposition('# TYPE a counter\na 1')).toThrow(/newline/)
    expect(() => parseExposition('a 1\n')).toThrow(/undeclared/)
    expect(() => parseExposition('# TYPE 1a counter\n')).toThrow(/metric name/)
    expect(() => parseExposition('# TYPE a counter\na{b="x\\q"} 1\n')).toThrow(/escape/)
    expect(() => parseExposition('# TYPE a counter\na{b="x"} 1\na{b="x"} 2\n')).toThrow(/duplicate/)
    expect(() => parseExposition('# TYPE a counter\na{1b="x"} 1\n')).toThrow(/label name/)
    expect(() => parseExposition('# TYPE a gauge\na one\n')).toThrow(/bad value/)
    const histogram = (inf: number, count: number): string =>
      `# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} ${inf}\nh_sum 3\nh_count ${count}\n`
    expect(() => parseExposition(histogram(1, 1))).toThrow(/cumulative/)
    expect(() => parseExposition(histogram(3, 2))).toThrow(/_count/)
    expect(parseExposition(histogram(3, 3)).get('h')?.samples).toHaveLength(4)
  })
})

describe('registerMetrics', () => {
  it('exposes valid exposition text whose counters match the operations on memory and Redis', async () => {
    const registry = new Registry()
    const labels = { service: 'billing' }

    const mem = createCache()
    const small = createCache({ store: memoryStore({ maxEntries: 2 }) })
    const redis = createCache({ store: redisStore({ url: redisUrl() }), prefix: REDIS_PREFIX })
    caches.push(mem, small, redis)
    await redis.ready()
    const handles = [
      registerMetrics(mem, { registry, name: 'mem', labels }),
      registerMetrics(small, { registry, name: 'small', labels }),
      registerMetrics(redis, { registry, name: 'redis', labels }),
    ]

    // Memory: 4 writes, 3 hits, 3 misses, 1 delete, lock and limiter outcomes.
    await mem.set('a', 1)
    await mem.set('b', 2)
    await mem.get('a')
    await mem.get('missing')
    await mem.get('missing')
    expect(await mem.add('c', 3)).toBe(true)
    expect(await mem.add('c', 4)).toBe(false)
    await mem.getMany(['a', 'nope'])
    expect(await mem.delete('a')).toBe(true)
    expect(await mem.delete('a')).toBe(false)
    expect(await mem.has('b')).toBe(true)
    const ns = mem.namespace('ns')
    await ns.set('x', 1)
    await ns.get('x')
    const lock = await mem.locks.acquire('job', { ttl: '5s' })
    expect(lock).not.toBeNull()
    expect(await mem.locks.acquire('job', { ttl: '5s' })).toBeNull()
    await lock?.extend('5s')
    expect(await lock?.release()).toBe(true)
    expect((await mem.rateLimit('api', { max: 1, per: '1m' })).allowed).toBe(true)
    expect((await mem.rateLimit('api', { max: 1, per: '1m' })).allowed).toBe(false)

    // A store with room for two entries: the third write evicts one.
    await small.set('1', 1)
    await small.set('2', 2)
    await small.set('3', 3)

    // Redis: 4 writes, 2 hits, 1 miss, 1 delete, a lock taken and released.
    await redis.set('a', 1)
    await redis.get('a')
    await redis.get('b')
    await redis.delete('a')
    await redis.increment('n')
    await redis.setMany([
      { key: 's1', value: 1 },
      { key: 's2', value: 2 },
    ])
    await redis.entry('n')
    const redisLock = await redis.locks.acquire('job', { ttl: '5s' })
    expect(await redisLock?.release()).toBe(true)

    const text = await registry.metrics()
    const families = parseExposition(text)
    const value = (name: string, cache: string, extra: Record<string, string> = {}): number =>
      valueOf(families, `flowcache_${name}`, { cache, service: 'billing', ...extra })

    expect(families.get('flowcache_hits_total')?.type).toBe('counter')
    expect(families.get('flowcache_entries')?.type).toBe('gauge')
    expect(families.get('flowcache_operation_duration_seconds')?.type).toBe('histogram')
    for (const family of families.values()) expect(family.help, family.name).toBeTruthy()

    expect(value('hits_total', 'mem')).toBe(3)
    expect(value('misses_total', 'mem')).toBe(3)
    expect(value('sets_total', 'mem')).toBe(4)
    expect(value('deletes_total', 'mem')).toBe(1)
    expect(value('evictions_total', 'mem')).toBe(0)
    expect(value('entries', 'mem')).toBe(mem.stats().entries)
    expect(value('bytes', 'mem')).toBe(mem.stats().bytes)
    expect(value('fallback_active', 'mem')).toBe(0)
    for (const [outcome, expected] of Object.entries({
      acquired: 1,
      contended: 1,
      extended: 1,
      released: 1,
      lost: 0,
      failed: 0,
    })) {
      expect(value('lock_outcomes_total', 'mem', { outcome }), outcome).toBe(expected)
    }
    expect(value('rate_limit_decisions_total', 'mem', { outcome: 'allowed' })).toBe(1)
    expect(value('rate_limit_decisions_total', 'mem', { outcome: 'denied' })).toBe(1)
    expect(value('rate_limit_decisions_total', 'mem', { outcome: 'failed_closed' })).toBe(0)
    expect(calls(families, 'mem', 'get', 'hit')).toBe(2)
    expect(calls(families, 'mem', 'get', 'miss')).toBe(2)
    expect(calls(families, 'mem', 'set', 'ok')).toBe(3)
    expect(calls(families, 'mem', 'add', 'ok')).toBe(2)
    expect(calls(families, 'mem', 'getMany', 'ok')).toBe(1)
    expect(calls(families, 'mem', 'delete', 'ok')).toBe(2)
    expect(calls(families, 'mem', 'has', 'hit')).toBe(1)

    expect(value('sets_total', 'small')).toBe(3)
    expect(value('evictions_total', 'small')).toBe(1)
    expect(value('entries', 'small')).toBe(2)

    expect(value('hits_total', 'redis')).toBe(2)
    expect(value('misses_total', 'redis')).toBe(1)
    expect(value('sets_total', 'redis')).toBe(4)
    expect(value('deletes_total', 'redis')).toBe(1)
    expect(value('lock_outcomes_total', 'redis', { outcome: 'acquired' })).toBe(1)
    expect(value('lock_outcomes_total', 'redis', { outcome: 'released' })).toBe(1)
    const redisCalls = (operation: string, outcome: string): number =>
      valueOf(families, 'flowcache_operation_duration_seconds_count', {
        cache: 'redis',
        store: 'redis',
        operation,
        outcome,
      })
    expect(redisCalls('set', 'ok')).toBe(1)
    expect(redisCalls('get', 'hit')).toBe(1)
    expect(redisCalls('get', 'miss')).toBe(1)
    expect(redisCalls('increment', 'ok')).toBe(1)
    expect(redisCalls('setMany', 'ok')).toBe(1)
    expect(redisCalls('entry', 'hit')).toBe(1)

    // Every call was observed: the histogram counts add up to the operations performed.
    const histogramCalls = (cache: string): number =>
      (families.get('flowcache_operation_duration_seconds')?.samples ?? [])
        .filter((s) => s.name.endsWith('_count') && s.labels.cache === cache)
        .reduce((sum, s) => sum + s.value, 0)
    expect(histogramCalls('mem')).toBe(13)
    expect(histogramCalls('small')).toBe(3)
    expect(histogramCalls('redis')).toBe(7)

    // Scrape-time counters follow later calls.
    await mem.get('b')
    expect(valueOf(await scrape(registry), 'flowcache_hits_total', { cache: 'mem' })).toBe(4)

    // close() drops one cache's series, and the metrics with the last cache.
    handles[0]?.close()
    handles[0]?.close()
    const after = await scrape(registry)
    const labelled = [...after.values()].flatMap((f) => f.samples).map((s) => s.labels.cache)
    expect(labelled).not.toContain('mem')
    expect(labelled).toContain('redis')
    handles[1]?.close()
    handles[2]?.close()
    expect(registry.getMetricsAsArray()).toHaveLength(0)
    await mem.get('b')
    expect(await registry.metrics()).toBe('\n')

    // The name is free again.
    const again = registerMetrics(mem, { registry, name: 'mem' })
    await mem.get('b')
    expect(calls(await scrape(registry), 'mem', 'get', 'hit')).toBe(1)
    again.close()
  })

  it('writes the latency histogram exactly as a prom-client histogram fed the same durations', async () => {
    const cache = createCache({ logger: silentLogger })
    caches.push(cache)
    const registry = new Registry()
    const handle = registerMetrics(cache, { registry, name: 'h', labels: { service: 'orders' } })
    const reference = new Registry()
    const expected = new Histogram({
      name: 'flowcache_operation_duration_seconds',
      help: 'reference',
      labelNames: ['cache', 'service', 'operation', 'store', 'outcome'],
      buckets: [...DEFAULT_BUCKETS],
      registers: [reference],
    })
    // Durations on, between and beyond the bounds (seconds ×1000 = ms), two series.
    const durationsMs = [0, 0.004, 0.01, 0.0100001, 0.3, 1, 2.5, 7, 250, 5000, 5000.5, 60_000]
    const operation = channel(channels.operation)
    durationsMs.forEach((durationMs, i) => {
      const outcome = i % 3 === 0 ? 'miss' : 'hit'
      const event: OperationEvent = {
        cache,
        operation: 'get',
        namespace: [],
        store: 'memory',
        outcome,
        durationMs,
      }
      operation.publish(event)
      expected.observe(
        { cache: 'h', service: 'orders', operation: 'get', store: 'memory', outcome },
        durationMs / 1000,
      )
    })
    const samples = async (from: Registry): Promise<string[]> =>
      ((await scrape(from)).get('flowcache_operation_duration_seconds')?.samples ?? [])
        .map((s) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())} ${s.value}`)
        .sort()
    const ours = await samples(registry)
    expect(ours).toHaveLength(2 * (DEFAULT_BUCKETS.length + 3))
    expect(ours).toEqual(await samples(reference))
    handle.close()
  })

  it('reports L1 figures for a cache with an L1 tier', async () => {
    const registry = new Registry()
    const cache = createCache({
      store: redisStore({ url: redisUrl() }),
      prefix: REDIS_PREFIX,
      l1: { maxEntries: 100 },
    })
    caches.push(cache)
    await cache.ready()
    const metrics = registerMetrics(cache, { registry, name: 'tiered' })
    await cache.set('k', 1)
    await cache.get('k')
    const families = await scrape(registry)
    expect(valueOf(families, 'flowcache_l1_entries', { cache: 'tiered' })).toBe(
      cache.stats().l1?.entries,
    )
    expect(valueOf(families, 'flowcache_l1_hits_total', { cache: 'tiered' })).toBe(
      cache.stats().l1?.hits,
    )
    metrics.close()
  })

  it('exports getOrSet outcomes and write-behind failures as they happen', async () => {
    const registry = new Registry()
    const cache = createCache({ logger: silentLogger })
    caches.push(cache)
    const metrics = registerMetrics(cache, { registry, name: 'flows' })
    let calls = 0
    await cache.getOrSet('a', () => ++calls, { ttl: '1m' })
    await cache.getOrSet('a', () => ++calls, { ttl: '1m' })
    await expect(
      cache.getOrSet('b', () => Promise.reject(new Error('source down'))),
    ).rejects.toThrow('source down')
    // A target that fails twice, then accepts.
    let failuresLeft = 2
    const written: string[] = []
    const writer = cache.writeBehind(
      {
        write: async (items) => {
          if (failuresLeft-- > 0) throw new Error('target down')
          written.push(...items.map((item) => item.key))
        },
      },
      { flushEvery: '1h', retry: { baseMs: 1, maxMs: 5 } },
    )
    await writer.set('k1', 1)
    await writer.set('k2', 2)
    const pending = await scrape(registry)
    expect(valueOf(pending, 'flowcache_write_behind_pending', { cache: 'flows' })).toBe(2)
    await writer.flush()
    const families = await scrape(registry)
    const gos = (outcome: string): number | undefined =>
      valueOf(families, 'flowcache_get_or_set_total', { cache: 'flows', outcome })
    expect(gos('hit')).toBe(1)
    expect(gos('miss')).toBe(2)
    expect(gos('factory_call')).toBe(2)
    expect(gos('factory_error')).toBe(1)
    const wb = (outcome: string): number | undefined =>
      valueOf(families, 'flowcache_write_behind_total', { cache: 'flows', outcome })
    expect(wb('failure')).toBe(2)
    expect(wb('retry')).toBe(2)
    expect(wb('flushed')).toBe(2)
    expect(wb('batch')).toBe(1)
    expect(valueOf(families, 'flowcache_write_behind_pending', { cache: 'flows' })).toBe(0)
    expect(written.sort()).toEqual(['k1', 'k2'])
    await writer.close()
    metrics.close()
  })

  it('exports entries, bytes, evictions, hits and misses of the namespaces with a quota or trackStats, and of no other', async () => {
    const registry = new Registry()
    const cache = createCache({
      store: memoryStore({ sweepIntervalMs: 0 }),
      quotas: { default: { maxEntries: 2 }, namespaces: { big: { maxEntries: 10 } } },
    })
    caches.push(cache)
    const metrics = registerMetrics(cache, { registry, name: 'tenants' })
    const small = cache.namespace('small')
    const big = cache.namespace('big')
    const watched = big.namespace('flow 1', { trackStats: true })
    const untracked = big.namespace('plain')
    for (let i = 0; i < 5; i++) await small.set(`k${i}`, 'v')
    await big.set('a', 'value a')
    await watched.set('w', 'w')
    await untracked.set('p', 'p')
    await small.get('k4')
    await small.get('k0')
    await small.get('k1')
    await watched.get('w')
    await untracked.get('p')

    const families = await scrape(registry)
    expect(families.get('flowcache_namespace_entries')?.type).toBe('gauge')
    expect(families.get('flowcache_namespace_evictions_total')?.type).toBe('counter')
    const at = (name: string, namespace: string): number =>
      valueOf(families, `flowcache_${name}`, { cache: 'tenants', namespace })
    expect(at('namespace_entries', 'small')).toBe(2)
    expect(at('namespace_evictions_total', 'small')).toBe(3)
    const smallUsage = await small.namespaceStats()
    expect(at('namespace_bytes', 'small')).toBe(smallUsage.bytes)
    expect(at('namespace_hits_total', 'small')).toBe(1)
    expect(at('namespace_misses_total', 'small')).toBe(2)
    // big: its own entry, the watched child's and the untracked child's.
    expect(at('namespace_entries', 'big')).toBe(3)
    expect(at('namespace_evictions_total', 'big')).toBe(0)
    expect(at('namespace_hits_total', 'big')).toBe(2)
    expect(at('namespace_hits_total', 'big/flow 1')).toBe(1)
    expect(at('namespace_misses_total', 'big/flow 1')).toBe(0)
    // A tracked namespace without a quota has no usage from the store.
    const entries = families.get('flowcache_namespace_entries')?.samples ?? []
    expect(entries.map((sample) => sample.labels['namespace']).sort()).toEqual(['big', 'small'])
    const hits = families.get('flowcache_namespace_hits_total')?.samples ?? []
    expect(hits.map((sample) => sample.labels['namespace']).sort()).toEqual([
      'big',
      'big/flow 1',
      'small',
    ])

    // Values follow the cache from scrape to scrape.
    await small.set('k9', 'v')
    await small.get('nothing')
    const later = await scrape(registry)
    expect(
      valueOf(later, 'flowcache_namespace_evictions_total', {
        cache: 'tenants',
        namespace: 'small',
      }),
    ).toBe(4)
    expect(
      valueOf(later, 'flowcache_namespace_misses_total', { cache: 'tenants', namespace: 'small' }),
    ).toBe(3)
    metrics.close()
    expect(registry.getMetricsAsArray()).toHaveLength(0)
  })

  it('checks its arguments before registering anything', () => {
    const registry = new Registry()
    const cache = createCache()
    caches.push(cache)
    const bad: Array<[() => unknown, RegExp]> = [
      [() => registerMetrics(cache.namespace('n'), { registry }), /namespace view/],
      [() => registerMetrics(cache, { registry, prefix: '9x' }), /prefix/],
      [() => registerMetrics(cache, { registry, name: '' }), /name/],
      [() => registerMetrics(cache, { registry, labels: { cache: 'x' } }), /label "cache"/],
      [() => registerMetrics(cache, { registry, labels: { 'a-b': 'x' } }), /label "a-b"/],
      [() => registerMetrics(cache, { registry, buckets: [1, 0.5] }), /buckets/],
    ]
    for (const [call, message] of bad) {
      expect(call).toThrow(InvalidArgumentError)
      expect(call).toThrow(message)
    }
    expect(registry.getMetricsAsArray()).toHaveLength(0)

    const first = registerMetrics(cache, { registry, name: 'one' })
    const other = createCache()
    caches.push(other)
    expect(() => registerMetrics(other, { registry, name: 'one' })).toThrow(/already registered/)
    expect(() => registerMetrics(other, { registry, name: 'two', labels: { env: 'x' } })).toThrow(
      /label names/,
    )
    // Another prefix is another set of metrics in the same registry.
    const prefixed = registerMetrics(other, { registry, name: 'one', prefix: 'app_cache_' })
    expect(registry.getSingleMetric('app_cache_hits_total')).toBeDefined()
    prefixed.close()
    first.close()
    expect(registry.getMetricsAsArray()).toHaveLength(0)
  })
})
