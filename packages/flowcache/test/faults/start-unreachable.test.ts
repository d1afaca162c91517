/**
 * A cache created while its Redis or NATS server cannot be reached, through the Cache API. A fault
 * proxy this file owns sits between the cache and a private server: `refuse()` (connections get
 * ECONNREFUSED) or `blackhole()` (connections are accepted, nothing is answered), then `pass()`.
 *
 * - default `fallback: 'memory'`: `ready()` resolves within the connect timeout, `health()` says
 *   `degraded` with a reason, one warning is logged, calls are served from memory; once the proxy
 *   passes, the cache switches back on its own and reads reach the real store;
 * - `fallback: 'fail'`: `ready()` and calls reject with E_STORE_UNAVAILABLE within the connect timeout.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

import { createCache, type Cache } from '../../src/core/cache.js'
import { natsStore } from '../../src/stores/nats/index.js'
import { redisStore } from '../../src/stores/redis/index.js'
import type { Store } from '../../src/types/store.js'
import {
  MARGIN_MS,
  capturingLogger,
  figureLog,
  waitUntil,
  watchUnhandled,
} from '../fixtures/fault-harness.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { startNatsServer, startRedisServer, type ServerHandle } from '../helpers/servers.js'

/** Connect timeout of both stores: redis `connectTimeoutMs`, nats `requestTimeoutMs`. */
const CONNECT_TIMEOUT_MS = 1000
/** Defaults of the cache's start-up fallback reconnect (createCache has no option for them). */
const FALLBACK_RECONNECT_BASE_MS = 250
const FALLBACK_RECONNECT_MAX_MS = 5000
/** How long the cache stays in fallback before the server becomes reachable. */
const DWELL_MS = 1500

type Mode = 'refuse' | 'blackhole'

interface Backend {
  name: 'redis' | 'nats'
  server: ServerHandle
  /** A store on `url` with this file's timeouts; on NATS, the bucket is named after `prefix`. */
  store(url: string, prefix: string): Store
}

const figures = figureLog('start-unreachable figures')
const backends: Backend[] = []
const proxies: FaultProxy[] = []
const caches: Cache[] = []

beforeAll(async () => {
  const [redis, nats] = await Promise.all([startRedisServer(), startNatsServer()])
  backends.push(
    {
      name: 'redis',
      server: redis,
      store: (url) =>
        redisStore({ url, connectTimeoutMs: CONNECT_TIMEOUT_MS, commandTimeoutMs: 500 }),
    },
    {
      name: 'nats',
      server: nats,
      store: (url, prefix) =>
        natsStore({
          servers: url,
          bucket: `fault-start-${prefix}`,
          requestTimeoutMs: CONNECT_TIMEOUT_MS,
          sweepIntervalMs: 0,
        }),
    },
  )
})

afterEach(async () => {
  await Promise.all(caches.splice(0).map((cache) => cache.close()))
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()))
})

afterAll(async () => {
  await Promise.all(backends.map((backend) => backend.server.stop({ graceMs: 1000 })))
  figures.print()
})

function backend(name: Backend['name']): Backend {
  const found = backends.find((b) => b.name === name)
  if (found === undefined) throw new Error(`no ${name} server`)
  return found
}

async function proxyIn(target: Backend, mode: Mode): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: target.server.port } })
  proxies.push(proxy)
  if (mode === 'refuse') await proxy.refuse()
  else proxy.blackhole()
  return proxy
}

function track(cache: Cache): Cache {
  caches.push(cache)
  return cache
}

