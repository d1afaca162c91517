/**
 * Redis failing under a running cache, through the Cache API, on private redis-server processes
 * this file starts and stops by PID:
 *
 * - killed (SIGKILL) under ~500 calls/s of get/set/add/increment/delete for 10 s, then restarted on
 *   the same port and data dir (AOF `always`): every call settles within the command timeout, the
 *   heap stays flat, the same cache serves again, and writes acknowledged before the crash are there;
 * - paused (SIGSTOP) under the same load, then resumed (SIGCONT).
 *
 * The store-level variants (each store call once) are in test/stores/redis.test.ts.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, describe, expect, it } from 'vitest'

import { createCache, type Cache } from '../../src/core/cache.js'
import { redisStore, type RedisStoreOptions } from '../../src/stores/redis/index.js'
import {
  MARGIN_MS,
  capturingLogger,
  describeOutcomes,
  driveMixedLoad,
  figureLog,
  formatSummary,
  heapUsedAfterGc,
  megabytes,
  processStopped,
  summarize,
  waitUntil,
  watchUnhandled,
} from '../fixtures/fault-harness.js'
import { startRedisServer, type ServerHandle } from '../helpers/servers.js'

const COMMAND_TIMEOUT_MS = 300
const CONNECT_TIMEOUT_MS = 1000
const RECONNECT_BASE_MS = 100
const RECONNECT_MAX_MS = 1000
const OPS_PER_SECOND = 500
const OUTAGE_MS = 10_000
const HEAP_GROWTH_LIMIT = 20 * 1024 * 1024
/** Every write acknowledged is on disk before the reply: what the restart check relies on. */
const AOF_ALWAYS = ['--appendonly', 'yes', '--appendfsync', 'always']
const DURABLE_KEYS = 1000

const figures = figureLog('redis-down figures')
/** Servers of the running test, stopped after it: restarted ones first, then the dir owner. */
const servers: ServerHandle[] = []
const caches: Cache[] = []

afterEach(async () => {
  await Promise.all(caches.splice(0).map((cache) => cache.close()))
  for (const server of servers.splice(0).reverse()) await server.stop({ graceMs: 1000 })
})

afterAll(() => figures.print())

function storeOptions(url: string): RedisStoreOptions {
  return {
    url,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    reconnectBaseMs: RECONNECT_BASE_MS,
    reconnectMaxMs: RECONNECT_MAX_MS,
  }
}

function open(url: string): { cache: Cache; logger: ReturnType<typeof capturingLogger> } {
  const logger = capturingLogger()
  const cache = createCache({
    store: redisStore(storeOptions(url)),
    prefix: `f${randomBytes(6).toString('hex')}`,
    logger,
  })
  caches.push(cache)
  return { cache, logger }
}

/** Time until a call on `cache` succeeds again, polling every 10 ms. */
function untilServing(cache: Cache): Promise<number> {
  return waitUntil(
    async () => {
      await cache.get('probe')
      return true
    },
    'the cache serving again',
    15_000,
    10,
  )
}

