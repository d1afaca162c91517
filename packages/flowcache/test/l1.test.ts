import { describe, expect, it } from 'vitest'
import { createCache } from '../src/core/cache.js'
import { silentLogger } from '../src/core/logger.js'
import { StoreUnavailableError } from '../src/errors.js'
import { MemoryStore } from '../src/stores/memory/index.js'
import type {
  Invalidation,
  InvalidationBus,
  InvalidationListener,
  StoreCapabilities,
  StoreEntry,
} from '../src/types/store.js'

/**
 * The L1 rules on a deterministic in-process backend: one shared "remote" store and a bus whose
 * delivery and connection the test controls. The same rules run over real Redis and NATS in
 * the stores' own tests.
 */
class Hub {
  readonly listeners = new Set<InvalidationListener>()
  held: Invalidation[] = []
  holding = false
  publish(invalidation: Invalidation): void {
    if (this.holding) this.held.push(invalidation)
    else for (const listener of this.listeners) listener.message(invalidation)
  }
  release(): void {
    this.holding = false
    for (const invalidation of this.held.splice(0)) this.publish(invalidation)
  }
}

class SharedRemote extends MemoryStore {
  override readonly capabilities: StoreCapabilities = {
    ...new MemoryStore().capabilities,
    distributed: true,
    local: false,
  }
  override readonly local = undefined as never
  readonly buses: Array<{ listener: InvalidationListener | undefined }> = []
  /** When set, reads wait for it: lets a test interleave an invalidation with a read in flight. */
  gate: Promise<void> | undefined
  constructor(readonly hub: Hub) {
    super({ sweepIntervalMs: 0 })
  }
  override async get(key: string): Promise<StoreEntry | undefined> {
    const entry = await super.get(key)
    if (this.gate !== undefined) await this.gate
    return entry
  }
  override async close(): Promise<void> {
    // Shared between the replicas of a test; closed by the test itself.
  }
  createBus(): InvalidationBus {
    const hub = this.hub
    const handle: { listener: InvalidationListener | undefined } = { listener: undefined }
    this.buses.push(handle)
    return {
      publish: async (invalidation) => hub.publish(invalidation),
      subscribe: async (listener) => {
        handle.listener = listener
        hub.listeners.add(listener)
      },
      close: async () => {
        if (handle.listener !== undefined) hub.listeners.delete(handle.listener)
      },
    }
  }
}

async function replicas(count = 2) {
  const remote = new SharedRemote(new Hub())
  const caches = Array.from({ length: count }, () =>
    createCache({ store: remote, l1: { maxEntries: 100 }, logger: silentLogger }),
  )
  await Promise.all(caches.map((cache) => cache.ready()))
  return { remote, caches }
}

