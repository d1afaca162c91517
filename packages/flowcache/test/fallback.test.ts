import { describe, expect, it } from 'vitest'
import { createCache } from '../src/core/cache.js'
import type { Logger } from '../src/core/logger.js'
import { StoreUnavailableError } from '../src/errors.js'
import { MemoryStore } from '../src/stores/memory/index.js'
import type { StoreCapabilities } from '../src/types/store.js'

/**
 * A distributed-looking store whose backend can be switched off and on: it stands in for the
 * start-up connection only; the Redis and NATS fallback tests use real servers.
 */
class SwitchableStore extends MemoryStore {
  override readonly capabilities: StoreCapabilities = {
    ...new MemoryStore().capabilities,
    distributed: true,
    local: false,
  }
  override readonly local = undefined as never
  reachable = false
  connectCalls = 0

  async connect(): Promise<void> {
    this.connectCalls++
    if (!this.reachable) throw new StoreUnavailableError('connect ECONNREFUSED 127.0.0.1:1')
  }
}

function capturingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  return {
    lines,
    info: (message) => lines.push(`info ${message}`),
    warn: (message) => lines.push(`warn ${message}`),
    error: (message) => lines.push(`error ${message}`),
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('fallback to memory when a distributed store is unreachable at start', () => {
  it('serves from memory, reports degraded, logs once, and switches back when the store returns', async () => {
    const primary = new SwitchableStore()
    await primary.set('fc.k/from-primary', new TextEncoder().encode('"primary"'))
    const logger = capturingLogger()
    const cache = createCache({ store: primary, logger })
    await cache.ready()

    expect(cache.health()).toMatchObject({
      status: 'degraded',
      reason: expect.stringMatching(/unreachable at start/),
    })
    expect(cache.stats().fallback).toEqual({ active: true, activations: 1 })
    await cache.set('during-outage', 1)
    expect(await cache.get('during-outage')).toBe(1)
    expect(await cache.get('from-primary')).toBeUndefined()
    await waitFor(() => primary.connectCalls >= 3)
    expect(logger.lines.filter((line) => line.startsWith('warn'))).toHaveLength(1)

    primary.reachable = true
    await waitFor(() => cache.health().status === 'ok', 40_000)
    expect(cache.stats().fallback.active).toBe(false)
    expect(await cache.get('from-primary')).toBe('primary')
    expect(logger.lines.at(-1)).toMatch(/^info .*switched back/)
    await cache.close()
  }, 60_000)

  it('sets quotas on the primary and on the memory fallback, and reports the usage of the one serving', async () => {
    const primary = new SwitchableStore()
    const logger = capturingLogger()
    // A quota set before the fallback starts, and one set while it serves.
    const cache = createCache({ store: primary, logger, quotas: { default: { maxEntries: 2 } } })
    const early = cache.namespace('early')
    await cache.ready()
    expect(cache.health().status).toBe('degraded')
    const late = cache.namespace('late', { maxEntries: 3 })
    for (let i = 0; i < 6; i++) {
      await early.set(`k${i}`, i)
      await late.set(`k${i}`, i)
    }
    expect((await early.keys()).length).toBe(2)
    expect((await late.keys()).length).toBe(3)
    expect(await early.namespaceStats()).toMatchObject({ entries: 2, evictions: 4 })
    expect(await late.namespaceStats()).toMatchObject({ entries: 3, evictions: 3 })
    // The primary has both quotas too, though nothing was written to it.
    expect(await primary.quotaUsage('fc.early.')).toEqual({ entries: 0, bytes: 0, evictions: 0 })
    expect(await primary.quotaUsage('fc.late.')).toEqual({ entries: 0, bytes: 0, evictions: 0 })

    primary.reachable = true
    await waitFor(() => cache.health().status === 'ok', 40_000)
    for (let i = 0; i < 4; i++) await early.set(`p${i}`, i)
    expect(await early.namespaceStats()).toMatchObject({ entries: 2, evictions: 2 })
    await cache.close()
  }, 60_000)

  it("with fallback: 'fail' start-up fails with a typed error and every call rejects", async () => {
    const cache = createCache({
      store: new SwitchableStore(),
      fallback: 'fail',
      logger: capturingLogger(),
    })
    await expect(cache.ready()).rejects.toBeInstanceOf(StoreUnavailableError)
    await expect(cache.get('k')).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' })
    expect(cache.health().status).toBe('down')
    await cache.close()
  })

  it('a reachable store is used directly and reports ok', async () => {
    const primary = new SwitchableStore()
    primary.reachable = true
    const cache = createCache({ store: primary, logger: capturingLogger() })
    await cache.set('k', 'v')
    expect(await primary.get('fc.k/k')).toBeDefined()
    expect(cache.health().status).toBe('ok')
    expect(cache.stats().fallback).toEqual({ active: false, activations: 0 })
    await cache.close()
  })

  it('rejects an unknown fallback mode', () => {
    expect(() => createCache({ fallback: 'maybe' as never })).toThrow(/fallback/)
  })
})
