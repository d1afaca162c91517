/**
 * The listing routes the web console reads: `/v1/namespaces`, `/v1/ns/:ns/entries`,
 * `/v1/locks` and `/v1/rate-limits`, and the console's static routes.
 */
import { randomUUID } from 'node:crypto'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { createCacheFromConfig, type ResolvedConfig } from '../src/config/index.js'
import { createCache, type Cache } from '../src/flowcache.js'
import { createServer, type FlowcacheServer } from '../src/http/index.js'
import { waitUntil } from './helpers/host.js'

const open: Array<{ cache: Cache; server: FlowcacheServer }> = []

afterEach(async () => {
  for (const { server, cache } of open.splice(0)) {
    await server.close()
    await cache.close()
  }
})

/** The configuration of a server on a memory store on 127.0.0.1, with `cache` fields over it. */
function memoryConfig(cache: Partial<ResolvedConfig['cache']>): ResolvedConfig {
  return {
    cache: { enabled: true, type: 'memory', path: ':memory:', fallback: 'memory', ...cache },
    server: { host: '127.0.0.1', port: 0, bodyLimit: 1024 * 1024 },
    flows: { tenant: 'default' },
  }
}

function setup(options: { prefix?: string; console?: boolean } = {}): {
  cache: Cache
  server: FlowcacheServer
} {
  const cache = createCache(options.prefix === undefined ? {} : { prefix: options.prefix })
  const config = memoryConfig(options.prefix === undefined ? {} : { prefix: options.prefix })
  const server = createServer({
    config,
    cache,
    ...(options.console === undefined ? {} : { console: options.console }),
  })
  open.push({ cache, server })
  return { cache, server }
}

async function get(server: FlowcacheServer, url: string): Promise<{ status: number; body: any }> {
  const answer = await server.fastify.inject({ method: 'GET', url })
  return { status: answer.statusCode, body: answer.json() }
}

describe('listing routes of the console', () => {
  it('lists namespaces with their key, lock, rate-limit and lease counts', async () => {
    const { cache, server } = setup()
    const orders = cache.namespace('tenant:acme').namespace('flow:orders')
    await orders.set('a', 1)
    await orders.set('b', 2, '1m')
    await orders.locks.acquire('sync', { ttl: '30s', owner: 'w1' })
    await cache.namespace('jobs').rateLimit('api', { max: 5, per: '1m' })
    const election = cache.namespace('elect').leader('main', { lease: '5s' })
    await waitUntil(() => election.isLeader, 'the election won')
    await cache.set('top-level', true)
    const { status, body } = await get(server, '/v1/namespaces')
    expect(status).toBe(200)
    const byNs = Object.fromEntries(body.namespaces.map((entry: any) => [entry.ns, entry]))
    expect(byNs['tenant:acme/flow:orders']).toEqual({
      ns: 'tenant:acme/flow:orders',
      path: ['tenant:acme', 'flow:orders'],
      keys: 2,
      locks: 1,
      rateLimits: 0,
      leases: 0,
    })
    expect(byNs.jobs).toMatchObject({ keys: 0, rateLimits: 1 })
    expect(byNs.elect).toMatchObject({ keys: 0, leases: 1 })
    // The root namespace has no `:ns` form: it is not listed.
    expect(body.namespaces.map((entry: any) => entry.ns)).not.toContain('')
    expect(body.truncated).toBe(false)
    expect(body.scanned).toBeGreaterThanOrEqual(5)
    await election.stop()
  })

  it('reads only the served cache prefix', async () => {
    const prefix = `p${randomUUID().replace(/-/g, '').slice(0, 10)}`
    const { cache, server } = setup({ prefix })
    await cache.namespace('mine').set('k', 1)
    const { body } = await get(server, '/v1/namespaces')
    expect(body.namespaces.map((entry: any) => entry.ns)).toEqual(['mine'])
  })

  it('lists the entries of a namespace with their remaining TTL', async () => {
    const { cache, server } = setup()
    const view = cache.namespace('sessions')
    await view.set('s1', { user: 1 }, '1m')
    await view.set('s2', { user: 2 })
    await view.set('other', 3)
    const { status, body } = await get(server, '/v1/ns/sessions/entries?prefix=s')
    expect(status).toBe(200)
    expect(body.entries.map((entry: any) => entry.key)).toEqual(['s1', 's2'])
    expect(body.entries[0].ttl).toBeGreaterThan(0)
    expect(body.entries[0].ttl).toBeLessThanOrEqual(60_000)
    expect(body.entries[1].ttl).toBeNull()
    expect(typeof body.now).toBe('number')
    const limited = await get(server, '/v1/ns/sessions/entries?limit=1')
    expect(limited.body.entries).toHaveLength(1)
    for (const limit of ['0', '1001', 'x']) {
      const bad = await get(server, `/v1/ns/sessions/entries?limit=${limit}`)
      expect(bad.status, limit).toBe(400)
      expect(bad.body.error.message).toContain('limit')
    }
  })

  it('lists held locks with their holder and lease', async () => {
    const { cache, server } = setup()
    const lock = await cache.namespace('jobs').locks.acquire('export', {
      ttl: '30s',
      owner: 'worker-7',
    })
    expect(lock).not.toBeNull()
    const { status, body } = await get(server, '/v1/locks')
    expect(status).toBe(200)
    expect(body.locks).toHaveLength(1)
    const [held] = body.locks
    expect(held).toMatchObject({ ns: 'jobs', key: 'export', owner: 'worker-7' })
    expect(held.token).toBe(lock?.token.toString())
    expect(held.expiresAt - body.now).toBeGreaterThan(0)
    expect(held.expiresAt - body.now).toBeLessThanOrEqual(30_000)
    expect(body.stats.acquired).toBe(1)
    await lock?.release()
    expect((await get(server, '/v1/locks')).body.locks).toEqual([])
  })

  it('lists rate-limit state with the outcome counters', async () => {
    const { cache, server } = setup()
    const jobs = cache.namespace('jobs')
    await jobs.rateLimit('partner', { max: 1, per: '1m' })
    await jobs.rateLimit('partner', { max: 1, per: '1m' })
    const { status, body } = await get(server, '/v1/rate-limits')
    expect(status).toBe(200)
    expect(body.rateLimits).toHaveLength(1)
    expect(body.rateLimits[0]).toMatchObject({ ns: 'jobs', key: 'partner' })
    expect(body.rateLimits[0].expiresAt).toBeGreaterThan(body.now)
    expect(body.stats).toMatchObject({ allowed: 1, denied: 1 })
  })

  it('serves the console files publicly, and none with console: false', async () => {
    const { server } = setup()
    const routes = server.routes()
    const publicUrls = routes.filter((route) => route.public).map((route) => route.url)
    expect(publicUrls).toEqual(
      expect.arrayContaining(['/healthz', '/', '/console', '/console/', '/console/app.js']),
    )
    expect(routes.filter((route) => route.url.startsWith('/v1/')).every((r) => !r.public)).toBe(
      true,
    )
    const none = setup({ console: false }).server
    expect(none.routes().some((route) => route.url.startsWith('/console'))).toBe(false)
    const answer = await none.fastify.inject({ method: 'GET', url: '/console/' })
    expect(answer.statusCode).toBe(404)
  })
})

