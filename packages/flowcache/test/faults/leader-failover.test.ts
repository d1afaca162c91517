/**
 * Leader failover under faults, across real processes:
 * 3 candidate processes (fixtures/leader-candidate.ts) in one election (lease 600 ms, renewEvery
 * 150 ms) on Redis, then on a NATS bucket. Each candidate reaches the store through its own fault
 * proxy, so one can be partitioned. While leader, a candidate "acts" every 20 ms, only if
 * `isLeader` holds at that moment, and reports each act with its token and a CLOCK_MONOTONIC
 * timestamp (shared by every process on the host).
 *
 * Faults, always on the current leader, in the order kill, pause, partition, repeated 20 times
 * (FLOWCACHE_LEADER_REPEATS changes the count):
 * - kill: SIGKILL, then a replacement candidate is started;
 * - pause: SIGSTOP for 2× the lease, then SIGCONT: its local deadline has passed, so on resume it
 *   ends its term and must not act until re-elected;
 * - partition: its proxy goes to blackhole mode until another candidate is elected (and at least
 *   2× the lease), then back to pass.
 *
 * Checked: no two leaders act at once (all acts sorted by timestamp have non-decreasing tokens;
 * a paused process cannot act, and its stale acts are timestamped before the pause); every act
 * lies inside its term as reported; terms' tokens strictly increase in the order they began;
 * the next leader is elected within lease + renewEvery + 1 s of the fault (of the SIGSTOP for a
 * pause); a paused leader reports its term's end only after SIGCONT. Handover figures are printed.
 */
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { afterAll, afterEach, describe, expect, it } from 'vitest'

import { figureLog, processStopped, waitUntil } from '../fixtures/fault-harness.js'
import type { CandidateConfig, ToChild, ToParent } from '../fixtures/leader-candidate.js'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js'
import { FixtureProcess } from '../helpers/fixture-process.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from '../helpers/services.js'

const fixture = fileURLToPath(new URL('../fixtures/leader-candidate.ts', import.meta.url))
const run = randomBytes(4).toString('hex')
const bucket = `fc-test-leaderf-${run}`
/** Root prefix of every cache of this file: `lr<run>_<n>`, unique per test. */
const rootOfRun = `lr${run}`
let counter = 0

const CANDIDATES = 3
const LEASE_MS = 600
const RENEW_MS = 150
const ACT_EVERY_MS = 20
/** Repetitions of the kill, pause, partition sequence (override with FLOWCACHE_LEADER_REPEATS). */
const REPEATS = Number(process.env.FLOWCACHE_LEADER_REPEATS ?? 20)
if (!Number.isSafeInteger(REPEATS) || REPEATS < 1) {
  throw new Error(`FLOWCACHE_LEADER_REPEATS must be a positive integer; got ${REPEATS}`)
}
/** Longest allowed time from a fault to the next leader's `onElected`. */
const HANDOVER_LIMIT_MS = LEASE_MS + RENEW_MS + 1000
/** How long the leader is paused or partitioned: well past its lease. */
const OUTAGE_MS = 2 * LEASE_MS
/** Upper bound of one repetition (three faults, a replacement process start) on a loaded host. */
const RUN_LIMIT_MS = REPEATS * 15_000

type Fault = 'kill' | 'pause' | 'partition'
const PLAN: Fault[] = Array.from(
  { length: REPEATS },
  () => ['kill', 'pause', 'partition'] as const,
).flat()

const now = (): number => Number(process.hrtime.bigint()) / 1e6
const figures = figureLog('leader-failover figures')

interface TermRecord {
  candidate: Candidate
  token: bigint
  start: number
  end?: number
  reason?: string
}

interface ActRecord {
  candidate: Candidate
  token: bigint
  t: number
}

/** A candidate process and its proxy. */
class Candidate extends FixtureProcess<ToParent> {
  killed = false
  /** The term it holds as far as its reports go. */
  open: TermRecord | undefined
  lastActAt = -Infinity

  constructor(
    readonly id: number,
    config: CandidateConfig,
    readonly proxy: FaultProxy,
    readonly onMessage: (candidate: Candidate, message: ToParent) => void,
  ) {
    super('candidate', fixture, config)
  }

  override send(message: ToChild): void {
    super.send(message)
  }

  protected override received(message: ToParent): void {
    this.onMessage(this, message)
  }

  /** SIGCONT (if paused) and SIGKILL by PID if it still runs; close its proxy. */
  override async destroy(): Promise<void> {
    await super.destroy()
    await this.proxy.close()
  }
}

const candidates: Candidate[] = []

afterEach(async () => {
  await Promise.all(candidates.splice(0).map((candidate) => candidate.destroy()))
})