describe('L1 tier', () => {
  it('serves repeated reads from L1 and counts them', async () => {
    const { caches } = await replicas(1)
    const [a] = caches as [ReturnType<typeof createCache>]
    await a.set('k', { v: 1 })
    expect(await a.get('k')).toEqual({ v: 1 })
    expect(await a.get('k')).toEqual({ v: 1 })
    expect(a.stats().l1).toMatchObject({ live: true })
    expect(a.stats().l1?.hits).toBeGreaterThanOrEqual(2)
  })

  it('a write on one replica drops the old value from the other replica', async () => {
    const { caches } = await replicas(2)
    const [a, b] = caches as [ReturnType<typeof createCache>, ReturnType<typeof createCache>]
    await a.set('price', 10)
    expect(await b.get('price')).toBe(10)
    await a.set('price', 11)
    expect(await b.get('price')).toBe(11)
    await a.delete('price')
    expect(await b.get('price')).toBeUndefined()
    await a.set('x', 1)
    expect(await b.get('x')).toBe(1)
    await a.namespace('n').set('y', 1)
    expect(await b.namespace('n').get('y')).toBe(1)
    await a.namespace('n').clear()
    expect(await b.namespace('n').get('y')).toBeUndefined()
    expect(await b.increment('x')).toBe(2)
    expect(await a.get('x')).toBe(2)
  })

  it('while the bus is down L1 is bypassed, and it is emptied when the bus is back', async () => {
    const { remote, caches } = await replicas(2)
    const [a, b] = caches as [ReturnType<typeof createCache>, ReturnType<typeof createCache>]
    await a.set('k', 'old')
    expect(await b.get('k')).toBe('old')
    const busOfB = remote.buses[1]?.listener
    busOfB?.interrupted('test cut')
    remote.hub.listeners.delete(busOfB!)
    await a.set('k', 'new') // B misses this message
    expect(b.stats().l1?.live).toBe(false)
    expect(await b.get('k')).toBe('new')
    remote.hub.listeners.add(busOfB!)
    busOfB?.resumed()
    expect(await b.get('k')).toBe('new')
  })

  it('a read in flight when an invalidation arrives does not put the old value into L1', async () => {
    const { remote, caches } = await replicas(2)
    const [a, b] = caches as [ReturnType<typeof createCache>, ReturnType<typeof createCache>]
    await a.set('k', 'old')
    let open!: () => void
    remote.gate = new Promise<void>((resolve) => (open = resolve))
    const slowRead = b.get('k') // reads 'old' from the store, then waits at the gate
    await new Promise((resolve) => setTimeout(resolve, 5))
    remote.gate = undefined
    await a.set('k', 'new') // the invalidation reaches B while its read is in flight
    open()
    expect(await slowRead).toBe('old')
    expect(await b.get('k')).toBe('new')
  })

  it('an entry stays in L1 no longer than l1.maxTtl or its own TTL', async () => {
    const remote = new SharedRemote(new Hub())
    const cache = createCache({ store: remote, l1: { maxTtl: 50 }, logger: silentLogger })
    await cache.ready()
    await cache.set('k', 1)
    remote.hub.holding = true // messages are lost from here on
    await remote.set('fc.k/k', new TextEncoder().encode('2'))
    expect(await cache.get('k')).toBe(1)
    await new Promise((resolve) => setTimeout(resolve, 60))
    expect(await cache.get('k')).toBe(2)
  })

  it('a value too big for L1 is served from the store, not refused', async () => {
    const remote = new SharedRemote(new Hub())
    const cache = createCache({ store: remote, l1: { maxBytes: 100 }, logger: silentLogger })
    await cache.ready()
    const big = 'x'.repeat(300)
    expect(await cache.set('big', big)).toBe(true)
    expect(await cache.get('big')).toBe(big)
    expect(await cache.getMany(['big'])).toEqual([big])
  })

  it('values served by the memory fallback never reach L1, and L1 is empty after the switch back', async () => {
    class FlakyRemote extends SharedRemote {
      reachable = false
      async connect(): Promise<void> {
        if (!this.reachable) throw new StoreUnavailableError('connect ECONNREFUSED (test)')
      }
    }
    const remote = new FlakyRemote(new Hub())
    await remote.set('fc.k/x', new TextEncoder().encode('"primary"'))
    const cache = createCache({
      store: remote,
      l1: {},
      logger: silentLogger,
      fallbackRetry: { baseMs: 10, maxMs: 20 },
    })
    await cache.ready()
    expect(cache.health().status).toBe('degraded')
    await cache.set('x', 'written-in-fallback')
    expect(await cache.get('x')).toBe('written-in-fallback')
    remote.reachable = true
    const deadline = Date.now() + 5000
    while (cache.health().status !== 'ok' && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10))
    expect(cache.health().status).toBe('ok')
    expect(await cache.get('x')).toBe('primary')
    expect(await cache.get('x')).toBe('primary')
    await cache.close()
  })

  it('needs a store with a bus', () => {
    expect(() => createCache({ l1: {} })).toThrow(/invalidation bus/)
  })
})
