/**
 * Memory-store benchmark: flowcache's default in-process store, through the public API, against
 * lru-cache, BentoCache's memory driver and a plain Map behind async functions (the fastest an
 * async cache API can be). Run with `npm run bench` at the repository root.
 *
 * Each cache is measured in a child process of its own (one per cache for the throughput
 * scenarios, one per cache for memory, one per loader for the stampede), so no cache's data,
 * garbage or JIT feedback affects another's figures. The parent prints one report.
 *
 * Environment knobs (defaults in brackets): BENCH_SLICES [30] timed slices per cache and
 * scenario, BENCH_SLICE_MS [150] length of one slice, BENCH_WARMUP_MS [300] warm-up per cache
 * and scenario. BENCH_RAW=<file> also writes every slice's rate there, as JSON.
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { Registry } from 'prom-client'
import { createCache, memoryStore, type ValueIsolation } from '../packages/flowcache/src/index.js'
import { registerMetrics } from '../packages/flowcache/src/prometheus/index.js'
import {
  formatOps,
  interleave,
  machineLine,
  median,
  packageVersion as installedVersion,
  positiveEnv,
  ratio,
  revision as revisionOf,
  serveSlices,
  SliceWorker,
  topMean as topMeanOf,
  warmUp,
  type Sliced,
} from './harness.js'

// ---- parameters ---------------------------------------------------------------------------------

/** Keys preloaded for the get-hit and overwrite scenarios. */
const KEY_COUNT = 10_000
/** Capacity of every cache in the eviction scenario. */
const EVICT_CAPACITY = 10_000
/** Distinct keys cycled through in the eviction scenario: 10× the capacity, so every write is a new key. */
const EVICT_POOL = 100_000
/** Capacity of every cache outside the eviction scenario (flowcache's default maxEntries). */
const DEFAULT_CAPACITY = 50_000
/** Awaited operations per tinybench iteration, so the harness's own cost per iteration is amortised. */
const BATCH = 1000
/** Entries inserted per bytes-per-entry measurement. */
const MEMORY_ENTRIES = 100_000
const MEMORY_REPEATS = 3
const STAMPEDE_CALLERS = 1000
const STAMPEDE_FACTORY_MS = 50
const STAMPEDE_REPEATS = 5

const SLICES = Math.round(positiveEnv('BENCH_SLICES', 30))
const SLICE_MS = positiveEnv('BENCH_SLICE_MS', 150)
const WARMUP_MS = positiveEnv('BENCH_WARMUP_MS', 300)
/** Throughput reported per cell: the mean of this many fastest slices. */
const TOP = 3

/** The small object value every scenario stores. */
function makeValue(i: number): { id: number; name: string; tags: string[] } {
  return { id: i, name: 'user-' + i, tags: ['a', 'b'] }
}

// ---- subjects -------------------------------------------------------------------------------------

const SUBJECTS = {
  flowcache: 'flowcache (default, values: frozen)',
  'flowcache-shared': "flowcache (values: 'shared')",
  'flowcache-metrics': 'flowcache (default, Prometheus metrics registered)',
  'async-map': 'async Map (ceiling)',
  'lru-await': 'lru-cache 11 (sync API, awaited)',
  bento: 'BentoCache 1.6 (memory driver)',
  'lru-sync': 'lru-cache 11 (raw sync, not awaited)',
} as const
type SubjectId = keyof typeof SUBJECTS

const SCENARIOS = {
  hit: 'get hit',
  miss: 'get miss',
  overwrite: 'set (overwrite)',
  evict: 'set + evict',
} as const
type ScenarioId = keyof typeof SCENARIOS

/** The shape every async caller sees: `await x.get(k)`, `await x.set(k, v)`. */
interface Adapter {
  get(key: string): unknown
  set(key: string, value: unknown): unknown
  close(): Promise<void> | void
}

