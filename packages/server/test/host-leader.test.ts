/**
 * Leader-elected schedules across real processes: two replicas (fixtures/host-leader.ts), each a
 * FlowHost on Redis (then on a NATS bucket) with one leader-elected flow ticking every 100 ms
 * (lease 600 ms, renewEvery 150 ms). Each run reports its leader token and a CLOCK_MONOTONIC
 * timestamp. The leader is killed with SIGKILL.
 *
 * Checked: before the kill only one replica runs ticks; sorted by time, tokens never go back
 * (no tick ran on two hosts at once); after the kill the other replica runs ticks, with a larger
 * token, within lease + renewEvery + 1 s of the kill; the survivor stops cleanly.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, describe, expect, it } from 'vitest'

import {
  deleteRedisKeys,
  destroyNatsBucket,
  natsUrl,
  redisUrl,
} from '../../flowcache/test/helpers/services.js'
import type { FromReplica, ReplicaConfig } from './fixtures/host-leader.js'
import { waitUntil } from './helpers/host.js'

const fixture = fileURLToPath(new URL('./fixtures/host-leader.ts', import.meta.url))
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
const run = randomBytes(4).toString('hex')
const bucket = `fc-test-hostl-${run}`
const rootOfRun = `hl${run}`
const LEASE_MS = 600
const RENEW_MS = 150
const EVERY_MS = 100
const HANDOVER_LIMIT_MS = LEASE_MS + RENEW_MS + 1000

const now = (): number => Number(process.hrtime.bigint()) / 1e6

interface TickRecord {
  replica: number
  token: bigint
  n: number
  t: number
}

class Replica {
  stderr = ''
  readonly ticks: TickRecord[]
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly ready: Promise<void>

  constructor(
    readonly id: number,
    readonly child: ChildProcess,
    ticks: TickRecord[],
  ) {
    this.ticks = ticks
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => (this.stderr += chunk))
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    )
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`replica not ready after 20 s; stderr: ${this.stderr}`)),
        20_000,
      )
      void this.exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`replica exited at start; stderr: ${this.stderr}`))
      })
      child.on('message', (message: FromReplica) => {
        if (message.type === 'ready') {
          clearTimeout(timer)
          resolve()
        } else {
          ticks.push({ replica: id, token: BigInt(message.token), n: message.n, t: message.t })
        }
      })
    })
  }

  async destroy(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL')
      await this.exited
    }
  }
}

const replicas: Replica[] = []

afterEach(async () => {
  await Promise.all(replicas.splice(0).map((replica) => replica.destroy()))
})

afterAll(async () => {
  await deleteRedisKeys(`*${rootOfRun}*`)
  await destroyNatsBucket(bucket)
})

describe.each(['redis', 'nats'] as const)('leader-elected schedule on %s', (kind) => {
  it('exactly one replica runs the ticks; after kill -9 the other takes over in time', async () => {
    const prefix = `${rootOfRun}_${kind}`
    const ticks: TickRecord[] = []
    const start = (id: number): Replica => {
      const config: ReplicaConfig = {
        kind,
        url: kind === 'redis' ? redisUrl() : natsUrl(),
        bucket,
        prefix,
        owner: `replica-${id}`,
        leaseMs: LEASE_MS,
        renewMs: RENEW_MS,
        everyMs: EVERY_MS,
      }
      const child = fork(fixture, [JSON.stringify(config)], {
        cwd: repoRoot,
        execArgv: ['--no-node-snapshot', '--import', 'tsx'],
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        serialization: 'advanced',
      })
      const replica = new Replica(id, child, ticks)
      replicas.push(replica)
      return replica
    }
    const pair = [start(0), start(1)]
    await Promise.all(pair.map((replica) => replica.ready))

    // Let the first leader run a while, with both replicas up.
    await waitUntil(() => ticks.length >= 10, '10 ticks', 20_000)
    const before = [...ticks]
    const leaders = new Set(before.map((tick) => tick.replica))
    expect(leaders.size).toBe(1)
    const leader = pair[before[0]?.replica ?? 0] as Replica
    const follower = pair[1 - leader.id] as Replica
    const leaderToken = before[0]?.token as bigint

    const killedAt = now()
    leader.child.kill('SIGKILL')
    await leader.exited
    await waitUntil(
      () => ticks.some((tick) => tick.replica === follower.id),
      'the follower to take over',
      HANDOVER_LIMIT_MS + 10_000,
    )
    const firstTakeover = ticks.find((tick) => tick.replica === follower.id) as TickRecord
    const handoverMs = firstTakeover.t - killedAt
    const countAfter = ticks.filter((tick) => tick.replica === follower.id).length
    await waitUntil(
      () => ticks.filter((tick) => tick.replica === follower.id).length >= countAfter + 5,
      'five more ticks on the new leader',
      10_000,
    )

    follower.child.disconnect()
    const exit = await follower.exited
    process.stdout.write(
      `[host-leader ${kind}] ${ticks.length} ticks; handover after kill -9: ${handoverMs.toFixed(0)} ms (limit ${HANDOVER_LIMIT_MS} ms)\n`,
    )

    expect(exit, follower.stderr).toEqual({ code: 0, signal: null })
    // Never two replicas at once: sorted by time, tokens never go back.
    const ordered = [...ticks].sort((a, b) => a.t - b.t)
    for (let i = 1; i < ordered.length; i++) {
      const [a, b] = [ordered[i - 1] as TickRecord, ordered[i] as TickRecord]
      expect(b.token >= a.token, `tick of token ${b.token} after one of token ${a.token}`).toBe(
        true,
      )
    }
    // Before the kill only the leader ran, in one term; after it only the follower, in a newer one.
    expect(
      ticks.filter((tick) => tick.t < killedAt).every((tick) => tick.replica === leader.id),
    ).toBe(true)
    expect(
      ticks.filter((tick) => tick.t > killedAt).every((tick) => tick.replica === follower.id),
    ).toBe(true)
    expect(new Set(before.map((tick) => tick.token))).toEqual(new Set([leaderToken]))
    expect(firstTakeover.token > leaderToken).toBe(true)
    // Each replica's tick numbers only grow: no tick ran twice.
    for (const replica of pair) {
      const numbers = ticks.filter((tick) => tick.replica === replica.id).map((tick) => tick.n)
      for (let i = 1; i < numbers.length; i++) {
        expect(numbers[i]).toBeGreaterThan(numbers[i - 1] as number)
      }
    }
    expect(handoverMs).toBeLessThanOrEqual(HANDOVER_LIMIT_MS)
  }, 90_000)
})
