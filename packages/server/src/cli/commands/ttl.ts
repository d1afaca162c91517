/**
 * `flowcache ttl <key>`: prints how long a key has left to live; exit 3 when there is no live entry.
 */
import type { Command } from 'commander'
import { formatDuration } from '../../flowcache.js'
import { addCacheOptions, type CacheCommandOptions } from '../cache.js'
import { ExitCode, type CliIo } from '../io.js'
import {
  COMMON_EXIT_CODES,
  helpAfter,
  printJson,
  reportMiss,
  withCache,
  type OutputOptions,
} from './common.js'

/** Options of `flowcache ttl`. */
export type TtlCommandOptions = CacheCommandOptions & OutputOptions

/**
 * Prints the remaining time to live of `key`: `<ms> ms (<duration>)`, or `never expires` (with
 * `--json`, `{ "key", "hit": true, "ttlMs": number | null }`) and returns 0; on a miss, prints
 * nothing on standard output (with `--json`, `{ "key", "hit": false }`) and returns 3.
 */
export async function ttlCommand(
  key: string,
  options: TtlCommandOptions,
  io: CliIo,
): Promise<ExitCode> {
  return withCache(
    options,
    io,
    async ({ cache }) => {
      const ttlMs = await cache.ttl(key)
      if (ttlMs === undefined) {
        return reportMiss(io, options, key)
      }
      if (options.json === true) printJson(io, { key, hit: true, ttlMs })
      else
        io.stdout(ttlMs === null ? 'never expires\n' : `${ttlMs} ms (${formatDuration(ttlMs)})\n`)
      return ExitCode.ok
    },
    'read',
  )
}

/** Adds `ttl` to the program. */
export function registerTtl(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  addCacheOptions(
    program
      .command('ttl')
      .summary('print how long a key has left to live')
      .description(
        'Prints the remaining time to live of <key> in milliseconds, or "never expires". A miss prints nothing on standard output and exits 3.',
      )
      .argument('<key>', 'the key, inside --namespace'),
  )
    .option('--json', 'print {"key","hit","ttlMs"} (or the error) as JSON; ttlMs null = no expiry')
    .addHelpText(
      'after',
      helpAfter(`${COMMON_EXIT_CODES}, 3 miss (no live entry)`, [
        'flowcache ttl session:9 --store redis://127.0.0.1:6379',
        'flowcache ttl order:42 --namespace tenant:acme/flow:orders --store sqlite:./cache.db --json',
      ]),
    )
    .action(async (key: string, options: TtlCommandOptions) => {
      done(await ttlCommand(key, options, io))
    })
}
