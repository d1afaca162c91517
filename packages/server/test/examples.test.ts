/**
 * The example flows of `examples/flows/`, loaded from their files and run by flow hosts made with
 * `createFlowHostFromDir`, against the memory store and Redis (every example) and a NATS bucket
 * (dedup, the lock and the leader election). Each store gets three hosts on one store, as three
 * replicas would be: each host has its own runner, so its own sandboxes (isolates), and runs of
 * different hosts really overlap. On Redis and NATS each host has its own cache (connection).
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  deleteRedisKeys,
  destroyNatsBucket,
  natsUrl,
  redisUrl,
} from '../../flowcache/test/helpers/services.js'
import { natsStore } from '../../flowcache/src/stores/nats/index.js'
import { redisStore } from '../../flowcache/src/stores/redis/index.js'
import { createCache, ManualClock, silentLogger, type Cache } from '../src/flowcache.js'
import {
  FlowDefinitions,
  FlowRunner,
  flowNamespace,
  loadFlowFile,
  type FlowDefinition,
  type FlowRunResult,
} from '../src/flows/index.js'
import {
  createFlowHost,
  createFlowHostFromDir,
  type DirFlowHost,
  type DispatchResult,
  type FlowHost,
} from '../src/host/index.js'
import { waitUntil } from './helpers/host.js'

const examplesDir = fileURLToPath(new URL('../../../examples/flows/', import.meta.url))
const run = randomBytes(4).toString('hex')
const bucket = `fc-test-examples-${run}`
type StoreKind = 'memory' | 'redis' | 'nats'

let definitionsDir: string
let definitions: FlowDefinitions

beforeAll(async () => {
  definitionsDir = await mkdtemp(join(tmpdir(), 'fc-examples-'))
  definitions = new FlowDefinitions({ dir: definitionsDir })
})

afterAll(async () => {
  await rm(definitionsDir, { recursive: true, force: true })
  await deleteRedisKeys(`*ex${run}*`)
  await destroyNatsBucket(bucket)
})

/**
 * Caches on one store. Replicas of a deployment share the store: on Redis and NATS each gets its
 * own cache (its own connection); in memory they share the one cache of this process.
 */
class Deployment {
  readonly #caches: Cache[] = []
  readonly #memory = new Map<string, Cache>()

  constructor(
    readonly kind: StoreKind,
    readonly prefix: string,
  ) {}

  /** A cache on the deployment's store, under `prefix` (default: the deployment's). */
  cache(prefix = this.prefix): Cache {
    if (this.kind === 'memory') {
      let cache = this.#memory.get(prefix)
      if (cache === undefined) {
        cache = createCache({ logger: silentLogger })
        this.#memory.set(prefix, cache)
        this.#caches.push(cache)
      }
      return cache
    }
    const store =
      this.kind === 'redis'
        ? redisStore({ url: redisUrl() })
        : natsStore({ servers: natsUrl(), bucket })
    const cache = createCache({ store, prefix, fallback: 'fail', logger: silentLogger })
    this.#caches.push(cache)
    return cache
  }