afterAll(async () => {
  figures.print()
  // Redis: every key this file wrote contains `lr<run>`; NATS: the bucket is ours alone.
  await deleteRedisKeys(`*${rootOfRun}*`)
  await destroyNatsBucket(bucket)
})

function stats(values: readonly number[]): string {
  if (values.length === 0) return 'n=0'
  const sorted = [...values].sort((a, b) => a - b)
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as number
  const ms = (value: number): string => `${value.toFixed(0)} ms`
  return `n=${sorted.length} min ${ms(sorted[0] as number)}, median ${ms(median)}, max ${ms(sorted.at(-1) as number)}`
}

describe.each(['redis', 'nats'] as const)('leader failover under faults on %s', (kind) => {
  it(
    `${CANDIDATES} candidates, ${PLAN.length} handovers (kill, pause, partition ×${REPEATS}): never two leaders acting`,
    async () => {
      const prefix = `${rootOfRun}_${++counter}`
      const storeUrl = kind === 'redis' ? redisUrl() : natsUrl()
      const target = new URL(storeUrl)
      const terms: TermRecord[] = []
      const acts: ActRecord[] = []
      const problems: string[] = []

      const onMessage = (candidate: Candidate, message: ToParent): void => {
        if (message.type === 'elected') {
          if (candidate.open !== undefined) {
            problems.push(`candidate ${candidate.id} elected again before its term ended`)
          }
          const term: TermRecord = { candidate, token: message.token, start: message.t }
          terms.push(term)
          candidate.open = term
        } else if (message.type === 'act') {
          acts.push({ candidate, token: message.token, t: message.t })
          candidate.lastActAt = Math.max(candidate.lastActAt, message.t)
        } else if (message.type === 'ended') {
          const term = candidate.open
          if (term === undefined || term.token !== message.token) {
            problems.push(`candidate ${candidate.id} ended term ${message.token} it did not hold`)
            return
          }
          term.end = message.t
          term.reason = message.reason
          candidate.open = undefined
        }
      }

      let nextId = 0
      const start = async (): Promise<Candidate> => {
        const proxy = await startFaultProxy({
          target: { host: target.hostname, port: Number(target.port) },
        })
        const config: CandidateConfig = {
          kind,
          url: proxy.url(storeUrl),
          bucket,
          prefix,
          name: 'failover',
          owner: `candidate-${nextId}`,
          leaseMs: LEASE_MS,
          renewMs: RENEW_MS,
          actEveryMs: ACT_EVERY_MS,
        }
        let candidate: Candidate
        try {
          candidate = new Candidate(nextId++, config, proxy, onMessage)
        } catch (error) {
          await proxy.close()
          throw error
        }
        candidates.push(candidate)
        await candidate.ready
        return candidate
      }

      const initial = await Promise.all(Array.from({ length: CANDIDATES }, () => start()))
      const runStart = now()
      for (const candidate of initial) candidate.send({ type: 'start' })

      /** The live leader: an open term of a running, reachable process that acted just now. */
      const liveLeader = (): Candidate | undefined =>
        candidates.find(
          (c) =>
            !c.killed &&
            !c.paused &&
            c.proxy.mode.kind === 'pass' &&
            c.open !== undefined &&
            now() - c.open.start >= 300 &&
            now() - c.lastActAt < 100,
        )
      /** First term that began after `at` with a token above `token`. */
      const nextTerm = (at: number, token: bigint): TermRecord | undefined =>
        terms.find((term) => term.start >= at && term.token > token)

      const handovers: Record<Fault, number[]> = { kill: [], pause: [], partition: [] }
      const selfFence: number[] = []
      const faults = async (): Promise<void> => {
        for (const fault of PLAN) {
          let victim: Candidate | undefined
          await waitUntil(() => (victim = liveLeader()) !== undefined, 'a live leader', 10_000)
          // Let it lead (and act) a little longer, at a varying phase of its renewals.
          await sleep(50 + Math.random() * 150)
          victim = liveLeader() ?? victim
          if (victim === undefined) throw new Error('no leader')
          const held = victim.open as TermRecord
          const leader = victim
          let faultAt: number
          if (fault === 'kill') {
            leader.killed = true
            faultAt = now()
            process.kill(leader.pid, 'SIGKILL')
            await leader.exited
            const replacement = await start()
            replacement.send({ type: 'start' })
          } else if (fault === 'pause') {
            leader.paused = true
            faultAt = now()
            process.kill(leader.pid, 'SIGSTOP')
            await waitUntil(() => processStopped(leader.pid), `pid ${leader.pid} stopped`, 2000, 2)
            await sleep(OUTAGE_MS - (now() - faultAt))
            const resumedAt = now()
            process.kill(leader.pid, 'SIGCONT')
            leader.paused = false
            await waitUntil(() => held.end !== undefined, 'the paused leader to step down', 5000)
            if ((held.end as number) < resumedAt - 1) {
              problems.push(
                `paused candidate ${leader.id} reported its term's end ${(resumedAt - (held.end as number)).toFixed(0)} ms before SIGCONT`,
              )
            }
          } else {
            faultAt = now()
            leader.proxy.blackhole()
            await waitUntil(
              () => nextTerm(faultAt, held.token) !== undefined,
              'a new leader after the partition',
              HANDOVER_LIMIT_MS + 2000,
            )
            await sleep(OUTAGE_MS - (now() - faultAt))
            await leader.proxy.pass()
            await waitUntil(
              () => held.end !== undefined,
              'the partitioned leader to step down',
              5000,
            )
            selfFence.push((held.end as number) - faultAt)
          }
          await waitUntil(
            () => nextTerm(faultAt, held.token) !== undefined,
            `a new leader after ${fault}`,
            HANDOVER_LIMIT_MS + 5000,
          )
          handovers[fault].push((nextTerm(faultAt, held.token) as TermRecord).start - faultAt)
        }
      }

      const limit = sleep(RUN_LIMIT_MS).then(() => {
        throw new Error(`the run did not finish within ${RUN_LIMIT_MS} ms`)
      })
      await Promise.race([faults(), limit])
      // One more stable term, so the last handover is followed by acts.
      await waitUntil(() => liveLeader() !== undefined, 'a live leader at the end', 10_000)
      const runMs = now() - runStart

      // Step down and exit cleanly.
      const survivors = candidates.filter((c) => !c.killed)
      for (const candidate of survivors) candidate.child.disconnect()
      const exits = await Promise.race([
        Promise.all(survivors.map((c) => c.exited)),
        sleep(10_000).then(() => undefined),
      ])

      const ordered = [...acts].sort((a, b) => a.t - b.t)
      // Silence between the last act of one term and the first act of the next.
      const gaps: number[] = []
      for (let i = 1; i < ordered.length; i++) {
        const [before, after] = [ordered[i - 1] as ActRecord, ordered[i] as ActRecord]
        if (after.token !== before.token) gaps.push(after.t - before.t)
      }
      figures.add(
        `${kind}: ${terms.length} terms, ${acts.length} acts in ${(runMs / 1000).toFixed(1)} s; ` +
          `handover after kill ${stats(handovers.kill)}; after SIGSTOP ${stats(handovers.pause)}; ` +
          `after partition ${stats(handovers.partition)}; partitioned leader stepped down ` +
          `${stats(selfFence)} after the cut; no act for ${stats(gaps)} between two terms`,
      )

      expect(problems).toEqual([])
      expect(handovers.kill).toHaveLength(REPEATS)
      expect(handovers.pause).toHaveLength(REPEATS)
      expect(handovers.partition).toHaveLength(REPEATS)
      // Never two leaders acting: sorted by time, acts never go back to an older token.
      for (let i = 1; i < ordered.length; i++) {
        const [before, after] = [ordered[i - 1] as ActRecord, ordered[i] as ActRecord]
        if (after.token < before.token) {
          throw new Error(
            `act of token ${after.token} (candidate ${after.candidate.id}) at ${after.t.toFixed(1)} ` +
              `after an act of token ${before.token} (candidate ${before.candidate.id}) at ` +
              `${before.t.toFixed(1)}: two leaders acted ${(after.t - before.t).toFixed(1)} ms apart`,
          )
        }
      }
      // Each act lies inside its own term, as the process reported it.
      const termOf = new Map(terms.map((term) => [term.token, term]))
      for (const act of acts) {
        const term = termOf.get(act.token)
        expect(term?.candidate, `act of unknown term ${act.token}`).toBe(act.candidate)
        expect(act.t).toBeGreaterThanOrEqual((term as TermRecord).start)
        if (term?.end !== undefined) expect(act.t).toBeLessThanOrEqual(term.end)
      }
      // Tokens strictly increase across terms, in the order the terms began.
      const byStart = [...terms].sort((a, b) => a.start - b.start)
      for (let i = 1; i < byStart.length; i++) {
        expect((byStart[i] as TermRecord).token > (byStart[i - 1] as TermRecord).token).toBe(true)
      }
      expect(terms.length).toBeGreaterThanOrEqual(PLAN.length + 1)
      for (const fault of ['kill', 'pause', 'partition'] as const) {
        for (const ms of handovers[fault]) expect(ms).toBeLessThanOrEqual(HANDOVER_LIMIT_MS)
      }
      expect(exits, 'candidates did not exit within 10 s').toBeDefined()
      for (const [i, exit] of (exits ?? []).entries()) {
        expect(exit, `pid ${survivors[i]?.pid}: ${survivors[i]?.stderr}`).toEqual({
          code: 0,
          signal: null,
        })
      }
    },
    RUN_LIMIT_MS + 30_000,
  )
})
