/**
 * Per-run limits of the script sandbox: their defaults and the checks applied before a run.
 */
import { InvalidArgumentError, parseDuration, type Duration } from '../flowcache.js'

/** Limits of one script run. Every field is optional where limits are given; see the defaults. */
export interface RunLimits {
  /**
   * CPU time the run may use inside the isolate, as ms or a duration string. Counts the script's
   * own work, not the time it waits for `ctx` calls. @default '50ms'
   */
  cpuTime: Duration
  /** Time from start to result, waits included, as ms or a duration string. @default '2s' */
  wallTime: Duration
  /** Largest result, in bytes of its JSON (UTF-8). @default 1 MiB */
  maxResultBytes: number
  /** Largest total of log text a run keeps, in UTF-8 bytes; later lines are dropped. @default 64 KiB */
  maxLogBytes: number
  /** Most log lines a run keeps; later lines are dropped. @default 100 */
  maxLogLines: number
  /** Most `ctx` calls (cache, locks, rate limits) a run may make; one more stops it. @default 1000 */
  maxCalls: number
  /** Largest arguments of one `ctx` call, in bytes of their JSON (UTF-8). @default 2 MiB */
  maxCallBytes: number
}

/** The limits a run gets when neither the sandbox nor the run says otherwise. */
export const DEFAULT_RUN_LIMITS: Readonly<RunLimits> = Object.freeze({
  cpuTime: '50ms',
  wallTime: '2s',
  maxResultBytes: 1024 * 1024,
  maxLogBytes: 64 * 1024,
  maxLogLines: 100,
  maxCalls: 1000,
  maxCallBytes: 2 * 1024 * 1024,
})

/** {@link RunLimits} with durations in ms, as the sandbox uses them. */
export interface ResolvedRunLimits {
  cpuMs: number
  wallMs: number
  maxResultBytes: number
  maxLogBytes: number
  maxLogLines: number
  maxCalls: number
  maxCallBytes: number
}

/** Largest CPU or wall budget accepted: a script run is not a batch job. */
const MAX_BUDGET_MS = 10 * 60_000

function count(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw InvalidArgumentError.format(
      `limits.${name}`,
      `must be a positive integer; got ${String(value)}`,
    )
  }
  return value
}

function budget(value: unknown, name: string): number {
  const ms = parseDuration(value, `limits.${name}`)
  if (ms > MAX_BUDGET_MS) {
    throw InvalidArgumentError.format(`limits.${name}`, `must be at most 10m; got ${ms} ms`)
  }
  return ms
}

/**
 * Merges `overrides` over `base` and checks every field: durations must parse (at most 10
 * minutes), byte and count limits must be positive integers. Throws `InvalidArgumentError`
 * naming the bad field.
 */
export function resolveRunLimits(
  base: Readonly<RunLimits>,
  overrides: Partial<RunLimits> | undefined,
): ResolvedRunLimits {
  if (overrides !== undefined && (typeof overrides !== 'object' || overrides === null)) {
    throw InvalidArgumentError.format('limits', 'must be an object')
  }
  const merged: RunLimits = { ...base, ...overrides }
  return {
    cpuMs: budget(merged.cpuTime, 'cpuTime'),
    wallMs: budget(merged.wallTime, 'wallTime'),
    maxResultBytes: count(merged.maxResultBytes, 'maxResultBytes'),
    maxLogBytes: count(merged.maxLogBytes, 'maxLogBytes'),
    maxLogLines: count(merged.maxLogLines, 'maxLogLines'),
    maxCalls: count(merged.maxCalls, 'maxCalls'),
    maxCallBytes: count(merged.maxCallBytes, 'maxCallBytes'),
  }
}

/**
 * Merges `overrides` over the defaults and checks them, like {@link resolveRunLimits}, but keeps
 * the given form, so the result can serve as the base of later runs.
 */
export function checkRunLimits(overrides: Partial<RunLimits> | undefined): RunLimits {
  const merged: RunLimits = { ...DEFAULT_RUN_LIMITS, ...overrides }
  resolveRunLimits(merged, undefined)
  return merged
}
