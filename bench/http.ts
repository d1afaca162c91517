/**
 * HTTP throughput and latency of `GET /v1/ns/:ns/keys/:key` of `flowcache serve` (its whole
 * stack: configuration, flow host, auth and limit hooks, the cache) against a bare fastify route
 * of the same fastify answering the same JSON, on loopback.
 *
 * The load generator is wrk (a C program with its own event loop), so neither server shares a
 * process or an event loop with the load. Each server runs in a child process of its own; wrk
 * hits one at a time, with `CONNECTIONS` keep-alive connections on `THREADS` threads, for
 * `SECONDS`, alternating bare and flowcache for `ROUNDS` rounds after a warm-up of each. The
 * figures are the median round of each server; the ratio is also given per pair of adjacent
 * rounds (bare, then flowcache), whose median is less sensitive to other load on the machine
 * drifting during the run. The load average before and after is printed to judge that load.
 * Where `taskset` exists and there are 2 CPUs or more, the servers run on CPU 0 and wrk on CPU 1
 * (`PIN=off` turns it off), so the load generator never competes for the server's core.
 *
 *   npm run bench:http --workspace @flowcache/bench
 *   CONNECTIONS=64 SECONDS=10 ROUNDS=5 STORE=sqlite:/tmp/bench.db npm run bench:http --workspace @flowcache/bench
 *
 * Needs wrk on the PATH (Debian/Ubuntu: `apt-get install -y wrk`; macOS: `brew install wrk`).
 */
import { fork, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 32)
const THREADS = Number(process.env.THREADS ?? 1)
const SECONDS = Number(process.env.SECONDS ?? 10)
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const WARMUP_SECONDS = Number(process.env.WARMUP_SECONDS ?? 3)
/** `--store` of the flowcache server. */
const STORE = process.env.STORE ?? 'memory'
/**
 * Pin the servers to CPU 0 and wrk to CPU 1 (with `taskset`), so that the load generator never
 * takes the server's core: `auto` (the default) pins when `taskset` is on the PATH and the
 * machine has at least 2 CPUs; `off` never pins.
 */
const PIN =
  process.env.PIN !== 'off' &&
  cpus().length >= 2 &&
  spawnSync('taskset', ['-c', '0', 'true']).status === 0
const NAMESPACE = ['tenant:bench', 'flow:orders']
const KEY = 'order:42'
const VALUE = { id: 42, status: 'shipped', total: 99.5, items: ['a', 'b', 'c'] }
const PATH = `/v1/ns/${encodeURIComponent(NAMESPACE.join('/'))}/keys/${encodeURIComponent(KEY)}`

/** What a server child reports once it listens. */
interface Ready {
  url: string
}

/** Child mode `--server flowcache`: `flowcache serve` in this process, no flows, one entry. */
async function runFlowcache(): Promise<void> {
  const { startServe } = await import('../packages/server/src/cli/commands/serve.js')
  const flows = mkdtempSync(join(tmpdir(), 'flowcache-bench-flows-'))
  const handle = await startServe(
    { host: '127.0.0.1', port: '0', store: STORE, flows },
    {
      stdout: (text) => process.stdout.write(text),
      stderr: (text) => process.stderr.write(text),
      readStdin: () => Promise.resolve(''),
    },
    {},
  )
  const view = NAMESPACE.reduce((cache, name) => cache.namespace(name), handle.cache)
  await view.set(KEY, VALUE)
  process.send?.({ url: handle.url } satisfies Ready)
  process.once('SIGTERM', () => {
    void handle.close().finally(() => {
      rmSync(flows, { recursive: true, force: true })
      process.exit(0)
    })
  })
}

/** Child mode `--server bare`: a bare fastify route answering the body given in `BODY`. */
async function runBare(): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const body = JSON.parse(process.env.BODY ?? 'null') as unknown
  const bare = Fastify({ logger: false })
  bare.get('/v1/ns/:ns/keys/:key', async () => body)
  const url = await bare.listen({ host: '127.0.0.1', port: 0 })
  process.send?.({ url } satisfies Ready)
  process.once('SIGTERM', () => void bare.close().finally(() => process.exit(0)))
}

/** Starts this file as a server child and waits for its URL. */
function startServer(
  kind: 'flowcache' | 'bare',
  env: Record<string, string> = {},
): Promise<{ url: string; stop: () => void }> {
  const child = fork(fileURLToPath(import.meta.url), ['--server', kind], {
    execArgv: ['--no-node-snapshot', '--import', 'tsx'],
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => reject(new Error(`the ${kind} server exited with code ${code}`)))
    child.once('message', (message) => {
      // All of the server's threads (its event loop and libuv's pool) on CPU 0.
      if (PIN && child.pid !== undefined) {
        const pinned = spawnSync('taskset', ['-a', '-p', '-c', '0', String(child.pid)])
        if (pinned.status !== 0) reject(new Error(`taskset could not pin the ${kind} server`))
      }
      resolve({ url: (message as Ready).url, stop: () => child.kill('SIGTERM') })
    })
  })
}

/** One wrk run. */
interface Round {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
}

/** wrk's `1.23ms` / `456.00us` / `1.02s` in ms. */
function toMs(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text)
  if (!match) throw new Error(`wrk printed a latency I cannot read: ${text}`)
  const value = Number(match[1])
  const unit = match[2]
  return unit === 'us'
    ? value / 1000
    : unit === 'ms'
      ? value
      : unit === 's'
        ? value * 1000
        : value * 60_000
}

