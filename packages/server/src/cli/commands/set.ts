/**
 * `flowcache set <key> <json|@file|->`: stores a JSON value under a key, with an optional TTL.
 */
import type { Command } from 'commander'
import { addCacheOptions, type CacheCommandOptions } from '../cache.js'
import { ExitCode, type CliIo } from '../io.js'
import {
  COMMON_EXIT_CODES,
  helpAfter,
  printJson,
  parseTtlOption,
  readJsonArgument,
  reportError,
  withCache,
  type OutputOptions,
} from './common.js'

/** Options of `flowcache set`. */
export interface SetCommandOptions extends CacheCommandOptions, OutputOptions {
  /** `--ttl`: a duration such as `30s`, `1h30m` or ms; default: no expiry (or the namespace's). */
  ttl?: string
}

/**
 * Stores the JSON value `valueSpec` (JSON text, `@file` or `-` for standard input) under `key`
 * and prints `ok` (with `--json`, `{ "key", "ttlMs" }`). The TTL and the value are checked
 * before the store is opened.
 */
export async function setCommand(
  key: string,
  valueSpec: string,
  options: SetCommandOptions,
  io: CliIo,
): Promise<ExitCode> {
  let ttlMs: number | undefined
  let value: unknown
  try {
    ttlMs = options.ttl === undefined ? undefined : parseTtlOption(options.ttl)
    value = await readJsonArgument(valueSpec, io, '<value>')
  } catch (error) {
    return reportError(error, io, options)
  }
  return withCache(options, io, async ({ cache }) => {
    await cache.set(key, value, ttlMs)
    if (options.json === true) printJson(io, { key, ttlMs: ttlMs ?? null })
    else io.stdout(ttlMs === undefined ? 'ok\n' : `ok (expires in ${ttlMs} ms)\n`)
    return ExitCode.ok
  })
}

/** Adds `set` to the program. */
export function registerSet(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  addCacheOptions(
    program
      .command('set')
      .summary('store a JSON value under a key')
      .description(
        'Stores a JSON value under <key>, replacing any entry. The value is JSON text, @file to read a JSON file, or - to read JSON from standard input; a string must be quoted: \'"text"\'.',
      )
      .argument('<key>', 'the key, inside --namespace')
      .argument('<json|@file|->', 'the value'),
  )
    .option('-t, --ttl <duration>', 'time to live: 30s, 5m, 1h30m or ms (default: no expiry)')
    .option('--json', 'print {"key","ttlMs"} (or the error) as JSON')
    .addHelpText(
      'after',
      helpAfter(COMMON_EXIT_CODES, [
        'flowcache set order:42 \'{"status":"paid"}\' --ttl 1h --store redis://127.0.0.1:6379',
        'flowcache set settings @settings.json --store sqlite:./.flowcache/cache.db',
        "echo '[1,2,3]' | flowcache set list - --namespace tenant:acme --store nats://127.0.0.1:4222",
      ]),
    )
    .action(async (key: string, valueSpec: string, options: SetCommandOptions) => {
      done(await setCommand(key, valueSpec, options, io))
    })
}
