/**
 * The flow host in one process: the route table and its guarded reloads (the flood acceptance
 * test), schedules with skip-on-overlap, JSONL file / stdin / NATS subject events, leader-elected
 * event flows, graceful stop() and status(). Flows are built in code; the runner records calls,
 * except in the sandbox test, which runs scripts for real.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect } from '@nats-io/transport-node'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

import { natsUrl } from '../../flowcache/test/helpers/services.js'
import {
  ClosedError,
  InvalidArgumentError,
  ManualClock,
  createCache,
  silentLogger,
  type Cache,
  type Logger,
} from '../src/flowcache.js'
import type { FlowDefinition, FlowRunResult, FlowRunnerLike } from '../src/flows/types.js'
import {
  RouteTable,
  createFlowHost,
  type FlowHost,
  type FlowHostOptions,
} from '../src/host/index.js'
import { createSandbox, type Sandbox } from '../src/sandbox/index.js'
import { RecordingRunner, flowDef, waitUntil } from './helpers/host.js'

const run = randomBytes(4).toString('hex')
const hosts: FlowHost[] = []
const caches: Cache[] = []
let dir = ''

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fc-host-'))
})

afterEach(async () => {
  await Promise.all(hosts.splice(0).map((host) => host.stop()))
  await Promise.all(caches.splice(0).map((cache) => cache.close()))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

function newCache(): Cache {
  const cache = createCache({ logger: silentLogger })
  caches.push(cache)
  return cache
}

function newHost(options: Partial<FlowHostOptions> & Pick<FlowHostOptions, 'flows'>): FlowHost {
  const host = createFlowHost({
    cache: options.cache ?? newCache(),
    runner: options.runner ?? new RecordingRunner(),
    logger: silentLogger,
    ...options,
  })
  hosts.push(host)
  return host
}

/** A logger that keeps its lines. */
function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  const add = (level: string) => (message: string) => void lines.push(`${level}: ${message}`)
  return { lines, info: add('info'), warn: add('warn'), error: add('error') }
}

describe('route table', () => {
  it('prefers literal segments, decodes parameters, and reports 405 and conflicts', () => {
    const table = RouteTable.build([
      flowDef('by-id', { kind: 'http', method: 'GET', path: '/orders/:id' }),
      flowDef('new-order', { kind: 'http', method: 'GET', path: '/orders/new' }),
      flowDef('create', { kind: 'http', method: 'POST', path: '/orders' }),
      flowDef('twin', { kind: 'http', method: 'GET', path: '/orders/:key' }),
      flowDef('bad', { kind: 'http', method: 'GET', path: 'no-slash' }),
    ])
    const byId = table.match('GET', '/orders/a%2Fb')
    expect(byId.kind === 'found' && byId.route.flow.name).toBe('by-id')
    expect(byId.kind === 'found' && byId.params).toEqual({ id: 'a/b' })
    const literal = table.match('get', '/orders/new/')
    expect(literal.kind === 'found' && literal.route.flow.name).toBe('new-order')
    expect(table.match('GET', '/orders')).toEqual({ kind: 'method-not-allowed', allow: ['POST'] })
    expect(table.match('GET', '/orders/1/items')).toEqual({ kind: 'not-found' })
    expect(table.match('GET', '/orders/%E0%A4%A')).toEqual({ kind: 'not-found' })
    expect(table.conflicts).toEqual([
      { method: 'GET', path: '/orders/:id', kept: 'by-id', ignored: ['twin'] },
    ])
    expect(table.invalid.map((bad) => bad.flow)).toEqual(['bad'])
    expect(table.size).toBe(3)
  })
})