/** Runs wrk against `url` for `seconds` and reads requests/s and the latency percentiles. */
function wrk(url: string, seconds: number): Promise<Round> {
  return new Promise((resolve, reject) => {
    const args = [`-t${THREADS}`, `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', url]
    const child = PIN
      ? spawn('taskset', ['-c', '1', 'wrk', ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
      : spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`wrk exited with code ${code}:\n${output}`))
      const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(output)
      if (errors) return reject(new Error(`wrk saw failed requests against ${url}:\n${output}`))
      const rate = /Requests\/sec:\s+([\d.]+)/.exec(output)
      const p50 = /^\s+50%\s+(\S+)$/m.exec(output)
      const p99 = /^\s+99%\s+(\S+)$/m.exec(output)
      if (!rate?.[1] || !p50?.[1] || !p99?.[1]) {
        return reject(new Error(`cannot read wrk's output:\n${output}`))
      }
      resolve({ requestsPerSecond: Number(rate[1]), p50Ms: toMs(p50[1]), p99Ms: toMs(p99[1]) })
    })
  })
}

/** The median of `values` (the mean of the middle two for an even count). */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? NaN)
    : ((sorted[middle - 1] ?? NaN) + (sorted[middle] ?? NaN)) / 2
}

/** Fetches `url` and returns its JSON body; throws unless it answers 200. */
async function fetchJson(url: string): Promise<unknown> {
  const response = await fetch(url)
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}`)
  return response.json()
}

async function main(): Promise<void> {
  const serverArg = process.argv.indexOf('--server')
  if (serverArg >= 0) {
    return process.argv[serverArg + 1] === 'bare' ? runBare() : runFlowcache()
  }
  if (spawnSync('wrk', ['--version']).error !== undefined) {
    console.error(
      'bench:http needs wrk, a load generator, on the PATH. Install it: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS).',
    )
    process.exitCode = 1
    return
  }
  const flowcache = await startServer('flowcache')
  let bare: { url: string; stop: () => void } | undefined
  try {
    const body = await fetchJson(flowcache.url + PATH)
    if (!isDeepStrictEqual(body, { key: KEY, value: VALUE })) {
      throw new Error(`flowcache answered ${JSON.stringify(body)}`)
    }
    bare = await startServer('bare', { BODY: JSON.stringify(body) })
    const bareBody = await fetchJson(bare.url + PATH)
    if (!isDeepStrictEqual(bareBody, body)) throw new Error('the bare route answers other JSON')
    const targets = { bare: bare.url + PATH, flowcache: flowcache.url + PATH }

    const loadBefore = loadavg()[0] ?? 0
    await wrk(targets.bare, WARMUP_SECONDS)
    await wrk(targets.flowcache, WARMUP_SECONDS)
    const rounds: { bare: Round[]; flowcache: Round[] } = { bare: [], flowcache: [] }
    for (let round = 0; round < ROUNDS; round++) {
      rounds.bare.push(await wrk(targets.bare, SECONDS))
      rounds.flowcache.push(await wrk(targets.flowcache, SECONDS))
    }
    report(rounds, [loadBefore, loadavg()[0] ?? 0])
  } finally {
    bare?.stop()
    flowcache.stop()
  }
}

function report(rounds: { bare: Round[]; flowcache: Round[] }, load: [number, number]): void {
  const summary = (list: Round[]): Round => ({
    requestsPerSecond: median(list.map((round) => round.requestsPerSecond)),
    p50Ms: median(list.map((round) => round.p50Ms)),
    p99Ms: median(list.map((round) => round.p99Ms)),
  })
  const bare = summary(rounds.bare)
  const flowcache = summary(rounds.flowcache)
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  console.log(
    `HTTP GET of one key on loopback (${STORE} store): wrk -t${THREADS} -c${CONNECTIONS}, ${ROUNDS} × ${SECONDS} s per server, alternating, after ${WARMUP_SECONDS} s warm-up; median round`,
  )
  console.log(
    `node ${process.version}, ${cpus().length} × ${cpu}; ${PIN ? 'servers pinned to CPU 0, wrk to CPU 1' : 'not pinned'}; 1-minute load average ${load[0].toFixed(1)} before, ${load[1].toFixed(1)} after`,
  )
  console.log('')
  console.log(
    '| server                                   | requests/s | p50 latency | p99 latency | ratio |',
  )
  console.log(
    '| ---------------------------------------- | ---------: | ----------: | ----------: | ----: |',
  )
  const row = (name: string, round: Round, ratio: number): string =>
    `| ${name.padEnd(40)} | ${round.requestsPerSecond.toFixed(0).padStart(10)} | ${`${round.p50Ms.toFixed(2)} ms`.padStart(11)} | ${`${round.p99Ms.toFixed(2)} ms`.padStart(11)} | ${`${ratio.toFixed(2)}×`.padStart(5)} |`
  console.log(row('bare fastify route, same JSON', bare, 1))
  console.log(
    row(
      'flowcache serve GET /v1/ns/:ns/keys/:key',
      flowcache,
      flowcache.requestsPerSecond / bare.requestsPerSecond,
    ),
  )
  console.log('')
  const list = (values: Round[]): string =>
    values.map((round) => round.requestsPerSecond.toFixed(0)).join(', ')
  console.log(
    `requests/s per round: bare ${list(rounds.bare)}; flowcache ${list(rounds.flowcache)}`,
  )
  const pairs = rounds.flowcache.map(
    (round, i) => round.requestsPerSecond / (rounds.bare[i]?.requestsPerSecond ?? NaN),
  )
  console.log(
    `ratio per round pair: ${pairs.map((ratio) => ratio.toFixed(2)).join(', ')}; median ${median(pairs).toFixed(2)}×`,
  )
}

await main()
