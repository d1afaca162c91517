/**
 * Shared by the benchmarks (memory.ts, stores.ts, coord.ts): environment knobs, statistics and
 * number formatting, the machine, revision and command lines of a report, tinybench warm-ups and
 * timed slices, the child-process workers that let the parent interleave contenders slice by
 * slice, and finding (or starting) the Redis and NATS servers the network benchmarks run against.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Redis as RedisClient } from 'ioredis'
import { Bench } from 'tinybench'
import {
  findExecutable,
  probeNats,
  probeRedis,
  startNatsServer,
  startRedisServer,
  type ServerHandle,
} from '../packages/flowcache/test/helpers/servers.js'

// ---- environment and statistics ---------------------------------------------------------------

/** A positive number from the environment variable `name`, else `fallback`. */
export function positiveEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(`${name} must be a positive number; got ${raw}`)
  return value
}

/** The mean of the `top` largest values. */
export function topMean(values: number[], top: number): number {
  const best = [...values].sort((a, b) => b - a).slice(0, top)
  return best.reduce((sum, value) => sum + value, 0) / best.length
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export function formatOps(ops: number): string {
  if (ops >= 1e6) return `${(ops / 1e6).toFixed(2)} M/s`
  if (ops >= 1e3) return `${(ops / 1e3).toFixed(0)} k/s`
  return `${ops.toFixed(0)}/s`
}

export function ratio(value: number, base: number): string {
  const r = value / base
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`
}

// ---- report lines -------------------------------------------------------------------------------

/** Installed version of a package, looked up in the bench and root node_modules. */
export function packageVersion(benchDir: string, name: string): string {
  for (const dir of [
    path.join(benchDir, 'node_modules'),
    path.join(benchDir, '..', 'node_modules'),
  ]) {
    try {
      return (
        JSON.parse(readFileSync(path.join(dir, name, 'package.json'), 'utf8')) as {
          version: string
        }
      ).version
    } catch {
      // try the next location
    }
  }
  return 'unknown'
}

/** The commit measured, and whether the library's sources differ from it. */
export function revision(benchDir: string): string {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', args, {
        cwd: benchDir,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim()
    const head = git('rev-parse', '--short', 'HEAD')
    const dirty = git('status', '--porcelain', '--', '../packages/flowcache/src') !== ''
    return `flowcache ${head}${dirty ? ' + uncommitted changes' : ''}`
  } catch {
    return 'flowcache (no git revision)'
  }
}

/** Node version, CPU, memory, OS and the time: the first line of every report. */
export function machineLine(): string {
  const cpus = os.cpus()
  return (
    `Node ${process.version} · ${cpus[0]?.model.trim() ?? 'unknown CPU'} · ${cpus.length} logical CPUs · ` +
    `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB · ${os.platform()} ${os.release()} · ${new Date().toISOString()}`
  )
}

// ---- timing -------------------------------------------------------------------------------------

/** Runs `task` for at least `ms` (and 20 times) so that it is compiled and its caches are warm. */
export async function warmUp(task: () => unknown, ms: number): Promise<void> {
  const warmup = new Bench({ warmupTime: ms, warmupIterations: 20, throws: true })
  warmup.add('warmup', task)
  await warmup.warmup()
}

/**
 * Times one slice of `task` with tinybench: iterations for at least `ms`; returns operations per
 * second, given that one iteration is `opsPerIteration` operations.
 */
export async function timeSlice(
  task: () => unknown,
  ms: number,
  opsPerIteration: number,
): Promise<number> {
  const bench = new Bench({ time: ms, iterations: 1, throws: true })
  bench.add('slice', task)
  await bench.run()
  const result = bench.tasks[0]?.result
  if (result === undefined) throw new Error('tinybench produced no result')
  return result.hz * opsPerIteration
}

/**
 * Runs `slice` for every worker, `rounds` times, rotating who goes first each round: all
 * contenders are measured across the same stretch of time, so a busy moment on a shared
 * machine hits each of them alike.
 */
export async function interleave<W>(
  workers: readonly W[],
  rounds: number,
  slice: (worker: W) => Promise<void>,
): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < workers.length; i++) await slice(workers[(i + round) % workers.length]!)
  }
}

// ---- child-process workers ----------------------------------------------------------------------

/**
 * Parent side of a long-lived worker process: `node <execArgv> <script> --worker <args>`, talked
 * to over IPC one request at a time. Its first message says it has started.
 */
export class ChildWorker<Request, Reply> {
  readonly #child: ChildProcess
  readonly #waiting: Array<(reply: Reply) => void> = []
  readonly #failed: Promise<never>

  constructor(script: string, args: string[], cwd: string, description: string) {
    this.#child = spawn(process.execPath, [...process.execArgv, script, '--worker', ...args], {
      cwd,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    })
    this.#child.on('message', (reply: Reply) => this.#waiting.shift()?.(reply))
    this.#failed = new Promise((_, reject) => {
      this.#child.on('exit', (code) => {
        if (code !== 0) reject(new Error(`${description} exited with ${String(code)}`))
      })
    })
    this.#failed.catch(() => undefined)
  }

  /** The worker's process id. */
  get pid(): number | undefined {
    return this.#child.pid
  }

  /** Waits for the next reply (the first one says the worker has started). */
  next(): Promise<Reply> {
    return Promise.race([
      new Promise<Reply>((resolve) => this.#waiting.push(resolve)),
      this.#failed,
    ])
  }

  ask(request: Request): Promise<Reply> {
    const reply = this.next()
    this.#child.send(request as object)
    return reply
  }

  /** Sends `request` (the worker's exit message) without waiting for an answer. */
  tell(request: Request): void {
    if (this.#child.connected) this.#child.send(request as object)
  }

  /** Ends the worker by its PID if it is still running (after a failure elsewhere). */
  kill(): void {
    if (this.#running()) this.#child.kill()
  }

  /**
   * Sends `request` (the worker's exit message) and waits up to `graceMs` for the process to
   * exit on its own (so that, say, `--cpu-prof` can write its profile); then kills it.
   */
  async stop(request: Request, graceMs = 5000): Promise<void> {
    if (!this.#running()) return
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()))
    this.tell(request)
    let timer: NodeJS.Timeout | undefined
    await Promise.race([
      exited,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs))),
    ])
    clearTimeout(timer)
    this.kill()
  }

  #running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null
  }
}

/** Rates with three significant digits from 1,000/s up: network rates are tens of k/s. */
export function formatRate(ops: number): string {
  if (ops >= 1e6) return `${(ops / 1e6).toFixed(2)} M/s`
  if (ops >= 1e5) return `${(ops / 1e3).toFixed(0)} k/s`
  if (ops >= 1e4) return `${(ops / 1e3).toFixed(1)} k/s`
  if (ops >= 1e3) return `${(ops / 1e3).toFixed(2)} k/s`
  return `${ops.toFixed(0)}/s`
}

/**
 * The scenarios a run measures: all of `all`, or those BENCH_ONLY names (comma-separated), in
 * the order of `all`. An unknown name is an error that lists the known ones.
 */
export function selectedScenarios<Id extends string>(all: readonly Id[]): Id[] {
  const only = process.env.BENCH_ONLY
  if (only === undefined || only === '') return [...all]
  const wanted = only.split(',').map((s) => s.trim())
  for (const id of wanted) {
    if (!all.includes(id as Id))
      throw new Error(`BENCH_ONLY: unknown scenario ${id}; known: ${all.join(', ')}`)
  }
  return all.filter((id) => wanted.includes(id))
}

/**
 * The start of a report's command line: the BENCH_ knobs set, the npm script and the node
 * command that ran `script`, e.g. "Command: `BENCH_SLICES=2 npm run bench:coord` in bench/ (…)".
 */
export function commandLine(npmScript: string, script: string): string {
  const knobs = Object.entries(process.env)
    .filter(([name]) => name.startsWith('BENCH_'))
    .map(([name, value]) => `${name}=${value} `)
    .join('')
  const node = ['node', ...process.execArgv, `./${path.basename(script)}`].join(' ')
  return `Command: \`${knobs}npm run ${npmScript}\` in bench/ (\`${knobs}${node}\`)`
}

// ---- timed tasks --------------------------------------------------------------------------------

/** Runs `fn` over 0..count-1 with `parallel` calls in flight. */
export async function forEachParallel(
  count: number,
  parallel: number,
  fn: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = 0
  const loop = async (): Promise<void> => {
    while (next < count) await fn(next++)
  }
  await Promise.all(Array.from({ length: parallel }, loop))
}

/**
 * The task one tinybench iteration runs: `batch` awaited calls of `one`, one after the other, or
 * with `inFlight` above 1, that many awaited loops sharing one budget of `batch` calls.
 */
export function batchTask(
  one: () => Promise<void>,
  batch: number,
  inFlight: number,
): () => Promise<void> {
  if (inFlight === 1) {
    return async () => {
      for (let i = 0; i < batch; i++) await one()
    }
  }
  return async () => {
    let left = batch
    const loop = async (): Promise<void> => {
      while (left-- > 0) await one()
    }
    await Promise.all(Array.from({ length: inFlight }, loop))
  }
}

// ---- slice workers ------------------------------------------------------------------------------

/**
 * What the parent asks a slice worker, one scenario after the other: prepare it (`Prepare` says
 * which), time a slice (many times), finish it (close and report `Counts`); exit at the end.
 */
export type SliceRequest<Prepare> =
  ({ type: 'prepare' } & Prepare) | { type: 'slice' } | { type: 'finish' } | { type: 'exit' }
export type SliceReply<Counts> =
  { type: 'ready' } | { type: 'slice'; opsPerSec: number } | ({ type: 'finished' } & Counts)

/** A scenario prepared in a slice worker: the task tinybench times, and what it counted. */
export interface Sliced<Counts> {
  task: () => unknown
  /** Operations per iteration of `task`. */
  batch: number
  /** Read when the scenario finishes; the task updates it. */
  counts: Counts
  /** Releases what the scenario opened (clients, caches). */
  close(): Promise<void> | void
}

/**
 * Worker side of the slice protocol: answers the parent's {@link SliceRequest}s with `prepare`
 * and slices of `sliceMs`, one at a time. Says `ready` once listening. A failure is logged with
 * `label` and ends the process with exit code 1.
 */
export function serveSlices<Prepare, Counts>(
  label: string,
  sliceMs: number,
  prepare: (request: Prepare) => Promise<Sliced<Counts>>,
): void {
  let prepared: Sliced<Counts> | undefined
  const reply = (message: SliceReply<Counts>): void => void process.send!(message)
  process.on('message', (message: SliceRequest<Prepare>) => {
    void (async () => {
      switch (message.type) {
        case 'prepare':
          prepared = await prepare(message)
          return reply({ type: 'ready' })
        case 'slice':
          return reply({
            type: 'slice',
            opsPerSec: await timeSlice(prepared!.task, sliceMs, prepared!.batch),
          })
        case 'finish': {
          await prepared!.close()
          const { counts } = prepared!
          prepared = undefined
          return reply({ type: 'finished', ...counts })
        }
        case 'exit':
          process.exit(0)
      }
    })().catch((error: unknown) => {
      console.error(`${label}:`, error)
      process.exit(1)
    })
  })
  reply({ type: 'ready' })
}

/**
 * Parent side of a {@link serveSlices} worker: each request checked for the reply it expects.
 * `Subject` is the type of the name of what the worker measures.
 */
export class SliceWorker<Prepare, Counts, Subject extends string = string> extends ChildWorker<
  SliceRequest<Prepare>,
  SliceReply<Counts>
> {
  /** Resolves once the worker process has started. */
  readonly up: Promise<SliceReply<Counts>>

  /** Starts `node <script> --worker <args>`; `subject` names it in errors. */
  constructor(
    readonly subject: Subject,
    script: string,
    args: string[],
    cwd: string,
    description: string,
  ) {
    super(script, args, cwd, description)
    this.up = this.next()
  }

  /** Has the worker prepare a scenario (load, warm up); resolves when it is ready. */
  async prepare(request: Prepare): Promise<void> {
    await this.#request({ type: 'prepare', ...request }, 'ready')
  }

  /** Has the worker time one slice; its operations per second. */
  async slice(): Promise<number> {
    const reply = await this.#request({ type: 'slice' }, 'slice')
    return reply.type === 'slice' ? reply.opsPerSec : 0
  }

  /** Has the worker close the scenario; what it counted. */
  async finish(): Promise<Counts> {
    const reply = await this.#request({ type: 'finish' }, 'finished')
    const { type: _, ...counts } = reply as { type: 'finished' } & Counts
    return counts as Counts
  }

  /** Asks the worker to exit and waits for it (then kills it): see {@link ChildWorker.stop}. */
  end(): Promise<void> {
    return this.stop({ type: 'exit' })
  }

  async #request(
    request: SliceRequest<Prepare>,
    expected: 'ready' | 'slice' | 'finished',
  ): Promise<SliceReply<Counts>> {
    await this.up
    const reply = await this.ask(request)
    if (reply.type !== expected) throw new Error(`${this.subject}: unexpected reply ${reply.type}`)
    return reply
  }
}

