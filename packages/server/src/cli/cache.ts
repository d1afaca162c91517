/**
 * The cache a data command (`get`, `set`, `del`, `keys`, `ttl`, `stats`, `warm`, `bench`,
 * `doctor`) works on: the store named by `--store`, narrowed to the namespace named by
 * `--namespace`. Every such command gets its cache from {@link cacheForCommand} and its options
 * from {@link addCacheOptions}, so a new source of settings (a config file) is added here once.
 */
import type { Command } from 'commander'
import type { Cache } from '../flowcache.js'
import { UsageError } from './io.js'
import { openCache, STORE_SPEC_HELP } from './stores.js'

/** The options every data command takes. */
export interface CacheCommandOptions {
  /** `--store`: `memory`, `sqlite:<path>`, `redis://…` or `nats://…`. @default 'memory' */
  store: string
  /**
   * `--namespace`: namespace names from the root, separated by `/`, e.g.
   * `tenant:acme/flow:orders` (the namespace of the flow `orders` of the tenant `acme`).
   * @default the root of the cache
   */
  namespace?: string
}

/** The cache of one command: the namespace view to work on, and how to let it go. */
export interface CommandCache {
  /** The view named by `--namespace` (the root cache without it). */
  cache: Cache
  /** The root cache, for store-wide facts (`stats()`, `health()`, the store). */
  root: Cache
  /** Closes the cache and its store. */
  close(): Promise<void>
}

/**
 * Splits a `--namespace` value into namespace names: `tenant:acme/flow:orders` →
 * `['tenant:acme', 'flow:orders']`. `undefined` or `''` is the root (`[]`). Throws
 * {@link UsageError} for an empty name (`a//b`, a leading or trailing `/`).
 */
export function parseNamespace(spec: string | undefined): string[] {
  if (spec === undefined || spec === '') return []
  const names = spec.split('/')
  if (names.some((name) => name === '')) {
    throw new UsageError(
      `--namespace ${spec} has an empty name; separate names with single slashes, e.g. tenant:acme/flow:orders`,
    )
  }
  return names
}

/** The view of `root` at the namespace path `names` (`root` itself for `[]`). */
export function namespaceView(root: Cache, names: readonly string[]): Cache {
  return names.reduce((view, name) => view.namespace(name), root)
}

/**
 * Opens the cache a command works on: checks `--namespace`, opens the `--store` (waiting until
 * a Redis or NATS store answers; an unreachable one fails instead of falling back to memory) and
 * returns the namespace view. Throws {@link UsageError} for a bad `--store` or `--namespace`,
 * `StoreUnavailableError` when the store cannot be reached.
 */
export async function cacheForCommand(options: CacheCommandOptions): Promise<CommandCache> {
  const names = parseNamespace(options.namespace)
  const root = await openCache(options.store)
  try {
    const cache = namespaceView(root, names)
    return { cache, root, close: () => root.close() }
  } catch (error) {
    await root.close().catch(() => undefined)
    throw error
  }
}

/** Adds `--store` and `--namespace` (the options of {@link CacheCommandOptions}) to `command`. */
export function addCacheOptions(command: Command): Command {
  return command
    .option('-s, --store <store>', `the store: ${STORE_SPEC_HELP}`, 'memory')
    .option(
      '-n, --namespace <path>',
      'namespace names separated by /, e.g. tenant:acme/flow:orders (default: the root)',
    )
}
