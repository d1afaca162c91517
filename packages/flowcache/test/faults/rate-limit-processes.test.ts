/**
 * A sliding window across real processes: 3 child processes (fixtures/limiter-worker.ts), each
 * with its own cache over its own connection to Redis, then to a NATS bucket, then to one SQLite
 * file, all calling `cache.rateLimit(key, { max: 100, per: '10s', algorithm: 'sliding-window' })`
 * on one key, 500 calls per process. Calls come in bursts: at one monotonic moment every process
 * makes its share of the burst in one tick, so the 3 × share calls are concurrent.
 *
 * Schedule (t0 = start; "edge" = the moment the admissions of an earlier burst leave the trailing
 * window, i.e. their decision time + 10 s, which the parent computes from the decisions it got
 * back, so later bursts aim at the real edges; per-process calls in brackets):
 *
 *   B0  t0            [20]  60 calls on an empty window: all admitted
 *   B1  t0 + 2 s      [20]  fills the window: 40 admitted, 20 denied
 *   B2  t0 + 5 s      [20]  mid-window: denied
 *   B3  E1 − 300 ms   [20]  E1 = when B0's first admissions leave: still full, denied
 *   B4  E1 − 30 ms    [20]  just before the edge: denied (unless it is decided past the edge)
 *   B5  E1 + 30 ms    [40]  just after it: admits what B0 freed by then
 *   B6  E1' + 300 ms  [40]  E1' = when B0's last admissions leave: admits the rest of B0's room
 *   B7  E2 − 30 ms    [20]  E2 = when B1's admissions leave: denied (B5, B6 refilled B0's room)
 *   B8  E2' + 30 ms   [40]  admits B1's 40
 *   B9  E3 − 30 ms    [20]  E3 = when B5's and B6's admissions leave: denied
 *   B10 E3' + 30 ms   [240] the rest: admits B5's and B6's room, about 60, denies the others
 *
 * so every edge has admissions inside the window on one side and a burst on the other, and about
 * 260 of the 1500 calls are admitted in ~20.5 s. No count per burst is asserted (a burst decided
 * late on a loaded machine legitimately sees another window); the figures are printed.
 *
 * Checked afterwards, with T = a decision's `checkedAt` (store clock) and m = T minus the deciding
 * process's store-clock offset (store clock − CLOCK_MONOTONIC, read by the worker around each
 * burst), i.e. the decision placed on the monotonic clock every process of the host shares:
 *
 * 1. on the state's timeline, exact: sorted by T, admission i + 100 has T ≥ T(i) + 10 s;
 * 2. in real time: every decision's m lies within its call, [sent − tol, received + tol], and
 *    sorted by m, admission i + 100 has m ≥ m(i) + 10 s − tol; and from the call boundaries
 *    alone, any 101 admissions span (latest received − earliest sent) at least 10 s − tol;
 * 3. no denial without cause: at every denied call's T, exactly 100 admissions lie in
 *    (T − 10 s, T], and its retryAfterMs and resetAt name the oldest and newest of them;
 * 4. the limiter admits full windows: B0 + B1 admitted exactly 100, B10 (720 calls) ends up with
 *    denials, so by 3 its window is full too: at least 200 in all, at most 100 per 10 s of run;
 * 5. no call failed (no rejection, no `failedOpen`), and every process exits with 0.
 *
 * The tolerance tol: rate-limit.ts states the window holds exactly on the state's timeline and,
 * in real time, up to the replicas' disagreement about the store clock. Each process's offset
 * is measured, so tol = (largest − smallest offset over all processes and bursts) + 2 ms, the
 * 2 ms for clocks read in whole ms. On Redis the disagreement is what each process's `TIME`
 * sample got wrong (at most half its round trip); NATS and SQLite read the host's system clock,
 * the same in every process, so only the rounding remains.
 *
 * The sent/received bounds cannot show the window directly near an edge: a call sent 30 ms
 * before an edge may be decided after it. So (2) checks the decision instant inside its call
 * instead, and the strictest bound from call boundaries alone (sent of admission i + 100 minus
 * received of admission i) is printed as a figure.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { afterAll, afterEach, describe, expect, it } from 'vitest'

import type { RateLimitOptions } from '../../src/coord/rate-limit.js'
import { figureLog } from '../fixtures/fault-harness.js'
import type {
  CallRecord,
  LimiterWorkerConfig,
  ToChild,
  ToParent,
} from '../fixtures/limiter-worker.js'
import { FixtureProcess } from '../helpers/fixture-process.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from '../helpers/services.js'

const fixture = fileURLToPath(new URL('../fixtures/limiter-worker.ts', import.meta.url))
const run = randomBytes(4).toString('hex')
const bucket = `fc-test-ratelp-${run}`
/** Root prefix of every cache of this file: `rp<run>_<n>`, unique per test. */
const rootOfRun = `rp${run}`
const sqliteDir = mkdtempSync(join(tmpdir(), 'flowcache-rate-limit-processes-'))
let counter = 0

