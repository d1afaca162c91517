import { afterEach, describe, expect, it } from 'vitest'
import type { ResolvedConfig } from '../src/config/index.js'
import { createCache, type Cache } from '../src/flowcache.js'
import { createFlowHost, type FlowHost } from '../src/host/index.js'
import { createServer, type FlowcacheServer } from '../src/http/index.js'
import { flowDef, RecordingRunner, waitUntil } from './helpers/host.js'

const TOKEN = 'test-token-0123456789abcdef'

function configFor(server: Partial<ResolvedConfig['server']> = {}): ResolvedConfig {
  return {
    cache: { enabled: true, type: 'memory', path: ':memory:', fallback: 'memory' },
    server: { host: '127.0.0.1', port: 0, bodyLimit: 1024 * 1024, ...server },
    flows: { tenant: 'default' },
  }
}

interface Setup {
  cache: Cache
  host: FlowHost
  runner: RecordingRunner
  server: FlowcacheServer
}

const open: Setup[] = []

async function setup(server: Partial<ResolvedConfig['server']> = {}): Promise<Setup> {
  const cache = createCache({ limits: { maxValueBytes: 64 * 1024 } })
  const runner = new RecordingRunner()
  const flows = [
    flowDef('orders', { kind: 'http', method: 'POST', path: '/orders/:id' }),
    flowDef('tick', { kind: 'schedule', everyMs: 60_000 }, { requireLeaderElection: true }),
  ]
  const host = createFlowHost({ cache, runner, flows: () => flows, owner: 'host-a' })
  await host.start()
  const created = createServer({
    config: configFor(server),
    cache,
    host,
    runFlow: async (name, event, options) => {
      const flow = flows.find((candidate) => candidate.name === name)
      return flow === undefined ? undefined : runner.run(flow, event, options)
    },
  })
  const result = { cache, host, runner, server: created }
  open.push(result)
  return result
}

afterEach(async () => {
  for (const { server, cache } of open.splice(0)) {
    await server.close()
    await cache.close()
  }
})

/** A concrete URL for a route pattern. */
function concrete(url: string): string {
  return url
    .replace(':ns', 'tenant%3Aacme%2Fflow%3Aorders')
    .replace(':key', 'k1')
    .replace(':name', 'orders')
    .replace('*', 'orders/1')
}