  async close(): Promise<void> {
    await Promise.all(this.#caches.map((cache) => cache.close()))
  }
}

/** Starts `count` hosts on `examples/flows/`, each on its own cache of the deployment. */
async function startHosts(deployment: Deployment, count: number): Promise<DirFlowHost[]> {
  const hosts: DirFlowHost[] = []
  for (let i = 0; i < count; i++) {
    const host = createFlowHostFromDir({
      cache: deployment.cache(),
      dir: examplesDir,
      definitionsCache: definitions,
      owner: `replica-${i}`,
      logger: silentLogger,
    })
    hosts.push(host)
    await host.start()
    expect(host.invalidFiles.map((error) => error.message)).toEqual([])
  }
  return hosts
}

/** The run result of an HTTP dispatch that must have found its route. */
async function call(
  host: FlowHost,
  method: string,
  path: string,
  body?: unknown,
): Promise<FlowRunResult> {
  const answer: DispatchResult = await host.dispatch(method, path, body)
  if (answer.kind !== 'ok') throw new Error(`${method} ${path}: ${JSON.stringify(answer)}`)
  return answer.result
}

/** `data` of a run's output. */
function dataOf(result: FlowRunResult): Record<string, unknown> {
  return (result.output as { data: Record<string, unknown> }).data
}

/** The namespace a flow of the examples works in. */
function viewOf(root: Cache, tenant: string, flow: string): Cache {
  return flowNamespace(root, { tenant, name: flow })
}

const STORES: Array<{ kind: StoreKind; every: boolean }> = [
  { kind: 'memory', every: true },
  { kind: 'redis', every: true },
  { kind: 'nats', every: false },
]

describe.each(STORES)('the examples on $kind', ({ kind, every }) => {
  let deployment: Deployment
  let hosts: DirFlowHost[]
  let root: Cache
  const host = (i: number): DirFlowHost => hosts[i % hosts.length]!

  beforeAll(async () => {
    deployment = new Deployment(kind, `ex${run}${kind}`)
    hosts = await startHosts(deployment, 3)
    root = deployment.cache()
  })

  afterAll(async () => {
    await Promise.all(hosts.map((each) => each.stop()))
    await deployment.close()
  })

  it('dedup.yaml: 50 concurrent deliveries of one event on three replicas process it once', async () => {
    const body = { eventId: `evt-${kind}`, amount: 4200, currency: 'EUR' }
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => call(host(i), 'POST', '/webhooks/payments', body)),
    )
    const processed = results.filter((result) => !result.dropped)
    expect(processed).toHaveLength(1)
    expect(dataOf(processed[0]!)).toEqual({ ...body, processed: 1 })
    for (const result of results.filter((each) => each.dropped)) {
      expect(result.steps.map((step) => step.name)).toEqual(['dedup'])
    }
    const view = viewOf(root, 'acme', 'payment-webhook')
    expect(await view.get('payments-processed')).toBe(1)
    expect(await view.get(`payment:evt-${kind}`)).toEqual({ amount: 4200, currency: 'EUR' })

    const other = await call(host(1), 'POST', '/webhooks/payments', { ...body, eventId: 'evt-2' })
    expect(other.dropped).toBe(false)
    expect(dataOf(other).processed).toBe(2)
  })

  it('lock.yaml: concurrent deposits on three replicas never interleave; the balance is exact', async () => {
    const amounts = Array.from({ length: 24 }, (_, i) => i + 1)
    const results = await Promise.all(
      amounts.map((amount, i) =>
        call(host(i), 'POST', '/accounts/acc-1/deposits', { amount }).then(dataOf),
      ),
    )
    const total = amounts.reduce((sum, amount) => sum + amount, 0)
    // Each deposit saw the balance the previous one left: the balances after each deposit are
    // the prefix sums of the deposits in lock order, all distinct, the last one the total.
    const balances = results.map((result) => result.balance as number).sort((a, b) => a - b)
    expect(new Set(balances).size).toBe(amounts.length)
    expect(balances.at(-1)).toBe(total)
    const byBalance = new Map(results.map((result) => [result.balance, result.deposited]))
    let previous = 0
    for (const balance of balances) {
      expect(balance - previous).toBe(byBalance.get(balance))
      previous = balance
    }
    const view = viewOf(root, 'acme', 'account-deposit')
    expect(await view.get('balance:acc-1')).toBe(total)
    expect(await view.get('balance:acc-2')).toBeUndefined()
    // The lock was released after every deposit.
    expect(await view.locks.acquire('account:acc-1', { ttl: '1s' })).not.toBeNull()
  })

  if (!every) return

