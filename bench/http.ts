/**
 * HTTP throughput and latency of `GET /v1/ns/:ns/keys/:key` of `flowcache serve` (its whole
 * stack: configuration, flow host, auth and limit hooks, the cache) against a bare fastify route
 * of the same fastify answering the same JSON, on loopback.
 *
 * The load generator is wrk (a C program with its own event loop), so neither server shares a
 * process or an event loop with the load. Each server runs in a child process of its own; wrk
 * hits one at a time, with `CONNECTIONS` keep-alive connections on `THREADS` threads, for
 * `SECONDS`. Each of the `ROUNDS` rounds starts both servers afresh, warms each up for
 * `WARMUP_SECONDS`, measures both (which goes first alternates from round to round) and stops
 * them: the steady cost of one server process differs from one start to the next by more than
 * between rounds of the same process, so each round is a new sample of both. The figures are
 * the median round of each server; the ratio is also given per round, whose median is less
 * sensitive to other load on the machine drifting during the run. The load average before and
 * after is printed to judge that load.
 * Where `taskset` exists and there are 2 CPUs or more, the servers run on CPU 0 and wrk on CPU 1
 * (`PIN=off` turns it off), so the load generator never competes for the server's core.
 *
 * Besides requests/s, each round reads the CPU time the server process used (user + system,
 * from `process.cpuUsage()` in the server) and divides it by the requests wrk completed: the
 * server's cost per request. On a shared machine that cost moves much less than the rate, which
 * also depends on how much of the core the server was given; its ratio (bare ÷ flowcache) is the
 * throughput ratio the two servers would have on a core of their own.
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

/** A server child's answer to the message `'cpu'`: its CPU time so far, in µs. */
interface CpuTime {
  cpuUs: number
}

/** Answers the parent's `'cpu'` messages with this process's CPU time (user + system). */
function answerCpuTime(): void {
  process.on('message', (message) => {
    if (message !== 'cpu') return
    const { user, system } = process.cpuUsage()
    process.send?.({ cpuUs: user + system } satisfies CpuTime)
  })
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
  answerCpuTime()
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
  answerCpuTime()
  process.send?.({ url } satisfies Ready)
  process.once('SIGTERM', () => void bare.close().finally(() => process.exit(0)))
}

/** A running server child. */
interface Server {
  url: string
  /** The child's CPU time so far (user + system), in µs. */
  cpuUs: () => Promise<number>
  /** Stops the child (SIGTERM) and resolves once it has exited. */
  stop: () => Promise<void>
}

/** Starts this file as a server child and waits for its URL. */
function startServer(
  kind: 'flowcache' | 'bare',
  env: Record<string, string> = {},
): Promise<Server> {
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
      const cpuUs = (): Promise<number> =>
        new Promise((answered) => {
          const onMessage = (reply: unknown): void => {
            const cpu = (reply as Partial<CpuTime>).cpuUs
            if (typeof cpu !== 'number') return
            child.off('message', onMessage)
            answered(cpu)
          }
          child.on('message', onMessage)
          child.send('cpu')
        })
      const exited = new Promise<void>((done) => child.once('exit', () => done()))
      const stop = (): Promise<void> => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
        return exited
      }
      resolve({ url: (message as Ready).url, cpuUs, stop })
    })
  })
}

/** One wrk run. */
interface Round {
  requestsPerSecond: number
  p50Ms: number
  p99Ms: number
  /** Requests wrk completed. */
  requests: number
}

/** One wrk run with the CPU time the server used for it. */
interface MeasuredRound extends Round {
  /** The server's CPU time (user + system) per completed request, in µs. */
  cpuUsPerRequest: number
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
      const requests = /(\d+) requests in /.exec(output)
      if (!rate?.[1] || !p50?.[1] || !p99?.[1] || !requests?.[1]) {
        return reject(new Error(`cannot read wrk's output:\n${output}`))
      }
      resolve({
        requestsPerSecond: Number(rate[1]),
        p50Ms: toMs(p50[1]),
        p99Ms: toMs(p99[1]),
        requests: Number(requests[1]),
      })
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
  const loadBefore = loadavg()[0] ?? 0
  const rounds: { bare: MeasuredRound[]; flowcache: MeasuredRound[] } = {
    bare: [],
    flowcache: [],
  }
  for (let round = 0; round < ROUNDS; round++) {
    const servers = await startServers()
    try {
      await wrk(servers.bare.url + PATH, WARMUP_SECONDS)
      await wrk(servers.flowcache.url + PATH, WARMUP_SECONDS)
      const order =
        round % 2 === 0 ? (['bare', 'flowcache'] as const) : (['flowcache', 'bare'] as const)
      for (const kind of order) rounds[kind].push(await measuredRound(servers[kind]))
    } finally {
      await Promise.all([servers.bare.stop(), servers.flowcache.stop()])
    }
  }
  report(rounds, [loadBefore, loadavg()[0] ?? 0])
}

