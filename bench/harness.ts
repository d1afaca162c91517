/**
 * Shared by the benchmarks (memory.ts, stores.ts): environment knobs, statistics and number
 * formatting, the machine and revision lines of a report, tinybench warm-ups and timed slices,
 * and the child-process workers that let the parent interleave contenders slice by slice.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Bench } from 'tinybench'

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