describe('namespace statistics routes', () => {
  it('GET /v1/ns/:ns/stats reports a quota namespace: usage, evictions, hits and the most-read key', async () => {
    const { cache, server } = setup()
    const tenant = cache.namespace('tenant:quota', { maxEntries: 2 })
    for (const key of ['a', 'b', 'c']) await tenant.set(key, key)
    for (let i = 0; i < 20; i++) await tenant.get('c')
    await tenant.get('gone')
    const { status, body } = await get(server, '/v1/ns/tenant%3Aquota/stats?top=1')
    expect(status).toBe(200)
    expect(body.entries).toBe(2)
    expect(body.evictions).toBe(1)
    expect(body.misses).toBe(1)
    expect(body.hits).toBe(20)
    expect(body.topKeys).toHaveLength(1)
    expect(body.topKeys[0].key).toBe('c')
    const all = await get(server, '/v1/namespace-stats')
    expect(all.status).toBe(200)
    const names = all.body.namespaces.map((n: { namespace: string[] }) => n.namespace)
    expect(names).toContainEqual(['tenant:quota'])
    const bad = await get(server, '/v1/ns/tenant%3Aquota/stats?top=-1')
    expect(bad.status).toBe(400)
    expect(JSON.stringify(bad.body)).toContain('top')
  })
})

describe('reading a namespace puts no quota on it', () => {
  it('with user_cache_limit_mb set, GET and HEAD routes leave a namespace written by another application alone; a PUT gives it its allocation', async () => {
    const MIB = 1024 * 1024
    const config = memoryConfig({ userCacheLimitMb: 1 })
    const cache = await createCacheFromConfig(config)
    const server = createServer({ config, cache })
    open.push({ cache, server })
    const setQuota = vi.spyOn(cache.store, 'setQuota')
    // Another application shares the store and writes 1.6 MB to 'billing', with no quota.
    const other = createCache({ store: cache.store })
    const billing = other.namespace('billing')
    for (let i = 0; i < 4; i++) await billing.set(`k${i}`, 'x'.repeat(400_000))
    await billing.namespace('eu').set('n', 1)
    await billing.locks.acquire('job', { ttl: '1m', owner: 'w1' })

    const reads = [
      '/v1/ns/billing/keys',
      '/v1/ns/billing/entries',
      '/v1/ns/billing/keys/k0',
      '/v1/ns/billing/keys/k0/ttl',
      '/v1/ns/billing%2Feu/keys/n',
      '/v1/ns/billing/locks/job',
      '/v1/ns/billing/rate-limits/api?max=5&per=1m',
      '/v1/ns/billing/stats',
      '/v1/locks',
    ]
    for (const url of reads) {
      const answer = await server.fastify.inject({ method: 'GET', url })
      expect(answer.statusCode, url).toBe(200)
    }
    const head = await server.fastify.inject({ method: 'HEAD', url: '/v1/ns/billing/keys/k1' })
    expect(head.statusCode).toBe(200)
    expect(setQuota).not.toHaveBeenCalled()
    expect((await get(server, '/v1/ns/billing/keys')).body.keys).toEqual(['k0', 'k1', 'k2', 'k3'])
    const before = (await get(server, '/v1/ns/billing/stats')).body
    expect([before.tracked, before.quota, before.entries]).toEqual([false, undefined, undefined])

    const put = await server.fastify.inject({
      method: 'PUT',
      url: '/v1/ns/billing/keys/new',
      payload: { value: 1 },
    })
    expect(put.statusCode).toBe(200)
    expect(setQuota).toHaveBeenCalledTimes(1)
    const [prefix, limits] = setQuota.mock.calls[0] ?? []
    expect(limits).toEqual({ maxBytes: MIB })
    const usage = await cache.store.quotaUsage?.(prefix as string)
    expect(usage?.bytes).toBeLessThanOrEqual(MIB)
    expect(usage?.evictions).toBeGreaterThan(0)
    const stats = (await get(server, '/v1/ns/billing/stats')).body
    expect(stats).toMatchObject({ tracked: true, quota: { maxBytes: MIB } })
    await other.close()
  })
})
