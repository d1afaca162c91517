/**
 * L1 coherence across real processes: two replicas (child processes running
 * fixtures/l1-replica.ts) share Redis, or a NATS bucket, each with its own L1 tier. Replica A
 * writes; replica B reads and logs when each invalidation from A reached its L1.
 *
 * What is proved, on both stores:
 * - once B has received the invalidation of a write or delete, no read that B starts after that
 *   returns the old value (reads that started earlier may: they raced the write);
 * - a store read in flight when the invalidation arrives cannot put the old value into L1;
 * - when B's connection is cut (a fault proxy resets it and refuses new connects) B serves
 *   nothing from L1 during the cut, and after it reconnects it serves no value older than the
 *   cut, though the invalidations sent meanwhile were lost;
 * - a silent partition (packets held, no reset) delays the invalidation but does not lose it;
 * - with 200 keys written twice while B reads them in a loop, a checker over B's log finds no
 *   read of a key that returned a value older than the last invalidation B had received for it.
 *
 * - B's own write, overtaken in the store by A's later write while B's write was in flight,
 *   does not stay in B's L1.
 *
 * Times come from CLOCK_MONOTONIC (process.hrtime), shared by every process on the host.
 * Timings are only measured and printed, never asserted; every wait is a bounded poll.
 */
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'

import { jetstreamManager } from '@nats-io/jetstream'
import { connect as natsConnect } from '@nats-io/transport-node'
import { afterAll, afterEach, describe, expect, it } from 'vitest'

import { rootPrefix, userKey } from '../src/core/keyspace.js'
import type {
  GetResult,
  LoopReads,
  ReplicaConfig,
  ReplicaEvent,
  ReplicaReply,
  ReplicaRequest,
} from './fixtures/l1-replica.js'
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js'
import { FixtureProcess } from './helpers/fixture-process.js'
import { deleteRedisKeys, natsUrl, redisUrl } from './helpers/services.js'

const fixture = fileURLToPath(new URL('./fixtures/l1-replica.ts', import.meta.url))
const run = randomBytes(4).toString('hex')
const bucket = `fc-test-l1r-${run}`
/** Root prefix of every cache of this file: `l1r<run>_<n>`, unique per test. */
const rootOfRun = `l1r${run}`
let counter = 0

const now = (): number => Number(process.hrtime.bigint()) / 1e6

type Body<R> = R extends unknown ? Omit<R, 'id'> : never
interface L1Stats {
  hits: number
  entries: number
  invalidationsReceived: number
  publishFailures: number
  live: boolean
}
interface ReplicaStats {
  l1: L1Stats
  hits: number
  misses: number
}

/** A replica process and the RPC to it. */
class Replica extends FixtureProcess<ReplicaReply> {
  readonly #pending = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >()
  #next = 1

  /** `name` is `replica <label>` in messages. */
  private constructor(label: string, config: ReplicaConfig) {
    super(`replica ${label}`, fixture, config)
    void this.exited.then(() => {
      for (const pending of this.#pending.values()) {
        pending.reject(new Error(`${this.name} exited; stderr: ${this.stderr}`))
      }
      this.#pending.clear()
    })
  }

  static async start(label: string, config: ReplicaConfig): Promise<Replica> {
    const replica = new Replica(label, config)
    replicas.push(replica)
    await replica.ready
    return replica
  }

  protected override received(message: ReplicaReply): void {
    const pending = this.#pending.get(message.id)
    if (pending === undefined) return
    this.#pending.delete(message.id)
    if (message.ok) pending.resolve(message.result)
    else pending.reject(new Error(`${this.name}: ${message.error}`))
  }

