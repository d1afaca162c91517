/**
 * Script sandbox benchmark: what a script pays for `ctx.cache.get` against a direct library
 * call, how many trivial script runs per second one sandbox does, and how quickly hostile runs
 * are stopped compared with their CPU budget (with the host's event-loop lag meanwhile).
 *
 * Run: npm run bench:sandbox --workspace @flowcache/bench
 * Knobs: SANDBOX_BENCH_SECONDS (time per throughput figure, default 3), SANDBOX_BENCH_KILLS
 * (hostile runs per kind, default 10).
 */
import { randomUUID } from 'node:crypto'
import { createCache, memoryStore, type Cache } from '../packages/flowcache/src/index.js'
import { redisStore } from '../packages/flowcache/src/stores/redis/index.js'
import {
  createSandbox,
  ScriptRunError,
  ScriptTimeoutError,
  type Sandbox,
} from '../packages/server/src/sandbox/index.js'
import { machineLine, median, positiveEnv } from './harness.ts'

const SECONDS = positiveEnv('SANDBOX_BENCH_SECONDS', 3)
const KILLS = positiveEnv('SANDBOX_BENCH_KILLS', 10)
const CPU_BUDGET_MS = 50

const cache = createCache({ store: memoryStore() })
const view = cache.namespace('tenant:bench').namespace('flow:bench')
const flow = { name: 'bench', runId: 'bench', tenant: 'bench' }
await view.set('k', { id: 1, name: 'value' })

function fmt(value: number, digits = 1): string {
  return value.toFixed(digits)
}

/** ns per direct `cache.get` of a hit, over about SECONDS seconds. */
async function directGet(target: Cache = view, batch = 10_000): Promise<number> {
  const started = performance.now()
  let calls = 0
  while (performance.now() - started < SECONDS * 1000) {
    for (let i = 0; i < batch; i++) await target.get('k')
    calls += batch
  }
  return ((performance.now() - started) * 1e6) / calls
}

/** ns per `ctx.cache.get` of a hit from inside one script run making `calls` calls. */
async function scriptGet(sandbox: Sandbox, calls: number, target: Cache = view): Promise<number> {
  const result = await sandbox.run(
    `for (let i = 0; i < ${calls}; i++) await ctx.cache.get('k')\nreturn null`,
    {
      event: { data: null },
      ctx: { cache: target, flow },
      limits: { maxCalls: calls, cpuTime: '10m', wallTime: '10m' },
    },
  )
  return (result.wallMs * 1e6) / calls
}

/** Runs per second of a script that returns its event, one at a time. */
async function trivialRuns(sandbox: Sandbox): Promise<number> {
  const started = performance.now()
  let runs = 0
  while (performance.now() - started < SECONDS * 1000) {
    await sandbox.run('return event', {
      event: { data: { id: runs } },
      ctx: { cache: view, flow: { ...flow, runId: randomUUID() } },
    })
    runs++
  }
  return runs / ((performance.now() - started) / 1000)
}

interface Kill {
  /** From the start of the run to its rejection in the host, ms. */
  settleMs: number
  /** The CPU (or wall) time the run had used when it was stopped, ms. */
  usedMs: number
  /** The largest delay of a 1 ms host timer while the run was being stopped, ms. */
  lagMs: number
  code: string
}

async function kill(sandbox: Sandbox, source: string): Promise<Kill> {
  let lagMs = 0
  let last = performance.now()
  const monitor = setInterval(() => {
    const now = performance.now()
    lagMs = Math.max(lagMs, now - last - 1)
    last = now
  }, 1)
  const started = performance.now()
  try {
    await sandbox.run(source, {
      event: { data: null },
      ctx: { cache: view, flow },
      limits: { cpuTime: CPU_BUDGET_MS, wallTime: '5s' },
    })
    throw new Error(`not stopped: ${source}`)
  } catch (error) {
    if (!(error instanceof ScriptRunError)) throw error
    return {
      settleMs: performance.now() - started,
      usedMs: error instanceof ScriptTimeoutError ? error.usedMs : Number.NaN,
      lagMs,
      code: error.code,
    }
  } finally {
    clearInterval(monitor)
  }
}

