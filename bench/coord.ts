/**
 * Coordination benchmark: flowcache's locks and rate limits over Redis, NATS and the memory
 * store, side by side with what an expert would write by hand and with rate-limiter-flexible.
 * Run with `npm run bench:coord` in bench/ (or `npm run bench` at the root, after the others).
 *
 * Scenarios, each in one run with all of its contenders interleaved:
 * - locks, uncontended (distinct keys), 1 and 32 in flight: one operation is an acquire and the
 *   release of what it acquired. Redis: flowcache `cache.locks` on `redisStore` vs ioredis
 *   `SET key token NX PX ttl` + a Lua compare-and-delete (`defineCommand`, so EVALSHA). NATS:
 *   flowcache on `natsStore` vs `@nats-io/kv` `create` + `delete` with the expected revision.
 *   Memory: flowcache alone;
 * - rate limits, 1 and 32 in flight, on one hot key (mostly denied) and on many keys (admitted):
 *   flowcache `cache.rateLimit` sliding window and token bucket vs rate-limiter-flexible's
 *   `RateLimiterRedis` (a fixed window) with the same points per duration; on NATS flowcache
 *   alone (rate-limiter-flexible has no NATS limiter); in memory vs `RateLimiterMemory`.
 *
 * Servers are found like the store benchmark finds them: FLOWCACHE_REDIS_URL / FLOWCACHE_NATS_URL
 * (must answer), else 127.0.0.1:6379 / 127.0.0.1:4222, else a private `redis-server` /
 * `nats-server -js` on a free port with a temp dir, stopped at the end. Every Redis key this run
 * writes carries its run id and is deleted at the end; the NATS bucket is created for the run and
 * deleted.
 *
 * Each contender runs in a child process of its own, started when its first scenario comes and
 * stopped after its last; for each scenario the parent has them run short timed slices in turn
 * (rotating who goes first). Reported: the mean of the 3 fastest slices per cell.
 *
 * Environment knobs (defaults in brackets): BENCH_SLICES [16] timed slices per contender and
 * scenario, BENCH_SLICE_MS [150] length of one slice, BENCH_WARMUP_MS [300] warm-up per contender
 * and scenario, BENCH_ONLY=<id,id> only these scenarios (ids below), BENCH_PRIVATE_SERVERS=1 start
 * private servers even when the default ports answer. BENCH_RAW=<file> writes every slice's rate.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Redis as RedisClient } from 'ioredis'
import { createCache, type Cache } from '../packages/flowcache/src/index.js'
import { natsStore } from '../packages/flowcache/src/stores/nats/index.js'
import { redisStore } from '../packages/flowcache/src/stores/redis/index.js'
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
  type Service,
  type Sliced,
} from './harness.js'

// ---- parameters ---------------------------------------------------------------------------------

/** Concurrent awaited loops in the "N in flight" scenarios. */
const IN_FLIGHT = 32
/** Lock names each lock scenario cycles through (each taken and released once before timing). */
const LOCK_KEYS = 1000
/** Lease of every lock, in ms: far longer than any acquire-release pair takes. */
const LOCK_TTL_MS = 30_000
/** Limiter keys the "many keys" rate-limit scenarios cycle through. */
const RATE_KEYS = 10_000
/** The one limit of the hot key: far below the rate it is called at, so nearly every call is denied. */
const HOT_LIMIT = { max: 10, perSeconds: 1 }
/** The limit of each of the many keys: above what a key receives in a run, so calls are admitted. */
const MANY_LIMIT = { max: 1000, perSeconds: 60 }

const SLICES = Math.round(positiveEnv('BENCH_SLICES', 16))
const SLICE_MS = positiveEnv('BENCH_SLICE_MS', 150)
const WARMUP_MS = positiveEnv('BENCH_WARMUP_MS', 300)
/** Throughput reported per cell: the mean of this many fastest slices. */
const TOP = 3

// ---- contenders and scenarios -------------------------------------------------------------------