/** `metrics`: the cache's calls also feed `registerMetrics` (every call observed in the histogram). */
function flowcacheAdapter(
  values: ValueIsolation,
  maxEntries: number | undefined,
  metrics = false,
): Adapter {
  // createCache() with default options is the `values: 'frozen'` row; a bigger capacity is only
  // given where a scenario needs one (eviction, bytes per entry), through the store option.
  const cache =
    values === 'frozen' && maxEntries === undefined
      ? createCache()
      : createCache({
          store: memoryStore({
            values,
            ...(maxEntries === undefined ? {} : { maxEntries, maxBytes: 1 << 30 }),
          }),
        })
  if (metrics) registerMetrics(cache, { registry: new Registry() })
  return {
    get: (key) => cache.get(key),
    set: (key, value) => cache.set(key, value),
    close: () => cache.close(),
  }
}

function asyncMapAdapter(maxEntries: number | undefined): Adapter {
  const map = new Map<string, unknown>()
  if (maxEntries === undefined) {
    return {
      async get(key) {
        return map.get(key)
      },
      async set(key, value) {
        map.set(key, value)
      },
      close: () => map.clear(),
    }
  }
  // With a capacity: insertion-order (FIFO) eviction. The oldest key is read from one long-lived
  // iterator: a fresh `map.keys()` per eviction rescans every deleted slot at the front of the
  // table (V8 compacts it only on rehash), which is ~15× slower at this size.
  let oldest: Iterator<string> = map.keys()
  return {
    async get(key) {
      return map.get(key)
    },
    async set(key, value) {
      map.set(key, value)
      if (map.size > maxEntries) {
        let next = oldest.next()
        if (next.done === true) {
          oldest = map.keys()
          next = oldest.next()
        }
        map.delete(next.value as string)
      }
    },
    close: () => map.clear(),
  }
}

async function lruAdapter(max: number): Promise<Adapter> {
  const { LRUCache } = await import('lru-cache')
  const lru = new LRUCache<string, object>({ max })
  return {
    get: (key) => lru.get(key),
    set: (key, value) => lru.set(key, value as object),
    close: () => lru.clear(),
  }
}

async function bentoAdapter(maxItems: number): Promise<Adapter> {
  const { BentoCache, bentostore, memoryDriver } = await loadBento()
  const bento = new BentoCache({
    default: 'mem',
    stores: { mem: bentostore().useL1Layer(memoryDriver({ maxItems })) },
  })
  return {
    get: (key) => bento.get({ key }),
    set: (key, value) => bento.set({ key, value }),
    close: () => bento.disconnectAll(),
  }
}

/** BentoCache is imported only by the processes that measure it (it takes a while to load). */
async function loadBento() {
  const [{ BentoCache, bentostore }, { memoryDriver }] = await Promise.all([
    import('bentocache'),
    import('bentocache/drivers/memory'),
  ])
  return { BentoCache, bentostore, memoryDriver }
}

async function makeAdapter(
  subject: SubjectId,
  capacity: number,
  forMemory = false,
): Promise<Adapter> {
  switch (subject) {
    case 'flowcache':
      return flowcacheAdapter(
        'frozen',
        capacity === DEFAULT_CAPACITY && !forMemory ? undefined : capacity,
      )
    case 'flowcache-shared':
      return flowcacheAdapter('shared', capacity)
    case 'flowcache-metrics':
      return flowcacheAdapter('frozen', capacity === DEFAULT_CAPACITY ? undefined : capacity, true)
    case 'async-map':
      return asyncMapAdapter(capacity === DEFAULT_CAPACITY || forMemory ? undefined : capacity)
    case 'lru-await':
    case 'lru-sync':
      return lruAdapter(capacity)
    case 'bento':
      return bentoAdapter(capacity)
  }
}

// ---- worker: throughput ---------------------------------------------------------------------------

/** What a worker counts of a scenario's reads. */
interface Counts {
  hits: number
  misses: number
}

