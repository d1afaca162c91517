/** memoize: default and custom keys, TTL, hit/miss reporting, invalidate, namespace, counters. */
import { describe, expect, it } from 'vitest'
import { createCache } from '../src/core/cache.js'
import { ManualClock } from '../src/core/clock.js'
import { hashArguments } from '../src/core/memoize.js'
import { InvalidArgumentError } from '../src/errors.js'
import { memoryStore } from '../src/stores/memory/index.js'

function setup() {
  const clock = new ManualClock()
  const cache = createCache({ store: memoryStore({ clock, sweepIntervalMs: 0 }) })
  return { clock, cache }
}

describe('memoize', () => {
  it('caches by canonical input: key order does not matter; run() reports hit, miss and time', async () => {
    const { cache } = setup()
    let calls = 0
    async function lookupCustomer(query: { id: number; region: string }) {
      calls++
      await new Promise((resolve) => setTimeout(resolve, 5))
      return { id: query.id, name: `customer ${query.id}` }
    }
    const memoized = cache.memoize(lookupCustomer, { ttl: '5m' })
    const first = await memoized.run({ id: 7, region: 'eu' })
    expect(first).toMatchObject({
      value: { id: 7, name: 'customer 7' },
      hit: false,
      stale: false,
    })
    expect(first.ms).toBeGreaterThan(0)
    expect(first.key).toBe(`lookupCustomer:${hashArguments([{ id: 7, region: 'eu' }])}`)
    expect(first.key).toMatch(/^lookupCustomer:[A-Za-z0-9_-]{43}$/)

    const second = await memoized.run({ region: 'eu', id: 7 })
    expect(second).toMatchObject({ value: { id: 7, name: 'customer 7' }, hit: true })
    expect(second.key).toBe(first.key)
    expect(await memoized({ id: 8, region: 'eu' })).toEqual({ id: 8, name: 'customer 8' })
    expect(calls).toBe(2)
    expect(await cache.ttl(first.key)).toBe(300_000)
    expect(cache.stats().getOrSet).toMatchObject({ hits: 1, misses: 2, factoryCalls: 2 })
  })

  it('different inputs and different functions get different keys', async () => {
    const { cache } = setup()
    const double = cache.memoize((n: number) => n * 2, { name: 'double' })
    const triple = cache.memoize((n: number) => n * 3, { name: 'triple' })
    expect(await double(2)).toBe(4)
    expect(await triple(2)).toBe(6)
    expect(double.keyOf(2)).not.toBe(double.keyOf(3))
    const pair = cache.memoize((a: unknown, b?: unknown) => [a, b], { name: 'pair' })
    expect(pair.keyOf(1, 2)).not.toBe(pair.keyOf([1, 2]))
    expect(double.keyOf(2)).not.toBe(triple.keyOf(2))
  })

  it('concurrent calls with one input share one call', async () => {
    const { cache } = setup()
    let calls = 0
    const slow = cache.memoize(
      async (n: number) => {
        calls++
        await new Promise((resolve) => setTimeout(resolve, 20))
        return n + 1
      },
      { name: 'slow' },
    )
    const results = await Promise.all(Array.from({ length: 100 }, () => slow(1)))
    expect(results.every((r) => r === 2)).toBe(true)
    expect(calls).toBe(1)
  })

  it('uses a custom key function and expires with its TTL', async () => {
    const { cache, clock } = setup()
    let calls = 0
    const fetchOrder = cache.memoize(
      (tenant: string, id: number) => {
        calls++
        return { tenant, id, version: calls }
      },
      { key: (tenant, id) => `order:${tenant}:${id}`, ttl: '1m' },
    )
    expect(await fetchOrder('acme', 1)).toEqual({ tenant: 'acme', id: 1, version: 1 })
    expect(await cache.get('order:acme:1')).toEqual({ tenant: 'acme', id: 1, version: 1 })
    clock.advance(59_000)
    expect((await fetchOrder.run('acme', 1)).hit).toBe(true)
    clock.advance(1_000)
    expect(await fetchOrder.run('acme', 1)).toMatchObject({ hit: false, value: { version: 2 } })
  })

  it('invalidate(input) drops the result and its grace copy', async () => {
    const { cache, clock } = setup()
    let calls = 0
    let failing = false
    const price = cache.memoize(
      (sku: string) => {
        calls++
        if (failing) throw new Error('pricing down')
        return `${sku}@${calls}`
      },
      { name: 'price', ttl: '1s', grace: '1h' },
    )
    expect(await price('a')).toBe('a@1')
    clock.advance(2_000)
    failing = true
    expect(await price.run('a')).toMatchObject({ value: 'a@1', stale: true, hit: false })
    expect(await price.invalidate('a')).toBe(false) // the fresh value had expired already
    clock.advance(20_000) // past the retry backoff
    await expect(price('a')).rejects.toThrow('pricing down')
    failing = false
    expect(await price('a')).toBe('a@4')
    expect(await price.invalidate('a')).toBe(true)
    expect(await price.run('a')).toMatchObject({ value: 'a@5', hit: false })
  })

  it('keeps results in the given namespace', async () => {
    const { cache } = setup()
    const square = cache.memoize((n: number) => n * n, {
      name: 'square',
      namespace: 'memo',
      key: (n) => `sq:${n}`,
    })
    expect(await square(3)).toBe(9)
    expect(await cache.namespace('memo').get('sq:3')).toBe(9)
    expect(await cache.has('sq:3')).toBe(false)
  })

  it('rejects what it cannot key', async () => {
    const { cache } = setup()
    expect(() => cache.memoize((n: number) => n)).toThrow(InvalidArgumentError)
    expect(() => cache.memoize('nope' as unknown as () => 1)).toThrow(InvalidArgumentError)
    const bad = cache.memoize((n: number) => n, { key: () => '' })
    await expect(bad(1)).rejects.toBeInstanceOf(InvalidArgumentError)
    const withFunctionArg = cache.memoize((f: () => void) => typeof f, { name: 'f' })
    await expect(withFunctionArg(() => undefined)).rejects.toBeInstanceOf(InvalidArgumentError)
    const typo = cache.memoize((n: number) => n, {
      name: 'typo',
      tll: '1m',
    } as unknown as { name: string })
    await expect(typo(1)).rejects.toThrow(/option "tll"/)
  })
})
