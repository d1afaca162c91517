/**
 * `flowcache keys [prefix]`: lists the keys of a namespace.
 */
import type { Command } from 'commander'
import { addCacheOptions, type CacheCommandOptions } from '../cache.js'
import { ExitCode, UsageError, type CliIo } from '../io.js'
import {
  COMMON_EXIT_CODES,
  helpAfter,
  printJson,
  reportError,
  withCache,
  type OutputOptions,
} from './common.js'

/** Most keys one listing returns (the cache's `listKeys` limit). */
export const MAX_KEYS_LIMIT = 100_000
/** Keys listed when `--limit` is not given. */
export const DEFAULT_KEYS_LIMIT = 1000

/** Options of `flowcache keys`. */
export interface KeysCommandOptions extends CacheCommandOptions, OutputOptions {
  /** `--limit`: list at most this many keys, 1 to 100,000. @default 1000 */
  limit?: string
}

/** Parses `--limit`: a whole number from 1 to {@link MAX_KEYS_LIMIT}. */
export function parseLimit(text: string | undefined): number {
  if (text === undefined) return DEFAULT_KEYS_LIMIT
  const limit = Number(text)
  if (!/^\d+$/.test(text) || limit < 1 || limit > MAX_KEYS_LIMIT) {
    throw new UsageError(`--limit must be a whole number from 1 to ${MAX_KEYS_LIMIT}; got ${text}`)
  }
  return limit
}

/**
 * Lists the keys of the namespace that start with `prefix`, sorted, one a line (with `--json`,
 * `{ "keys": [...], "truncated" }`). Keys of child namespaces are not listed. When more than
 * `--limit` keys match, the listing is cut and says so (`truncated`); which keys it keeps is up
 * to the store.
 */
export async function keysCommand(
  prefix: string | undefined,
  options: KeysCommandOptions,
  io: CliIo,
): Promise<ExitCode> {
  let limit: number
  try {
    limit = parseLimit(options.limit)
  } catch (error) {
    return reportError(error, io, options)
  }
  return withCache(
    options,
    io,
    async ({ cache }) => {
      // One more than asked, to tell a cut listing from one that is exactly full.
      const found = await cache.listKeys(prefix ?? '', {
        limit: Math.min(limit + 1, MAX_KEYS_LIMIT),
      })
      const truncated = found.length > limit
      const keys = truncated ? found.slice(0, limit) : found
      if (options.json === true) {
        printJson(io, { keys, truncated })
      } else {
        if (keys.length > 0) io.stdout(`${keys.join('\n')}\n`)
        if (truncated) io.stderr(`(listing cut at --limit ${limit}; more keys match)\n`)
      }
      return ExitCode.ok
    },
    'read',
  )
}

/** Adds `keys` to the program. */
export function registerKeys(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  addCacheOptions(
    program
      .command('keys')
      .summary('list the keys of a namespace')
      .description(
        'Lists the keys of --namespace that start with [prefix], sorted, one a line. Keys of child namespaces are not listed; expired entries are not listed.',
      )
      .argument('[prefix]', 'list only keys starting with this (default: every key)'),
  )
    .option('-l, --limit <n>', `list at most n keys, 1 to ${MAX_KEYS_LIMIT}`, undefined)
    .option('--json', 'print {"keys","truncated"} (or the error) as JSON')
    .addHelpText(
      'after',
      helpAfter(COMMON_EXIT_CODES, [
        'flowcache keys --store redis://127.0.0.1:6379 --namespace tenant:acme/flow:orders',
        'flowcache keys order: --limit 50 --store sqlite:./.flowcache/cache.db --json',
      ]),
    )
    .action(async (prefix: string | undefined, options: KeysCommandOptions) => {
      done(await keysCommand(prefix, options, io))
    })
}
