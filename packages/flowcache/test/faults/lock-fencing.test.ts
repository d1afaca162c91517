/**
 * Lock fencing under faults, across real processes (acceptance of issue 4, scaled to a 2-core
 * machine): 3 child processes (fixtures/lock-worker.ts) × 8 async workers contend for the lock
 * `resource` (ttl 300 ms) on Redis, then on a NATS bucket, 500 acquisitions per process. Every
 * holder writes its fencing token to a resource held by this process, which accepts a write
 * only with a token >= the highest it has accepted.
 *
 * Faults during the run:
 * - pauses: the process of a random acquisition is SIGSTOPped right after it acquired, for 2× the
 *   TTL, then SIGCONTed: its holder writes with a token whose lease ran out meanwhile;
 * - a kill: the process of a random acquisition is SIGKILLed while holding; a replacement process
 *   makes the acquisitions it had left;
 * - forged releases: workers call `locks.release('resource', owner)` with an owner id that never
 *   holds the lock, while holding it and before acquiring.
 *
 * Checked afterwards: no stale write accepted (by construction, and from the log: accepted tokens
 * strictly increase), every acquisition has its own token, each process saw its tokens grow in the
 * order its acquires resolved, no forged release succeeded, at least one stale write was turned
 * away (else the pause fault did not work), and every process but the killed one exited with 0.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { afterAll, afterEach, describe, expect, it } from 'vitest'

import { figureLog, processStopped, waitUntil } from '../fixtures/fault-harness.js'
import type {
  LockWorkerConfig,
  LockWorkerStats,
  ToChild,
  ToParent,
} from '../fixtures/lock-worker.js'
import { FixtureProcess } from '../helpers/fixture-process.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from '../helpers/services.js'

const fixture = fileURLToPath(new URL('../fixtures/lock-worker.ts', import.meta.url))
const run = randomBytes(4).toString('hex')
const bucket = `fc-test-lockf-${run}`
/** Root prefix of every cache of this file: `lf<run>_<n>`, unique per test. */
const rootOfRun = `lf${run}`
let counter = 0

const PROCESSES = 3
const WORKERS = 8
const QUOTA = 500
const TTL_MS = 300
const PAUSES = 4
/** Longest the contended run may take, faults included. */
const RUN_LIMIT_MS = 60_000

const now = (): number => Number(process.hrtime.bigint()) / 1e6
const figures = figureLog('lock-fencing figures')

/** A worker process. */
class Worker extends FixtureProcess<ToParent> {
  stats: LockWorkerStats | undefined
  readonly done: Promise<LockWorkerStats>
  killed = false
  /** Writes this process made (accepted or not). */
  writes = 0
  readonly #resolveDone: (stats: LockWorkerStats) => void

  constructor(
    config: LockWorkerConfig,
    readonly onMessage: (worker: Worker, message: ToParent) => void,
  ) {
    super('worker', fixture, config)
    let resolveDone = (_: LockWorkerStats): void => undefined
    this.done = new Promise((resolve) => (resolveDone = resolve))
    this.#resolveDone = resolveDone
  }

  override send(message: ToChild): void {
    super.send(message)
  }

  protected override received(message: ToParent): void {
    if (message.type === 'done') {
      this.stats = message.stats
      this.#resolveDone(message.stats)
    } else this.onMessage(this, message)
  }
}

const workers: Worker[] = []

afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.destroy()))
})

afterAll(async () => {
  figures.print()
  // Redis: every key this file wrote starts with `{lf<run>`; NATS: the bucket is ours alone.
  await deleteRedisKeys(`*${rootOfRun}*`)
  await destroyNatsBucket(bucket)
})

/** One write as the resource saw it. */
interface WriteRecord {
  token: bigint
  pid: number
  worker: number
  /** When the holder sent it and when the resource got it, monotonic ms. */
  t: number
  receivedAt: number
  held: boolean
  accepted: boolean
}