  it('state-tracking.yaml: the cursor and the run counter carry over between runs and replicas', async () => {
    const first = dataOf(
      await call(host(0), 'POST', '/sync/orders', {
        orders: [{ id: 3 }, { id: 1 }, { id: 2 }],
      }),
    )
    expect(first).toEqual({ run: 1, synced: [3, 1, 2], skipped: 0, cursor: 3 })
    const second = dataOf(
      await call(host(1), 'POST', '/sync/orders', {
        orders: [{ id: 2 }, { id: 3 }, { id: 4 }, { id: 5 }],
      }),
    )
    expect(second).toEqual({ run: 2, synced: [4, 5], skipped: 2, cursor: 5 })
    const empty = dataOf(await call(host(2), 'POST', '/sync/orders', { orders: [{ id: 5 }] }))
    expect(empty).toEqual({ run: 3, synced: [], skipped: 1, cursor: 5 })
    const view = viewOf(root, 'acme', 'order-sync')
    expect(await view.get('cursor')).toBe(5)
    expect(await view.ttl('cursor')).toBeNull()
  })

  it('cache-first.yaml: computes on a miss, then answers from the cache with a 10 minute TTL', async () => {
    const first = dataOf(await call(host(0), 'GET', '/customers/c-42'))
    expect(first).toMatchObject({ id: 'c-42', source: 'computed' })
    const second = dataOf(await call(host(1), 'GET', '/customers/c-42'))
    expect(second).toEqual({ ...first, source: 'cache' })
    const view = viewOf(root, 'acme', 'customer-lookup')
    const ttl = await view.ttl('customer:c-42')
    expect(ttl).toBeGreaterThan(5 * 60_000)
    expect(ttl).toBeLessThanOrEqual(10 * 60_000)
    // Another customer is a miss of its own; a removed entry (as after its TTL) is recomputed.
    expect(dataOf(await call(host(2), 'GET', '/customers/c-7')).source).toBe('computed')
    await view.delete('customer:c-42')
    expect(dataOf(await call(host(0), 'GET', '/customers/c-42')).source).toBe('computed')
  })

