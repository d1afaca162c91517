/**
 * Store benchmark: flowcache over Redis and NATS, through the public API, side by side with the
 * raw clients (the ceiling: the same round trips with nothing on top) and with BentoCache. Run
 * with `npm run bench:stores` in bench/ (or `npm run bench` at the root, after the memory one).
 *
 * Scenarios, each in one run with all of its contenders interleaved:
 * - Redis get (hit) and set, 1 and 50 in flight: flowcache `redisStore`, raw ioredis GET/SET,
 *   BentoCache with only an L2 Redis layer;
 * - Redis getMany of 100 keys: flowcache `getMany`, raw ioredis MGET, and `redis-benchmark -P 16`
 *   (pipelined single GETs from 50 clients, as keys/s);
 * - L1 hit over Redis: flowcache with `l1: {}`, BentoCache with a memory L1 and a Redis L2;
 * - NATS JetStream KV get and put, 1 and 50 in flight: flowcache `natsStore`, raw `@nats-io/kv`.
 *
 * Servers are found like the integration tests find them: FLOWCACHE_REDIS_URL / FLOWCACHE_NATS_URL
 * (must answer), else 127.0.0.1:6379 / 127.0.0.1:4222, else a private `redis-server` /
 * `nats-server -js` on a free port with a temp dir, stopped at the end. Every key this run writes
 * carries its run id and is deleted at the end; the NATS bucket is created for the run and deleted.
 *
 * Each contender runs in a child process of its own; for each scenario the parent has them run
 * short timed slices in turn (rotating who goes first), so all are measured across the same
 * stretch of time. Reported: the mean of the 3 fastest slices per cell.
 *
 * Environment knobs (defaults in brackets): BENCH_SLICES [24] timed slices per contender and
 * scenario, BENCH_SLICE_MS [150] length of one slice, BENCH_WARMUP_MS [300] warm-up per contender
 * and scenario, BENCH_ONLY=<id,id> only these scenarios (ids below), BENCH_PRIVATE_SERVERS=1 start
 * private servers even when the default ports answer. BENCH_RAW=<file> writes every slice's rate.
 */
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Redis as RedisClient } from 'ioredis'
import { createCache, type Cache } from '../packages/flowcache/src/index.js'
import { natsStore } from '../packages/flowcache/src/stores/nats/index.js'
import { redisStore } from '../packages/flowcache/src/stores/redis/index.js'
import { findExecutable } from '../packages/flowcache/test/helpers/servers.js'
import {
  batchTask,
  commandLine,
  deleteBucket,
  describeNats,
  describeRedis,
  findService,
  forEachParallel,
  formatRate,
  interleave,
  machineLine,
  median,
  newRedis,
  packageVersion,
  positiveEnv,
  ratio,
  revision,
  selectedScenarios,
  serveSlices,
  SliceWorker,
  topMean,
  unlinkMatching,
  warmUp,
  type Service,
  type Sliced,
} from './harness.js'

// ---- parameters ---------------------------------------------------------------------------------

/** Keys each contender preloads and cycles through. */
const KEY_COUNT = 1000
/** Keys per getMany / MGET call. */
const MANY = 100
/** Concurrent awaited loops in the "50 in flight" scenarios. */
const IN_FLIGHT = 50
/** Keys the redis-benchmark run reads (`-r`), preloaded with the same values. */
const RB_KEYS = 100
const RB_REQUESTS = 200_000
const RB_PIPELINE = 16
const RB_CLIENTS = 50

const SLICES = Math.round(positiveEnv('BENCH_SLICES', 24))
const SLICE_MS = positiveEnv('BENCH_SLICE_MS', 150)
const WARMUP_MS = positiveEnv('BENCH_WARMUP_MS', 300)
/** Throughput reported per cell: the mean of this many fastest slices. */
const TOP = 3

/** The small object value every scenario stores (about 40 bytes of JSON), as in memory.ts. */
function makeValue(i: number): { id: number; name: string; tags: string[] } {
  return { id: i, name: 'user-' + i, tags: ['a', 'b'] }
}