  request<T>(body: Body<ReplicaRequest>, timeoutMs = 20_000): Promise<T> {
    const id = this.#next++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`${this.name}: no answer to ${body.op} in ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer)
          resolve(value as T)
        },
        reject: (error) => {
          clearTimeout(timer)
          reject(error)
        },
      })
      this.child.send({ id, ...body })
    })
  }

  get(key: string): Promise<GetResult> {
    return this.request({ op: 'get', key })
  }
  set(key: string, value: unknown): Promise<{ t0: number; t1: number }> {
    return this.request({ op: 'set', key, value })
  }
  delete(key: string): Promise<{ deleted: boolean; t0: number; t1: number }> {
    return this.request({ op: 'delete', key })
  }
  stats(): Promise<ReplicaStats> {
    return this.request({ op: 'stats' })
  }
  events(from = 0): Promise<ReplicaEvent[]> {
    return this.request({ op: 'events', from })
  }

  /** Stops the process: closes its cache and the channel, then SIGKILLs it by PID if it is still there 5 s later. */
  override async stop(): Promise<void> {
    if (!this.running) return
    await this.request({ op: 'close' }, 5000).catch(() => undefined)
    await super.stop(5000)
  }
}

const replicas: Replica[] = []
const proxies: FaultProxy[] = []

afterEach(async () => {
  await Promise.all(replicas.splice(0).map((replica) => replica.stop()))
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()))
})

afterAll(async () => {
  // Redis: every key this file wrote starts with `{l1r<run>`; NATS: the bucket is ours alone.
  await deleteRedisKeys(`{${rootOfRun}*`)
  const nc = await natsConnect({ servers: natsUrl() })
  try {
    const jsm = await jetstreamManager(nc)
    await jsm.streams.delete(`KV_${bucket}`).catch(() => false)
  } finally {
    await nc.close()
  }
})

/** Polls `probe` until it returns something other than `undefined`/`false`, for at most `timeoutMs`. */
async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = now() + timeoutMs
  for (;;) {
    const result = await probe()
    if (result !== undefined && result !== false) return result
    if (now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(5)
  }
}