describe('HTTP dispatch', () => {
  it('runs the routed flow with params, body, query and debug, and records the run', async () => {
    const runner = new RecordingRunner()
    const host = newHost({
      runner,
      flows: () => [flowDef('order', { kind: 'http', method: 'POST', path: '/orders/:id' })],
    })
    await host.start()
    const answer = await host.dispatch(
      'POST',
      '/orders/42?x=1&x=2&y=3',
      { total: 5 },
      {
        debug: true,
      },
    )
    expect(answer.kind).toBe('ok')
    expect(answer.kind === 'ok' && answer.params).toEqual({ id: '42' })
    expect(runner.calls).toHaveLength(1)
    const call = runner.calls[0]
    expect(call?.debug).toBe(true)
    expect(call?.event).toEqual({
      data: { total: 5 },
      body: { total: 5 },
      params: { id: '42' },
      query: { x: ['1', '2'], y: '3' },
      meta: { trigger: 'http', method: 'POST', path: '/orders/42', route: '/orders/:id' },
    })
    const flow = host.status().flows.find((f) => f.name === 'order')
    expect(flow?.runs).toEqual({ total: 1, failed: 0, running: 0, notLeader: 0 })
    expect(flow?.recent[0]).toMatchObject({
      ok: true,
      trigger: 'http',
      revision: 'r1',
      steps: [{ name: 'pass', hit: null }],
    })
  })

  it('a flood of 10 000 unknown requests causes at most `max` reloads; a new flow is routable after one reload', async () => {
    const flows: FlowDefinition[] = [
      flowDef('known', { kind: 'http', method: 'GET', path: '/known' }),
    ]
    let loads = 0
    const loader = async (): Promise<FlowDefinition[]> => {
      loads++
      await sleep(2)
      return [...flows]
    }
    const clock = new ManualClock()
    const host = newHost({ flows: loader, clock, unknownRouteReloads: { max: 3, per: '1m' } })
    await host.start()
    expect(loads).toBe(1)

    // 10 000 requests: 100 waves of 100 concurrent ones.
    const kinds = new Map<string, number>()
    for (let wave = 0; wave < 100; wave++) {
      const answers = await Promise.all(
        Array.from({ length: 100 }, (_, i) => host.dispatch('GET', `/nope/${wave}/${i}`)),
      )
      for (const answer of answers) {
        const key = answer.kind === 'not-found' ? answer.reload : answer.kind
        kinds.set(key, (kinds.get(key) ?? 0) + 1)
      }
    }
    expect(loads - 1).toBe(3)
    expect(kinds.get('reloaded')).toBe(3)
    expect((kinds.get('joined') ?? 0) + (kinds.get('limited') ?? 0)).toBe(10_000 - 3)
    const stats = host.status().routes.unknownRouteReloads
    expect(stats).toMatchObject({ started: 3, failed: 0, max: 3, perMs: 60_000 })
    expect(stats.limited).toBeGreaterThan(9_000)

    // A flow added now is not seen while the window is full…
    flows.push(flowDef('fresh', { kind: 'http', method: 'GET', path: '/fresh/:id' }))
    expect(await host.dispatch('GET', '/fresh/1')).toEqual({
      kind: 'not-found',
      status: 404,
      reload: 'limited',
    })
    expect(loads).toBe(4)
    // …and is routable after one reload once the window has passed.
    clock.advance(60_000)
    const answer = await host.dispatch('GET', '/fresh/1')
    expect(answer.kind === 'ok' && answer.flow).toBe('fresh')
    expect(loads).toBe(5)
    // Known routes never reload.
    await host.dispatch('GET', '/known')
    await host.dispatch('GET', '/fresh/2')
    expect(loads).toBe(5)
  })

  it('concurrent unknown requests share one reload', async () => {
    let loads = 0
    const flows: FlowDefinition[] = []
    const host = newHost({
      flows: async () => {
        loads++
        await sleep(20)
        return [...flows]
      },
      unknownRouteReloads: { max: 100, per: '1m' },
    })
    await host.start()
    flows.push(flowDef('late', { kind: 'http', method: 'GET', path: '/late' }))
    const answers = await Promise.all(
      Array.from({ length: 10_000 }, () => host.dispatch('GET', '/late')),
    )
    expect(loads).toBe(2)
    expect(answers.every((answer) => answer.kind === 'ok')).toBe(true)
  })

  it('keeps the current routes when a reload fails, and refreshes on its period', async () => {
    const flows: FlowDefinition[] = [flowDef('a', { kind: 'http', method: 'GET', path: '/a' })]
    let fail = false
    let loads = 0
    const host = newHost({
      routeRefreshEvery: 30,
      flows: () => {
        loads++
        if (fail) throw new Error('flows folder unreadable')
        return [...flows]
      },
    })
    await host.start()
    fail = true
    expect(await host.dispatch('GET', '/b')).toMatchObject({ kind: 'not-found', reload: 'failed' })
    expect((await host.dispatch('GET', '/a')).kind).toBe('ok')
    expect(host.status().routes.lastError).toBe('flows folder unreadable')
    await waitUntil(() => host.status().routes.refreshes.failed >= 1, 'a failed refresh')
    fail = false
    flows.push(flowDef('b', { kind: 'http', method: 'GET', path: '/b' }))
    const before = loads
    await waitUntil(() => host.status().routes.refreshes.done >= 1, 'a periodic refresh')
    expect(loads).toBeGreaterThan(before)
    // Found in the refreshed table: no unknown-route reload needed.
    const reloads = host.status().routes.unknownRouteReloads.started
    expect((await host.dispatch('GET', '/b')).kind).toBe('ok')
    expect(host.status().routes.unknownRouteReloads.started).toBe(reloads)
    expect(host.status().routes.lastError).toBeUndefined()
  })

  it('rejects with the runner error and records the failed run', async () => {
    const runner = new RecordingRunner()
    const host = newHost({
      runner,
      recentRuns: 3,
      flows: () => [flowDef('f', { kind: 'http', method: 'PUT', path: '/f' })],
    })
    await host.start()
    for (let i = 0; i < 4; i++) await host.dispatch('PUT', '/f', { i })
    runner.failWith(Object.assign(new Error('script threw'), { code: 'E_SCRIPT' }))
    await expect(host.dispatch('PUT', '/f')).rejects.toThrow('script threw')
    const flow = host.status().flows[0]
    expect(flow?.runs).toMatchObject({ total: 5, failed: 1 })
    expect(flow?.recent).toHaveLength(3)
    expect(flow?.recent.at(-1)).toMatchObject({
      ok: false,
      error: { code: 'E_SCRIPT', message: 'script threw' },
    })
    expect(await host.dispatch('GET', '/f')).toEqual({
      kind: 'method-not-allowed',
      status: 405,
      allow: ['PUT'],
    })
  })

  it('checks its options before any I/O', () => {
    const cache = newCache()
    const runner = new RecordingRunner()
    expect(() =>
      createFlowHost({ cache, runner, flows: () => [], unknownRouteReloads: { max: 0 } }),
    ).toThrow(InvalidArgumentError)
    expect(() =>
      createFlowHost({ cache, runner, flows: () => [], routeRefreshEvery: '1' }),
    ).toThrow(/routeRefreshEvery/)
    expect(() =>
      createFlowHost({ cache, runner, flows: 'flows/' as unknown as FlowHostOptions['flows'] }),
    ).toThrow(/flows must be a function/)
  })

  it('runs scripts that see event.params and event.body (sandbox runner)', async () => {
    const sandbox: Sandbox = await createSandbox({ logger: silentLogger })
    const cache = newCache()
    const runner: FlowRunnerLike = {
      async run(flow, event): Promise<FlowRunResult> {
        let current = event as Record<string, unknown>
        for (const step of flow.steps) {
          const result = await sandbox.run(step.script, {
            event: current,
            ctx: {
              cache: cache.namespace(`tenant:${flow.tenant}`).namespace(`flow:${flow.name}`),
              flow: { name: flow.name, runId: randomUUID(), tenant: flow.tenant },
            },
          })
          if (result.value === null) break
          current = result.value
        }
        return { runId: 'r', flow: flow.name, output: current, dropped: false, steps: [], ms: 0 }
      },
    }
    const flow = flowDef('echo', { kind: 'http', method: 'POST', path: '/echo/:id' })
    flow.steps = [
      {
        name: 'echo',
        script: 'return { data: { id: event.params.id, sum: event.body.a + event.data.a } }',
        line: 4,
      },
    ]
    const host = newHost({ cache, runner, flows: () => [flow] })
    try {
      await host.start()
      const answer = await host.dispatch('POST', '/echo/x1', { a: 2 })
      expect(answer.kind === 'ok' && answer.result.output).toEqual({ data: { id: 'x1', sum: 4 } })
    } finally {
      await host.stop()
      await sandbox.close()
    }
  })
})