describe.each(['redis', 'nats'] as const)('lock fencing under faults on %s', (kind) => {
  it(`${PROCESSES} processes × ${WORKERS} workers × ${QUOTA} acquisitions per process: no stale write accepted`, async () => {
    const prefix = `${rootOfRun}_${++counter}`
    const forgedOwner = `forger-${randomBytes(6).toString('hex')}`
    const config: Omit<LockWorkerConfig, 'quota'> = {
      kind,
      url: kind === 'redis' ? redisUrl() : natsUrl(),
      bucket,
      prefix,
      workers: WORKERS,
      ttlMs: TTL_MS,
      waitMs: 10_000,
      retryEveryMs: 20,
      workMs: 2,
      forgedOwner,
      forgeWhileHolding: 0.05,
      forgeBeforeAcquire: 0.02,
    }

    // The fenced resource.
    let highest = -1n
    const log: WriteRecord[] = []
    let acquiredWaiter: ((worker: Worker) => void) | undefined
    const onMessage = (worker: Worker, message: ToParent): void => {
      if (message.type === 'acquired') {
        if (acquiredWaiter !== undefined && !worker.paused && !worker.killed) {
          const waiter = acquiredWaiter
          acquiredWaiter = undefined
          waiter(worker)
        }
      } else if (message.type === 'write') {
        const accepted = message.token >= highest
        if (accepted) highest = message.token
        worker.writes++
        log.push({
          token: message.token,
          pid: message.pid,
          worker: message.worker,
          t: message.t,
          receivedAt: now(),
          held: message.held,
          accepted,
        })
        worker.send({ type: 'ack', id: message.id, accepted })
      }
    }

    const start = async (quota: number): Promise<Worker> => {
      const worker = new Worker({ ...config, quota }, onMessage)
      workers.push(worker)
      await worker.ready
      return worker
    }

    const initial = await Promise.all(Array.from({ length: PROCESSES }, () => start(QUOTA)))
    const running = new Set(initial)
    const runStart = performance.now()
    for (const worker of initial) worker.send({ type: 'start' })

    let finished = false
    const allDone = (async () => {
      // Workers may be added (the replacement) while waiting.
      for (;;) {
        const pending = [...running].filter((w) => w.stats === undefined && !w.killed)
        if (pending.length === 0) return
        await Promise.race([
          ...pending.map((w) => w.done),
          ...pending.map((w) => w.exited),
          sleep(200),
        ])
      }
    })().finally(() => (finished = true))

    // The process of the next acquisition (not a paused or killed one), or undefined once done.
    const nextHolder = async (): Promise<Worker | undefined> => {
      const found = new Promise<Worker>((resolve) => (acquiredWaiter = resolve))
      const worker = await Promise.race([found, allDone.then(() => undefined)])
      acquiredWaiter = undefined
      return worker
    }

    let pauses = 0
    let kills = 0
    const pauseLengths: number[] = []
    const faults = (async () => {
      const plan: Array<'pause' | 'kill'> = ['pause', 'kill', 'pause', 'pause', 'pause']
      for (const fault of plan) {
        await sleep(300 + Math.random() * 700)
        if (finished) return
        const victim = await nextHolder()
        if (victim === undefined) return
        if (fault === 'pause') {
          victim.paused = true
          process.kill(victim.pid, 'SIGSTOP')
          await waitUntil(() => processStopped(victim.pid), `pid ${victim.pid} stopped`, 2000, 2)
          const stoppedAt = performance.now()
          pauses++
          await sleep(2 * TTL_MS)
          process.kill(victim.pid, 'SIGCONT')
          pauseLengths.push(performance.now() - stoppedAt)
          victim.paused = false
        } else {
          victim.killed = true
          process.kill(victim.pid, 'SIGKILL')
          await victim.exited
          kills++
          const replacement = await start(QUOTA - victim.writes)
          running.add(replacement)
          replacement.send({ type: 'start' })
        }
      }
    })()

    const limit = sleep(RUN_LIMIT_MS).then(() => {
      throw new Error(
        `the run did not finish within ${RUN_LIMIT_MS} ms: ${log.length} writes so far`,
      )
    })
    await Promise.race([Promise.all([allDone, faults]), limit])
    const runMs = performance.now() - runStart

    // Clean exit of every process but the killed one.
    const survivors = [...running].filter((w) => !w.killed)
    for (const worker of survivors) worker.child.disconnect()
    const exits = await Promise.race([
      Promise.all(survivors.map((w) => w.exited)),
      sleep(10_000).then(() => undefined),
    ])
    const killedExits = await Promise.all([...running].filter((w) => w.killed).map((w) => w.exited))

    const stats = survivors.map((w) => w.stats as LockWorkerStats)
    const sum = (pick: (s: LockWorkerStats) => number): number =>
      stats.reduce((total, s) => total + pick(s), 0)
    const accepted = log.filter((w) => w.accepted)
    const rejected = log.filter((w) => !w.accepted)
    const acquisitions = sum((s) => s.acquisitions)
    figures.add(
      `${kind}: ${log.length} writes (${acquisitions} acquisitions by surviving processes) in ` +
        `${(runMs / 1000).toFixed(1)} s; accepted ${accepted.length}, rejected stale ` +
        `${rejected.length}; pauses ${pauses} (${pauseLengths.map((ms) => ms.toFixed(0)).join(', ')} ms), ` +
        `kills ${kills}; forged releases ${sum((s) => s.forgedAttempts)} (succeeded ` +
        `${sum((s) => s.forgedSucceeded)}); writes after the local deadline ` +
        `${sum((s) => s.writesAfterDeadline)}; releases that found the lease lost ` +
        `${sum((s) => s.releasedFalse)}; acquire timeouts ${sum((s) => s.timeouts)}; ` +
        `errors ${sum((s) => s.errors.length)}`,
    )
    console.log(
      `[lock-fencing ${kind}] acquisitions ${log.length}, accepted ${accepted.length}, ` +
        `rejected stale ${rejected.length}, pauses ${pauses}, kills ${kills}, ` +
        `forged ${sum((s) => s.forgedAttempts)}/${sum((s) => s.forgedSucceeded)} succeeded, ` +
        `${(runMs / 1000).toFixed(1)} s`,
    )

    expect(stats.flatMap((s) => s.errors)).toEqual([])
    expect(log.length).toBeGreaterThanOrEqual(PROCESSES * QUOTA)
    // The faults happened.
    // The first faults land early; a fast run may finish before the last planned pause.
    expect(pauses).toBeGreaterThanOrEqual(1)
    expect(pauses).toBeLessThanOrEqual(PAUSES)
    expect(kills).toBe(1)
    expect(
      rejected.length,
      'no stale write was turned away: the pauses did not bite',
    ).toBeGreaterThan(0)
    // Every rejected write really was stale: a larger token had been accepted before it.
    for (const write of rejected) {
      expect(accepted.some((a) => a.token > write.token && a.receivedAt <= write.receivedAt)).toBe(
        true,
      )
    }
    // Accepted tokens strictly increase: no stale write was accepted, no token was shared.
    for (let i = 1; i < accepted.length; i++) {
      const [before, after] = [accepted[i - 1] as WriteRecord, accepted[i] as WriteRecord]
      if (after.token <= before.token) {
        throw new Error(
          `accepted write ${i} has token ${after.token} (pid ${after.pid} worker ${after.worker}) ` +
            `after token ${before.token} (pid ${before.pid} worker ${before.worker})`,
        )
      }
    }
    // Every acquisition has its own token.
    expect(new Set(log.map((w) => w.token)).size).toBe(log.length)
    // Each process got its tokens growing in the order its acquires resolved.
    for (const s of stats) {
      for (let i = 1; i < s.tokenOrder.length; i++) {
        expect((s.tokenOrder[i] as bigint) > (s.tokenOrder[i - 1] as bigint)).toBe(true)
      }
    }
    // Each worker's successive writes carry growing tokens.
    const lastOf = new Map<string, bigint>()
    for (const write of log) {
      const id = `${write.pid}/${write.worker}`
      const last = lastOf.get(id)
      if (last !== undefined) expect(write.token > last).toBe(true)
      lastOf.set(id, write.token)
    }
    expect(sum((s) => s.forgedAttempts)).toBeGreaterThan(0)
    expect(sum((s) => s.forgedSucceeded)).toBe(0)
    expect(exits, 'surviving processes did not exit within 10 s').toBeDefined()
    for (const [i, exit] of (exits ?? []).entries()) {
      expect(exit, `pid ${survivors[i]?.pid}: ${survivors[i]?.stderr}`).toEqual({
        code: 0,
        signal: null,
      })
    }
    expect(killedExits).toEqual([{ code: null, signal: 'SIGKILL' }])
  }, 120_000)
})