describe.each(['redis', 'nats'] as const)('faults: %s unreachable at start', (name) => {
  it.each(['refuse', 'blackhole'] as const)(
    "%s: fallback 'memory' starts degraded on memory within the connect timeout, warns once, and switches back to the store when it answers",
    async (mode) => {
      const target = backend(name)
      const proxy = await proxyIn(target, mode)
      const prefix = `f${randomBytes(6).toString('hex')}`
      // A cache straight on the server, to put a value there and to see what reaches it.
      const direct = track(
        createCache({ store: target.store(target.server.url, prefix), prefix, fallback: 'fail' }),
      )
      await direct.set('from-store', 'in the store')

      const unhandled = watchUnhandled()
      try {
        const logger = capturingLogger()
        const started = performance.now()
        const cache = track(
          createCache({ store: target.store(proxy.url(name), prefix), prefix, logger }),
        )
        await cache.ready()
        const readyMs = performance.now() - started
        expect(readyMs).toBeLessThanOrEqual(CONNECT_TIMEOUT_MS + MARGIN_MS)
        expect(cache.health()).toMatchObject({
          status: 'degraded',
          reason: expect.stringMatching(new RegExp(`^${name} store unreachable at start: .+`)),
          store: name,
        })
        expect(cache.stats().fallback).toEqual({ active: true, activations: 1 })

        // Served from this process's memory: writes work, the store's value is not seen.
        expect(await cache.set('during-outage', { n: 1 })).toBe(true)
        expect(await cache.get('during-outage')).toEqual({ n: 1 })
        expect(await cache.add('once', 1)).toBe(true)
        expect(await cache.add('once', 2)).toBe(false)
        expect(await cache.increment('count', 5)).toBe(5)
        expect(await cache.get('from-store')).toBeUndefined()

        // Reconnect attempts go on in the background; the warning is not repeated.
        await sleep(DWELL_MS)
        expect(cache.health().status).toBe('degraded')
        expect(logger.lines.map((line) => line.level)).toEqual(['warn'])
        expect(logger.lines[0]?.message).toMatch(/in-process memory store/)
        const warning = logger.lines[0]?.message ?? ''

        const passedAt = performance.now()
        await proxy.pass()
        const switchBackMs = await waitUntil(
          () => cache.health().status === 'ok',
          'switch back to the store',
          FALLBACK_RECONNECT_MAX_MS + CONNECT_TIMEOUT_MS + MARGIN_MS,
        )
        expect(performance.now() - passedAt).toBeLessThanOrEqual(
          FALLBACK_RECONNECT_MAX_MS + CONNECT_TIMEOUT_MS + MARGIN_MS,
        )
        expect(cache.stats().fallback).toEqual({ active: false, activations: 1 })
        expect(logger.lines.map((line) => line.level)).toEqual(['warn', 'info'])
        expect(logger.lines[1]?.message).toMatch(/switched back from memory/)

        // Reads and writes now reach the store; what was written in fallback stayed in memory.
        expect(await cache.get('from-store')).toBe('in the store')
        expect(await cache.get('during-outage')).toBeUndefined()
        await cache.set('after', 'through the store')
        expect(await direct.get('after')).toBe('through the store')
        expect(await direct.get('during-outage')).toBeUndefined()
        figures.add(
          `${name}, ${mode}: ready() in ${readyMs.toFixed(0)} ms (connect timeout ${CONNECT_TIMEOUT_MS} ms), degraded; ` +
            `switched back ${switchBackMs.toFixed(0)} ms after the proxy passed, ${(passedAt - started).toFixed(0)} ms after createCache ` +
            `(fallback reconnect: base ${FALLBACK_RECONNECT_BASE_MS} ms doubling, full jitter, cap ${FALLBACK_RECONNECT_MAX_MS} ms); ` +
            `log: 1 warn ("${warning.slice(0, 140)}…"), 1 info`,
        )
      } finally {
        unhandled.stop()
      }
      expect(unhandled.rejections).toEqual([])
      expect(unhandled.exceptions).toEqual([])
    },
    60_000,
  )

  it('with an L1 tier, L1 stays off while the store is unreachable and is in use once it answers', async () => {
    const target = backend(name)
    const proxy = await proxyIn(target, 'refuse')
    const prefix = `f${randomBytes(6).toString('hex')}`
    const logger = capturingLogger()
    const cache = track(
      createCache({ store: target.store(proxy.url(name), prefix), prefix, logger, l1: {} }),
    )
    await cache.ready()
    expect(cache.stats().l1?.live).toBe(false)
    await proxy.pass()
    await waitUntil(
      () => cache.health().status === 'ok' && cache.stats().l1?.live === true,
      'switch back with L1 subscribed',
      FALLBACK_RECONNECT_MAX_MS + CONNECT_TIMEOUT_MS + MARGIN_MS,
    )
    await cache.set('k', 'v')
    const hitsBefore = cache.stats().l1?.hits ?? 0
    expect(await cache.get('k')).toBe('v')
    expect(cache.stats().l1?.hits).toBe(hitsBefore + 1)
  }, 60_000)

  it.each(['refuse', 'blackhole'] as const)(
    "%s: fallback 'fail' makes ready() and every call reject with E_STORE_UNAVAILABLE within the connect timeout",
    async (mode) => {
      const target = backend(name)
      const proxy = await proxyIn(target, mode)
      const logger = capturingLogger()
      const prefix = `f${randomBytes(6).toString('hex')}`
      const started = performance.now()
      const cache = track(
        createCache({
          store: target.store(proxy.url(name), prefix),
          prefix,
          fallback: 'fail',
          logger,
        }),
      )
      const error: unknown = await cache.ready().then(
        () => undefined,
        (reason: unknown) => reason,
      )
      const failedMs = performance.now() - started
      expect(error).toMatchObject({
        code: 'E_STORE_UNAVAILABLE',
        message: expect.stringMatching(/unreachable at start.*fallback: 'fail'/),
      })
      expect(failedMs).toBeLessThanOrEqual(CONNECT_TIMEOUT_MS + MARGIN_MS)
      for (const call of [
        () => cache.get('k'),
        () => cache.set('k', 1),
        () => cache.add('k', 1),
        () => cache.increment('n'),
        () => cache.delete('k'),
      ]) {
        await expect(call()).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' })
      }
      expect(cache.health()).toMatchObject({ status: 'down', store: name })
      expect(cache.stats().fallback).toEqual({ active: false, activations: 0 })

      // The failure is final for this cache: it does not reconnect once the server answers.
      await proxy.pass()
      await sleep(500)
      const afterPass = await cache.get('k').then(
        () => 'resolved',
        (reason: { code?: string }) => reason.code ?? 'rejected',
      )
      figures.add(
        `${name}, ${mode}, fallback 'fail': ready() rejected with ${(error as { code: string }).code} after ${failedMs.toFixed(0)} ms ` +
          `(connect timeout ${CONNECT_TIMEOUT_MS} ms); log lines: ${logger.lines.length}; ` +
          `a call 500 ms after the server became reachable: ${afterPass}`,
      )
    },
    30_000,
  )
})