/** Starts both servers and checks that they answer the same JSON. */
async function startServers(): Promise<{ bare: Server; flowcache: Server }> {
  const flowcache = await startServer('flowcache')
  let bare: Server | undefined
  try {
    const body = await fetchJson(flowcache.url + PATH)
    if (!isDeepStrictEqual(body, { key: KEY, value: VALUE })) {
      throw new Error(`flowcache answered ${JSON.stringify(body)}`)
    }
    bare = await startServer('bare', { BODY: JSON.stringify(body) })
    const bareBody = await fetchJson(bare.url + PATH)
    if (!isDeepStrictEqual(bareBody, body)) throw new Error('the bare route answers other JSON')
    return { bare, flowcache }
  } catch (error) {
    await Promise.all([bare?.stop(), flowcache.stop()])
    throw error
  }
}

/** One wrk round against `server`, with the server's CPU time per request during it. */
async function measuredRound(server: Server): Promise<MeasuredRound> {
  const before = await server.cpuUs()
  const round = await wrk(server.url + PATH, SECONDS)
  const after = await server.cpuUs()
  return { ...round, cpuUsPerRequest: (after - before) / round.requests }
}

function report(
  rounds: { bare: MeasuredRound[]; flowcache: MeasuredRound[] },
  load: [number, number],
): void {
  const summary = (list: MeasuredRound[]): MeasuredRound => ({
    requestsPerSecond: median(list.map((round) => round.requestsPerSecond)),
    p50Ms: median(list.map((round) => round.p50Ms)),
    p99Ms: median(list.map((round) => round.p99Ms)),
    requests: median(list.map((round) => round.requests)),
    cpuUsPerRequest: median(list.map((round) => round.cpuUsPerRequest)),
  })
  const bare = summary(rounds.bare)
  const flowcache = summary(rounds.flowcache)
  const cpu = cpus()[0]?.model ?? 'unknown CPU'
  console.log(
    `HTTP GET of one key on loopback (${STORE} store): wrk -t${THREADS} -c${CONNECTIONS}, ${ROUNDS} rounds of ${SECONDS} s per server, each round on newly started servers after ${WARMUP_SECONDS} s warm-up of each; median round`,
  )
  console.log(
    `node ${process.version}, ${cpus().length} × ${cpu}; ${PIN ? 'servers pinned to CPU 0, wrk to CPU 1' : 'not pinned'}; 1-minute load average ${load[0].toFixed(1)} before, ${load[1].toFixed(1)} after`,
  )
  console.log('')
  console.log(
    '| server                                   | requests/s | p50 latency | p99 latency | server CPU per request | ratio (requests/s) | ratio (CPU per request) |',
  )
  console.log(
    '| ---------------------------------------- | ---------: | ----------: | ----------: | ---------------------: | -----------------: | ----------------------: |',
  )
  const row = (name: string, round: MeasuredRound, byRate: number, byCpu: number): string =>
    [
      '',
      name.padEnd(40),
      round.requestsPerSecond.toFixed(0).padStart(10),
      `${round.p50Ms.toFixed(2)} ms`.padStart(11),
      `${round.p99Ms.toFixed(2)} ms`.padStart(11),
      `${round.cpuUsPerRequest.toFixed(1)} µs`.padStart(22),
      `${byRate.toFixed(2)}×`.padStart(18),
      `${byCpu.toFixed(2)}×`.padStart(23),
      '',
    ]
      .join(' | ')
      .trim()
  console.log(row('bare fastify route, same JSON', bare, 1, 1))
  console.log(
    row(
      'flowcache serve GET /v1/ns/:ns/keys/:key',
      flowcache,
      flowcache.requestsPerSecond / bare.requestsPerSecond,
      bare.cpuUsPerRequest / flowcache.cpuUsPerRequest,
    ),
  )
  console.log('')
  const list = (values: MeasuredRound[], pick: (round: MeasuredRound) => string): string =>
    values.map(pick).join(', ')
  const rate = (round: MeasuredRound): string => round.requestsPerSecond.toFixed(0)
  const cost = (round: MeasuredRound): string => round.cpuUsPerRequest.toFixed(1)
  console.log(
    `requests/s per round: bare ${list(rounds.bare, rate)}; flowcache ${list(rounds.flowcache, rate)}`,
  )
  console.log(
    `server CPU µs per request per round: bare ${list(rounds.bare, cost)}; flowcache ${list(rounds.flowcache, cost)}`,
  )
  const pairs = (ratio: (bareRound: MeasuredRound, ours: MeasuredRound) => number): number[] =>
    rounds.flowcache.flatMap((ours, i) => {
      const bareRound = rounds.bare[i]
      return bareRound === undefined ? [] : [ratio(bareRound, ours)]
    })
  const byRate = pairs((b, ours) => ours.requestsPerSecond / b.requestsPerSecond)
  const byCpu = pairs((b, ours) => b.cpuUsPerRequest / ours.cpuUsPerRequest)
  const format = (values: number[]): string =>
    `${values.map((ratio) => ratio.toFixed(2)).join(', ')}; median ${median(values).toFixed(2)}×`
  console.log(`ratio per round, requests/s: ${format(byRate)}`)
  console.log(`ratio per round, CPU per request: ${format(byCpu)}`)
}

await main()