// ---- contenders and scenarios -------------------------------------------------------------------

const SUBJECTS = {
  'fc-redis': 'flowcache, redisStore',
  ioredis: 'raw ioredis GET / SET / MGET (ceiling)',
  'bento-l2': 'BentoCache 1.6, L2 redis only',
  'redis-benchmark': `redis-benchmark -P ${RB_PIPELINE}, ${RB_CLIENTS} clients (pipelined single GETs)`,
  'fc-l1': 'flowcache, redisStore + l1',
  'bento-l1l2': 'BentoCache 1.6, L1 memory + L2 redis',
  'fc-nats': 'flowcache, natsStore',
  'nats-kv': 'raw @nats-io/kv get / put (ceiling)',
} as const
type SubjectId = keyof typeof SUBJECTS
/** Contenders that run in a worker process (redis-benchmark is run by the parent). */
type WorkerSubject = Exclude<SubjectId, 'redis-benchmark'>

interface Scenario {
  title: string
  service: 'redis' | 'nats'
  op: 'get' | 'set' | 'getMany'
  inFlight: number
  /** Awaited calls per tinybench iteration, so the harness's own cost per iteration is amortised. */
  batch: number
  subjects: SubjectId[]
  /** Delete the remote copies once L1 is filled: every read must then be an L1 hit. */
  l1Only?: boolean
}

const REDIS_TRIO: SubjectId[] = ['fc-redis', 'ioredis', 'bento-l2']
const NATS_PAIR: SubjectId[] = ['fc-nats', 'nats-kv']

const SCENARIOS = {
  'redis-get-1': {
    title: 'get hit, 1 in flight',
    service: 'redis',
    op: 'get',
    inFlight: 1,
    batch: 100,
    subjects: REDIS_TRIO,
  },
  'redis-get-50': {
    title: `get hit, ${IN_FLIGHT} in flight`,
    service: 'redis',
    op: 'get',
    inFlight: IN_FLIGHT,
    batch: 2000,
    subjects: REDIS_TRIO,
  },
  'redis-set-1': {
    title: 'set, 1 in flight',
    service: 'redis',
    op: 'set',
    inFlight: 1,
    batch: 100,
    subjects: REDIS_TRIO,
  },
  'redis-set-50': {
    title: `set, ${IN_FLIGHT} in flight`,
    service: 'redis',
    op: 'set',
    inFlight: IN_FLIGHT,
    batch: 2000,
    subjects: REDIS_TRIO,
  },
  'redis-getmany': {
    title: `getMany(${MANY}), 1 in flight`,
    service: 'redis',
    op: 'getMany',
    inFlight: 1,
    batch: 10,
    subjects: ['fc-redis', 'ioredis', 'redis-benchmark'],
  },
  'l1-hit': {
    title: 'L1 get hit, 1 in flight',
    service: 'redis',
    op: 'get',
    inFlight: 1,
    batch: 1000,
    subjects: ['fc-l1', 'bento-l1l2'],
    l1Only: true,
  },
  'nats-get-1': {
    title: 'get hit, 1 in flight',
    service: 'nats',
    op: 'get',
    inFlight: 1,
    batch: 100,
    subjects: NATS_PAIR,
  },
  'nats-get-50': {
    title: `get hit, ${IN_FLIGHT} in flight`,
    service: 'nats',
    op: 'get',
    inFlight: IN_FLIGHT,
    batch: 2000,
    subjects: NATS_PAIR,
  },
  'nats-put-1': {
    title: 'put, 1 in flight',
    service: 'nats',
    op: 'set',
    inFlight: 1,
    batch: 100,
    subjects: NATS_PAIR,
  },
  'nats-put-50': {
    title: `put, ${IN_FLIGHT} in flight`,
    service: 'nats',
    op: 'set',
    inFlight: IN_FLIGHT,
    batch: 2000,
    subjects: NATS_PAIR,
  },
} satisfies Record<string, Scenario>
type ScenarioId = keyof typeof SCENARIOS