describe('faults: Redis killed under load, restarted on the same port', () => {
  it(`every call settles within commandTimeoutMs + margin during a ${OUTAGE_MS / 1000} s outage at ${OPS_PER_SECOND} calls/s; the same cache serves again after the restart and no acknowledged write is lost`, async () => {
    const first = await startRedisServer({ args: AOF_ALWAYS })
    servers.push(first)
    const { cache, logger } = open(first.url)
    await cache.ready()
    expect(cache.health().status).toBe('ok')

    // Writes acknowledged before the crash; AOF `always` means each is on disk before its reply.
    const durable = Array.from({ length: DURABLE_KEYS }, (_, i) => `durable:${i}`)
    for (let i = 0; i < durable.length; i += 50) {
      await Promise.all(durable.slice(i, i + 50).map((key, j) => cache.set(key, { n: i + j })))
    }

    const healthy = await driveMixedLoad(cache, { opsPerSecond: OPS_PER_SECOND, durationMs: 2000 })
    expect(healthy.unexpected).toEqual([])
    expect(healthy.resolved, describeOutcomes(healthy)).toBe(healthy.launched)

    const unhandled = watchUnhandled()
    try {
      const heapBefore = await heapUsedAfterGc()
      first.kill('SIGKILL')
      await first.exited

      const outage = await driveMixedLoad(cache, {
        opsPerSecond: OPS_PER_SECOND,
        durationMs: OUTAGE_MS,
        allowedCodes: ['E_STORE_UNAVAILABLE'],
      })
      const heapAfter = await heapUsedAfterGc()
      const latency = summarize(outage.latencies)

      // No call hung, none was answered (nothing could answer), none failed with another code.
      expect(outage.unexpected).toEqual([])
      expect(outage.resolved, describeOutcomes(outage)).toBe(0)
      expect(outage.launched).toBeGreaterThanOrEqual((0.9 * (OPS_PER_SECOND * OUTAGE_MS)) / 1000)
      expect(latency.count).toBe(outage.launched)
      expect(latency.max).toBeLessThanOrEqual(COMMAND_TIMEOUT_MS + MARGIN_MS)
      expect(heapAfter - heapBefore).toBeLessThan(HEAP_GROWTH_LIMIT)
      // A store lost after start fails calls; it never switches to the per-process fallback.
      await waitUntil(() => cache.health().status === 'down', 'health down', 5000)
      expect(cache.health().reason).toMatch(/unreachable/)
      expect(cache.stats().fallback).toEqual({ active: false, activations: 0 })
      expect(logger.at('warn')).toEqual([])
      figures.add(
        `SIGKILL, ${describeOutcomes(outage)}; latency ${formatSummary(latency)} ` +
          `(commandTimeoutMs ${COMMAND_TIMEOUT_MS}); heapUsed after GC ${megabytes(heapBefore)} → ` +
          `${megabytes(heapAfter)} (growth ${megabytes(heapAfter - heapBefore)})`,
      )

      // Restart on the same port and AOF dir; the cache is not recreated.
      const second = await startRedisServer({ dir: first.dir, port: first.port, args: AOF_ALWAYS })
      servers.push(second)
      const recoveredMs = await untilServing(cache)
      expect(recoveredMs).toBeLessThanOrEqual(RECONNECT_MAX_MS + CONNECT_TIMEOUT_MS + MARGIN_MS)
      await waitUntil(() => cache.health().status === 'ok', 'health ok', 5000)

      let lost = 0
      for (let i = 0; i < durable.length; i += 500) {
        const values = await cache.getMany<{ n: number }>(durable.slice(i, i + 500))
        values.forEach((value, j) => {
          if (value?.n !== i + j) lost++
        })
      }
      expect(lost).toBe(0)

      const after = await driveMixedLoad(cache, { opsPerSecond: OPS_PER_SECOND, durationMs: 1000 })
      expect(after.unexpected).toEqual([])
      expect(after.resolved, describeOutcomes(after)).toBe(after.launched)
      figures.add(
        `restart on the same port: first successful call ${recoveredMs.toFixed(0)} ms after the new server answered PING ` +
          `(reconnectBaseMs ${RECONNECT_BASE_MS}, reconnectMaxMs ${RECONNECT_MAX_MS}); ` +
          `acknowledged before the kill ${DURABLE_KEYS}, lost ${lost} (AOF always); ${describeOutcomes(after)}`,
      )
    } finally {
      unhandled.stop()
    }
    expect(unhandled.rejections).toEqual([])
    expect(unhandled.exceptions).toEqual([])
  }, 60_000)
})

describe('faults: Redis paused (SIGSTOP) under load, then resumed', () => {
  it('every call rejects with E_STORE_UNAVAILABLE within commandTimeoutMs + margin while paused, and calls work again after SIGCONT', async () => {
    const server = await startRedisServer()
    servers.push(server)
    const { cache } = open(server.url)
    await cache.ready()
    const healthy = await driveMixedLoad(cache, { opsPerSecond: OPS_PER_SECOND, durationMs: 1000 })
    expect(healthy.resolved, describeOutcomes(healthy)).toBe(healthy.launched)

    const unhandled = watchUnhandled()
    try {
      server.kill('SIGSTOP')
      // The signal takes effect asynchronously: start only once the kernel shows it stopped.
      await waitUntil(() => processStopped(server.pid), 'redis-server stopped', 5000, 5)
      const paused = await driveMixedLoad(cache, {
        opsPerSecond: OPS_PER_SECOND,
        durationMs: 3000,
        allowedCodes: ['E_STORE_UNAVAILABLE'],
      })
      const healthWhilePaused = cache.health().status
      const resumedAt = performance.now()
      server.kill('SIGCONT')
      const latency = summarize(paused.latencies)
      expect(paused.unexpected).toEqual([])
      expect(paused.resolved, describeOutcomes(paused)).toBe(0)
      expect(latency.max).toBeLessThanOrEqual(COMMAND_TIMEOUT_MS + MARGIN_MS)

      // The connection stayed open, so no reconnect is needed: the answer comes in a round trip.
      await untilServing(cache)
      const recoveredMs = performance.now() - resumedAt
      expect(recoveredMs).toBeLessThanOrEqual(COMMAND_TIMEOUT_MS + MARGIN_MS)
      const after = await driveMixedLoad(cache, { opsPerSecond: OPS_PER_SECOND, durationMs: 1000 })
      expect(after.unexpected).toEqual([])
      expect(after.resolved, describeOutcomes(after)).toBe(after.launched)
      expect(cache.health().status).toBe('ok')
      figures.add(
        `SIGSTOP 3 s, ${describeOutcomes(paused)}; latency ${formatSummary(latency)} ` +
          `(commandTimeoutMs ${COMMAND_TIMEOUT_MS}); health() while paused: ${healthWhilePaused}; ` +
          `after SIGCONT the first call succeeded ${recoveredMs.toFixed(0)} ms later; ${describeOutcomes(after)}`,
      )
    } finally {
      unhandled.stop()
      server.kill('SIGCONT')
    }
    expect(unhandled.rejections).toEqual([])
    expect(unhandled.exceptions).toEqual([])
  }, 60_000)
})