const hostile: Array<[string, string]> = [
  ['while (true) {}', 'while (true) {}'],
  ['for (;;) await null', 'for (;;) { await null }'],
  ['catastrophic regex', `/^(a+)+$/.test('a'.repeat(40) + 'b')`],
  [
    'memory bomb (64 MiB isolate)',
    'const a = []; for (;;) a.push(new Array(100000).fill(a.length))',
  ],
]

const sandbox = await createSandbox()
console.log(`# Script sandbox benchmark (isolated-vm)\n\n${machineLine()}\n`)

// Warm-up: the first runs create the isolate and compile the scripts.
await trivialRuns(sandbox)
await scriptGet(sandbox, 1000)

const direct = await directGet()
const bridged = median([
  await scriptGet(sandbox, 20_000),
  await scriptGet(sandbox, 20_000),
  await scriptGet(sandbox, 20_000),
])
console.log('| measure | result |')
console.log('|---|---|')
console.log(`| direct \`cache.get\` (memory store, hit) | ${fmt(direct, 0)} ns/call |`)
console.log(
  `| \`ctx.cache.get\` from a script (same view, hit) | ${fmt(bridged / 1000, 2)} µs/call, ${fmt(bridged / direct)}× the direct call |`,
)
const runs = await trivialRuns(sandbox)
console.log(`| trivial script (\`return event\`), one sandbox | ${fmt(runs, 0)} runs/s |`)

// The same comparison on Redis, when one answers (FLOWCACHE_REDIS_URL or 127.0.0.1:6379).
const redis = createCache({
  store: redisStore({ url: process.env.FLOWCACHE_REDIS_URL ?? 'redis://127.0.0.1:6379' }),
  prefix: `fcbenchsbx${process.pid}`,
  fallback: 'fail',
})
try {
  const redisView = redis.namespace('tenant:bench').namespace('flow:bench')
  await redisView.set('k', { id: 1, name: 'value' })
  const redisDirect = await directGet(redisView, 500)
  const redisBridged = await scriptGet(sandbox, 2000, redisView)
  console.log(`| direct \`cache.get\` (Redis, hit) | ${fmt(redisDirect / 1000, 1)} µs/call |`)
  console.log(
    `| \`ctx.cache.get\` from a script (Redis, hit) | ${fmt(redisBridged / 1000, 1)} µs/call, ${fmt(redisBridged / redisDirect, 2)}× the direct call |`,
  )
  await redisView.clear()
} catch (error) {
  console.log(`| Redis | skipped: ${error instanceof Error ? error.message : String(error)} |`)
} finally {
  await redis.close()
}

console.log(`\n## Kill latency, CPU budget ${CPU_BUDGET_MS} ms, ${KILLS} runs each\n`)
console.log(
  '| hostile script | error | CPU used at stop (median / max) | run start → rejection (median / max) | host event-loop lag (max) |',
)
console.log('|---|---|---|---|---|')
for (const [name, source] of hostile) {
  const kills: Kill[] = []
  for (let i = 0; i < KILLS; i++) kills.push(await kill(sandbox, source))
  const used = kills.map((k) => k.usedMs).filter((ms) => !Number.isNaN(ms))
  const settle = kills.map((k) => k.settleMs)
  const codes = [...new Set(kills.map((k) => k.code))].join(', ')
  console.log(
    `| ${name} | ${codes} | ${used.length === 0 ? 'n/a' : `${fmt(median(used))} / ${fmt(Math.max(...used))} ms`} | ${fmt(median(settle))} / ${fmt(Math.max(...settle))} ms | ${fmt(Math.max(...kills.map((k) => k.lagMs)))} ms |`,
  )
}
console.log(`\nisolates created: ${sandbox.stats().isolates}`)

await sandbox.close()
await cache.close()