const PROCESSES = 3
const CALLS = 500
const MAX = 100
const WINDOW_MS = 10_000
const LIMIT: RateLimitOptions = { max: MAX, per: '10s', algorithm: 'sliding-window' }
/** Distance of the "just before / just after" bursts from an edge, and of the farther ones. */
const NEAR_MS = 30
const FAR_MS = 300
/** Clocks are read in whole ms (`store.now()` floors): slack per comparison of two readings. */
const READ_SLACK_MS = 2
/** Longest the run may take once the workers are ready. */
const RUN_LIMIT_MS = 60_000

const now = (): number => Number(process.hrtime.bigint()) / 1e6
const figures = figureLog('rate-limit-processes figures')

type BurstAnswer = Extract<ToParent, { type: 'burst' }>

/** A worker process. */
class Worker extends FixtureProcess<ToParent> {
  readonly #answers = new Map<number, (answer: BurstAnswer) => void>()

  constructor(config: LimiterWorkerConfig) {
    super('worker', fixture, config)
  }

  protected override received(message: ToParent): void {
    if (message.type === 'burst') this.#answers.get(message.index)?.(message)
  }

  /** Orders burst `index` of `calls` calls at monotonic `at`; resolves with the worker's records. */
  order(index: number, at: number, calls: number): Promise<BurstAnswer> {
    return new Promise((resolve) => {
      this.#answers.set(index, resolve)
      const message: ToChild = { type: 'burst', index, at, calls }
      this.child.send(message)
    })
  }
}

/** One call with where it came from and its decision on the monotonic clock. */
interface Call extends CallRecord {
  pid: number
  burst: number
  /** `checkedAt` minus the process's store-clock offset before the burst: monotonic ms. */
  decidedAt?: number
}

/** A call that was admitted, with its decision times. */
interface Admission extends Call {
  checkedAt: number
  decidedAt: number
}

/** One burst as planned. */
interface Burst {
  name: string
  at: number
  perProcess: number
}

const workers: Worker[] = []

afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.destroy()))
})

afterAll(async () => {
  figures.print()
  // Redis: every key this file wrote contains `rp<run>`; NATS: the bucket is ours alone.
  await deleteRedisKeys(`*${rootOfRun}*`)
  await destroyNatsBucket(bucket)
  rmSync(sqliteDir, { recursive: true, force: true })
})

/** The `k`-th smallest (0-based) of `values`, or undefined when there are not that many. */
function kthSmallest(values: number[], k: number): number | undefined {
  return [...values].sort((a, b) => a - b)[k]
}

/** The smallest and largest of `values` (Infinity and -Infinity when empty). */
function range(values: number[]): { low: number; high: number } {
  return values.reduce(
    ({ low, high }, value) => ({ low: Math.min(low, value), high: Math.max(high, value) }),
    { low: Infinity, high: -Infinity },
  )
}

