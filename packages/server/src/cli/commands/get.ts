/**
 * `flowcache get <key>`: prints the value of a key as JSON; exit 3 when there is no live entry.
 */
import type { Command } from 'commander'
import { addCacheOptions, type CacheCommandOptions } from '../cache.js'
import { ExitCode, type CliIo } from '../io.js'
import {
  COMMON_EXIT_CODES,
  helpAfter,
  printJson,
  reportMiss,
  toJsonText,
  withCache,
  type OutputOptions,
} from './common.js'

/** Options of `flowcache get`. */
export type GetCommandOptions = CacheCommandOptions & OutputOptions

/**
 * Reads `key`: prints its value as indented JSON (with `--json`,
 * `{ "key", "hit": true, "value" }`) and returns 0, or on a miss prints nothing on standard
 * output (with `--json`, `{ "key", "hit": false }`) and returns 3.
 */
export async function getCommand(
  key: string,
  options: GetCommandOptions,
  io: CliIo,
): Promise<ExitCode> {
  return withCache(
    options,
    io,
    async ({ cache }) => {
      const entry = await cache.entry(key)
      if (entry === undefined) {
        return reportMiss(io, options, key)
      }
      if (options.json === true) printJson(io, { key, hit: true, value: entry.value })
      else io.stdout(`${toJsonText(entry.value, 2)}\n`)
      return ExitCode.ok
    },
    'read',
  )
}

/** Adds `get` to the program. */
export function registerGet(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  addCacheOptions(
    program
      .command('get')
      .summary('print the value of a key as JSON')
      .description(
        'Prints the value stored under <key> as JSON. A miss prints nothing on standard output and exits 3.',
      )
      .argument('<key>', 'the key, inside --namespace'),
  )
    .option('--json', 'print {"key","hit","value"} (or the error) as JSON')
    .addHelpText(
      'after',
      helpAfter(`${COMMON_EXIT_CODES}, 3 miss (no live entry)`, [
        'flowcache get order:42 --store redis://127.0.0.1:6379 --namespace tenant:acme/flow:orders',
        'flowcache get settings --store sqlite:./.flowcache/cache.db --json',
      ]),
    )
    .action(async (key: string, options: GetCommandOptions) => {
      done(await getCommand(key, options, io))
    })
}