describe('auth when bound beyond loopback', () => {
  it('requires the bearer token on every route but the public ones (/healthz, the console files), never from the URL', async () => {
    const { server } = await setup({ host: '0.0.0.0', token: TOKEN })
    expect(server.authRequired).toBe(true)
    const routes = server.routes().filter((route) => !route.public)
    expect(routes.length).toBeGreaterThanOrEqual(20)
    const app = server.fastify
    for (const route of routes) {
      const method = route.method as 'GET'
      const url = concrete(route.url)
      const what = `${route.method} ${route.url}`
      const none = await app.inject({ method, url })
      expect(none.statusCode, what).toBe(401)
      if (route.method !== 'HEAD') {
        expect(none.json(), what).toMatchObject({ error: { code: 'E_UNAUTHORIZED' } })
      }
      expect(none.headers['www-authenticate'], what).toContain('Bearer')
      const wrong = await app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${TOKEN}x` },
      })
      expect(wrong.statusCode, what).toBe(401)
      const shorter = await app.inject({ method, url, headers: { authorization: 'Bearer x' } })
      expect(shorter.statusCode, what).toBe(401)
      const basic = await app.inject({ method, url, headers: { authorization: `Basic ${TOKEN}` } })
      expect(basic.statusCode, what).toBe(401)
      for (const name of ['token', 'access_token', 'authorization']) {
        const separator = url.includes('?') ? '&' : '?'
        const inQuery = await app.inject({ method, url: `${url}${separator}${name}=${TOKEN}` })
        expect(inQuery.statusCode, `${what} ?${name}=`).toBe(401)
      }
      const good = await app.inject({ method, url, headers: { authorization: `Bearer ${TOKEN}` } })
      expect(good.statusCode, what).not.toBe(401)
    }
    const unknown = await app.inject({ method: 'GET', url: '/nowhere' })
    expect(unknown.statusCode).toBe(401)
    const health = await app.inject({ method: 'GET', url: '/healthz' })
    expect(health.statusCode).toBe(200)
    expect(health.json()).toEqual({ status: 'ok' })
  })

  it('holds over a real socket bound to 0.0.0.0', async () => {
    const { server } = await setup({ host: '0.0.0.0', token: TOKEN })
    const base = (await server.listen()).replace('0.0.0.0', '127.0.0.1')
    const url = `${base}/v1/ns/a/keys/k`
    expect((await fetch(url)).status).toBe(401)
    expect((await fetch(`${url}?token=${TOKEN}`)).status).toBe(401)
    const ok = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(ok.status).toBe(404)
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
  })

  it('refuses to create a server beyond loopback without a token', async () => {
    const cache = createCache()
    expect(() => createServer({ config: configFor({ host: '0.0.0.0' }), cache })).toThrow(
      /token.*FLOWCACHE_TOKEN/,
    )
    await cache.close()
  })

  it('needs no token on loopback when none is set', async () => {
    const { server } = await setup()
    expect(server.authRequired).toBe(false)
    const answer = await server.fastify.inject({ method: 'GET', url: '/v1/stats' })
    expect(answer.statusCode).toBe(200)
  })
})

describe('REST API', () => {
  it('round-trips cache entries per namespace, nested with "/"', async () => {
    const { server, cache } = await setup()
    const app = server.fastify
    const base = '/v1/ns/tenant%3Aacme%2Fflow%3Aorders/keys'
    const put = await app.inject({
      method: 'PUT',
      url: `${base}/order%2F1`,
      payload: { value: { id: 1, tags: ['a'] }, ttl: '1m' },
    })
    expect(put.statusCode).toBe(200)
    expect(put.json()).toEqual({ key: 'order/1', stored: true })
    expect(await cache.namespace('tenant:acme').namespace('flow:orders').get('order/1')).toEqual({
      id: 1,
      tags: ['a'],
    })
    const get = await app.inject({ method: 'GET', url: `${base}/order%2F1` })
    expect(get.json()).toEqual({ key: 'order/1', value: { id: 1, tags: ['a'] } })
    const ttl = (await app.inject({ method: 'GET', url: `${base}/order%2F1/ttl` })).json<{
      ttl: number
    }>()
    expect(ttl.ttl).toBeGreaterThan(0)
    expect(ttl.ttl).toBeLessThanOrEqual(60_000)
    await app.inject({ method: 'PUT', url: `${base}/other?ttl=5000`, payload: { value: null } })
    await app.inject({ method: 'PUT', url: `${base}/forever`, payload: { value: 'x' } })
    expect((await app.inject({ method: 'GET', url: `${base}/other` })).json()).toEqual({
      key: 'other',
      value: null,
    })
    expect((await app.inject({ method: 'GET', url: `${base}/forever/ttl` })).json()).toEqual({
      key: 'forever',
      ttl: null,
    })
    expect((await app.inject({ method: 'GET', url: `${base}?prefix=o` })).json()).toEqual({
      keys: ['order/1', 'other'],
    })
    expect((await app.inject({ method: 'GET', url: `${base}?limit=1` })).json().keys).toHaveLength(
      1,
    )
    const del = await app.inject({ method: 'DELETE', url: `${base}/order%2F1` })
    expect(del.json()).toEqual({ key: 'order/1', deleted: true })
    const missing = await app.inject({ method: 'GET', url: `${base}/order%2F1` })
    expect(missing.statusCode).toBe(404)
    expect(missing.json()).toMatchObject({ error: { code: 'E_NOT_FOUND' } })
    expect((await app.inject({ method: 'GET', url: `${base}/order%2F1/ttl` })).statusCode).toBe(404)
    // The parent namespace does not see the child's keys as its own.
    expect(
      (await app.inject({ method: 'GET', url: '/v1/ns/tenant%3Aacme/keys/other' })).statusCode,
    ).toBe(404)
  })

  it('maps bad input to 400 and large values to 413 with a JSON error body', async () => {
    const { server } = await setup({ bodyLimit: 128 * 1024 })
    const app = server.fastify
    const bad = async (payload: unknown, url = '/v1/ns/a/keys/k'): Promise<unknown> => {
      const answer = await app.inject({ method: 'PUT', url, payload: payload as string })
      expect(answer.statusCode, JSON.stringify(payload)).toBe(400)
      return answer.json()
    }
    expect(await bad({ value: 1, ttl: 0 })).toMatchObject({ error: { code: 'E_INVALID_ARGUMENT' } })
    expect(await bad({ value: 1, ttl: 'soon' })).toMatchObject({
      error: { code: 'E_INVALID_ARGUMENT' },
    })
    expect(await bad({ nothing: 1 })).toMatchObject({ error: { code: 'E_INVALID_ARGUMENT' } })
    expect(await bad({ value: 1 }, '/v1/ns/a%2F%2Fb/keys/k')).toMatchObject({
      error: { message: expect.stringContaining('empty part') as unknown },
    })
    const notJson = await app.inject({
      method: 'PUT',
      url: '/v1/ns/a/keys/k',
      headers: { 'content-type': 'application/json' },
      payload: '{nope',
    })
    expect(notJson.statusCode).toBe(400)
    expect(notJson.json()).toMatchObject({ error: { code: 'E_BAD_REQUEST' } })
    const big = await app.inject({
      method: 'PUT',
      url: '/v1/ns/a/keys/k',
      payload: { value: 'x'.repeat(100 * 1024) },
    })
    expect(big.statusCode).toBe(413)
    expect(big.json()).toMatchObject({ error: { code: 'E_VALUE_TOO_LARGE' } })
  })

  it('answers 413 for a body over the limit', async () => {
    const { server } = await setup({ bodyLimit: 4096 })
    const answer = await server.fastify.inject({
      method: 'PUT',
      url: '/v1/ns/a/keys/k',
      payload: { value: 'x'.repeat(8192) },
    })
    expect(answer.statusCode).toBe(413)
    expect(answer.json()).toMatchObject({ error: { code: 'E_VALUE_TOO_LARGE' } })
  })

  it('acquires, shows and releases locks', async () => {
    const { server } = await setup()
    const app = server.fastify
    const url = '/v1/ns/jobs/locks/nightly'
    const first = await app.inject({ method: 'POST', url, payload: { ttl: '30s', owner: 'w1' } })
    expect(first.statusCode).toBe(200)
    expect(first.json()).toMatchObject({ key: 'nightly', acquired: true, owner: 'w1' })
    const token = first.json<{ token: string }>().token
    expect(token).toMatch(/^\d+$/)
    const second = await app.inject({ method: 'POST', url, payload: { ttl: '30s', owner: 'w2' } })
    expect(second.statusCode).toBe(409)
    expect(second.json()).toMatchObject({
      error: { code: 'E_LOCK_TIMEOUT' },
      holder: { owner: 'w1', token },
    })
    expect((await app.inject({ method: 'GET', url })).json()).toMatchObject({
      held: true,
      holder: { owner: 'w1', token },
    })
    const wrongOwner = await app.inject({ method: 'DELETE', url: `${url}?owner=w2` })
    expect(wrongOwner.json()).toEqual({ key: 'nightly', released: false })
    const missingOwner = await app.inject({ method: 'DELETE', url })
    expect(missingOwner.statusCode).toBe(400)
    const released = await app.inject({ method: 'DELETE', url, payload: { owner: 'w1' } })
    expect(released.json()).toEqual({ key: 'nightly', released: true })
    expect((await app.inject({ method: 'GET', url })).json()).toEqual({
      key: 'nightly',
      held: false,
      holder: null,
    })
    const noTtl = await app.inject({ method: 'POST', url, payload: {} })
    expect(noTtl.statusCode).toBe(400)
  })

  it('checks rate limits and reports their status without consuming', async () => {
    const { server } = await setup()
    const app = server.fastify
    const url = '/v1/ns/api/rate-limits/partner'
    const limit = { max: 2, per: '1m' }
    const results = []
    for (let i = 0; i < 3; i++) {
      const answer = await app.inject({ method: 'POST', url, payload: limit })
      expect(answer.statusCode).toBe(200)
      results.push(answer.json<{ allowed: boolean; remaining: number }>())
    }
    expect(results.map((result) => result.allowed)).toEqual([true, true, false])
    const status = await app.inject({ method: 'GET', url: `${url}?max=2&per=1m` })
    expect(status.json()).toMatchObject({ key: 'partner', allowed: false, remaining: 0, limit: 2 })
    const again = await app.inject({ method: 'GET', url: `${url}?max=2&per=1m` })
    expect(again.json()).toMatchObject({ remaining: 0 })
    expect((await app.inject({ method: 'DELETE', url })).json()).toEqual({
      key: 'partner',
      reset: true,
    })
    expect((await app.inject({ method: 'POST', url, payload: { per: '1m' } })).statusCode).toBe(400)
  })

  it('lists flows, leaders and runs, runs flows by name and dispatches HTTP flows', async () => {
    const { server, runner, host } = await setup()
    const app = server.fastify
    await waitUntil(
      () => host.status().flows.some((flow) => flow.leader?.isLeader === true),
      'the election of flow tick',
    )
    const leaders = (await app.inject({ method: 'GET', url: '/v1/leaders' })).json()
    expect(leaders).toMatchObject({
      leaders: [
        { flow: 'tick', tenant: 'acme', election: 'flow:tick', isLeader: true, owner: 'host-a' },
      ],
    })
    const flows = (await app.inject({ method: 'GET', url: '/v1/flows' })).json<{
      flows: { name: string }[]
    }>()
    expect(flows.flows.map((flow) => flow.name)).toEqual(['orders', 'tick'])

    const routed = await app.inject({
      method: 'POST',
      url: '/flows/orders/42?source=web',
      payload: { total: 3 },
    })
    expect(routed.statusCode).toBe(200)
    expect(runner.calls.at(-1)?.event).toMatchObject({
      data: { total: 3 },
      params: { id: '42' },
      query: { source: 'web' },
    })
    const wrongMethod = await app.inject({ method: 'GET', url: '/flows/orders/42' })
    expect(wrongMethod.statusCode).toBe(405)
    expect(wrongMethod.headers.allow).toBe('POST')
    expect((await app.inject({ method: 'POST', url: '/flows/nothing' })).statusCode).toBe(404)
    const runs = (await app.inject({ method: 'GET', url: '/v1/flows/orders/runs' })).json()
    expect(runs).toMatchObject({
      flow: 'orders',
      runs: { total: 1 },
      recent: [{ ok: true, trigger: 'http' }],
    })
    expect((await app.inject({ method: 'GET', url: '/v1/flows/none/runs' })).statusCode).toBe(404)

    const manual = await app.inject({
      method: 'POST',
      url: '/v1/flows/tick/run',
      payload: { event: { data: { n: 1 } }, debug: true },
    })
    expect(manual.statusCode).toBe(200)
    expect(runner.calls.at(-1)).toMatchObject({
      flow: 'tick',
      debug: true,
      event: { data: { n: 1 } },
    })
    expect(
      (await app.inject({ method: 'POST', url: '/v1/flows/none/run', payload: {} })).statusCode,
    ).toBe(404)
  })

  it('serves stats, readiness, metrics, security headers and no CORS', async () => {
    const { server } = await setup()
    const app = server.fastify
    await app.inject({ method: 'GET', url: '/v1/ns/a/keys/missing' })
    const stats = (await app.inject({ method: 'GET', url: '/v1/stats' })).json()
    expect(stats).toMatchObject({
      cache: { misses: 1 },
      health: { status: 'ok' },
      flows: { count: 2 },
    })
    const ready = await app.inject({ method: 'GET', url: '/readyz' })
    expect(ready.statusCode).toBe(200)
    expect(ready.json()).toMatchObject({ status: 'ready', host: 'running' })
    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    expect(metrics.headers['content-type']).toContain('text/plain')
    expect(metrics.body).toMatch(/^flowcache_misses_total\{cache="default"\} 1$/m)
    expect(ready.headers['content-security-policy']).toBe(
      "default-src 'none'; frame-ancestors 'none'",
    )
    expect(ready.headers['x-content-type-options']).toBe('nosniff')
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/v1/stats',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' },
    })
    expect(preflight.headers['access-control-allow-origin']).toBeUndefined()
    const cross = await app.inject({
      method: 'GET',
      url: '/v1/stats',
      headers: { origin: 'https://evil.example' },
    })
    expect(cross.headers['access-control-allow-origin']).toBeUndefined()
  })

  it('reports not ready once the flow host stops', async () => {
    const { server, host } = await setup()
    await host.stop()
    const ready = await server.fastify.inject({ method: 'GET', url: '/readyz' })
    expect(ready.statusCode).toBe(503)
    expect(ready.json()).toMatchObject({ status: 'not-ready', host: 'stopped' })
  })
})