  it('rate-limit.yaml: 5 messages a minute per user, counted across the replicas', async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        call(host(i), 'POST', '/messages', { user: 'alice', text: `hi ${i}` }).then(dataOf),
      ),
    )
    const accepted = results.filter((result) => result.accepted === true)
    const refused = results.filter((result) => result.accepted === false)
    expect(accepted).toHaveLength(5)
    expect(refused).toHaveLength(3)
    for (const result of refused) expect(result.retryAfterMs).toBeGreaterThan(0)
    expect(accepted.map((result) => result.remaining).sort()).toEqual([0, 1, 2, 3, 4])
    // Another user has a quota of their own.
    const bob = dataOf(await call(host(0), 'POST', '/messages', { user: 'bob', text: 'hello' }))
    expect(bob).toEqual({ user: 'bob', accepted: true, remaining: 4, text: 'hello' })
  })

  it('sessions.yaml: a session keeps its messages, with a 30 minute TTL, apart from other sessions', async () => {
    const first = dataOf(await call(host(0), 'POST', '/chat/s-1', { text: 'hello' }))
    expect(first).toEqual({
      session: 's-1',
      newSession: true,
      messages: 1,
      recent: ['hello'],
    })
    for (const text of ['a', 'b', 'c', 'd', 'e']) {
      await call(host(1), 'POST', '/chat/s-1', { text })
    }
    const later = dataOf(await call(host(2), 'POST', '/chat/s-1', { text: 'f' }))
    expect(later).toEqual({
      session: 's-1',
      newSession: false,
      messages: 7,
      recent: ['b', 'c', 'd', 'e', 'f'],
    })
    const other = dataOf(await call(host(0), 'POST', '/chat/s-2', { text: 'hi' }))
    expect(other).toMatchObject({ newSession: true, messages: 1 })
    const ttl = await viewOf(root, 'acme', 'chat-session').ttl('session:s-1')
    expect(ttl).toBeGreaterThan(25 * 60_000)
    expect(ttl).toBeLessThanOrEqual(30 * 60_000)
  })

  it('memoized-step.yaml: the same lane and weight is a step cache hit, on any replica', async () => {
    const first = await call(host(0), 'POST', '/quotes', { from: 'nl', to: 'de', weightKg: 11.2 })
    expect(first.steps.map((step) => [step.name, step.hit])).toEqual([
      ['normalize', null],
      ['quote', false],
    ])
    expect(first.steps[1]?.logs?.map((entry) => entry.message)).toEqual([
      'priced NL -> DE 12 kg: 2220',
    ])
    const second = await call(host(1), 'POST', '/quotes', { from: 'NL', to: 'DE', weightKg: 12 })
    expect(second.steps.map((step) => [step.name, step.hit])).toEqual([
      ['normalize', null],
      ['quote', true],
    ])
    expect(second.steps[1]?.logs).toBeUndefined()
    expect(second.output).toEqual(first.output)
    const otherLane = await call(host(2), 'POST', '/quotes', { from: 'NL', to: 'FR', weightKg: 12 })
    expect(otherLane.steps[1]?.hit).toBe(false)
    expect(dataOf(otherLane).priceCents).not.toBe(dataOf(first).priceCents)
    // A debug run bypasses the step cache and runs the script.
    const body = { from: 'nl', to: 'de', weightKg: 11.2 }
    const debug = await host(0).dispatch('POST', '/quotes', body, { debug: true })
    expect(debug.kind === 'ok' && debug.result.steps[1]).toMatchObject({
      hit: null,
      bypassed: true,
    })
  })

  it('tenant-acme.yaml and tenant-globex.yaml: one key name, two tenants, no sharing', async () => {
    const acme1 = dataOf(await call(host(0), 'PUT', '/acme/settings', { theme: 'dark' }))
    expect(acme1).toEqual({ tenant: 'acme', previous: null, current: { theme: 'dark' } })
    const globex = dataOf(await call(host(1), 'PUT', '/globex/settings', { theme: 'light' }))
    expect(globex).toEqual({ tenant: 'globex', previous: null, current: { theme: 'light' } })
    const acme2 = dataOf(await call(host(2), 'PUT', '/acme/settings', { theme: 'blue' }))
    expect(acme2.previous).toEqual({ theme: 'dark' })

    // Through the cache views: each tenant's flow namespace holds its own `settings`.
    expect(await viewOf(root, 'acme', 'acme-settings').get('settings')).toEqual({ theme: 'blue' })
    expect(await viewOf(root, 'globex', 'globex-settings').get('settings')).toEqual({
      theme: 'light',
    })
    expect(await viewOf(root, 'globex', 'acme-settings').get('settings')).toBeUndefined()
    expect(await viewOf(root, 'globex', 'globex-settings').keys()).toEqual(['settings'])

    // The tenant alone separates them: Globex's flow file run under Acme's flow name still does
    // not see Acme's settings.
    const runner = new FlowRunner({ cache: root })
    try {
      const globexFlow = await loadFlowFile(join(examplesDir, 'tenant-globex.yaml'))
      const renamed: FlowDefinition = { ...globexFlow, name: 'acme-settings' }
      const result = await runner.run(renamed, { data: { theme: 'green' } })
      expect(dataOf(result)).toEqual({
        tenant: 'globex',
        previous: null,
        current: { theme: 'green' },
      })
      expect(await viewOf(root, 'acme', 'acme-settings').get('settings')).toEqual({
        theme: 'blue',
      })
    } finally {
      await runner.close()
    }
  })
})