/** A scenario prepared in a worker: its cache, loaded, and the task that tinybench times. */
async function prepare(subject: SubjectId, scenario: ScenarioId): Promise<Sliced<Counts>> {
  const capacity = scenario === 'evict' ? EVICT_CAPACITY : DEFAULT_CAPACITY
  const cache = await makeAdapter(subject, capacity)
  const hitKeys = Array.from({ length: KEY_COUNT }, (_, i) => `key:${i}`)
  const values = Array.from({ length: KEY_COUNT }, (_, i) => makeValue(i))
  for (let i = 0; i < KEY_COUNT; i++) await cache.set(hitKeys[i]!, values[i])

  let keys: string[]
  switch (scenario) {
    case 'hit':
    case 'overwrite':
      keys = hitKeys
      break
    case 'miss':
      keys = Array.from({ length: KEY_COUNT }, (_, i) => `missing:${i}`)
      break
    case 'evict':
      keys = Array.from({ length: EVICT_POOL }, (_, i) => `new:${i}`)
      break
  }
  const count = keys.length
  let cursor = 0
  const counts = { hits: 0, misses: 0 }

  let task: () => unknown
  if (scenario === 'hit' || scenario === 'miss') {
    if (subject === 'lru-sync') {
      task = () => {
        for (let i = 0; i < BATCH; i++) {
          if (cache.get(keys[cursor]!) === undefined) counts.misses++
          else counts.hits++
          if (++cursor === count) cursor = 0
        }
      }
    } else {
      task = async () => {
        for (let i = 0; i < BATCH; i++) {
          if ((await cache.get(keys[cursor]!)) === undefined) counts.misses++
          else counts.hits++
          if (++cursor === count) cursor = 0
        }
      }
    }
  } else if (subject === 'lru-sync') {
    task = () => {
      for (let i = 0; i < BATCH; i++) {
        cache.set(keys[cursor]!, values[cursor % KEY_COUNT])
        if (++cursor === count) cursor = 0
      }
    }
  } else {
    task = async () => {
      for (let i = 0; i < BATCH; i++) {
        await cache.set(keys[cursor]!, values[cursor % KEY_COUNT])
        if (++cursor === count) cursor = 0
      }
    }
  }

  await warmUp(task, WARMUP_MS)
  return { task, batch: BATCH, counts, close: () => cache.close() }
}

/** Which scenario a throughput worker prepares. */
interface PrepareRequest {
  scenario: ScenarioId
}

/** Worker side of the throughput protocol: prepare, slice (many times), finish; then exit. */
function throughputWorker(subject: SubjectId): void {
  serveSlices<PrepareRequest, Counts>(subject, SLICE_MS, ({ scenario }) =>
    prepare(subject, scenario),
  )
}

/** Parent side: a throughput worker process and a way to ask it one thing at a time. */
class ThroughputWorker extends SliceWorker<PrepareRequest, Counts, SubjectId> {
  constructor(subject: SubjectId) {
    super(subject, SELF, ['throughput', subject], BENCH_DIR, `throughput worker ${subject}`)
  }

  /** Asks the worker to exit, without waiting for it. */
  exit(): void {
    this.tell({ type: 'exit' })
  }
}

// ---- worker: bytes per entry ----------------------------------------------------------------------

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc
  if (collect === undefined) throw new Error('run node with --expose-gc (npm run bench does)')
  collect()
  collect()
}

/** Retained heap per entry: heapUsed after inserting `entries` keys and values, minus before. */
async function measureOnce(subject: SubjectId, entries: number): Promise<number> {
  // Let timers and promises of a previous, closed cache run out, so their garbage is collected now.
  await new Promise((resolve) => setTimeout(resolve, 50))
  gc()
  const before = process.memoryUsage().heapUsed
  const cache = await makeAdapter(subject, MEMORY_ENTRIES, true)
  for (let i = 0; i < entries; i++) await cache.set(`key:${i}`, makeValue(i))
  gc()
  const after = process.memoryUsage().heapUsed
  // Keep the cache alive through the second reading, and check it kept everything.
  if (
    (await cache.get(`key:0`)) === undefined ||
    (await cache.get(`key:${entries - 1}`)) === undefined
  ) {
    throw new Error(`${subject} lost entries during the memory measurement`)
  }
  await cache.close()
  return (after - before) / entries
}

async function runMemory(subject: SubjectId): Promise<{ bytesPerEntry: number; runs: number[] }> {
  // One small round first, so code compiled and caches built on first use are not counted.
  await measureOnce(subject, 5_000)
  const runs: number[] = []
  for (let i = 0; i < MEMORY_REPEATS; i++) runs.push(await measureOnce(subject, MEMORY_ENTRIES))
  return { bytesPerEntry: median(runs), runs }
}

