/**
 * `flowcache bench`: the headline benchmark against a store: get and set throughput and
 * latency at 1 and 32 calls in flight, with every read checked against the last write.
 */
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { Command } from 'commander'
import { DEFAULT_LIMITS, type Cache } from '../../flowcache.js'
import { addCacheOptions, type CacheCommandOptions } from '../cache.js'
import { ExitCode, UsageError, type CliIo } from '../io.js'
import { table } from '../table.js'
import {
  COMMON_EXIT_CODES,
  errorCode,
  formatLatency,
  helpAfter,
  isReportable,
  printJson,
  reportError,
  withCache,
  type OutputOptions,
} from './common.js'

/** Calls in flight of the runs, in order. */
export const BENCH_CONCURRENCY = [1, 32] as const
/** Latency samples kept per run (a uniform sample of every call). */
const RESERVOIR_SIZE = 100_000

/** Options of `flowcache bench`. */
export interface BenchCommandOptions extends CacheCommandOptions, OutputOptions {
  /** `--seconds`: length of each of the four runs, 0.1 to 300. @default 2 */
  seconds?: string
  /** `--keys`: distinct keys written and read, 32 to 1,000,000. @default 1000 */
  keys?: string
  /** `--value-bytes`: size of each value's payload string, 1 to 1,000,000. @default 256 */
  valueBytes?: string
}

/** The result of one run: one operation at one concurrency. */
export interface BenchRun {
  op: 'get' | 'set'
  /** Calls in flight. */
  concurrency: number
  /** Calls completed. */
  ops: number
  /** Calls that threw (a store fault). */
  errors: number
  opsPerSec: number
  /** Median latency of a call, ms. */
  p50Ms: number
  /** 99th-percentile latency of a call, ms. */
  p99Ms: number
}

/** What `bench --json` prints. */
export interface BenchReport {
  store: string
  keys: number
  valueBytes: number
  seconds: number
  runs: BenchRun[]
  /** Every read (and a final read of every key) compared with the last write of its key. */
  readYourWrites: { checked: number; mismatches: number }
  /** Entries removed afterwards (the benchmark's namespace is cleared). */
  cleanedUp: number
  /** The first error a call threw, when any did. */
  firstError?: { code: string; message: string }
}

/** A benchmark value: which write it was, and a payload of the requested size. */
interface BenchValue {
  seq: number
  payload: string
}

/** Parses a numeric option within `[min, max]`; `integer` requires a whole number. */
export function parseNumberOption(
  text: string | undefined,
  name: string,
  fallback: number,
  min: number,
  max: number,
  integer: boolean,
): number {
  if (text === undefined) return fallback
  const value = Number(text)
  if (
    text.trim() === '' ||
    !Number.isFinite(value) ||
    value < min ||
    value > max ||
    (integer && !Number.isInteger(value))
  ) {
    throw new UsageError(
      `${name} must be a ${integer ? 'whole ' : ''}number from ${min} to ${max}; got ${text}`,
    )
  }
  return value
}

/** A uniform sample of at most `size` numbers out of a stream (reservoir sampling). */
class Reservoir {
  readonly #samples: number[] = []
  #seen = 0

  constructor(readonly size: number) {}

  add(value: number): void {
    this.#seen++
    if (this.#samples.length < this.size) {
      this.#samples.push(value)
      return
    }
    const slot = Math.floor(Math.random() * this.#seen)
    if (slot < this.size) this.#samples[slot] = value
  }

  /** The `q` quantile (0..1) of the sample, 0 when empty. */
  quantiles(qs: readonly number[]): number[] {
    const sorted = [...this.#samples].sort((a, b) => a - b)
    return qs.map((q) =>
      sorted.length === 0
        ? 0
        : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0),
    )
  }
}

/** State shared by the runs of one benchmark. */
interface BenchState {
  cache: Cache
  keys: string[]
  /** `expected[i]` = `seq` of the last write of `keys[i]`. */
  expected: number[]
  payload: string
  nextSeq: number
  checked: number
  mismatches: number
  firstError: unknown
}

/**
 * Runs `op` with `concurrency` workers for `seconds`. Worker `w` only touches the keys whose
 * index is `w` modulo `concurrency`, one call at a time, so the last write of every key is
 * known and every read can be checked against it.
 */
async function runPhase(
  state: BenchState,
  op: 'get' | 'set',
  concurrency: number,
  seconds: number,
): Promise<BenchRun> {
  const latencies = new Reservoir(RESERVOIR_SIZE)
  let ops = 0
  let errors = 0
  const started = performance.now()
  const deadline = started + seconds * 1000
  const worker = async (w: number): Promise<void> => {
    let index = w
    while (performance.now() < deadline) {
      const key = state.keys[index] ?? ''
      const t0 = performance.now()
      try {
        if (op === 'set') {
          const seq = state.nextSeq++
          await state.cache.set(key, { seq, payload: state.payload } satisfies BenchValue)
          state.expected[index] = seq
        } else {
          const value = await state.cache.get<BenchValue>(key)
          state.checked++
          if (value?.seq !== state.expected[index]) state.mismatches++
        }
        latencies.add(performance.now() - t0)
        ops++
      } catch (error) {
        if (!isReportable(error)) throw error
        errors++
        state.firstError ??= error
        // A failing store answers fast: do not spin on it.
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      index += concurrency
      if (index >= state.keys.length) index = w
    }
  }
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)))
  const elapsed = (performance.now() - started) / 1000
  const [p50 = 0, p99 = 0] = latencies.quantiles([0.5, 0.99])
  return {
    op,
    concurrency,
    ops,
    errors,
    opsPerSec: Math.round(ops / elapsed),
    p50Ms: Math.round(p50 * 1000) / 1000,
    p99Ms: Math.round(p99 * 1000) / 1000,
  }
}