describe.each(['redis', 'nats', 'sqlite'] as const)(
  'sliding window across processes on %s',
  (kind) => {
    it(`${PROCESSES} processes × ${CALLS} calls in bursts at the window edges: never more than ${MAX} admitted in any trailing 10 s`, async () => {
      const prefix = `${rootOfRun}_${++counter}`
      const config: LimiterWorkerConfig = {
        kind,
        url: kind === 'redis' ? redisUrl() : kind === 'nats' ? natsUrl() : '',
        bucket,
        path: join(sqliteDir, `limiter-${counter}.db`),
        prefix,
        key: 'edge',
        limit: LIMIT,
      }
      const start = async (): Promise<Worker> => {
        const worker = new Worker(config)
        workers.push(worker)
        await worker.ready
        return worker
      }
      // One at a time: the first one creates the SQLite file and its schema.
      const processes: Worker[] = []
      for (let i = 0; i < PROCESSES; i++) processes.push(await start())

      const calls: Call[] = []
      const offsets: number[] = []
      const bursts: Burst[] = []
      /** Fires a burst of `perProcess` calls in every process at `at`; resolves with its admissions. */
      const fire = async (name: string, at: number, perProcess: number): Promise<Admission[]> => {
        const index = bursts.length
        bursts.push({ name, at, perProcess })
        const answers = await Promise.all(processes.map((w) => w.order(index, at, perProcess)))
        const admitted: Admission[] = []
        answers.forEach((answer, i) => {
          const [before, after] = answer.offsets
          offsets.push(before, after)
          for (const record of answer.records) {
            const call: Call = { ...record, pid: processes[i]?.pid ?? 0, burst: index }
            if (record.checkedAt !== undefined) call.decidedAt = record.checkedAt - before
            calls.push(call)
            if (call.allowed === true) admitted.push(call as Admission)
          }
        })
        return admitted
      }
      /** When the first and the last of `admissions` leave the trailing window (monotonic ms). */
      const edges = (
        admissions: Admission[],
        fallback: number,
      ): { first: number; last: number } => {
        if (admissions.length === 0) return { first: fallback, last: fallback }
        const times = admissions.map((a) => a.decidedAt)
        return {
          first: Math.min(...times) + WINDOW_MS,
          last: Math.max(...times) + WINDOW_MS,
        }
      }

      const runStart = now()
      const t0 = runStart + 1000
      const schedule = (async () => {
        const b0 = fire('B0 start', t0, 20)
        const b1 = fire('B1 fill', t0 + 2000, 20)
        const b2 = fire('B2 mid-window', t0 + 5000, 20)
        const e1 = edges(await b0, t0 + WINDOW_MS)
        const b3 = fire('B3 E1-300', e1.first - FAR_MS, 20)
        const b4 = fire('B4 E1-30', e1.first - NEAR_MS, 20)
        const b5 = fire('B5 E1+30', e1.first + NEAR_MS, 40)
        const b6 = fire("B6 E1'+300", e1.last + FAR_MS, 40)
        const e2 = edges(await b1, t0 + 2000 + WINDOW_MS)
        const b7 = fire('B7 E2-30', e2.first - NEAR_MS, 20)
        const b8 = fire("B8 E2'+30", e2.last + NEAR_MS, 40)
        const e3 = edges([...(await b5), ...(await b6)], e1.last + WINDOW_MS)
        const b9 = fire('B9 E3-30', e3.first - NEAR_MS, 20)
        const used = bursts.reduce((total, burst) => total + burst.perProcess, 0)
        const b10 = fire("B10 E3'+30", e3.last + NEAR_MS, CALLS - used)
        await Promise.all([b2, b3, b4, b7, b8, b9, b10])
      })()
      const limit = sleep(RUN_LIMIT_MS).then(() => {
        throw new Error(`the run did not finish within ${RUN_LIMIT_MS} ms: ${calls.length} calls`)
      })
      await Promise.race([schedule, limit])
      const runMs = now() - runStart

      for (const worker of processes) worker.child.disconnect()
      const exits = await Promise.race([
        Promise.all(processes.map((w) => w.exited)),
        sleep(10_000).then(() => undefined),
      ])

      // (5) No call failed.
      expect(calls.filter((c) => c.error !== undefined).map((c) => c.error)).toEqual([])
      expect(calls.filter((c) => c.failedOpen === true)).toEqual([])
      expect(calls.length).toBe(PROCESSES * CALLS)

      const admissions = calls
        .filter((c): c is Admission => c.allowed === true)
        .sort((a, b) => a.checkedAt - b.checkedAt)
      const denials = calls.filter((c) => c.allowed === false)
      const spread = Math.max(...offsets) - Math.min(...offsets)
      const tol = spread + READ_SLACK_MS

      // (1) The state's timeline, exact: admission i + MAX comes a full window after admission i.
      let minStoreGap = Infinity
      for (let i = 0; i + MAX < admissions.length; i++) {
        const gap =
          (admissions[i + MAX] as Admission).checkedAt - (admissions[i] as Admission).checkedAt
        minStoreGap = Math.min(minStoreGap, gap)
      }
      expect(
        minStoreGap,
        'two admissions 100 apart less than a window apart (store clock)',
      ).toBeGreaterThanOrEqual(WINDOW_MS)

      // (2) Real time. The disagreement must leave the check meaningful (a generous sanity bound).
      expect(spread, 'processes disagree about the store clock by more than 1 s').toBeLessThan(1000)
      const outside = calls.filter(
        (c) =>
          c.decidedAt === undefined || c.decidedAt < c.sent - tol || c.decidedAt > c.received + tol,
      )
      expect(outside.slice(0, 5), 'decisions placed outside their call').toEqual([])
      const byDecision = [...admissions].sort((a, b) => a.decidedAt - b.decidedAt)
      let minRealGap = Infinity
      for (let i = 0; i + MAX < byDecision.length; i++) {
        const gap =
          (byDecision[i + MAX] as Admission).decidedAt - (byDecision[i] as Admission).decidedAt
        minRealGap = Math.min(minRealGap, gap)
      }
      expect(
        minRealGap,
        'two admissions 100 apart less than a window apart (monotonic)',
      ).toBeGreaterThanOrEqual(WINDOW_MS - tol)
      // From call boundaries alone: any MAX + 1 admissions, the earliest sent one first, span at
      // least a window (received of the last minus sent of the first): correctness implies it.
      let minSpan = Infinity
      // And the strictest bound: sent of the (MAX + 1)-th of the admissions received after
      // admission i, minus received of i (not implied near an edge; printed only).
      let minStrict = Infinity
      for (const first of admissions) {
        const later = admissions.filter((a) => a.sent >= first.sent).map((a) => a.received)
        const last = kthSmallest(later, MAX)
        if (last !== undefined) minSpan = Math.min(minSpan, last - first.sent)
        const after = admissions.filter((a) => a.received >= first.received).map((a) => a.sent)
        const next = kthSmallest(after, MAX)
        if (next !== undefined) minStrict = Math.min(minStrict, next - first.received)
      }
      expect(
        minSpan,
        '101 admissions within less than a window (call boundaries)',
      ).toBeGreaterThanOrEqual(WINDOW_MS - tol)

      // (3) No denial without cause: its window held exactly MAX admissions.
      const unjustified: string[] = []
      for (const denial of denials) {
        const at = denial.checkedAt as number
        const inWindow = admissions.filter((a) => a.checkedAt > at - WINDOW_MS && a.checkedAt <= at)
        const oldest = inWindow[0]?.checkedAt ?? NaN
        const newest = inWindow.at(-1)?.checkedAt ?? NaN
        if (
          inWindow.length !== MAX ||
          denial.remaining !== 0 ||
          denial.retryAfterMs !== oldest + WINDOW_MS - at ||
          denial.resetAt !== newest + WINDOW_MS
        ) {
          unjustified.push(
            `burst ${denial.burst} pid ${denial.pid} at ${at}: ${inWindow.length} in window, ` +
              `remaining ${denial.remaining}, retryAfterMs ${denial.retryAfterMs} (oldest ${oldest}), ` +
              `resetAt ${denial.resetAt} (newest ${newest})`,
          )
        }
      }
      expect(unjustified.slice(0, 5)).toEqual([])

      // (4) Full windows: the first one, and the last one (B10 saw denials, so (3) made it full).
      const perBurst = bursts.map((_, index) => admissions.filter((a) => a.burst === index).length)
      expect((perBurst[0] ?? 0) + (perBurst[1] ?? 0)).toBe(MAX)
      const last = bursts.length - 1
      expect(denials.some((d) => d.burst === last)).toBe(true)
      expect(admissions.length).toBeGreaterThanOrEqual(2 * MAX)
      const first = admissions[0] as Admission
      const final = admissions.at(-1) as Admission
      const windows = Math.floor((final.checkedAt - first.checkedAt) / WINDOW_MS) + 1
      expect(admissions.length).toBeLessThanOrEqual(windows * MAX)

      expect(exits, 'processes did not exit within 10 s').toBeDefined()
      for (const [i, exit] of (exits ?? []).entries()) {
        expect(exit, `pid ${processes[i]?.pid}: ${processes[i]?.stderr}`).toEqual({
          code: 0,
          signal: null,
        })
      }

      // Figures: per burst, admitted (per process) and its decisions relative to the burst time.
      const burstLines = bursts.map((burst, index) => {
        const own = calls.filter((c) => c.burst === index)
        const admittedBy = processes.map(
          (w) => own.filter((c) => c.pid === w.pid && c.allowed === true).length,
        )
        const decided = range(own.map((c) => (c.decidedAt ?? NaN) - burst.at))
        return (
          `${burst.name}: ${perBurst[index]}/${own.length} admitted (${admittedBy.join('+')}), ` +
          `decided +${decided.low.toFixed(0)}..+${decided.high.toFixed(0)} ms after its time`
        )
      })
      const latencies = calls.map((c) => c.received - c.sent)
      figures.add(
        `${kind}: ${admissions.length} of ${calls.length} calls admitted in ${(runMs / 1000).toFixed(1)} s ` +
          `(${denials.length} denied, 0 failed); min gap between admission i and i+${MAX}: ` +
          `${minStoreGap} ms store clock, ${minRealGap.toFixed(1)} ms monotonic, call boundaries ` +
          `${minSpan.toFixed(1)} ms (received of i+${MAX} − sent of i), strict ${minStrict.toFixed(1)} ms ` +
          `(sent of i+${MAX} − received of i); store-clock disagreement ${spread.toFixed(2)} ms, ` +
          `tol ${tol.toFixed(2)} ms; call latency max ${Math.max(...latencies).toFixed(1)} ms\n    ` +
          burstLines.join('\n    '),
      )
      console.log(
        `[rate-limit-processes ${kind}] admitted ${admissions.length}/${calls.length}, ` +
          `per burst ${perBurst.join(' ')}, min gap ${minStoreGap} ms (store), ` +
          `${minRealGap.toFixed(1)} ms (monotonic), ${(runMs / 1000).toFixed(1)} s`,
      )
    }, 120_000)
  },
)