// ---- worker: stampede ---------------------------------------------------------------------------

const STAMPEDERS = {
  flowcache: 'flowcache getOrSet',
  bento: 'BentoCache getOrSet',
  'lru-fetch': 'lru-cache fetch() + fetchMethod',
  'single-flight': 'ideal single-flight (promise-sharing Map)',
} as const
type StampederId = keyof typeof STAMPEDERS

type GetOrSet = (key: string, factory: () => Promise<unknown>) => Promise<unknown>

async function makeStampeder(id: StampederId): Promise<GetOrSet> {
  switch (id) {
    case 'flowcache': {
      const cache = createCache()
      return (key, factory) => cache.getOrSet(key, factory)
    }
    case 'bento': {
      const { BentoCache, bentostore, memoryDriver } = await loadBento()
      const bento = new BentoCache({
        default: 'mem',
        stores: { mem: bentostore().useL1Layer(memoryDriver({ maxItems: DEFAULT_CAPACITY })) },
      })
      return (key, factory) => bento.getOrSet({ key, factory })
    }
    case 'lru-fetch': {
      // fetchMethod is fixed per cache: route it to the factory of the current stampede.
      let current: (() => Promise<unknown>) | undefined
      const { LRUCache } = await import('lru-cache')
      const lru = new LRUCache<string, object>({
        max: DEFAULT_CAPACITY,
        fetchMethod: async () => (await current!()) as object,
      })
      return async (key, factory) => {
        current = factory
        return lru.fetch(key)
      }
    }
    case 'single-flight': {
      const values = new Map<string, unknown>()
      const flights = new Map<string, Promise<unknown>>()
      return async (key, factory) => {
        const value = values.get(key)
        if (value !== undefined) return value
        let flight = flights.get(key)
        if (flight === undefined) {
          flight = (async () => {
            try {
              const loaded = await factory()
              values.set(key, loaded)
              return loaded
            } finally {
              flights.delete(key)
            }
          })()
          flights.set(key, flight)
        }
        return flight
      }
    }
  }
}

interface StampedeResult {
  settleMs: number
  settleRuns: number[]
  factoryCalls: number[]
}

async function runStampede(id: StampederId): Promise<StampedeResult> {
  const getOrSet = await makeStampeder(id)
  const settleRuns: number[] = []
  const factoryCalls: number[] = []
  for (let rep = 0; rep <= STAMPEDE_REPEATS; rep++) {
    let calls = 0
    const factory = async (): Promise<unknown> => {
      calls++
      await new Promise((resolve) => setTimeout(resolve, STAMPEDE_FACTORY_MS))
      return makeValue(rep)
    }
    const key = `stampede:${rep}`
    const start = performance.now()
    const results = await Promise.all(
      Array.from({ length: STAMPEDE_CALLERS }, () => getOrSet(key, factory)),
    )
    const settle = performance.now() - start
    for (const result of results) {
      if ((result as { id?: unknown } | undefined)?.id !== rep)
        throw new Error(`${id} returned a wrong value`)
    }
    if (rep === 0) continue // warm-up
    settleRuns.push(settle)
    factoryCalls.push(calls)
  }
  return { settleMs: median(settleRuns), settleRuns, factoryCalls }
}

// ---- orchestration ------------------------------------------------------------------------------

const topMean = (values: number[]): number => topMeanOf(values, TOP)

const SELF = fileURLToPath(import.meta.url)
const BENCH_DIR = path.dirname(SELF)

/** Runs this file in a fresh process with the given worker arguments; returns its JSON answer. */
function worker<T>(args: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, SELF, '--worker', ...args], {
      cwd: BENCH_DIR,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: process.env,
    })
    let out = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => (out += chunk))
    child.on('error', reject)
    child.on('close', (code) => {
      if (code !== 0)
        return reject(new Error(`worker ${args.join(' ')} exited with ${String(code)}`))
      const line = out.trim().split('\n').at(-1) ?? ''
      try {
        resolve(JSON.parse(line) as T)
      } catch (error) {
        reject(new Error(`worker ${args.join(' ')} printed no result: ${out}`, { cause: error }))
      }
    })
  })
}