/** Writes every key once, in batches, so that every read of the runs is a hit. */
async function prefill(state: BenchState): Promise<void> {
  const batch = DEFAULT_LIMITS.maxBatchSize
  for (let start = 0; start < state.keys.length; start += batch) {
    const items = state.keys.slice(start, start + batch).map((key, offset) => {
      const seq = state.nextSeq++
      state.expected[start + offset] = seq
      return { key, value: { seq, payload: state.payload } satisfies BenchValue }
    })
    await state.cache.setMany(items)
  }
}

/** Reads every key once more and compares it with its last write. */
async function verifyAll(state: BenchState): Promise<void> {
  const batch = DEFAULT_LIMITS.maxBatchSize
  for (let start = 0; start < state.keys.length; start += batch) {
    const values = await state.cache.getMany<BenchValue>(state.keys.slice(start, start + batch))
    values.forEach((value, offset) => {
      state.checked++
      if (value?.seq !== state.expected[start + offset]) state.mismatches++
    })
  }
}

/** The readable report. */
export function formatBench(report: BenchReport): string {
  const lines = [
    `flowcache bench on ${report.store}: ${report.keys} keys, ${report.valueBytes}-byte values, ${report.seconds} s per run`,
    '',
    table(
      ['op', 'in flight', 'ops/s', 'p50', 'p99', 'errors'],
      report.runs.map((run) => [
        run.op,
        String(run.concurrency),
        run.opsPerSec.toLocaleString('en-US'),
        formatLatency(run.p50Ms),
        formatLatency(run.p99Ms),
        String(run.errors),
      ]),
      [false, true, true, true, true, true],
    ),
    '',
    `read-your-writes: ${report.readYourWrites.checked} reads checked, ${report.readYourWrites.mismatches} mismatches`,
    `cleaned up: ${report.cleanedUp} entries`,
  ]
  if (report.firstError !== undefined) {
    lines.push(`first error: ${report.firstError.code}: ${report.firstError.message}`)
  }
  return `${lines.join('\n')}\n`
}

/**
 * Benchmarks the store: fills a private namespace (`bench-<random>` inside `--namespace`) with
 * `--keys` entries, then runs set and get at 1 and at 32 calls in flight for `--seconds` each,
 * checks every read against the last write of its key, and clears the namespace. Returns 1 when
 * a call failed or a read did not see the last write.
 */
export async function benchCommand(options: BenchCommandOptions, io: CliIo): Promise<ExitCode> {
  let seconds: number
  let keyCount: number
  let valueBytes: number
  try {
    seconds = parseNumberOption(options.seconds, '--seconds', 2, 0.1, 300, false)
    keyCount = parseNumberOption(options.keys, '--keys', 1000, 32, 1_000_000, true)
    valueBytes = parseNumberOption(options.valueBytes, '--value-bytes', 256, 1, 1_000_000, true)
  } catch (error) {
    return reportError(error, io, options)
  }
  return withCache(options, io, async ({ cache, root }) => {
    const space = cache.namespace(`bench-${randomBytes(6).toString('hex')}`)
    const state: BenchState = {
      cache: space,
      keys: Array.from({ length: keyCount }, (_, i) => `key:${i}`),
      expected: [],
      payload: 'x'.repeat(valueBytes),
      nextSeq: 1,
      checked: 0,
      mismatches: 0,
      firstError: undefined,
    }
    const runs: BenchRun[] = []
    let cleanedUp = 0
    try {
      await prefill(state)
      for (const concurrency of BENCH_CONCURRENCY) {
        for (const op of ['set', 'get'] as const) {
          if (options.json !== true) io.stderr(`bench: ${op} at ${concurrency} in flight…\n`)
          runs.push(await runPhase(state, op, concurrency, seconds))
        }
      }
      await verifyAll(state)
    } finally {
      cleanedUp = await space.clear()
    }
    const first = state.firstError
    const report: BenchReport = {
      store: root.store.name,
      keys: keyCount,
      valueBytes,
      seconds,
      runs,
      readYourWrites: { checked: state.checked, mismatches: state.mismatches },
      cleanedUp,
      ...(first !== undefined && isReportable(first)
        ? { firstError: { code: errorCode(first), message: first.message } }
        : {}),
    }
    if (options.json === true) printJson(io, report)
    else io.stdout(formatBench(report))
    const failed = state.mismatches > 0 || runs.some((run) => run.errors > 0)
    return failed ? ExitCode.failure : ExitCode.ok
  })
}

/** Adds `bench` to the program. */
export function registerBench(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  addCacheOptions(
    program
      .command('bench')
      .summary('benchmark get and set against the store')
      .description(
        'Measures get and set against the store: calls per second and p50/p99 latency with 1 and with 32 calls in flight, --seconds each. Every read is checked against the last write of its key (read-your-writes). Works in a private namespace inside --namespace and deletes its keys afterwards.',
      ),
  )
    .option('--seconds <s>', 'length of each of the 4 runs, 0.1 to 300 (default: 2)')
    .option('--keys <n>', 'distinct keys, 32 to 1000000 (default: 1000)')
    .option('--value-bytes <n>', 'payload size of each value, 1 to 1000000 (default: 256)')
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      helpAfter(`${COMMON_EXIT_CODES}; 1 also when a read missed the last write`, [
        'flowcache bench --store redis://127.0.0.1:6379',
        'flowcache bench --store sqlite:./bench.db --seconds 5 --keys 10000 --json',
      ]),
    )
    .action(async (options: BenchCommandOptions) => {
      done(await benchCommand(options, io))
    })
}