/** What every worker needs to know about this run. */
interface RunEnv {
  redisUrl: string
  natsUrl: string
  /** In every Redis key and the NATS bucket name of this run: `[A-Za-z0-9-]`. */
  runId: string
  bucket: string
}

// ---- worker: contenders -------------------------------------------------------------------------

/** The shape every contender is driven through. */
interface Contender {
  get(key: string): Promise<unknown>
  set(key: string, value: unknown): Promise<unknown>
  getMany(keys: string[]): Promise<unknown[]>
  /** Deletes this contender's copies in Redis (for the L1 scenario). */
  dropRemote?(): Promise<void>
  close(): Promise<void>
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

async function flowcacheContender(
  cache: Cache,
  dropRemote?: () => Promise<void>,
): Promise<Contender> {
  await cache.ready()
  const health = cache.health()
  if (health.status !== 'ok') {
    throw new Error(`flowcache is not on its store: ${health.status} (${health.reason ?? ''})`)
  }
  const contender: Contender = {
    get: (key) => cache.get(key),
    set: (key, value) => cache.set(key, value),
    getMany: (keys) => cache.getMany(keys),
    close: () => cache.close(),
  }
  if (dropRemote !== undefined) contender.dropRemote = dropRemote
  return contender
}

async function loadBento() {
  const [{ BentoCache, bentostore }, { memoryDriver }, { redisDriver }] = await Promise.all([
    import('bentocache'),
    import('bentocache/drivers/memory'),
    import('bentocache/drivers/redis'),
  ])
  return { BentoCache, bentostore, memoryDriver, redisDriver }
}

async function makeContender(subject: WorkerSubject, env: RunEnv): Promise<Contender> {
  switch (subject) {
    case 'fc-redis':
      return flowcacheContender(
        createCache({ store: redisStore({ url: env.redisUrl }), prefix: `${env.runId}-fc` }),
      )
    case 'fc-l1': {
      const prefix = `${env.runId}-fcl1`
      const cache = createCache({ store: redisStore({ url: env.redisUrl }), l1: {}, prefix })
      // L1 is used only while its invalidation bus is subscribed.
      const deadline = Date.now() + 5000
      while (cache.stats().l1?.live !== true) {
        if (Date.now() > deadline) throw new Error('flowcache L1 did not go live within 5 s')
        await new Promise((resolve) => setTimeout(resolve, 20))
      }
      return flowcacheContender(cache, async () => {
        const client = await newRedis(env.redisUrl)
        await unlinkMatching(client, prefix)
        await client.quit()
      })
    }
    case 'fc-nats':
      return flowcacheContender(
        createCache({ store: natsStore({ servers: env.natsUrl, bucket: env.bucket }) }),
      )
    case 'ioredis': {
      const client = await newRedis(env.redisUrl)
      const prefix = `${env.runId}-raw:`
      const parse = (text: string | null): unknown =>
        text === null ? undefined : (JSON.parse(text) as unknown)
      return {
        get: async (key) => parse(await client.get(prefix + key)),
        set: (key, value) => client.set(prefix + key, JSON.stringify(value)),
        getMany: async (keys) => (await client.mget(keys.map((key) => prefix + key))).map(parse),
        close: async () => void (await client.quit()),
      }
    }
    case 'bento-l2':
    case 'bento-l1l2': {
      const { BentoCache, bentostore, memoryDriver, redisDriver } = await loadBento()
      const prefix = `${env.runId}-${subject === 'bento-l2' ? 'bento' : 'bentol1'}`
      const connection = await newRedis(env.redisUrl)
      const l2 = redisDriver({ connection, prefix })
      const store =
        subject === 'bento-l2'
          ? bentostore().useL2Layer(l2)
          : bentostore()
              .useL1Layer(memoryDriver({ maxItems: 10_000 }))
              .useL2Layer(l2)
      const bento = new BentoCache({ default: 'store', stores: { store } })
      return {
        get: (key) => bento.get({ key }),
        set: (key, value) => bento.set({ key, value }),
        getMany: (keys) => Promise.all(keys.map((key) => bento.get({ key }))),
        dropRemote: async () => void (await unlinkMatching(connection, prefix)),
        close: () => bento.disconnectAll(),
      }
    }
    case 'nats-kv': {
      const [{ connect }, { jetstreamManager }, { Kvm }] = await Promise.all([
        import('@nats-io/transport-node'),
        import('@nats-io/jetstream'),
        import('@nats-io/kv'),
      ])
      const nc = await connect({ servers: env.natsUrl })
      // The bucket flowcache created (its contender is prepared first): same settings for both.
      // `open` reads with the JetStream API unless told that the stream allows direct gets, as
      // flowcache's store finds out from the stream's config: tell it the same.
      const jsm = await jetstreamManager(nc)
      const { config } = await jsm.streams.info(`KV_${env.bucket}`)
      const kv = await new Kvm(nc).open(env.bucket, { allow_direct: config.allow_direct === true })
      const prefix = 'raw.'
      const keyOf = (key: string): string => prefix + key.replace(':', '.')
      const get = async (key: string): Promise<unknown> => {
        const entry = await kv.get(keyOf(key))
        return entry === null || entry.operation !== 'PUT'
          ? undefined
          : (JSON.parse(decoder.decode(entry.value)) as unknown)
      }
      return {
        get,
        set: (key, value) => kv.put(keyOf(key), encoder.encode(JSON.stringify(value))),
        getMany: (keys) => Promise.all(keys.map(get)),
        close: () => nc.close(),
      }
    }
  }
}

// ---- worker: timing -----------------------------------------------------------------------------

/** What a worker counts of a scenario's reads. */
interface Counts {
  hits: number
  misses: number
}

async function prepare(
  subject: WorkerSubject,
  id: ScenarioId,
  env: RunEnv,
): Promise<Sliced<Counts>> {
  const scenario: Scenario = SCENARIOS[id]
  const contender = await makeContender(subject, env)
  const keys = Array.from({ length: KEY_COUNT }, (_, i) => `key:${i}`)
  const values = keys.map((_, i) => makeValue(i))
  await forEachParallel(KEY_COUNT, 50, (i) => contender.set(keys[i]!, values[i]))
  if (scenario.l1Only === true) {
    // Fill L1 by reading every key, then delete the Redis copies: a read that is not an L1 hit
    // now misses, and the run fails on the miss count.
    await forEachParallel(KEY_COUNT, 50, (i) => contender.get(keys[i]!))
    await contender.dropRemote!()
  }

  const counts = { hits: 0, misses: 0 }
  let cursor = 0
  const windows = Array.from({ length: KEY_COUNT / MANY }, (_, w) =>
    keys.slice(w * MANY, (w + 1) * MANY),
  )
  let one: () => Promise<void>
  switch (scenario.op) {
    case 'get':
      one = async () => {
        const i = cursor
        if (++cursor === KEY_COUNT) cursor = 0
        if ((await contender.get(keys[i]!)) === undefined) counts.misses++
        else counts.hits++
      }
      break
    case 'set':
      one = async () => {
        const i = cursor
        if (++cursor === KEY_COUNT) cursor = 0
        await contender.set(keys[i]!, values[i])
      }
      break
    case 'getMany':
      one = async () => {
        const w = cursor
        if (++cursor === windows.length) cursor = 0
        for (const value of await contender.getMany(windows[w]!)) {
          if (value === undefined) counts.misses++
          else counts.hits++
        }
      }
      break
  }
  const { batch, inFlight } = scenario
  const task = batchTask(one, batch, inFlight)
  await warmUp(task, WARMUP_MS)
  counts.hits = 0
  counts.misses = 0
  return { task, batch, counts, close: () => contender.close() }
}

/** Which scenario a worker prepares, on which servers. */
interface PrepareRequest {
  scenario: ScenarioId
  env: RunEnv
}

/** Worker side: prepare, slice (many times), finish, per scenario; exit at the end. */
function runWorker(subject: WorkerSubject): void {
  serveSlices<PrepareRequest, Counts>(subject, SLICE_MS, ({ scenario, env }) =>
    prepare(subject, scenario, env),
  )
}

// ---- parent: redis-benchmark --------------------------------------------------------------------

/** `redis-benchmark` arguments for a URL: host, port and password if any. */
function redisBenchmarkArgs(url: string, runId: string): string[] {
  const parsed = new URL(url)
  const args = ['-h', parsed.hostname, '-p', parsed.port === '' ? '6379' : parsed.port]
  if (parsed.password !== '') {
    if (parsed.username !== '') args.push('--user', decodeURIComponent(parsed.username))
    args.push('-a', decodeURIComponent(parsed.password), '--no-auth-warning')
  }
  return [
    ...args,
    '-n',
    String(RB_REQUESTS),
    '-P',
    String(RB_PIPELINE),
    '-c',
    String(RB_CLIENTS),
    '-r',
    String(RB_KEYS),
    '-q',
    '--csv',
    'GET',
    `${runId}-rb:key:__rand_int__`,
  ]
}

/** One redis-benchmark run; its GET rate (requests, that is keys, per second). */
function redisBenchmark(binary: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error !== null)
        return reject(new Error(`redis-benchmark failed: ${error.message}\n${stderr}`))
      const row = stdout
        .trim()
        .split('\n')
        .find((line) => line.startsWith('"GET'))
      const rps = Number(row?.split(',')[1]?.replaceAll('"', ''))
      if (!Number.isFinite(rps) || rps <= 0) {
        return reject(new Error(`unreadable redis-benchmark output: ${stdout}${stderr}`))
      }
      resolve(rps)
    })
  })
}

