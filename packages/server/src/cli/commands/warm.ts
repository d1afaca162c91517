/**
 * `flowcache warm <file.jsonl|->`: writes the entries of a JSON Lines file into a namespace in
 * batches, with a progress bar, and reports every bad line by its number.
 */
import { readFile } from 'node:fs/promises'
import cliProgress from 'cli-progress'
import type { Command } from 'commander'
import {
  DEFAULT_LIMITS,
  InvalidArgumentError,
  parseDuration,
  type Cache,
  type SetManyItem,
} from '../../flowcache.js'
import { addCacheOptions, type CacheCommandOptions } from '../cache.js'
import { ExitCode, UsageError, type CliIo } from '../io.js'
import { formatMs } from '../table.js'
import {
  errorCode,
  helpAfter,
  isReportable,
  printJson,
  reportError,
  withCache,
  type OutputOptions,
} from './common.js'

/** Lines written per `setMany` call when `--batch-size` is not given. */
export const DEFAULT_WARM_BATCH = 500
/** Bad lines listed at most in the report (all are counted). */
export const MAX_REPORTED_FAILURES = 1000

/** How `warm` shows its progress: a bar (a terminal), a line per tenth (a pipe), or not at all. */
export type ProgressMode = 'bar' | 'lines' | 'none'

/** Options of `flowcache warm`. */
export interface WarmCommandOptions extends CacheCommandOptions, OutputOptions {
  /** `--batch-size`: lines per `setMany` call, 1 to the cache's `maxBatchSize`. @default 500 */
  batchSize?: string
  /** `--no-progress` sets this to `false`. @default true */
  progress?: boolean
  /**
   * How to show progress; the command line picks `bar` when standard error is a terminal,
   * `lines` otherwise, `none` with `--json` or `--no-progress`.
   */
  progressMode?: ProgressMode
}

/** One line that was not written. */
export interface WarmLineFailure {
  /** 1-based line number in the input. */
  line: number
  /** `E_WARM_LINE` for a line that is not a valid entry, else the flowcache error code. */
  code: string
  message: string
}

/** What `warm` reports (`--json` prints it). */
export interface WarmReport {
  /** Entry lines in the input (blank lines are not counted). */
  total: number
  /** Entries written. */
  written: number
  /** Lines not written. */
  failed: number
  /** The first {@link MAX_REPORTED_FAILURES} failures, in line order. */
  failures: WarmLineFailure[]
  /** Whether the run stopped early because the store failed; the rest was not written. */
  stopped: boolean
  /** Wall time, in ms. */
  ms: number
}

/** One parsed input line, ready for `setMany`. */
interface WarmLine {
  line: number
  item: SetManyItem
}

/** Code of a line that is not a valid `{ key, value, ttl? }` object. */
export const BAD_LINE_CODE = 'E_WARM_LINE'

const ENTRY_FIELDS = new Set(['key', 'value', 'ttl'])

/**
 * Parses one JSON Lines entry: `{ "key": string, "value": any JSON, "ttl"?: ms | "30s" }`.
 * Returns the item, or the reason it is not one.
 */
export function parseWarmLine(text: string): SetManyItem | string {
  let entry: unknown
  try {
    entry = JSON.parse(text)
  } catch (error) {
    return `not valid JSON (${(error as Error).message})`
  }
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    return 'must be a JSON object {"key": ..., "value": ..., "ttl"?: ...}'
  }
  const record = entry as Record<string, unknown>
  const unknown = Object.keys(record).filter((field) => !ENTRY_FIELDS.has(field))
  if (unknown.length > 0) {
    return `has unknown field ${unknown.map((field) => JSON.stringify(field)).join(', ')}; an entry has only key, value and ttl`
  }
  if (typeof record.key !== 'string' || record.key === '') {
    return '"key" must be a non-empty string'
  }
  if (!('value' in record)) return 'has no "value"; use "value": null to store null'
  if (record.ttl === undefined || record.ttl === null)
    return { key: record.key, value: record.value }
  try {
    return { key: record.key, value: record.value, ttl: parseDuration(record.ttl, '"ttl"') }
  } catch (error) {
    return (error as Error).message
  }
}