// ---- servers (Redis, NATS) ----------------------------------------------------------------------

/** A Redis or NATS server a benchmark runs against. */
export interface Service {
  url: string
  /** How it was found, for the report. */
  source: string
  /** Set when the benchmark started the server itself: stop it at the end. */
  server?: ServerHandle
}

/**
 * Finds a server as the integration tests do: FLOWCACHE_REDIS_URL / FLOWCACHE_NATS_URL (must
 * answer), else the default port (unless BENCH_PRIVATE_SERVERS=1), else a private `redis-server`
 * / `nats-server -js` on a free port with a temp dir. `benchmark` names the benchmark in the
 * error that says how to get a server when none is found.
 */
export async function findService(name: 'redis' | 'nats', benchmark: string): Promise<Service> {
  const spec =
    name === 'redis'
      ? {
          envVar: 'FLOWCACHE_REDIS_URL',
          defaultUrl: 'redis://127.0.0.1:6379',
          binary: 'redis-server',
          probe: probeRedis,
          start: startRedisServer,
        }
      : {
          envVar: 'FLOWCACHE_NATS_URL',
          defaultUrl: 'nats://127.0.0.1:4222',
          binary: 'nats-server',
          probe: probeNats,
          start: startNatsServer,
        }
  const explicit = process.env[spec.envVar]
  if (explicit !== undefined && explicit !== '') {
    const result = await spec.probe(explicit)
    if (!result.ok) throw new Error(`${spec.envVar}=${explicit} does not answer: ${result.reason}`)
    return { url: explicit, source: `from ${spec.envVar}` }
  }
  const tried: string[] = [`${spec.envVar} is not set`]
  if (process.env.BENCH_PRIVATE_SERVERS !== '1') {
    const result = await spec.probe(spec.defaultUrl)
    if (result.ok) return { url: spec.defaultUrl, source: 'found on the default port' }
    tried.push(`${spec.defaultUrl}: ${result.reason}`)
  }
  if (findExecutable(spec.binary) === undefined) {
    tried.push(`${spec.binary} is not on PATH`)
    throw new Error(
      `No ${name} server for the ${benchmark}:\n  - ${tried.join('\n  - ')}\n` +
        `Install it (Debian: apt-get install ${spec.binary}), start one on ${spec.defaultUrl}, ` +
        `or set ${spec.envVar}.`,
    )
  }
  const server = await spec.start()
  return {
    url: server.url,
    source: `private ${spec.binary}, pid ${server.pid}, started for this run`,
    server,
  }
}