// ---- parent: orchestration ----------------------------------------------------------------------

const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)

/** Names this benchmark in the error that says how to get a server. */
const BENCHMARK = 'store benchmark'

class StoreWorker extends SliceWorker<PrepareRequest, Counts, WorkerSubject> {
  constructor(subject: WorkerSubject) {
    super(subject, SELF, [subject], BENCH_DIR, `store worker ${subject}`)
  }
}

/** One contender as the parent drives it: a worker process, or the redis-benchmark binary. */
interface Runner {
  subject: SubjectId
  prepare(scenario: ScenarioId): Promise<void>
  slice(): Promise<number>
  finish(): Promise<{ hits: number; misses: number }>
}

async function main(): Promise<void> {
  const started = performance.now()
  const log = (line: string): void => void process.stderr.write(line + '\n')
  const scenarios = selectedScenarios(Object.keys(SCENARIOS) as ScenarioId[])
  const needs = (service: 'redis' | 'nats'): boolean =>
    scenarios.some((id) => SCENARIOS[id].service === service)

  const runId = `fcbench-${Date.now().toString(36)}-${process.pid}`
  const bucket = runId.replaceAll('-', '_')
  const services: Service[] = []
  const workers = new Map<WorkerSubject, StoreWorker>()
  let admin: RedisClient | undefined
  let natsTouched = false
  const rates = new Map<string, number[]>()
  const info = { redis: '', nats: '' }
  const rbBinary = findExecutable('redis-benchmark')
  let rbCommand = ''

  try {
    const redis = needs('redis') ? await findService('redis', BENCHMARK) : undefined
    if (redis !== undefined) {
      services.push(redis)
      log(`redis: ${redis.url} (${redis.source})`)
    }
    const nats = needs('nats') ? await findService('nats', BENCHMARK) : undefined
    if (nats !== undefined) {
      services.push(nats)
      log(`nats: ${nats.url} (${nats.source})`)
    }
    const env: RunEnv = {
      redisUrl: redis?.url ?? '',
      natsUrl: nats?.url ?? '',
      runId,
      bucket,
    }
    if (redis !== undefined) {
      admin = await newRedis(redis.url)
      info.redis = await describeRedis(admin, redis)
      // The keys redis-benchmark reads: `-r 100` makes __rand_int__ 000000000000..000000000099.
      for (let i = 0; i < RB_KEYS; i++) {
        await admin.set(
          `${runId}-rb:key:${String(i).padStart(12, '0')}`,
          JSON.stringify(makeValue(i)),
        )
      }
      rbCommand = `redis-benchmark ${redisBenchmarkArgs(redis.url, runId)
        .join(' ')
        .replace(/-a \S+/, '-a ***')}`
    }
    if (nats !== undefined) info.nats = await describeNats(nats)

    const runners = new Map<SubjectId, Runner>()
    const runnerOf = (subject: SubjectId): Runner => {
      let runner = runners.get(subject)
      if (runner !== undefined) return runner
      if (subject === 'redis-benchmark') {
        const args = redisBenchmarkArgs(env.redisUrl, runId)
        runner = {
          subject,
          prepare: async () => void (await redisBenchmark(rbBinary!, args)), // warm-up run
          slice: () => redisBenchmark(rbBinary!, args),
          finish: async () => ({ hits: 0, misses: 0 }),
        }
      } else {
        const worker = new StoreWorker(subject)
        workers.set(subject, worker)
        runner = {
          subject,
          prepare: async (scenario) => {
            if (SCENARIOS[scenario].service === 'nats') natsTouched = true
            await worker.prepare({ scenario, env })
          },
          slice: () => worker.slice(),
          finish: () => worker.finish(),
        }
      }
      runners.set(subject, runner)
      return runner
    }
    // Start every worker process this run needs at once; they load their modules in parallel.
    for (const id of scenarios) {
      for (const subject of SCENARIOS[id].subjects) {
        if (subject !== 'redis-benchmark' || rbBinary !== undefined) runnerOf(subject)
      }
    }

    for (const id of scenarios) {
      const scenario: Scenario = SCENARIOS[id]
      const active = scenario.subjects.filter((s) => runners.has(s)).map((s) => runners.get(s)!)
      // In order: flowcache first, so that its store creates the NATS bucket the raw client opens.
      for (const runner of active) await runner.prepare(id)
      await interleave(active, SLICES, async (runner) => {
        const cell = `${runner.subject}/${id}`
        rates.set(cell, [...(rates.get(cell) ?? []), await runner.slice()])
      })
      for (const runner of active) {
        const { hits, misses } = await runner.finish()
        const wrong = scenario.op === 'set' ? 0 : misses
        if (wrong !== 0) {
          throw new Error(
            `${runner.subject} ${id}: ${hits} hits and ${misses} misses; the scenario is broken`,
          )
        }
        const runs = rates.get(`${runner.subject}/${id}`)!
        const perKey = scenario.op === 'getMany' && runner.subject !== 'redis-benchmark' ? MANY : 1
        log(
          `${id.padEnd(14)} ${SUBJECTS[runner.subject].padEnd(52)} top-${TOP} ${formatRate(topMean(runs, TOP) * perKey).padStart(11)}  ` +
            `median ${formatRate(median(runs) * perKey)}  min ${formatRate(Math.min(...runs) * perKey)}  max ${formatRate(Math.max(...runs) * perKey)}`,
        )
      }
    }
    await Promise.all([...workers.values()].map((worker) => worker.end()))
  } finally {
    for (const worker of workers.values()) worker.kill()
    if (admin !== undefined) {
      const removed = await unlinkMatching(admin, runId).catch(() => 0)
      log(`redis: removed the ${removed} keys of this run`)
      await admin.quit().catch(() => undefined)
    }
    const nats = services.find((s) => s.url.startsWith('nats:'))
    if (nats !== undefined && natsTouched) await deleteBucket(nats.url, bucket, log)
    for (const service of services) await service.server?.stop()
  }
  if (process.env.BENCH_RAW)
    writeFileSync(process.env.BENCH_RAW, JSON.stringify(Object.fromEntries(rates)))

  process.stdout.write(
    report({ scenarios, rates, info, rbCommand, seconds: (performance.now() - started) / 1000 }) +
      '\n',
  )
}

