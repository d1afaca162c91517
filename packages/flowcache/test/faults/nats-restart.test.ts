/**
 * nats-server killed (SIGKILL) while a cache writes to it, then restarted on the same port and
 * JetStream store dir, through the Cache API on a private nats-server this file owns:
 *
 * - every write the cache acknowledged before the kill is readable afterwards, with its value;
 * - during the outage every call rejects with E_STORE_UNAVAILABLE: a read never turns into a miss;
 * - the same cache serves again after the restart, and a revision from before the crash still
 *   works for compareAndSet.
 *
 * test/stores/nats.test.ts covers the same crash on the store API (1000 writes, then kill -9).
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, describe, expect, it } from 'vitest'

import { createCache } from '../../src/core/cache.js'
import { natsStore } from '../../src/stores/nats/index.js'
import {
  MARGIN_MS,
  capturingLogger,
  figureLog,
  formatSummary,
  summarize,
  waitUntil,
  watchUnhandled,
} from '../fixtures/fault-harness.js'
import { startNatsServer, type ServerHandle } from '../helpers/servers.js'

const REQUEST_TIMEOUT_MS = 1000
const WRITERS = 8
/** Kill once this many writes are acknowledged. */
const KILL_AFTER = 500
const OUTAGE_MS = 2000

const figures = figureLog('nats-restart figures')
const servers: ServerHandle[] = []

afterAll(async () => {
  // The restarted server first, then the first one, which owns (and removes) the data dir.
  for (const server of servers.reverse()) await server.stop({ graceMs: 1000 })
  figures.print()
})

/** The value written under `w:<i>`: the index and a filler, so a torn value cannot pass. */
function valueOf(i: number): { i: number; pad: string } {
  return { i, pad: `${i}:`.padEnd(64, String.fromCharCode(97 + (i % 26))) }
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code
  return typeof code === 'string' ? code : String(error)
}