/** Shows progress; see {@link ProgressMode}. */
interface Progress {
  update(done: number): void
  stop(): void
}

function progressFor(mode: ProgressMode, total: number, io: CliIo): Progress {
  if (mode === 'bar') {
    const bar = new cliProgress.SingleBar(
      {
        format: 'warm [{bar}] {percentage}% | {value}/{total} lines | {eta_formatted} left',
        stream: process.stderr,
        hideCursor: true,
        clearOnComplete: true,
      },
      cliProgress.Presets.shades_classic,
    )
    bar.start(total, 0)
    return { update: (done) => bar.update(done), stop: () => bar.stop() }
  }
  if (mode === 'lines') {
    let shownTenth = 0
    return {
      update: (done) => {
        const tenth = total === 0 ? 10 : Math.floor((done * 10) / total)
        if (tenth <= shownTenth) return
        shownTenth = tenth
        io.stderr(`warm: ${done}/${total} lines (${tenth * 10}%)\n`)
      },
      stop: () => undefined,
    }
  }
  return { update: () => undefined, stop: () => undefined }
}

/** Reads the input: a file, or standard input for `-`. */
async function readInput(spec: string, io: CliIo): Promise<string> {
  if (spec === '-') return io.readStdin()
  try {
    return await readFile(spec, 'utf8')
  } catch (error) {
    throw new UsageError(`cannot read ${spec}: ${(error as Error).message}`)
  }
}

/** Parses `--batch-size`: a whole number from 1 to `max`. */
function parseBatchSize(text: string | undefined, max: number): number {
  if (text === undefined) return Math.min(DEFAULT_WARM_BATCH, max)
  const size = Number(text)
  if (!/^\d+$/.test(text) || size < 1 || size > max) {
    throw new UsageError(`--batch-size must be a whole number from 1 to ${max}; got ${text}`)
  }
  return size
}

/**
 * Writes `lines` into `cache` in batches of `batchSize` with `setMany`. A batch the cache
 * rejects as invalid (a value it cannot store, a key too long, …: nothing of it is written) is
 * written again entry by entry, so only the bad entries fail. A store failure stops the run.
 */
export async function writeBatches(
  cache: Cache,
  lines: readonly WarmLine[],
  batchSize: number,
  onBatch: (written: number, failures: readonly WarmLineFailure[]) => void,
): Promise<{ stopped: boolean }> {
  for (let start = 0; start < lines.length; start += batchSize) {
    const batch = lines.slice(start, start + batchSize)
    try {
      await cache.setMany(batch.map((line) => line.item))
      onBatch(batch.length, [])
      continue
    } catch (error) {
      if (!(error instanceof InvalidArgumentError)) {
        const failure = failureOf(error)
        onBatch(
          0,
          lines.slice(start).map((line) => ({ line: line.line, ...failure })),
        )
        return { stopped: true }
      }
    }
    let written = 0
    const failures: WarmLineFailure[] = []
    for (const line of batch) {
      try {
        await cache.set(line.item.key, line.item.value, line.item.ttl)
        written++
      } catch (error) {
        if (!(error instanceof InvalidArgumentError)) throw error
        failures.push({ line: line.line, ...failureOf(error) })
      }
    }
    onBatch(written, failures)
  }
  return { stopped: false }
}

function failureOf(error: unknown): { code: string; message: string } {
  if (!isReportable(error)) throw error
  return { code: errorCode(error), message: error.message }
}

/** The readable summary of a run. */
export function formatWarmReport(report: WarmReport, namespace: string): string {
  const where = namespace === '' ? 'the root namespace' : namespace
  const lines = [
    `warmed ${report.written} of ${report.total} entries into ${where} in ${formatMs(report.ms)}${
      report.failed > 0 ? `; ${report.failed} failed` : ''
    }`,
  ]
  if (report.stopped)
    lines.push('stopped early: the store failed; the remaining lines were not written')
  return `${lines.join('\n')}\n`
}