const packageVersion = (name: string): string => installedVersion(BENCH_DIR, name)
const revision = (): string => revisionOf(BENCH_DIR)

const THROUGHPUT_SUBJECTS: SubjectId[] = [
  'flowcache',
  'flowcache-shared',
  'flowcache-metrics',
  'async-map',
  'lru-await',
  'bento',
  'lru-sync',
]
const MEMORY_SUBJECTS: SubjectId[] = [
  'flowcache',
  'flowcache-shared',
  'async-map',
  'lru-await',
  'bento',
]
const STAMPEDE_ORDER: StampederId[] = ['flowcache', 'bento', 'lru-fetch', 'single-flight']

async function main(): Promise<void> {
  const started = performance.now()
  const log = (line: string): void => void process.stderr.write(line + '\n')

  // Throughput: one process per cache, all alive at once. For each scenario, every process
  // prepares its cache and warms up, then the parent has them run short timed slices in turn
  // (rotating who goes first), so all caches are measured across the same stretch of time and
  // a busy moment on a shared machine hits each of them alike. Reported: the mean of the TOP
  // fastest slices, the speed of each cache when the machine let it run undisturbed.
  const workers = THROUGHPUT_SUBJECTS.map((subject) => new ThroughputWorker(subject))
  await Promise.all(workers.map((w) => w.up))
  const rates = new Map<string, number[]>()
  for (const scenario of Object.keys(SCENARIOS) as ScenarioId[]) {
    for (const w of workers) await w.prepare({ scenario })
    await interleave(workers, SLICES, async (w) => {
      const opsPerSec = await w.slice()
      const cell = `${w.subject}/${scenario}`
      rates.set(cell, [...(rates.get(cell) ?? []), opsPerSec])
    })
    for (const w of workers) {
      const reply = await w.finish()
      const wrong = scenario === 'hit' ? reply.misses : scenario === 'miss' ? reply.hits : 0
      if (wrong !== 0) {
        throw new Error(
          `${w.subject} ${scenario}: ${reply.hits} hits and ${reply.misses} misses; the scenario is broken`,
        )
      }
      const runs = rates.get(`${w.subject}/${scenario}`)!
      log(
        `${SCENARIOS[scenario].padEnd(16)} ${SUBJECTS[w.subject].padEnd(40)} top-${TOP} ${formatOps(topMean(runs)).padStart(11)}  median ${formatOps(median(runs))}  ` +
          `min ${formatOps(Math.min(...runs))}  max ${formatOps(Math.max(...runs))}`,
      )
    }
  }
  for (const w of workers) w.exit()
  if (process.env.BENCH_RAW)
    writeFileSync(process.env.BENCH_RAW, JSON.stringify(Object.fromEntries(rates)))

  const memory = new Map<SubjectId, number>()
  for (const subject of MEMORY_SUBJECTS) {
    const result = await worker<{ bytesPerEntry: number; runs: number[] }>(['memory', subject])
    memory.set(subject, result.bytesPerEntry)
    log(
      `memory  ${SUBJECTS[subject].padEnd(40)} ${result.runs.map((b) => b.toFixed(1)).join(' / ')} B/entry`,
    )
  }

  const stampede = new Map<StampederId, StampedeResult>()
  for (const id of STAMPEDE_ORDER) {
    const result = await worker<StampedeResult>(['stampede', id])
    stampede.set(id, result)
    log(
      `stampede  ${STAMPEDERS[id].padEnd(44)} settle ${result.settleRuns.map((ms) => ms.toFixed(1)).join(' / ')} ms, factory calls ${result.factoryCalls.join(' / ')}`,
    )
  }

  const ops = (subject: SubjectId, scenario: ScenarioId): number =>
    topMean(rates.get(`${subject}/${scenario}`)!)
  const lines: string[] = []
  lines.push('## flowcache memory store benchmark')
  lines.push('')
  lines.push(machineLine())
  lines.push(
    `${revision()} · lru-cache ${packageVersion('lru-cache')} · bentocache ${packageVersion('bentocache')} · tinybench ${packageVersion('tinybench')} · ` +
      `mean of the ${TOP} fastest of ${SLICES} interleaved ${SLICE_MS} ms slices per cell (after ${WARMUP_MS} ms warm-up), ${BATCH} awaited ops per tinybench iteration`,
  )
  lines.push('')
  lines.push(
    'Throughput in awaited operations per second (higher is better); in brackets, the ratio to flowcache (default).',
  )
  lines.push(
    'Bytes per entry: retained heap per key + value (lower is better); in brackets, the ratio to flowcache (default).',
  )
  lines.push('')
  const header = [
    'Cache',
    ...Object.values(SCENARIOS).map((s) =>
      s === 'set + evict' ? `set + evict (cap ${EVICT_CAPACITY / 1000}k)` : s,
    ),
    'bytes / entry',
  ]
  lines.push(`| ${header.join(' | ')} |`)
  lines.push(`| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`)
  const baseBytes = memory.get('flowcache')!
  for (const subject of THROUGHPUT_SUBJECTS) {
    const cells = (Object.keys(SCENARIOS) as ScenarioId[]).map(
      (scenario) =>
        `${formatOps(ops(subject, scenario))} (${ratio(ops(subject, scenario), ops('flowcache', scenario))})`,
    )
    const bytes = memory.get(subject)
    cells.push(
      bytes === undefined
        ? '(same cache as above)'
        : `${bytes.toFixed(0)} B (${ratio(bytes, baseBytes)})`,
    )
    lines.push(`| ${SUBJECTS[subject]} | ${cells.join(' | ')} |`)
  }
  lines.push('')
  lines.push(
    `Stampede: ${STAMPEDE_CALLERS} concurrent loads of one missing key, ${STAMPEDE_FACTORY_MS} ms factory; median of ${STAMPEDE_REPEATS} (after one warm-up).`,
  )
  lines.push('')
  lines.push('| Loader | factory calls per stampede | settle time (all callers resolved) |')
  lines.push('| --- | ---: | ---: |')
  for (const id of STAMPEDE_ORDER) {
    const result = stampede.get(id)!
    const calls = [...new Set(result.factoryCalls)].join('–')
    lines.push(`| ${STAMPEDERS[id]} | ${calls} | ${result.settleMs.toFixed(1)} ms |`)
  }
  lines.push('')
  lines.push('Goals:')
  lines.push('')
  const goal = (text: string, actual: number, target: number, higherIsBetter: boolean): string => {
    const met = higherIsBetter ? actual >= target : actual <= target
    return `- ${text}: ${actual.toFixed(2)}× (target ${higherIsBetter ? '≥' : '≤'} ${target}×) — ${met ? 'met' : 'MISSED'}`
  }
  lines.push(
    goal(
      'flowcache get hit vs async-Map ceiling',
      ops('flowcache', 'hit') / ops('async-map', 'hit'),
      0.5,
      true,
    ),
  )
  lines.push(
    goal(
      'flowcache get hit vs BentoCache memory get hit',
      ops('flowcache', 'hit') / ops('bento', 'hit'),
      5,
      true,
    ),
  )
  lines.push(
    goal(
      'flowcache bytes per entry vs lru-cache',
      baseBytes / memory.get('lru-await')!,
      1.5,
      false,
    ),
  )
  lines.push('')
  lines.push(`Total time ${((performance.now() - started) / 1000).toFixed(0)} s.`)
  process.stdout.write(lines.join('\n') + '\n')
}

async function workerMain(args: string[]): Promise<void> {
  const [kind, a] = args
  let result: unknown
  if (kind === 'throughput') return throughputWorker(a as SubjectId)
  if (kind === 'memory') result = await runMemory(a as SubjectId)
  else if (kind === 'stampede') result = await runStampede(a as StampederId)
  else throw new Error(`unknown worker kind ${String(kind)}`)
  process.stdout.write(JSON.stringify(result) + '\n')
  // Caches may keep timers (sweeps, TTL clocks); a worker's job is done once it has answered.
  process.exit(0)
}

const workerAt = process.argv.indexOf('--worker')
if (workerAt !== -1) await workerMain(process.argv.slice(workerAt + 1))
else await main()