const SUBJECTS = {
  'fc-redis-lock': 'flowcache locks, redisStore',
  'raw-redis-lock': 'ioredis SET NX PX + Lua compare-and-delete (baseline)',
  'fc-nats-lock': 'flowcache locks, natsStore',
  'raw-kv-lock': '@nats-io/kv create + delete at revision (baseline)',
  'fc-mem-lock': 'flowcache locks, memory store',
  'fc-redis-sw': 'flowcache sliding-window, redisStore',
  'fc-redis-tb': 'flowcache token-bucket, redisStore',
  'rlf-redis': 'rate-limiter-flexible RateLimiterRedis (fixed window)',
  'fc-nats-sw': 'flowcache sliding-window, natsStore',
  'fc-nats-tb': 'flowcache token-bucket, natsStore',
  'fc-mem-sw': 'flowcache sliding-window, memory store',
  'fc-mem-tb': 'flowcache token-bucket, memory store',
  'rlf-mem': 'rate-limiter-flexible RateLimiterMemory (fixed window)',
} as const
type SubjectId = keyof typeof SUBJECTS

interface Scenario {
  title: string
  service: 'redis' | 'nats' | 'memory'
  kind: 'lock' | 'rate'
  /** Rate limits: one shared key, or {@link RATE_KEYS} keys in turn. */
  keys: 'hot' | 'many'
  inFlight: number
  /** Awaited operations per tinybench iteration, so the harness's own cost per iteration is amortised. */
  batch: number
  subjects: SubjectId[]
}

const LOCKS_REDIS: SubjectId[] = ['fc-redis-lock', 'raw-redis-lock']
const LOCKS_NATS: SubjectId[] = ['fc-nats-lock', 'raw-kv-lock']
const RATE_REDIS: SubjectId[] = ['fc-redis-sw', 'fc-redis-tb', 'rlf-redis']
const RATE_NATS: SubjectId[] = ['fc-nats-sw', 'fc-nats-tb']
const RATE_MEM: SubjectId[] = ['fc-mem-sw', 'fc-mem-tb', 'rlf-mem']

function lockScenario(
  service: Scenario['service'],
  inFlight: number,
  batch: number,
  subjects: SubjectId[],
) {
  return {
    title: `${inFlight} in flight`,
    service,
    kind: 'lock',
    keys: 'many',
    inFlight,
    batch,
    subjects,
  } satisfies Scenario
}

function rateScenario(
  service: Scenario['service'],
  keys: Scenario['keys'],
  inFlight: number,
  batch: number,
  subjects: SubjectId[],
) {
  return {
    title: `${keys === 'hot' ? 'one hot key' : `${RATE_KEYS / 1000}k keys`}, ${inFlight} in flight`,
    service,
    kind: 'rate',
    keys,
    inFlight,
    batch,
    subjects,
  } satisfies Scenario
}

// Batches are sized so that one iteration of the slowest contender takes tens of ms: NATS's
// conditional writes are far slower than Redis round trips.
const SCENARIOS = {
  'redis-lock-1': lockScenario('redis', 1, 40, LOCKS_REDIS),
  'redis-lock-n': lockScenario('redis', IN_FLIGHT, 10 * IN_FLIGHT, LOCKS_REDIS),
  'nats-lock-1': lockScenario('nats', 1, 8, LOCKS_NATS),
  'nats-lock-n': lockScenario('nats', IN_FLIGHT, 2 * IN_FLIGHT, LOCKS_NATS),
  'mem-lock-1': lockScenario('memory', 1, 200, ['fc-mem-lock']),
  'redis-rate-hot-1': rateScenario('redis', 'hot', 1, 20, RATE_REDIS),
  'redis-rate-hot-n': rateScenario('redis', 'hot', IN_FLIGHT, 8 * IN_FLIGHT, RATE_REDIS),
  'redis-rate-many-1': rateScenario('redis', 'many', 1, 20, RATE_REDIS),
  'redis-rate-many-n': rateScenario('redis', 'many', IN_FLIGHT, 8 * IN_FLIGHT, RATE_REDIS),
  'nats-rate-hot-1': rateScenario('nats', 'hot', 1, 10, RATE_NATS),
  'nats-rate-hot-n': rateScenario('nats', 'hot', IN_FLIGHT, 3 * IN_FLIGHT, RATE_NATS),
  'nats-rate-many-1': rateScenario('nats', 'many', 1, 10, RATE_NATS),
  'nats-rate-many-n': rateScenario('nats', 'many', IN_FLIGHT, 3 * IN_FLIGHT, RATE_NATS),
  'mem-rate-hot-1': rateScenario('memory', 'hot', 1, 100, RATE_MEM),
  'mem-rate-many-1': rateScenario('memory', 'many', 1, 100, RATE_MEM),
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
  /**
   * One operation on key number `i` (ignored on the hot key): a lock acquire and its release, or
   * one rate-limit check. Returns whether the lock was acquired, or the call admitted.
   */
  run(i: number): Promise<boolean>
  close(): Promise<void>
}