/** Monotonic time at which B had applied the first invalidation of `storeKey` from another replica, after event `from`. */
function invalidationArrival(replica: Replica, storeKey: string, from: number): Promise<number> {
  return waitFor(`${replica.name} to receive the invalidation of ${storeKey}`, async () => {
    const events = await replica.events(from)
    return events.find((e) => e.type === 'message' && e.keys?.includes(storeKey) === true)?.t
  })
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

const show = (result: GetResult): string =>
  result.error ?? (result.found ? JSON.stringify(result.value) : 'miss')

interface Backend {
  kind: 'redis' | 'nats'
  url: () => string
  defaultPort: number
}

const backends: Backend[] = [
  { kind: 'redis', url: redisUrl, defaultPort: 6379 },
  { kind: 'nats', url: natsUrl, defaultPort: 4222 },
]

describe.each(backends)('L1 across two processes on $kind', (backend) => {
  /** Figures printed at the end, for the record. */
  const propagation: number[] = []
  const figures: string[] = []

  afterAll(() => {
    const sorted = [...propagation].sort((x, y) => x - y)
    console.log(
      `[l1 replicas ${backend.kind}] invalidation propagation (A publishes → B's L1 dropped the key), ` +
        `${sorted.length} messages: p50 ${percentile(sorted, 50).toFixed(2)} ms, ` +
        `p99 ${percentile(sorted, 99).toFixed(2)} ms, max ${(sorted.at(-1) ?? Number.NaN).toFixed(2)} ms` +
        figures.map((line) => `\n[l1 replicas ${backend.kind}] ${line}`).join(''),
    )
  })

  /** Replicas A (direct) and B (through `bUrl`, default direct) on one fresh prefix and channel. */
  async function pair(bUrl = backend.url()): Promise<{
    a: Replica
    b: Replica
    storeKey: (key: string) => string
  }> {
    const prefix = `${rootOfRun}_${++counter}`
    const base = { kind: backend.kind, bucket, channel: prefix, prefix }
    // A first: with NATS it creates the bucket, so the two never race to create it.
    const a = await Replica.start('A', { ...base, url: backend.url() })
    const b = await Replica.start('B', { ...base, url: bUrl })
    return { a, b, storeKey: (key) => userKey(rootPrefix(prefix), key, 1024) }
  }

  async function proxyToStore(): Promise<FaultProxy> {
    const url = new URL(backend.url())
    const proxy = await startFaultProxy({
      target: { host: url.hostname, port: Number(url.port || backend.defaultPort) },
    })
    proxies.push(proxy)
    return proxy
  }

  /**
   * A sets `key` and B receives the invalidation, so that B's next store read of it cannot race
   * that invalidation (any invalidation arriving during a read keeps the value out of L1).
   */
  async function setSettled(
    a: Replica,
    b: Replica,
    storeKey: (key: string) => string,
    key: string,
    value: unknown,
  ): Promise<void> {
    const fromB = (await b.events()).length
    await a.set(key, value)
    await invalidationArrival(b, storeKey(key), fromB)
  }

  /** Reads `key` on `b` twice, checks it got `value`, and that the second read was an L1 hit. */
  async function fillL1(b: Replica, key: string, value: unknown): Promise<void> {
    expect(show(await b.get(key))).toBe(JSON.stringify(value))
    const before = (await b.stats()).l1.hits
    expect(show(await b.get(key))).toBe(JSON.stringify(value))
    expect((await b.stats()).l1.hits, `the second read of ${key} is served by B's L1`).toBe(
      before + 1,
    )
  }

  /** Time from A's publication of `storeKey` (after event `fromA`) to B applying it. */
  async function recordPropagation(a: Replica, storeKey: string, fromA: number, arrived: number) {
    const published = (await a.events(fromA)).find(
      (e) => e.type === 'published' && e.keys?.includes(storeKey) === true,
    )
    expect(published, `A published the invalidation of ${storeKey}`).toBeDefined()
    propagation.push(arrived - (published as ReplicaEvent).t)
  }

  /**
   * Scenario (1): after A changes `key` (by `change`), B polls until it sees the new value; then
   * no read B started after the invalidation arrived may return the old value.
   */
  async function changeSeenOnce(
    change: 'set' | 'delete',
  ): Promise<{ before: number; after: number; reads: number }> {
    const { a, b, storeKey } = await pair()
    const key = 'k'
    await setSettled(a, b, storeKey, key, 'v1')
    await fillL1(b, key, 'v1')

    const fromA = (await a.events()).length
    const fromB = (await b.events()).length
    const hitsBefore = (await b.stats()).l1.hits
    // B polls while A's change is on its way, so some reads come before the invalidation.
    const write = change === 'set' ? a.set(key, 'v2') : a.delete(key)
    const fresh = change === 'set' ? '"v2"' : 'miss'

    const reads: GetResult[] = []
    await waitFor(`B to see ${fresh}`, async () => {
      const read = await b.get(key)
      reads.push(read)
      return show(read) === fresh
    })
    await write
    const arrived = await invalidationArrival(b, storeKey(key), fromB)
    await recordPropagation(a, storeKey(key), fromA, arrived)
    for (let i = 0; i < 200; i++) reads.push(await b.get(key))

    const stale = reads.filter((read) => read.t0 > arrived && show(read) !== fresh)
    expect(
      stale.map(show),
      'reads B started after the invalidation arrived that returned something else',
    ).toEqual([])
    // Reads before the arrival were L1 hits of the old value; the later ones hit the new entry.
    const before = reads.filter((read) => read.t1 < arrived)
    expect(before.every((read) => show(read) === '"v1"')).toBe(true)
    const hits = (await b.stats()).l1.hits - hitsBefore
    if (change === 'set') {
      expect(hits, 'B serves the new value from L1 again').toBeGreaterThan(100)
    }
    const stats = (await b.stats()).l1
    expect(stats.invalidationsReceived).toBeGreaterThanOrEqual(1)
    expect(stats.live).toBe(true)
    return {
      before: before.length,
      after: reads.filter((read) => read.t0 > arrived).length,
      reads: reads.length,
    }
  }

  it('after A sets a key, B serves the new value once the invalidation arrived and never the old one after', async () => {
    const seen = await changeSeenOnce('set')
    figures.push(
      `set: ${seen.before} reads of the old value before the invalidation arrived, ${seen.after} after it, all new`,
    )
  })

  it('after A deletes a key, B misses once the invalidation arrived and never serves the old value after', async () => {
    const seen = await changeSeenOnce('delete')
    figures.push(
      `delete: ${seen.before} reads of the old value before the invalidation arrived, ${seen.after} after it, all misses`,
    )
  })

  it('a store read in flight when the invalidation arrives does not put the old value into B’s L1', async () => {
    const { a, b, storeKey } = await pair()
    const key = 'raced'
    await setSettled(a, b, storeKey, key, 'v1')
    const fromB = (await b.events()).length
    // B's next store read gets v1 from the store, then is held, like a slow reply.
    await b.request({ op: 'hold' })
    const slow = b.get(key)
    await waitFor('B’s store read to be held', async () =>
      (await b.events(fromB)).some((e) => e.type === 'held'),
    )
    await a.set(key, 'v2')
    const arrived = await invalidationArrival(b, storeKey(key), fromB)
    await b.request({ op: 'release' })
    const raced = await slow
    // It started before the write, so v1 is a correct answer for it; it must not be kept.
    expect(raced.t0).toBeLessThan(arrived)
    expect(show(raced)).toBe('"v1"')
    const reads: GetResult[] = []
    for (let i = 0; i < 50; i++) reads.push(await b.get(key))
    expect(reads.map(show)).toEqual(Array.from({ length: 50 }, () => '"v2"'))
    expect((await b.stats()).l1.hits, 'the later reads are L1 hits of v2').toBeGreaterThan(0)
  })

  // Cache.set must not keep its own value in L1 when another replica's invalidation arrived
  // while the write was in flight: that replica's value may have overtaken ours in the store.
  it('B’s own write that lost the race to A’s later write does not stay in B’s L1', async () => {
    const { a, b, storeKey } = await pair()
    const key = 'contended'
    await setSettled(a, b, storeKey, key, 'v0')
    await fillL1(b, key, 'v0')
    const fromB = (await b.events()).length
    // B's write reaches the store first, then its reply is slow…
    await b.request({ op: 'holdWrites' })
    const slow = b.set(key, 'vB')
    await waitFor('B’s store write to be held', async () =>
      (await b.events(fromB)).some((e) => e.type === 'held'),
    )
    // …and A writes after it: vA is the value in the store, and B hears of it.
    await a.set(key, 'vA')
    await invalidationArrival(b, storeKey(key), fromB)
    await b.request({ op: 'release' })
    await slow
    const reads: GetResult[] = []
    for (let i = 0; i < 20; i++) reads.push(await b.get(key))
    expect(reads.map(show), 'B after its write and A’s later one').toEqual(
      Array.from({ length: 20 }, () => '"vA"'),
    )
  })

  it('B’s connection cut and restored: nothing from L1 during the cut, no value older than the cut after it', async () => {
    const proxy = await proxyToStore()
    const { a, b, storeKey } = await pair(proxy.url(backend.url()))
    await setSettled(a, b, storeKey, 'k', 'v1')
    await setSettled(a, b, storeKey, 'gone', 'v1')
    await fillL1(b, 'k', 'v1')
    await fillL1(b, 'gone', 'v1')
    expect((await b.stats()).l1.entries).toBe(2)

    // The cut: every connection of B is reset, and reconnects are refused until pass().
    const fromB = (await b.events()).length
    await proxy.refuse()
    const cutAt = now()
    proxy.reset()
    await waitFor('B’s L1 to go offline', async () => !(await b.stats()).l1.live)
    const interrupted = (await b.events(fromB)).find((e) => e.type === 'interrupted')
    expect(interrupted, 'B’s bus reported the interruption').toBeDefined()

    // A writes during the cut: B's copy of the invalidations is lost.
    await a.set('k', 'v2')
    await a.delete('gone')
    const during: GetResult[] = []
    for (let i = 0; i < 20; i++) {
      during.push(await b.get('k'), await b.get('gone'))
    }
    expect(
      during.filter((read) => show(read) === '"v1"').map(show),
      'B served v1 during the cut',
    ).toEqual([])
    expect((await b.stats()).l1.entries, 'B’s L1 is empty during the cut').toBe(0)

    await proxy.pass()
    const passAt = now()
    await waitFor('B’s L1 to be live again', async () => (await b.stats()).l1.live, 20_000)
    const resumed = (await b.events(fromB)).find((e) => e.type === 'resumed')
    expect(resumed, 'B’s bus reported that it resumed').toBeDefined()

    // After the cut: the store client may take a moment longer than the bus; never v1.
    const after: GetResult[] = []
    await waitFor(
      'B to read k from the store again',
      async () => {
        const read = await b.get('k')
        after.push(read)
        return read.error === undefined
      },
      20_000,
    )
    for (let i = 0; i < 100; i++) after.push(await b.get('k'), await b.get('gone'))
    expect(
      after.filter((read) => show(read) === '"v1"').map(show),
      'B served a value older than the cut',
    ).toEqual([])
    const hitsBefore = (await b.stats()).l1.hits
    expect(show(await b.get('k'))).toBe('"v2"')
    expect(show(await b.get('gone'))).toBe('miss')
    expect((await b.stats()).l1.hits, 'k=v2 is in B’s L1 again').toBe(hitsBefore + 1)

    const errors = new Set(during.map(show).filter((text) => text.startsWith('E_')))
    figures.push(
      `cut: B noticed it after ${((interrupted as ReplicaEvent).t - cutAt).toFixed(1)} ms; ` +
        `answers during the cut: ${[...new Set(during.map(show))].join(', ')}` +
        (errors.size > 0 ? '' : ' (no errors)') +
        `; B's bus was live again ${((resumed as ReplicaEvent).t - passAt).toFixed(0)} ms after the proxy let it reconnect`,
    )
  }, 60_000)

  it('B behind a silent partition: the invalidation is held, then applied when the partition heals', async () => {
    const proxy = await proxyToStore()
    const { a, b, storeKey } = await pair(proxy.url(backend.url()))
    await setSettled(a, b, storeKey, 'k', 'v1')
    await fillL1(b, 'k', 'v1')
    const fromB = (await b.events()).length

    proxy.blackhole()
    await a.set('k', 'v2')
    // Nothing reaches B while the partition lasts: B cannot know, and its L1 stays live.
    const during = await b.get('k')
    expect(
      (await b.events(fromB)).filter((e) => e.type === 'message'),
      'no message crosses the partition',
    ).toEqual([])
    expect((await b.stats()).l1.live).toBe(true)

    const healAt = now()
    await proxy.pass()
    const arrived = await invalidationArrival(b, storeKey('k'), fromB)
    const reads: GetResult[] = []
    await waitFor('B to see v2', async () => {
      const read = await b.get('k')
      reads.push(read)
      return show(read) === '"v2"'
    })
    for (let i = 0; i < 100; i++) reads.push(await b.get('k'))
    expect(
      reads.filter((read) => read.t0 > arrived && show(read) !== '"v2"').map(show),
      'reads B started after the held invalidation arrived that returned something else',
    ).toEqual([])
    figures.push(
      `silent partition: B answered ${show(during)} during it (L1, nothing to tell it otherwise); ` +
        `the held invalidation arrived ${(arrived - healAt).toFixed(1)} ms after the partition healed`,
    )
  }, 60_000)

  it('200 keys written twice while B reads them in a loop: no read after an invalidation returns an older value', async () => {
    const { a, b, storeKey } = await pair()
    const count = 200
    const keys = Array.from({ length: count }, (_, i) => `m${i}`)
    const storeKeys = keys.map(storeKey)
    const index = new Map(storeKeys.map((key, i) => [key, i]))
    const fromA = (await a.events()).length
    const fromB = (await b.events()).length

    // Round 0, then B fills its L1 with every key.
    await a.request({ op: 'setEach', entries: keys.map((key) => [key, 0]) })
    await waitFor('B to receive the 200 invalidations of round 0', async () => {
      const events = (await b.events(fromB)).filter((e) => e.type === 'message')
      return events.length >= count
    })
    for (const key of keys) await b.get(key)
    const hitsBefore = (await b.stats()).l1.hits
    for (const key of keys) expect(show(await b.get(key))).toBe('0')
    expect((await b.stats()).l1.hits - hitsBefore).toBe(count)

    // Rounds 1 and 2 while B reads every key in a loop.
    const loopHitsBefore = (await b.stats()).l1.hits
    await b.request({ op: 'startLoop', keys })
    await waitFor('B’s loop to run', async () => {
      const status = await b.request<{ rounds: number }>({ op: 'loopStatus' })
      return status.rounds >= 2
    })
    await a.request({ op: 'setEach', entries: keys.map((key) => [key, 1]) })
    await a.request({ op: 'setEach', entries: keys.map((key) => [key, 2]) })

    // Every write of A reaches B: three invalidations per key, in the order A wrote them.
    const arrivals: number[][] = keys.map(() => [])
    const messages = await waitFor('B to receive the 600 invalidations', async () => {
      const events = (await b.events(fromB)).filter((e) => e.type === 'message')
      const total = events.reduce((sum, e) => sum + (e.keys?.length ?? 0), 0)
      return total >= 3 * count && events
    })
    for (const event of messages) {
      for (const key of event.keys ?? []) {
        const i = index.get(key)
        expect(i, `an invalidation of a key of this test: ${key}`).toBeDefined()
        arrivals[i as number]?.push(event.t)
      }
    }
    expect(arrivals.map((times) => times.length)).toEqual(keys.map(() => 3))
    const lastArrival = Math.max(...arrivals.flat())
    const status = await b.request<{ rounds: number }>({ op: 'loopStatus' })
    await waitFor('B’s loop to go round 5 more times', async () => {
      const current = await b.request<{ rounds: number }>({ op: 'loopStatus' })
      return current.rounds >= status.rounds + 5
    })
    const loop = await b.request<LoopReads>({ op: 'stopLoop' })
    expect(loop.capped, 'B’s read log is complete').toBe(false)
    expect(loop.errors, 'errors of B’s reads').toEqual([])
    const loopHits = (await b.stats()).l1.hits - loopHitsBefore
    expect(loopHits, 'B’s loop was served by L1 most of the time').toBeGreaterThan(loop.count / 2)

    // The checker: a read of key i that started after the j-th invalidation of i arrived must
    // return round j or later (A wrote round j to i before publishing that invalidation). A miss
    // or an error is a violation too: every key exists throughout.
    const violations: string[] = []
    let late = 0
    for (let r = 0; r < loop.count; r++) {
      const i = loop.index[r] as number
      const value = loop.value[r] as number
      const t0 = loop.t0[r] as number
      const times = arrivals[i] as number[]
      let known = -1
      for (let j = 0; j < times.length; j++) if ((times[j] as number) < t0) known = j
      if (value < known) {
        violations.push(`${keys[i]} read at ${t0.toFixed(3)} returned ${value}, knew ${known}`)
      }
      if (t0 > lastArrival) late++
    }
    expect(violations.slice(0, 10), `${violations.length} stale reads`).toEqual([])
    expect(late, 'B read every key after the last invalidation').toBeGreaterThan(count)

    // Afterwards every read returns the final value, from L1.
    for (const key of keys) expect(show(await b.get(key))).toBe('2')
    const hitsNow = (await b.stats()).l1.hits
    for (const key of keys) expect(show(await b.get(key))).toBe('2')
    expect((await b.stats()).l1.hits - hitsNow).toBe(count)

    // Propagation of each of A's publications (rounds 0, 1 and 2).
    const published = (await a.events(fromA)).filter((e) => e.type === 'published')
    const seen = keys.map(() => 0)
    for (const event of published) {
      const i = index.get(event.keys?.[0] ?? '') as number
      const arrival = arrivals[i]?.[seen[i] as number]
      seen[i] = (seen[i] as number) + 1
      if (arrival !== undefined) propagation.push(arrival - event.t)
    }
    figures.push(
      `200 keys × 3 writes: B made ${loop.count} reads in ${loop.rounds} rounds ` +
        `(${loopHits} L1 hits), ${late} of them after the last invalidation; ${violations.length} stale`,
    )
  }, 60_000)
})