/**
 * Warms the namespace from a JSON Lines input (`-` = standard input): one entry
 * `{ "key", "value", "ttl"? }` a line, blank lines skipped. Bad lines are reported with their
 * line numbers and the others are still written. Returns 0 when every line was written, 1
 * otherwise, 2 when the input cannot be read.
 */
export async function warmCommand(
  input: string,
  options: WarmCommandOptions,
  io: CliIo,
): Promise<ExitCode> {
  let text: string
  try {
    text = await readInput(input, io)
  } catch (error) {
    return reportError(error, io, options)
  }
  const started = performance.now()
  const failures: WarmLineFailure[] = []
  const lines: WarmLine[] = []
  text.split('\n').forEach((raw, index) => {
    if (raw.trim() === '') return
    const parsed = parseWarmLine(raw)
    if (typeof parsed === 'string') {
      failures.push({ line: index + 1, code: BAD_LINE_CODE, message: parsed })
    } else {
      lines.push({ line: index + 1, item: parsed })
    }
  })
  return withCache(options, io, async ({ cache }) => {
    const batchSize = parseBatchSize(options.batchSize, DEFAULT_LIMITS.maxBatchSize)
    const total = lines.length + failures.length
    const mode = options.json === true || options.progress === false ? 'none' : options.progressMode
    const progress = progressFor(mode ?? 'lines', total, io)
    let done = failures.length
    let written = 0
    progress.update(done)
    let stopped = false
    try {
      ;({ stopped } = await writeBatches(cache, lines, batchSize, (count, batchFailures) => {
        written += count
        failures.push(...batchFailures)
        done += count + batchFailures.length
        progress.update(done)
      }))
    } finally {
      progress.stop()
    }
    failures.sort((a, b) => a.line - b.line)
    const report: WarmReport = {
      total,
      written,
      failed: failures.length,
      failures: failures.slice(0, MAX_REPORTED_FAILURES),
      stopped,
      ms: Math.round((performance.now() - started) * 10) / 10,
    }
    if (options.json === true) {
      printJson(io, report)
    } else {
      io.stdout(formatWarmReport(report, options.namespace ?? ''))
      for (const failure of report.failures) {
        io.stderr(`line ${failure.line}: ${failure.code}: ${failure.message}\n`)
      }
      if (failures.length > report.failures.length) {
        io.stderr(`(${failures.length - report.failures.length} more failed lines not listed)\n`)
      }
    }
    return report.failed === 0 ? ExitCode.ok : ExitCode.failure
  })
}

/** Adds `warm` to the program. */
export function registerWarm(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  addCacheOptions(
    program
      .command('warm')
      .summary('load entries from a JSON Lines file')
      .description(
        'Writes the entries of a JSON Lines file (or standard input, -) into --namespace, in batches: one {"key": "...", "value": <any JSON>, "ttl": "1h"} object a line, ttl optional (ms or a duration), blank lines skipped. Bad lines are reported with their line numbers; the other lines are still written. Shows a progress bar on a terminal.',
      )
      .argument('<file.jsonl|->', 'the entries; - reads standard input'),
  )
    .option(
      '-b, --batch-size <n>',
      `entries per write, 1 to the batch limit (default: ${DEFAULT_WARM_BATCH})`,
    )
    .option('--no-progress', 'do not show progress')
    .option('--json', 'print the summary {"total","written","failed","failures",...} as JSON')
    .addHelpText(
      'after',
      helpAfter(
        '0 every line written, 1 a line failed or the store failed, 2 bad usage or unreadable input',
        [
          'flowcache warm products.jsonl --store redis://127.0.0.1:6379 --namespace tenant:acme/flow:catalog',
          'printf \'%s\\n\' \'{"key":"a","value":1,"ttl":"1h"}\' | flowcache warm - --store sqlite:./cache.db --json',
        ],
      ),
    )
    .action(async (input: string, options: WarmCommandOptions) => {
      const progressMode: ProgressMode = process.stderr.isTTY ? 'bar' : 'lines'
      done(await warmCommand(input, { ...options, progressMode }, io))
    })
}