describe('schedules', () => {
  it('skips and counts ticks that overlap a running run, then goes on', async () => {
    const runner = new RecordingRunner()
    runner.hold()
    const host = newHost({
      runner,
      flows: () => [flowDef('tick', { kind: 'schedule', everyMs: 20 })],
    })
    await host.start()
    await waitUntil(() => (host.status().flows[0]?.schedule?.skippedOverlap ?? 0) >= 3, 'skips')
    expect(runner.calls).toHaveLength(1)
    expect(runner.running).toBe(1)
    runner.release()
    await waitUntil(() => runner.calls.length >= 3, 'ticks after the long run')
    const ticks = runner.calls.map((call) => (call.event.meta as { tick: number }).tick)
    for (let i = 1; i < ticks.length; i++) {
      expect(ticks[i]).toBeGreaterThan(ticks[i - 1] as number)
    }
    expect(runner.calls[0]?.event).toMatchObject({
      data: { tick: ticks[0] },
      meta: { trigger: 'schedule', tick: ticks[0] },
    })
    const status = host.status().flows[0]
    expect(status?.schedule?.fired).toBeGreaterThanOrEqual(3)
    expect(status?.active).toBe(true)
  })
})

describe('event sources', () => {
  it('runs each JSONL line in order; bad lines are reported with their number and skipped', async () => {
    const file = join(dir, `events-${run}.jsonl`)
    await writeFile(
      file,
      ['{"data":{"id":1}}', '{oops', '42', '', '{"data":{"id":2},"meta":{"k":"v"}}', ''].join('\n'),
    )
    const runner = new RecordingRunner()
    const logger = recordingLogger()
    const flow = flowDef('import', {
      kind: 'events',
      source: { kind: 'file', path: 'events-' + run + '.jsonl' },
    })
    flow.file = join(dir, 'import.yaml') // the events path is relative to the flow's folder
    const host = newHost({ runner, logger, flows: () => [flow] })
    await host.start()
    await waitUntil(() => host.status().flows[0]?.source?.ended === true, 'end of file')
    expect(runner.calls.map((call) => call.event)).toEqual([
      { data: { id: 1 }, meta: { trigger: 'events', source: 'file', line: 1 } },
      { data: 42, meta: { trigger: 'events', source: 'file', line: 3 } },
      { data: { id: 2 }, meta: { k: 'v', trigger: 'events', source: 'file', line: 5 } },
    ])
    const source = host.status().flows[0]?.source
    expect(source).toMatchObject({ received: 3, bad: 1, lastBad: { line: 2 }, ended: true })
    expect(logger.lines.filter((line) => line.includes('line 2'))).toHaveLength(1)
  })

  it('reports a missing events file', async () => {
    const logger = recordingLogger()
    const flow = flowDef('missing', {
      kind: 'events',
      source: { kind: 'file', path: join(dir, 'does-not-exist.jsonl') },
    })
    const host = newHost({ logger, flows: () => [flow] })
    await host.start()
    await waitUntil(() => host.status().flows[0]?.source?.error !== undefined, 'the read error')
    expect(host.status().flows[0]?.source?.error).toMatch(/ENOENT/)
    expect(logger.lines.some((line) => line.startsWith('error:') && line.includes('ENOENT'))).toBe(
      true,
    )
  })

  it('reads JSONL events from stdin', async () => {
    const stdin = new PassThrough()
    const runner = new RecordingRunner()
    const host = newHost({
      runner,
      stdin,
      flows: () => [flowDef('pipe', { kind: 'events', source: { kind: 'stdin' } })],
    })
    await host.start()
    stdin.write('{"data":"a"}\n{"da')
    stdin.write('ta":"b"}\nnot json\n')
    await waitUntil(() => runner.calls.length === 2, 'two events')
    stdin.end('{"data":"c"}')
    await waitUntil(() => host.status().flows[0]?.source?.ended === true, 'end of stdin')
    expect(runner.calls.map((call) => call.event.data)).toEqual(['a', 'b', 'c'])
    expect(host.status().flows[0]?.source).toMatchObject({ bad: 1, lastBad: { line: 3 } })
  })

  it('runs JSON messages of a NATS subject', async () => {
    const subject = `fc.test.host.${run}.orders`
    const runner = new RecordingRunner()
    const host = newHost({
      runner,
      natsUrl: natsUrl(),
      flows: () => [flowDef('nats', { kind: 'events', source: { kind: 'nats', subject } })],
    })
    await host.start()
    const nc = await connect({ servers: natsUrl() })
    try {
      nc.publish(subject, JSON.stringify({ data: { id: 1 } }))
      nc.publish(subject, 'not json')
      nc.publish(subject, JSON.stringify({ id: 2 }))
      await nc.flush()
      await waitUntil(() => runner.calls.length === 2, 'two NATS events')
    } finally {
      await nc.close()
    }
    expect(runner.calls.map((call) => call.event)).toEqual([
      { data: { id: 1 }, meta: { trigger: 'events', source: 'nats', subject } },
      { data: { id: 2 }, meta: { trigger: 'events', source: 'nats', subject } },
    ])
    expect(host.status().flows[0]?.source).toMatchObject({ received: 2, bad: 1 })
  })

  it('a leader-elected NATS flow runs each message on the leader only, with its token', async () => {
    const subject = `fc.test.host.${run}.leader`
    const cache = newCache() // both hosts share one store, like two replicas
    const runners = [new RecordingRunner(), new RecordingRunner()]
    const flow = flowDef(
      'elected',
      { kind: 'events', source: { kind: 'nats', subject } },
      {
        requireLeaderElection: true,
      },
    )
    const pair = runners.map((runner, i) =>
      newHost({
        cache,
        runner,
        owner: `host-${i}`,
        natsUrl: natsUrl(),
        leader: { lease: '2s', renewEvery: '500ms' },
        flows: () => [flow],
      }),
    )
    await Promise.all(pair.map((host) => host.start()))
    const leaderOf = (): number =>
      pair.findIndex((host) => host.status().flows[0]?.leader?.isLeader === true)
    await waitUntil(() => leaderOf() >= 0, 'a leader')
    const leader = leaderOf()
    const token = pair[leader]?.status().flows[0]?.leader?.token
    expect(token).toMatch(/^\d+$/)
    const nc = await connect({ servers: natsUrl() })
    try {
      for (let i = 0; i < 5; i++) nc.publish(subject, JSON.stringify({ data: i }))
      await nc.flush()
      await waitUntil(
        () =>
          runners[leader]?.calls.length === 5 &&
          pair[1 - leader]?.status().flows[0]?.runs.notLeader === 5,
        'five events on the leader, five skipped on the follower',
      )
    } finally {
      await nc.close()
    }
    expect(runners[1 - leader]?.calls).toEqual([])
    for (const call of runners[leader]?.calls ?? []) {
      expect((call.event.meta as { leaderToken?: string }).leaderToken).toBe(token)
    }
    expect(pair[leader]?.status().flows[0]?.recent.every((r) => r.leaderToken === token)).toBe(true)
    // Stopping the leader hands the lease back: the other host takes over.
    await pair[leader]?.stop()
    await waitUntil(
      () => pair[1 - leader]?.status().flows[0]?.leader?.isLeader === true,
      'takeover',
    )
    expect(pair[leader]?.status().flows[0]?.leader?.isLeader).toBe(false)
  })
})