// ---- parent: report -----------------------------------------------------------------------------

interface ReportInput {
  scenarios: ScenarioId[]
  rates: Map<string, number[]>
  info: { redis: string; nats: string }
  rbCommand: string
  seconds: number
}

function report({ scenarios, rates, info, rbCommand, seconds }: ReportInput): string {
  const ops = (subject: SubjectId, id: ScenarioId): number | undefined => {
    const runs = rates.get(`${subject}/${id}`)
    return runs === undefined ? undefined : topMean(runs, TOP)
  }
  const ran = (id: ScenarioId): boolean => scenarios.includes(id)
  const cell = (subject: SubjectId, id: ScenarioId, base: SubjectId): string => {
    const value = ops(subject, id)
    const reference = ops(base, id)
    if (value === undefined) return '—'
    return reference === undefined
      ? formatRate(value)
      : `${formatRate(value)} (${ratio(value, reference)})`
  }
  const table = (
    ids: ScenarioId[],
    subjects: SubjectId[],
    base: SubjectId,
    lines: string[],
  ): void => {
    const header = ['Contender', ...ids.map((id) => SCENARIOS[id].title)]
    lines.push(`| ${header.join(' | ')} |`)
    lines.push(`| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`)
    for (const subject of subjects) {
      lines.push(
        `| ${SUBJECTS[subject]} | ${ids.map((id) => cell(subject, id, base)).join(' | ')} |`,
      )
    }
  }

  const lines: string[] = []
  lines.push('## flowcache store benchmark (Redis, NATS)')
  lines.push('')
  lines.push(machineLine())
  lines.push(
    `${revision(BENCH_DIR)} · ioredis ${packageVersion(BENCH_DIR, 'ioredis')} · bentocache ${packageVersion(BENCH_DIR, 'bentocache')} · ` +
      `@nats-io/kv ${packageVersion(BENCH_DIR, '@nats-io/kv')} · tinybench ${packageVersion(BENCH_DIR, 'tinybench')}`,
  )
  lines.push([info.redis, info.nats].filter((s) => s !== '').join(' · '))
  lines.push(
    `${commandLine('bench:stores', SELF)} · ` +
      `mean of the ${TOP} fastest of ${SLICES} interleaved ${SLICE_MS} ms slices per cell (after ${WARMUP_MS} ms warm-up) · ` +
      `each contender in a process of its own · ${KEY_COUNT} keys per contender, values like {"id":1,"name":"user-1","tags":["a","b"]}`,
  )
  lines.push('')
  lines.push(
    'Awaited operations per second (higher is better); in brackets, the ratio to the flowcache row. ' +
      `"${IN_FLIGHT} in flight": ${IN_FLIGHT} concurrent loops, each awaiting one call at a time.`,
  )

  const redisIds = (['redis-get-1', 'redis-get-50', 'redis-set-1', 'redis-set-50'] as const).filter(
    ran,
  )
  if (redisIds.length > 0) {
    lines.push('')
    lines.push('### Redis: get and set')
    lines.push('')
    table(redisIds, ['fc-redis', 'ioredis', 'bento-l2'], 'fc-redis', lines)
  }

  if (ran('redis-getmany')) {
    const id = 'redis-getmany'
    const fcKeys = (ops('fc-redis', id) ?? 0) * MANY
    lines.push('')
    lines.push(`### Redis: getMany of ${MANY} keys`)
    lines.push('')
    lines.push(
      `Keys read per second; in brackets, the ratio to flowcache. flowcache and ioredis: one call of ${MANY} keys in flight at a time. ` +
        `redis-benchmark: single GETs, ${RB_PIPELINE} pipelined per connection on ${RB_CLIENTS} connections ` +
        `(${RB_CLIENTS * RB_PIPELINE} in flight), from a C client: the server's own ceiling for reads, not a client library.`,
    )
    lines.push('')
    lines.push('| Contender | calls / s | keys / s |')
    lines.push('| --- | ---: | ---: |')
    const row = (subject: SubjectId, label: string, perCall: number): void => {
      const value = ops(subject, id)
      if (value === undefined) {
        lines.push(
          `| ${label} | — | not measured (redis-benchmark not found: apt-get install redis-tools) |`,
        )
        return
      }
      const keys = value * perCall
      lines.push(
        `| ${label} | ${perCall === 1 ? '—' : formatRate(value)} | ${formatRate(keys)} (${ratio(keys, fcKeys)}) |`,
      )
    }
    row('fc-redis', `flowcache getMany(${MANY})`, MANY)
    row('ioredis', `raw ioredis MGET of ${MANY} keys (ceiling)`, MANY)
    row('redis-benchmark', SUBJECTS['redis-benchmark'], 1)
    if (rbCommand !== '') {
      lines.push('')
      lines.push(`redis-benchmark command: \`${rbCommand}\``)
    }
  }

  if (ran('l1-hit')) {
    lines.push('')
    lines.push('### L1 hit over Redis')
    lines.push('')
    lines.push(
      `${KEY_COUNT} hot keys read in turn, each already in L1; the Redis copies are deleted before timing, so a read that is not an L1 hit fails the run.`,
    )
    lines.push('')
    table(['l1-hit'], ['fc-l1', 'bento-l1l2'], 'fc-l1', lines)
  }

  const natsIds = (['nats-get-1', 'nats-get-50', 'nats-put-1', 'nats-put-50'] as const).filter(ran)
  if (natsIds.length > 0) {
    lines.push('')
    lines.push('### NATS JetStream KV: get and put')
    lines.push('')
    lines.push(
      'Both in one fresh bucket (created by flowcache with its defaults, deleted at the end).',
    )
    lines.push('')
    table(natsIds, ['fc-nats', 'nats-kv'], 'fc-nats', lines)
  }

  lines.push('')
  lines.push('Goals:')
  lines.push('')
  const goal = (text: string, fc: SubjectId, peer: SubjectId, id: ScenarioId, target: number) => {
    const a = ops(fc, id)
    const b = ops(peer, id)
    if (a === undefined || b === undefined) return void lines.push(`- ${text}: not measured`)
    const actual = a / b
    lines.push(
      `- ${text}: ${actual.toFixed(2)}× (target ≥ ${target}×) — ${actual >= target ? 'met' : 'MISSED'}`,
    )
  }
  goal(
    `Redis get hit, ${IN_FLIGHT} in flight, flowcache vs raw ioredis`,
    'fc-redis',
    'ioredis',
    'redis-get-50',
    0.9,
  )
  goal(
    `Redis get hit, ${IN_FLIGHT} in flight, flowcache vs BentoCache L2`,
    'fc-redis',
    'bento-l2',
    'redis-get-50',
    1.4,
  )
  goal('L1 hit, flowcache vs BentoCache L1+L2', 'fc-l1', 'bento-l1l2', 'l1-hit', 3)
  goal(
    'NATS get hit, 1 in flight, flowcache vs raw @nats-io/kv',
    'fc-nats',
    'nats-kv',
    'nats-get-1',
    0.9,
  )
  goal(
    `NATS get hit, ${IN_FLIGHT} in flight, flowcache vs raw @nats-io/kv`,
    'fc-nats',
    'nats-kv',
    'nats-get-50',
    0.9,
  )
  lines.push('')
  lines.push(`Total time ${seconds.toFixed(0)} s.`)
  return lines.join('\n')
}

const workerAt = process.argv.indexOf('--worker')
if (workerAt !== -1) runWorker(process.argv[workerAt + 1] as WorkerSubject)
else await main()