describe('expiry on the memory store with a ManualClock', () => {
  const clock = new ManualClock()
  let root: Cache
  let host: DirFlowHost

  beforeAll(async () => {
    root = createCache({ clock, logger: silentLogger })
    host = createFlowHostFromDir({
      cache: root,
      dir: examplesDir,
      definitionsCache: definitions,
      logger: silentLogger,
    })
    await host.start()
  })

  afterAll(async () => {
    await host.stop()
    await root.close()
  })

  it('sessions.yaml: each message extends the session; 30 minutes of silence start a new one', async () => {
    const send = async (text: string) => dataOf(await call(host, 'POST', '/chat/s-9', { text }))
    expect(await send('one')).toMatchObject({ newSession: true, messages: 1 })
    clock.advance(20 * 60_000)
    expect(await send('two')).toMatchObject({ newSession: false, messages: 2 })
    clock.advance(20 * 60_000) // 40 minutes after the first message, 20 after the last
    expect(await send('three')).toMatchObject({ newSession: false, messages: 3 })
    clock.advance(30 * 60_000 + 1)
    expect(await send('four')).toEqual({
      session: 's-9',
      newSession: true,
      messages: 1,
      recent: ['four'],
    })
  })

  it('cache-first.yaml: a profile is served from the cache for 10 minutes, then computed again', async () => {
    const lookup = async () => dataOf(await call(host, 'GET', '/customers/c-1'))
    expect((await lookup()).source).toBe('computed')
    clock.advance(10 * 60_000 - 1)
    expect((await lookup()).source).toBe('cache')
    clock.advance(1)
    expect((await lookup()).source).toBe('computed')
  })
})

describe.each(['memory', 'redis', 'nats'] as const)(
  'leader-schedule.yaml on %s: two hosts on one store, one runs the schedule',
  (kind) => {
    it('only the leader runs the ticks; after it stops, the other host takes over', async () => {
      const deployment = new Deployment(kind, `ex${run}${kind}leader`)
      // The example ticks hourly; the test loads the same file and ticks every 100 ms.
      const flow = await loadFlowFile(join(examplesDir, 'leader-schedule.yaml'))
      expect(flow.trigger).toEqual({ kind: 'schedule', everyMs: 3_600_000 })
      expect(flow.requireLeaderElection).toBe(true)
      const fast: FlowDefinition = { ...flow, trigger: { kind: 'schedule', everyMs: 100 } }
      const replicas = [0, 1].map((i) => {
        const cache = deployment.cache()
        const runner = new FlowRunner({ cache })
        const host = createFlowHost({
          cache,
          runner,
          flows: () => [fast],
          owner: `replica-${i}`,
          leader: { lease: '3s', renewEvery: '250ms' },
          logger: silentLogger,
        })
        return { host, runner }
      })
      const view = viewOf(deployment.cache(), 'acme', 'hourly-report')
      const statusOf = (i: number) => replicas[i]!.host.status().flows[0]!
      try {
        for (const { host } of replicas) await host.start()
        await waitUntil(
          () => statusOf(0).runs.total + statusOf(1).runs.total >= 4,
          'four reports',
          20_000,
        )
        const leader = statusOf(0).runs.total > 0 ? 0 : 1
        const follower = 1 - leader
        await waitUntil(() => statusOf(follower).runs.notLeader > 0, 'a skipped tick')
        expect(statusOf(follower).runs.total).toBe(0)
        expect(statusOf(leader).leader?.isLeader).toBe(true)
        expect(statusOf(follower).leader?.isLeader).toBe(false)
        const token = BigInt(statusOf(leader).leader!.token!)
        const last = (await view.get('last-report')) as { leaderToken: string; number: number }
        expect(BigInt(last.leaderToken)).toBe(token)

        await replicas[leader]!.host.stop()
        const ranByLeader = statusOf(leader).runs.total
        expect(statusOf(leader).runs.failed).toBe(0)
        expect(await view.get('reports')).toBe(ranByLeader)
        await waitUntil(() => statusOf(follower).runs.total >= 2, 'ticks on the new leader', 20_000)
        await replicas[follower]!.host.stop()
        const after = (await view.get('last-report')) as { leaderToken: string }
        expect(BigInt(after.leaderToken)).toBeGreaterThan(token)
        expect(statusOf(follower).runs.failed).toBe(0)
        expect(await view.get('reports')).toBe(ranByLeader + statusOf(follower).runs.total)
      } finally {
        for (const { host, runner } of replicas) {
          await host.stop()
          await runner.close()
        }
        await deployment.close()
      }
    })
  },
)