describe('faults: nats-server killed (SIGKILL) during Cache writes, restarted on the same dir', () => {
  it('keeps every acknowledged write, rejects calls with E_STORE_UNAVAILABLE during the outage (never a miss), and serves again after the restart', async () => {
    const first = await startNatsServer()
    servers.push(first)
    const logger = capturingLogger()
    const cache = createCache({
      store: natsStore({
        servers: first.url,
        bucket: 'faults',
        requestTimeoutMs: REQUEST_TIMEOUT_MS,
        sweepIntervalMs: 0,
        // Retry the connection every 200 ms, so the restart is noticed soon.
        connectOptions: { reconnectTimeWait: 200 },
      }),
      prefix: `f${randomBytes(6).toString('hex')}`,
      logger,
    })
    const unhandled = watchUnhandled()
    try {
      await cache.ready()
      expect(cache.health().status).toBe('ok')
      await cache.set('cas', 'before the crash')
      const preCrash = await cache.entry('cas')
      expect(preCrash).toBeDefined()

      let stop = false
      let killed = false
      let next = 0
      const acked = new Set<number>()
      const attempted = new Set<number>()
      /** Outcomes of calls started after the kill, by error code (`resolved` when one resolved). */
      const outage = new Map<string, number>()
      const outageLatencies: number[] = []
      let misses = 0
      let reads = 0
      let increments = 0
      const note = (startedAfterKill: boolean, outcome: string, started: number): void => {
        if (!startedAfterKill) return
        outage.set(outcome, (outage.get(outcome) ?? 0) + 1)
        outageLatencies.push(performance.now() - started)
      }

      const writer = async (): Promise<void> => {
        while (!stop) {
          const i = next++
          attempted.add(i)
          const afterKill = killed
          const started = performance.now()
          try {
            await cache.set(`w:${i}`, valueOf(i))
            acked.add(i)
            note(afterKill, 'resolved', started)
          } catch (error) {
            note(afterKill, codeOf(error), started)
            // A call that fails at once must not spin the loop without yielding.
            await sleep(5)
          }
        }
      }
      const incrementer = async (): Promise<void> => {
        while (!stop) {
          const afterKill = killed
          const started = performance.now()
          try {
            increments = await cache.increment('counter')
            note(afterKill, 'resolved', started)
          } catch (error) {
            note(afterKill, codeOf(error), started)
            await sleep(5)
          }
        }
      }
      // Reads keys already acknowledged: a hit, or (once the server is gone) E_STORE_UNAVAILABLE.
      const reader = async (): Promise<void> => {
        while (!stop) {
          const known = [...acked]
          const i = known[Math.floor(Math.random() * known.length)]
          if (i === undefined) {
            await sleep(5)
            continue
          }
          const afterKill = killed
          const started = performance.now()
          try {
            const value = await cache.get(`w:${i}`)
            reads++
            if (value === undefined) misses++
            note(afterKill, value === undefined ? 'miss' : 'resolved', started)
          } catch (error) {
            note(afterKill, codeOf(error), started)
            await sleep(5)
          }
        }
      }
      const loops = [
        ...Array.from({ length: WRITERS }, () => writer()),
        incrementer(),
        reader(),
        reader(),
      ]

      await waitUntil(() => acked.size >= KILL_AFTER, `${KILL_AFTER} acknowledged writes`, 30_000)
      first.kill('SIGKILL')
      killed = true
      await first.exited
      const ackedAtKill = acked.size
      await sleep(OUTAGE_MS)
      await waitUntil(() => cache.health().status === 'down', 'health down', 5000)
      const healthDuringOutage = cache.health()
      stop = true
      await Promise.all(loops)

      const latency = summarize(outageLatencies)
      expect(misses, 'a read of an acknowledged key returned a miss').toBe(0)
      expect(outage.get('resolved') ?? 0, 'a call started after the kill resolved').toBe(0)
      expect([...outage.keys()]).toEqual(['E_STORE_UNAVAILABLE'])
      expect(latency.max).toBeLessThanOrEqual(REQUEST_TIMEOUT_MS + MARGIN_MS)
      expect(cache.stats().fallback).toEqual({ active: false, activations: 0 })
      const ackedIncrements = increments

      const second = await startNatsServer({ dir: first.dir, port: first.port })
      servers.push(second)
      const recoveredMs = await waitUntil(
        async () => (await cache.get('cas')) !== undefined,
        'the cache serving again',
        20_000,
        10,
      )
      expect(cache.health().status).toBe('ok')

      const ackedKeys = [...acked].sort((a, b) => a - b)
      let lost = 0
      for (let k = 0; k < ackedKeys.length; k += 1000) {
        const batch = ackedKeys.slice(k, k + 1000)
        const values = await cache.getMany(batch.map((i) => `w:${i}`))
        values.forEach((value, j) => {
          const i = batch[j] as number
          if (JSON.stringify(value) !== JSON.stringify(valueOf(i))) lost++
        })
      }
      expect(lost).toBe(0)
      // A write that failed may or may not have been applied; if it was, it is exactly the value.
      const unacknowledged = [...attempted].filter((i) => !acked.has(i))
      const found = await cache.getMany(unacknowledged.slice(0, 1000).map((i) => `w:${i}`))
      let appliedUnacknowledged = 0
      found.forEach((value, j) => {
        if (value === undefined) return
        appliedUnacknowledged++
        expect(value).toEqual(valueOf(unacknowledged[j] as number))
      })
      // The increment in flight at the kill may have been applied, no other one.
      const counter = await cache.get<number>('counter')
      expect(counter).toBeGreaterThanOrEqual(ackedIncrements)
      expect(counter).toBeLessThanOrEqual(ackedIncrements + 1)
      // A revision read before the crash is still the entry's revision.
      expect(await cache.compareAndSet('cas', 'after the restart', preCrash!.revision)).toEqual(
        expect.any(String),
      )
      expect(await cache.get('cas')).toBe('after the restart')
      expect(logger.lines).toEqual([])

      const outcomes = [...outage].map(([code, count]) => `${count} ${code}`).join(', ')
      figures.add(
        `kill -9 after ${ackedAtKill} acknowledged Cache writes (${acked.size} in total): lost ${lost}/${acked.size}; ` +
          `unacknowledged writes found applied ${appliedUnacknowledged}/${unacknowledged.length}; ` +
          `counter ${counter} with ${ackedIncrements} acknowledged increments; ${reads} reads, ${misses} misses`,
      )
      figures.add(
        `outage ${OUTAGE_MS} ms: calls started after the kill: ${outcomes}; latency ${formatSummary(latency)} ` +
          `(requestTimeoutMs ${REQUEST_TIMEOUT_MS}); health: ${healthDuringOutage.status} (${healthDuringOutage.reason ?? ''})`,
      )
      figures.add(
        `restart on the same dir and port: the same cache served ${recoveredMs.toFixed(0)} ms after the new server answered; ` +
          `compareAndSet with a pre-crash revision succeeded`,
      )
    } finally {
      unhandled.stop()
      await cache.close()
    }
    expect(unhandled.rejections).toEqual([])
    expect(unhandled.exceptions).toEqual([])
  }, 90_000)
})