describe('stop()', () => {
  it('stops triggers, waits for running flows, refuses new ones and steps down', async () => {
    const runner = new RecordingRunner()
    const stdin = new PassThrough()
    const host = newHost({
      runner,
      stdin,
      leader: { lease: '1s' },
      flows: () => [
        flowDef('web', { kind: 'http', method: 'GET', path: '/slow' }),
        flowDef('cron', { kind: 'schedule', everyMs: 15 }, { requireLeaderElection: true }),
        flowDef('pipe', { kind: 'events', source: { kind: 'stdin' } }),
      ],
    })
    await host.start()
    await waitUntil(() => runner.of('cron').length >= 2, 'scheduled runs as leader')
    runner.hold()
    const slow = host.dispatch('GET', '/slow')
    await waitUntil(() => runner.of('web').length === 1, 'the slow run to start')
    let stopped = false
    const stopping = host.stop().then(() => (stopped = true))
    await sleep(50)
    expect(stopped).toBe(false)
    expect(host.status().state).toBe('stopping')
    await expect(host.dispatch('GET', '/slow')).rejects.toThrow(ClosedError)
    runner.release()
    await stopping
    expect((await slow).kind).toBe('ok')
    const status = host.status()
    expect(status.state).toBe('stopped')
    expect(status.flows.find((f) => f.name === 'cron')?.leader?.isLeader).toBe(false)
    expect(status.flows.every((f) => !f.active)).toBe(true)
    const cronRuns = runner.of('cron').length
    stdin.write('{"data":1}\n')
    await sleep(60)
    expect(runner.of('cron')).toHaveLength(cronRuns)
    expect(runner.of('pipe')).toHaveLength(0)
    await expect(host.dispatch('GET', '/slow')).rejects.toThrow(/stopped/)
  })
})