const encoder = new TextEncoder()

/** A flowcache cache on the scenario's store, checked to be on that store (no fallback). */
async function flowcacheOn(service: Scenario['service'], env: RunEnv): Promise<Cache> {
  const cache =
    service === 'redis'
      ? createCache({ store: redisStore({ url: env.redisUrl }), prefix: `${env.runId}-fc` })
      : service === 'nats'
        ? createCache({ store: natsStore({ servers: env.natsUrl, bucket: env.bucket }) })
        : createCache()
  await cache.ready()
  const health = cache.health()
  if (health.status !== 'ok') {
    throw new Error(`flowcache is not on its store: ${health.status} (${health.reason ?? ''})`)
  }
  return cache
}

/** The limit of a rate scenario. */
function limitOf(scenario: Scenario): { max: number; perSeconds: number } {
  return scenario.keys === 'hot' ? HOT_LIMIT : MANY_LIMIT
}

/** Key names of a scenario, distinct per scenario so that each starts from empty state. */
function keyNames(id: ScenarioId, scenario: Scenario, separator: string): string[] {
  if (scenario.kind === 'rate' && scenario.keys === 'hot') return [`${id}${separator}hot`]
  const count = scenario.kind === 'lock' ? LOCK_KEYS : RATE_KEYS
  return Array.from({ length: count }, (_, i) => `${id}${separator}${i}`)
}

/** The Lua release an expert writes next to `SET NX PX`: delete only while the token is ours. */
const RELEASE_LUA = `if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`

