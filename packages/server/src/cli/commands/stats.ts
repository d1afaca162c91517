/**
 * `flowcache stats`: the store's health, capabilities and counters.
 */
import type { Command } from 'commander'
import type { CacheHealth, CacheStats, StoreCapabilities } from '../../flowcache.js'
import { addCacheOptions, type CacheCommandOptions } from '../cache.js'
import { ExitCode, type CliIo } from '../io.js'
import { table } from '../table.js'
import { COMMON_EXIT_CODES, helpAfter, printJson, withCache, type OutputOptions } from './common.js'

/** Options of `flowcache stats`. */
export type StatsCommandOptions = CacheCommandOptions & OutputOptions

/** What `flowcache stats --json` prints. */
export interface StatsDocument {
  /** The store's name: `memory`, `sqlite`, `redis`, `nats`. */
  store: string
  /** `--namespace` as given, `''` for the root. */
  namespace: string
  /** Absolute path of the configuration file the cache settings came from; `null` without one. */
  config: string | null
  health: CacheHealth
  capabilities: StoreCapabilities
  /** `cache.stats()`: the store counters, and this command's own (nearly empty) cache counters. */
  stats: CacheStats
}

/** Bytes for people: `512 B`, `1.5 KiB`, `3.2 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`
}

/** The readable report of {@link StatsDocument}. */
export function formatStats(document: StatsDocument): string {
  const { health, capabilities, stats } = document
  const since = new Date(health.since).toISOString()
  const lines = [
    `store      ${document.store}`,
    `namespace  ${document.namespace === '' ? '(root)' : document.namespace}`,
    ...(document.config === null ? [] : [`config     ${document.config}`]),
    `health     ${health.status} since ${since}${health.reason === undefined ? '' : `: ${health.reason}`}`,
    `features   ${[
      capabilities.persistent ? 'persistent' : 'in-process',
      capabilities.distributed ? 'shared by processes' : 'one process',
      `${capabilities.ttl} TTL`,
      capabilities.history !== undefined && capabilities.history > 0
        ? `history ${capabilities.history}`
        : undefined,
      capabilities.watch === undefined ? undefined : `watch (${capabilities.watch})`,
    ]
      .filter((part) => part !== undefined)
      .join(', ')}`,
    '',
  ]
  if (document.store === 'redis' || document.store === 'nats') {
    lines.push(
      `The ${document.store} store keeps no counters of its own; ${
        document.store === 'redis' ? 'use redis-cli INFO' : 'use nats stream info'
      } for entries and bytes.`,
    )
  } else {
    lines.push(
      table(
        ['counter', 'value'],
        [
          ['entries', String(stats.entries)],
          ['bytes', formatBytes(stats.bytes)],
          ['evictions', String(stats.evictions)],
          ['expirations', String(stats.expirations)],
        ],
        [false, true],
      ),
    )
  }
  return `${lines.join('\n')}\n`
}

/**
 * Prints the store's health, capabilities and counters (entries, bytes, evictions, expirations
 * of the whole store; the Redis and NATS stores keep none). Exit 1 when the store is not `ok`.
 */
export async function statsCommand(options: StatsCommandOptions, io: CliIo): Promise<ExitCode> {
  return withCache(
    options,
    io,
    async ({ cache, root, configFile }) => {
      const document: StatsDocument = {
        store: root.store.name,
        namespace: options.namespace ?? '',
        config: configFile ?? null,
        health: cache.health(),
        capabilities: { ...root.store.capabilities },
        stats: cache.stats(),
      }
      if (options.json === true) printJson(io, document)
      else io.stdout(formatStats(document))
      return document.health.status === 'ok' ? ExitCode.ok : ExitCode.failure
    },
    'read',
  )
}

/** Adds `stats` to the program. */
export function registerStats(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  addCacheOptions(
    program
      .command('stats')
      .summary("print the store's health and counters")
      .description(
        "Prints the store's health, what it can do, and its counters: entries, bytes, evictions and expirations of the whole store (the memory and SQLite stores keep them; Redis and NATS do not).",
      ),
  )
    .option(
      '--json',
      'print {"store","namespace","config","health","capabilities","stats"} as JSON',
    )
    .addHelpText(
      'after',
      helpAfter(`${COMMON_EXIT_CODES} or is not healthy`, [
        'flowcache stats --store sqlite:./.flowcache/cache.db',
        'flowcache stats --store redis://127.0.0.1:6379 --json',
        'flowcache stats --config ./flowcache.yaml',
      ]),
    )
    .action(async (options: StatsCommandOptions) => {
      done(await statsCommand(options, io))
    })
}