/** An ioredis client on `url`, connected (it has answered a PING). */
export async function newRedis(url: string): Promise<RedisClient> {
  const { Redis } = await import('ioredis')
  const client = new Redis(url)
  await client.ping()
  return client
}

/** UNLINKs every key matching `*<marker>*`; returns how many went. */
export async function unlinkMatching(client: RedisClient, marker: string): Promise<number> {
  let cursor = '0'
  let removed = 0
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `*${marker}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) removed += await client.unlink(...keys)
  } while (cursor !== '0')
  return removed
}

/** The report's line for a Redis server: version, appendonly, where and how it was found. */
export async function describeRedis(admin: RedisClient, service: Service): Promise<string> {
  const version = /redis_version:(\S+)/.exec(await admin.info('server'))?.[1] ?? 'unknown'
  const [, appendonly] = (await admin.config('GET', 'appendonly')) as string[]
  return `Redis ${version} (appendonly ${appendonly ?? '?'}) at ${new URL(service.url).host}, ${service.source}`
}

/** The report's line for a NATS server: version, where and how it was found. */
export async function describeNats(service: Service): Promise<string> {
  const { connect } = await import('@nats-io/transport-node')
  const nc = await connect({ servers: service.url })
  const version = nc.info?.version ?? 'unknown'
  await nc.close()
  return `nats-server ${version} (JetStream, file storage) at ${new URL(service.url).host}, ${service.source}`
}

/** Deletes the JetStream KV bucket `bucket` (its stream); logs the outcome, never throws on it. */
export async function deleteBucket(
  url: string,
  bucket: string,
  log: (line: string) => void,
): Promise<void> {
  const [{ connect }, { jetstreamManager }] = await Promise.all([
    import('@nats-io/transport-node'),
    import('@nats-io/jetstream'),
  ])
  const nc = await connect({ servers: url })
  try {
    const jsm = await jetstreamManager(nc)
    await jsm.streams.delete(`KV_${bucket}`)
    log(`nats: deleted bucket ${bucket}`)
  } catch (error) {
    log(`nats: could not delete bucket ${bucket}: ${String(error)}`)
  } finally {
    await nc.close()
  }
}
