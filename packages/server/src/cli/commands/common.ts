/**
 * What the data commands share: error reporting (`error E_CODE: message` and exit codes), JSON
 * output of cache values, reading a value argument, and running a body against the command's
 * cache.
 */
import { readFile } from 'node:fs/promises'
import { FlowcacheError, InvalidArgumentError, parseDuration } from '../../flowcache.js'
import {
  cacheForCommand,
  type CacheCommandOptions,
  type CommandAccess,
  type CommandCache,
} from '../cache.js'
import { ExitCode, UsageError, type CliIo } from '../io.js'
import { formatMs } from '../table.js'

/** Options every data command has besides the cache options. */
export interface OutputOptions {
  /** `--json`: print one JSON document on standard output (errors too). */
  json?: boolean
}

/** The code printed for a usage problem found by the CLI itself. */
export const USAGE_CODE = 'E_USAGE'

/** Whether the CLI reports `error` itself (a usage or flowcache error) rather than crashing. */
export function isReportable(error: unknown): error is UsageError | FlowcacheError {
  return error instanceof UsageError || error instanceof FlowcacheError
}

/** The stable code of a reportable error: the flowcache code, or `E_USAGE`. */
export function errorCode(error: UsageError | FlowcacheError): string {
  return error instanceof FlowcacheError ? error.code : USAGE_CODE
}

/**
 * The exit code of a reportable error: 2 (usage) for a CLI usage problem and for an invalid
 * argument the cache rejected (a bad key, TTL or value), 1 (failure) for everything else (the
 * store is unreachable or failed, a stored value cannot be decoded, …).
 */
export function exitCodeOf(error: UsageError | FlowcacheError): ExitCode {
  if (error instanceof UsageError || error instanceof InvalidArgumentError) return ExitCode.usage
  return ExitCode.failure
}

/**
 * Reports `error`: `error E_CODE: message` on standard error, and with `--json` also
 * `{ "error": { "code", "message" } }` on standard output. Returns the exit code to use.
 * Errors that are neither usage nor flowcache errors are rethrown (the CLI prints their stack).
 */
export function reportError(error: unknown, io: CliIo, options: OutputOptions): ExitCode {
  if (!isReportable(error)) throw error
  const code = errorCode(error)
  if (options.json === true) printJson(io, { error: { code, message: error.message } })
  io.stderr(`error ${code}: ${error.message}\n`)
  return exitCodeOf(error)
}

/**
 * JSON text of a cache value. JSON cannot hold every value the cache stores, so: a `bigint` is
 * shown as its decimal digits (a string), a `Map` as an object (string keys) or an array of
 * `[key, value]` pairs, a `Set` as an array, a `Uint8Array` as `{ "base64": … }`, a `Date` as its
 * ISO text; `NaN` and infinities become `null` and `undefined` members are left out, as in
 * `JSON.stringify`.
 */
export function toJsonText(value: unknown, indent?: number): string {
  return JSON.stringify(value, jsonReplacer, indent) ?? 'null'
}

function jsonReplacer(this: unknown, _key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Map) {
    const entries = [...(value as Map<unknown, unknown>).entries()]
    return entries.every(([key]) => typeof key === 'string') ? Object.fromEntries(entries) : entries
  }
  if (value instanceof Set) return [...(value as Set<unknown>)]
  if (value instanceof Uint8Array) return { base64: Buffer.from(value).toString('base64') }
  return value
}

/** Prints `document` as indented JSON and a newline on standard output. */
export function printJson(io: CliIo, document: unknown): void {
  io.stdout(`${toJsonText(document, 2)}\n`)
}

/**
 * Reports a miss of `key` (`{ "key", "hit": false }` with `--json`, else a line on standard
 * error) and returns {@link ExitCode.miss}.
 */
export function reportMiss(io: CliIo, options: OutputOptions, key: string): ExitCode {
  if (options.json === true) printJson(io, { key, hit: false })
  else io.stderr(`miss: no entry for '${key}'\n`)
  return ExitCode.miss
}

/**
 * Reads a value argument: JSON text, `@path` (a JSON file) or `-` (JSON on standard input).
 * Throws {@link UsageError} when the file cannot be read or the text is not JSON. `name` is the
 * argument's name in messages.
 */
export async function readJsonArgument(spec: string, io: CliIo, name: string): Promise<unknown> {
  let text: string
  let source: string
  if (spec === '-') {
    text = await io.readStdin()
    source = 'standard input'
  } else if (spec.startsWith('@')) {
    const path = spec.slice(1)
    try {
      text = await readFile(path, 'utf8')
    } catch (error) {
      throw new UsageError(`${name} ${spec}: cannot read ${path}: ${(error as Error).message}`)
    }
    source = path
  } else {
    text = spec
    source = `the ${name} text`
  }
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    throw new UsageError(
      `${name}: ${source} is not valid JSON (${(error as Error).message}); quote strings, e.g. '"text"'`,
    )
  }
}

/**
 * Opens the command's cache, runs `body` on it and closes it. Errors before or inside `body`
 * are reported with {@link reportError}; returns the exit code of `body` or of the error.
 * Commands that only read pass `access: 'read'`, so their namespace view sets no quota.
 */
export async function withCache(
  options: CacheCommandOptions & OutputOptions,
  io: CliIo,
  body: (opened: CommandCache) => Promise<ExitCode>,
  access: CommandAccess = 'write',
): Promise<ExitCode> {
  let opened: CommandCache
  try {
    opened = await cacheForCommand(options, {}, access)
  } catch (error) {
    return reportError(error, io, options)
  }
  try {
    return await body(opened)
  } catch (error) {
    return reportError(error, io, options)
  } finally {
    await opened.close()
  }
}

/** The help text after the options: exit codes and examples, one example a line. */
export function helpAfter(exitCodes: string, examples: readonly string[]): string {
  return `\nExit codes: ${exitCodes}.\n\nExamples:\n${examples.map((line) => `  ${line}`).join('\n')}`
}

/** The exit codes of most data commands, for help texts. */
export const COMMON_EXIT_CODES =
  '0 ok, 1 the store failed or cannot be reached, 2 bad usage (option, key, TTL or value)'

/**
 * Parses a `--ttl` value: whole milliseconds (`5000`) or a duration string (`30s`, `1h30m`).
 * Throws `E_INVALID_ARGUMENT` for anything else.
 */
export function parseTtlOption(text: string, name = '--ttl'): number {
  return /^\d+$/.test(text.trim()) ? parseDuration(Number(text), name) : parseDuration(text, name)
}

/** A latency for people: three decimals below 1 ms (where in-process calls fall), else `formatMs`. */
export function formatLatency(ms: number): string {
  return ms < 1 ? `${ms.toFixed(3)} ms` : formatMs(ms)
}