async function makeContender(subject: SubjectId, id: ScenarioId, env: RunEnv): Promise<Contender> {
  const scenario: Scenario = SCENARIOS[id]
  switch (subject) {
    case 'fc-redis-lock':
    case 'fc-nats-lock':
    case 'fc-mem-lock': {
      const cache = await flowcacheOn(scenario.service, env)
      const keys = keyNames(id, scenario, ':')
      return {
        run: async (i) => {
          const lock = await cache.locks.acquire(keys[i]!, { ttl: LOCK_TTL_MS })
          if (lock === null) return false
          return lock.release()
        },
        close: () => cache.close(),
      }
    }
    case 'raw-redis-lock': {
      const client = (await newRedis(env.redisUrl)) as RedisClient & {
        releaseLock(key: string, token: string): Promise<number>
      }
      client.defineCommand('releaseLock', { numberOfKeys: 1, lua: RELEASE_LUA })
      const keys = keyNames(id, scenario, ':').map((key) => `${env.runId}-raw:${key}`)
      return {
        run: async (i) => {
          const key = keys[i]!
          const token = randomUUID()
          if ((await client.set(key, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK') return false
          return (await client.releaseLock(key, token)) === 1
        },
        close: async () => void (await client.quit()),
      }
    }
    case 'raw-kv-lock': {
      const [{ connect }, { jetstreamManager }, { Kvm }] = await Promise.all([
        import('@nats-io/transport-node'),
        import('@nats-io/jetstream'),
        import('@nats-io/kv'),
      ])
      const nc = await connect({ servers: env.natsUrl })
      // The bucket flowcache created (its contender is prepared first), with direct gets as
      // flowcache's store uses them.
      const jsm = await jetstreamManager(nc)
      const { config } = await jsm.streams.info(`KV_${env.bucket}`)
      const kv = await new Kvm(nc).open(env.bucket, { allow_direct: config.allow_direct === true })
      const keys = keyNames(id, scenario, '.').map((key) => `raw.${key}`)
      return {
        run: async (i) => {
          const key = keys[i]!
          const value = encoder.encode(JSON.stringify({ owner: randomUUID(), at: Date.now() }))
          // `create` succeeds only when the key is absent or deleted; it throws otherwise.
          const revision = await kv.create(key, value)
          await kv.delete(key, { previousSeq: revision })
          return true
        },
        close: () => nc.close(),
      }
    }
    case 'fc-redis-sw':
    case 'fc-redis-tb':
    case 'fc-nats-sw':
    case 'fc-nats-tb':
    case 'fc-mem-sw':
    case 'fc-mem-tb': {
      const cache = await flowcacheOn(scenario.service, env)
      const keys = keyNames(id, scenario, ':')
      const { max, perSeconds } = limitOf(scenario)
      const options = {
        max,
        per: perSeconds * 1000,
        algorithm: subject.endsWith('-sw') ? 'sliding-window' : 'token-bucket',
      } as const
      return {
        run: async (i) => (await cache.rateLimit(keys[i % keys.length]!, options)).allowed,
        close: () => cache.close(),
      }
    }
    case 'rlf-redis':
    case 'rlf-mem': {
      const { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } =
        await import('rate-limiter-flexible')
      const keys = keyNames(id, scenario, ':')
      const { max, perSeconds } = limitOf(scenario)
      const client = subject === 'rlf-redis' ? await newRedis(env.redisUrl) : undefined
      const common = { points: max, duration: perSeconds, keyPrefix: `${env.runId}-rlf` }
      const limiter =
        client === undefined
          ? new RateLimiterMemory(common)
          : new RateLimiterRedis({ ...common, storeClient: client })
      return {
        run: async (i) => {
          try {
            await limiter.consume(keys[i % keys.length]!)
            return true
          } catch (rejection) {
            // Over the limit it rejects with a RateLimiterRes; a store failure is an Error.
            if (rejection instanceof RateLimiterRes) return false
            throw rejection
          }
        },
        close: async () => void (await client?.quit()),
      }
    }
  }
}

// ---- worker: timing -----------------------------------------------------------------------------

/** What a worker counts of a scenario's timed operations: acquired or admitted, and not. */
interface Counts {
  ok: number
  refused: number
}

/**
 * Runs `task` for at least `ms` and 3 times. (The harness's tinybench warm-up runs 20 iterations
 * at least, which is seconds for a NATS batch.)
 */
async function warmUp(task: () => Promise<void>, ms: number): Promise<void> {
  const until = performance.now() + ms
  for (let i = 0; i < 3 || performance.now() < until; i++) await task()
}

async function prepare(subject: SubjectId, id: ScenarioId, env: RunEnv): Promise<Sliced<Counts>> {
  const scenario: Scenario = SCENARIOS[id]
  const contender = await makeContender(subject, id, env)
  const keyCount = scenario.kind === 'lock' ? LOCK_KEYS : scenario.keys === 'hot' ? 1 : RATE_KEYS
  if (scenario.kind === 'lock') {
    // Every lock name taken and released once: timed acquires are of names used before, as a
    // service's lock names are (on NATS that is the costlier path; see the report).
    await forEachParallel(LOCK_KEYS, IN_FLIGHT, async (i) => {
      if (!(await contender.run(i))) throw new Error(`${subject}: lock ${i} was not free`)
    })
  }
  const counts = { ok: 0, refused: 0 }
  let cursor = 0
  const one = async (): Promise<void> => {
    const i = cursor
    if (++cursor === keyCount) cursor = 0
    if (await contender.run(i)) counts.ok++
    else counts.refused++
  }
  const { batch, inFlight } = scenario
  const task = batchTask(one, batch, inFlight)
  await warmUp(task, WARMUP_MS)
  counts.ok = 0
  counts.refused = 0
  return { task, batch, counts, close: () => contender.close() }
}

/** Which scenario a worker prepares, on which servers. */
interface PrepareRequest {
  scenario: ScenarioId
  env: RunEnv
}

/** Worker side: prepare, slice (many times), finish, per scenario; exit at the end. */
function runWorker(subject: SubjectId): void {
  serveSlices<PrepareRequest, Counts>(subject, SLICE_MS, ({ scenario, env }) =>
    prepare(subject, scenario, env),
  )
}

// ---- parent: orchestration ----------------------------------------------------------------------

const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)
/** Names this benchmark in the error that says how to get a server. */
const BENCHMARK = 'coordination benchmark'

class CoordWorker extends SliceWorker<PrepareRequest, Counts, SubjectId> {
  constructor(subject: SubjectId) {
    super(subject, SELF, [subject], BENCH_DIR, `coordination worker ${subject}`)
  }
}

/** Per cell (`subject/scenario`): the rate of every slice, and what the operations returned. */
interface Results {
  rates: Map<string, number[]>
  outcomes: Map<string, { ok: number; refused: number }>
}

async function main(): Promise<void> {
  const started = performance.now()
  const loadAtStart = os.loadavg()[0] ?? 0
  const log = (line: string): void => void process.stderr.write(line + '\n')
  const scenarios = selectedScenarios(Object.keys(SCENARIOS) as ScenarioId[])
  const needs = (service: 'redis' | 'nats'): boolean =>
    scenarios.some((id) => SCENARIOS[id].service === service)

  const runId = `fccoord-${Date.now().toString(36)}-${process.pid}`
  const bucket = runId.replaceAll('-', '_')
  const services: Service[] = []
  const workers = new Map<SubjectId, CoordWorker>()
  let admin: RedisClient | undefined
  let natsTouched = false
  const results: Results = { rates: new Map(), outcomes: new Map() }
  const info = { redis: '', nats: '' }

  try {
    const redis = needs('redis') ? await findService('redis', BENCHMARK) : undefined
    const nats = needs('nats') ? await findService('nats', BENCHMARK) : undefined
    for (const service of [redis, nats]) {
      if (service === undefined) continue
      services.push(service)
      log(`${service.url} (${service.source})`)
    }
    const env: RunEnv = { redisUrl: redis?.url ?? '', natsUrl: nats?.url ?? '', runId, bucket }
    if (redis !== undefined) {
      admin = await newRedis(redis.url)
      info.redis = await describeRedis(admin, redis)
    }
    if (nats !== undefined) info.nats = await describeNats(nats)

    // A worker starts when its first scenario is next (so that it loads its modules while the
    // scenario before runs) and stops after its last one.
    const lastUse = new Map<SubjectId, number>()
    scenarios.forEach((id, index) => {
      for (const subject of SCENARIOS[id].subjects) lastUse.set(subject, index)
    })
    const start = (index: number): void => {
      const id = scenarios[index]
      if (id === undefined) return
      for (const subject of SCENARIOS[id].subjects) {
        if (!workers.has(subject)) workers.set(subject, new CoordWorker(subject))
      }
    }
    start(0)
    for (const [index, id] of scenarios.entries()) {
      const scenario: Scenario = SCENARIOS[id]
      start(index + 1)
      const active = scenario.subjects.map((subject) => workers.get(subject)!)
      if (scenario.service === 'nats') natsTouched = true
      // In order: flowcache first, so that its store creates the NATS bucket the raw client opens.
      for (const worker of active) await worker.prepare({ scenario: id, env })
      await interleave(active, SLICES, async (worker) => {
        const cell = `${worker.subject}/${id}`
        const opsPerSec = await worker.slice()
        results.rates.set(cell, [...(results.rates.get(cell) ?? []), opsPerSec])
      })
      for (const worker of active) {
        const { ok, refused } = await worker.finish()
        if (scenario.kind === 'lock' && refused !== 0) {
          throw new Error(
            `${worker.subject} ${id}: ${refused} of ${ok + refused} uncontended acquires failed; the scenario is broken`,
          )
        }
        results.outcomes.set(`${worker.subject}/${id}`, { ok, refused })
        const runs = results.rates.get(`${worker.subject}/${id}`)!
        const admitted =
          scenario.kind === 'rate' ? `  admitted ${((100 * ok) / (ok + refused)).toFixed(1)}%` : ''
        log(
          `${id.padEnd(18)} ${SUBJECTS[worker.subject].padEnd(54)} top-${TOP} ${formatRate(topMean(runs, TOP)).padStart(10)}  ` +
            `median ${formatRate(median(runs))}  min ${formatRate(Math.min(...runs))}${admitted}`,
        )
        if (lastUse.get(worker.subject) === index) {
          await worker.end()
          workers.delete(worker.subject)
        }
      }
    }
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
    writeFileSync(process.env.BENCH_RAW, JSON.stringify(Object.fromEntries(results.rates)))

  process.stdout.write(
    report(scenarios, results, info, {
      seconds: (performance.now() - started) / 1000,
      load: [loadAtStart, os.loadavg()[0] ?? 0],
    }) + '\n',
  )
}

// ---- parent: report -----------------------------------------------------------------------------

function report(
  scenarios: ScenarioId[],
  { rates, outcomes }: Results,
  info: { redis: string; nats: string },
  run: { seconds: number; load: [number, number] },
): string {
  const ops = (subject: SubjectId, id: ScenarioId): number | undefined => {
    const runs = rates.get(`${subject}/${id}`)
    return runs === undefined ? undefined : topMean(runs, TOP)
  }
  const cell = (subject: SubjectId, id: ScenarioId, base: SubjectId): string => {
    const value = ops(subject, id)
    const reference = ops(base, id)
    if (value === undefined) return '—'
    return reference === undefined
      ? formatRate(value)
      : `${formatRate(value)} (${ratio(value, reference)})`
  }
  const admitted = (subject: SubjectId, id: ScenarioId): string => {
    const outcome = outcomes.get(`${subject}/${id}`)
    if (outcome === undefined) return '—'
    return `${((100 * outcome.ok) / (outcome.ok + outcome.refused)).toFixed(1)}%`
  }
  const lines: string[] = []
  const table = (
    ids: ScenarioId[],
    subjects: SubjectId[],
    base: SubjectId,
    show: (subject: SubjectId, id: ScenarioId) => string = (subject, id) => cell(subject, id, base),
  ): void => {
    const header = ['Contender', ...ids.map((id) => SCENARIOS[id].title)]
    lines.push(`| ${header.join(' | ')} |`)
    lines.push(`| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`)
    for (const subject of subjects) {
      lines.push(`| ${SUBJECTS[subject]} | ${ids.map((id) => show(subject, id)).join(' | ')} |`)
    }
  }
  const ran = (ids: readonly ScenarioId[]): ScenarioId[] =>
    ids.filter((id) => scenarios.includes(id))

  lines.push('## flowcache coordination benchmark (locks, rate limits)')
  lines.push('')
  lines.push(machineLine())
  lines.push(
    `Load average (1 min) at the start and at the end of the run: ${run.load.map((load) => load.toFixed(1)).join(' and ')}, on ${os.cpus().length} logical CPUs`,
  )
  lines.push(
    `${revision(BENCH_DIR)} · ioredis ${packageVersion(BENCH_DIR, 'ioredis')} · @nats-io/kv ${packageVersion(BENCH_DIR, '@nats-io/kv')} · ` +
      `rate-limiter-flexible ${packageVersion(BENCH_DIR, 'rate-limiter-flexible')} · tinybench ${packageVersion(BENCH_DIR, 'tinybench')}`,
  )
  lines.push([info.redis, info.nats].filter((s) => s !== '').join(' · '))
  lines.push(
    `${commandLine('bench:coord', SELF)} · ` +
      `mean of the ${TOP} fastest of ${SLICES} interleaved ${SLICE_MS} ms slices per cell (after ${WARMUP_MS} ms warm-up) · ` +
      `each contender in a process of its own`,
  )
  lines.push('')
  lines.push(
    `Awaited operations per second (higher is better); in brackets, the ratio to the first (flowcache) row. ` +
      `"${IN_FLIGHT} in flight": ${IN_FLIGHT} concurrent loops, each awaiting one call at a time.`,
  )

  const lockIds = (service: string): ScenarioId[] =>
    ran([`${service}-lock-1`, `${service}-lock-n`] as ScenarioId[])
  if ([...lockIds('redis'), ...lockIds('nats'), ...lockIds('mem')].length > 0) {
    lines.push('')
    lines.push('### Locks: uncontended acquire + release')
    lines.push('')
    lines.push(
      `Acquire-and-release pairs per second, on ${LOCK_KEYS} distinct lock names in turn (each taken and released once before timing), lease ${LOCK_TTL_MS / 1000} s. Every acquire must succeed.`,
    )
    for (const [service, subjects] of [
      ['redis', LOCKS_REDIS],
      ['nats', LOCKS_NATS],
      ['mem', ['fc-mem-lock']],
    ] as const) {
      const ids = lockIds(service)
      if (ids.length === 0) continue
      lines.push('')
      table(ids, [...subjects], subjects[0])
    }
  }

  const rateIds = (service: string, n: readonly string[] = ['1', 'n']): ScenarioId[] =>
    ran(
      ['hot', 'many'].flatMap((keys) =>
        n.map((count) => `${service}-rate-${keys}-${count}`),
      ) as ScenarioId[],
    )
  const rateSets = [
    ['Redis', rateIds('redis'), RATE_REDIS],
    ['NATS', rateIds('nats'), RATE_NATS],
    ['memory', rateIds('mem', ['1']), RATE_MEM],
  ] as const
  if (rateSets.some(([, ids]) => ids.length > 0)) {
    lines.push('')
    lines.push('### Rate limits: checks per second')
    lines.push('')
    lines.push(
      `One check is one awaited \`limit\` / \`consume\` call of cost 1. One hot key: every call on one limiter of ${HOT_LIMIT.max} per ${HOT_LIMIT.perSeconds} s, so nearly every call is denied. ` +
        `${RATE_KEYS / 1000}k keys: ${RATE_KEYS} limiters of ${MANY_LIMIT.max} per ${MANY_LIMIT.perSeconds} s called in turn, so calls are admitted. ` +
        `rate-limiter-flexible gets the same points per duration; its algorithm is a fixed window, flowcache's a sliding window or a token bucket.`,
    )
    for (const [name, ids, subjects] of rateSets) {
      if (ids.length === 0) continue
      lines.push('')
      lines.push(`${name}:`)
      lines.push('')
      table(ids, [...subjects], subjects[0]!)
      lines.push('')
      lines.push(`${name}, share of the timed calls admitted:`)
      lines.push('')
      table(ids, [...subjects], subjects[0]!, admitted)
    }
  }

  lines.push('')
  lines.push('flowcache against the baseline (flowcache ÷ baseline):')
  lines.push('')
  const against = (text: string, fc: SubjectId, peer: SubjectId, ids: ScenarioId[]): void => {
    const parts = ran(ids).flatMap((id) => {
      const a = ops(fc, id)
      const b = ops(peer, id)
      return a === undefined || b === undefined ? [] : [`${SCENARIOS[id].title} ${ratio(a, b)}`]
    })
    if (parts.length > 0) lines.push(`- ${text}: ${parts.join(', ')}`)
  }
  against('Redis locks vs SET NX PX + Lua', 'fc-redis-lock', 'raw-redis-lock', lockIds('redis'))
  against('NATS locks vs @nats-io/kv', 'fc-nats-lock', 'raw-kv-lock', lockIds('nats'))
  against('Redis sliding-window vs RateLimiterRedis', 'fc-redis-sw', 'rlf-redis', rateIds('redis'))
  against('Redis token-bucket vs RateLimiterRedis', 'fc-redis-tb', 'rlf-redis', rateIds('redis'))
  against('memory sliding-window vs RateLimiterMemory', 'fc-mem-sw', 'rlf-mem', rateIds('mem'))
  against('memory token-bucket vs RateLimiterMemory', 'fc-mem-tb', 'rlf-mem', rateIds('mem'))
  lines.push('')
  lines.push(`Total time ${run.seconds.toFixed(0)} s.`)
  return lines.join('\n')
}

const workerAt = process.argv.indexOf('--worker')
if (workerAt !== -1) runWorker(process.argv[workerAt + 1] as SubjectId)
else await main()