describe('status()', () => {
  it('lists flows with their triggers, leader state and recent runs', async () => {
    const runner = new RecordingRunner()
    const host = newHost({
      runner,
      leader: { lease: '1s' },
      flows: () => [
        flowDef('web', { kind: 'http', method: 'GET', path: '/w' }, { tenant: 't1' }),
        flowDef('cron', { kind: 'schedule', everyMs: 25 }, { requireLeaderElection: true }),
        flowDef('broken', { kind: 'schedule', everyMs: -1 }),
      ],
    })
    expect(host.status()).toMatchObject({ state: 'new', flows: [] })
    await host.start()
    await host.dispatch('GET', '/w')
    await waitUntil(() => runner.of('cron').length >= 1, 'a scheduled run')
    await waitUntil(() => (host.status().flows[1]?.recent.length ?? 0) >= 1, 'its record')
    const status = host.status()
    expect(status.state).toBe('running')
    expect(status.routes).toMatchObject({ size: 1, refreshEveryMs: 60_000, conflicts: [] })
    expect(status.flows.map((f) => [f.name, f.trigger.kind, f.active])).toEqual([
      ['broken', 'schedule', false],
      ['cron', 'schedule', true],
      ['web', 'http', true],
    ])
    expect(status.flows[0]?.problem).toMatch(/everyMs/)
    const cron = status.flows[1]
    expect(cron?.leader).toMatchObject({ isLeader: true })
    expect(cron?.recent[0]).toMatchObject({
      ok: true,
      trigger: 'schedule',
      leaderToken: cron?.leader?.token,
    })
    expect(status.flows[2]).toMatchObject({ tenant: 't1', runs: { total: 1 } })
    expect(status.flows[2]?.leader).toBeUndefined()
  })
})
