/**
 * `flowcache del <key...>`: deletes keys.
 */
import type { Command } from 'commander'
import { addCacheOptions, type CacheCommandOptions } from '../cache.js'
import { ExitCode, type CliIo } from '../io.js'
import { COMMON_EXIT_CODES, helpAfter, printJson, withCache, type OutputOptions } from './common.js'

/** Options of `flowcache del`. */
export type DelCommandOptions = CacheCommandOptions & OutputOptions

/**
 * Deletes `keys` (and the entries that depend on them) and prints how many live entries existed
 * (with `--json`, `{ "deleted": n }`). Deleting a missing key is not an error.
 */
export async function delCommand(
  keys: readonly string[],
  options: DelCommandOptions,
  io: CliIo,
): Promise<ExitCode> {
  return withCache(options, io, async ({ cache }) => {
    const [only] = keys
    const total =
      keys.length === 1 && only !== undefined
        ? Number(await cache.delete(only))
        : await cache.deleteMany(keys)
    if (options.json === true) printJson(io, { deleted: total })
    else io.stdout(`deleted ${total} of ${keys.length} ${keys.length === 1 ? 'key' : 'keys'}\n`)
    return ExitCode.ok
  })
}

/** Adds `del` to the program. */
export function registerDel(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  addCacheOptions(
    program
      .command('del')
      .summary('delete keys')
      .description(
        'Deletes one or more keys, and the entries that depend on them. Prints how many live entries existed; a missing key is not an error.',
      )
      .argument('<key...>', 'the keys, inside --namespace'),
  )
    .option('--json', 'print {"deleted"} (or the error) as JSON')
    .addHelpText(
      'after',
      helpAfter(COMMON_EXIT_CODES, [
        'flowcache del order:42 --store redis://127.0.0.1:6379 --namespace tenant:acme/flow:orders',
        'flowcache del a b c --store sqlite:./.flowcache/cache.db --json',
      ]),
    )
    .action(async (keys: string[], options: DelCommandOptions) => {
      done(await delCommand(keys, options, io))
    })
}
