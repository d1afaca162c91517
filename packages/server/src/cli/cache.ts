/**
 * The cache a data command (`get`, `set`, `del`, `keys`, `ttl`, `stats`, `warm`, `bench`,
 * `doctor`) works on: the store of `flowcache.yaml` (`--config`, `FLOWCACHE_CONFIG` or
 * `./flowcache.yaml`, as `flowcache serve` finds it) or the one named by `--store`, narrowed to
 * the namespace named by `--namespace`. Every such command gets its cache from
 * {@link cacheForCommand} and its options from {@link addCacheOptions}.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import type { Command } from 'commander'
import {
  CONFIG_FILE_NAMES,
  createCacheFromConfig,
  loadConfig,
  storeOverrides,
  type ResolvedConfig,
} from '../config/index.js'
import type { Cache } from '../flowcache.js'
import { UsageError } from './io.js'
import { openCache, STORE_SPEC_HELP } from './stores.js'

/** The options every data command takes. */
export interface CacheCommandOptions {
  /**
   * `--store`: `memory`, `sqlite:<path>`, `redis://…` or `nats://…`. With a configuration file
   * it replaces the file's store (type, URL or path); the file's other cache settings (prefix,
   * L1, limits, NATS bucket and credentials) still apply.
   * @default the configuration file's store, else 'memory'
   */
  store?: string
  /**
   * `--config`: the `flowcache.yaml` to read the cache settings from. A file asked for (here or
   * in `FLOWCACHE_CONFIG`) must exist. `false` reads no file (`doctor` checks `--store` alone).
   * @default ./flowcache.yaml (or .yml) when it exists
   */
  config?: string | false
  /**
   * `--namespace`: namespace names from the root, separated by `/`, e.g.
   * `tenant:acme/flow:orders` (the namespace of the flow `orders` of the tenant `acme`).
   * @default the root of the cache
   */
  namespace?: string
}

/** The cache of one command: the namespace view to work on, and how to let it go. */
export interface CommandCache {
  /** The configuration file the cache settings came from, as given or found; `undefined` without one. */
  configFile?: string
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

/**
 * What a command does with its namespace: `read` opens it with `applyQuotas: false`, so reading
 * a namespace never puts the configured allocation (`user_cache_limit_mb`, `quotas:`) on it;
 * `write` applies the quotas like any other writer.
 */
export type CommandAccess = 'read' | 'write'

/** The view of `root` at the namespace path `names` (`root` itself for `[]`). */
export function namespaceView(
  root: Cache,
  names: readonly string[],
  access: CommandAccess = 'write',
): Cache {
  const options = access === 'read' ? { applyQuotas: false } : {}
  return names.reduce((view, name) => view.namespace(name, options), root)
}

/** Environment of {@link cacheForCommand}: where `FLOWCACHE_*` variables and `./flowcache.yaml` are read. */
export interface CacheCommandEnv {
  /** Environment variables. @default process.env */
  env?: Record<string, string | undefined>
  /** Directory `flowcache.yaml` is looked for in. @default process.cwd() */
  cwd?: string
}

/**
 * Whether a command reads a configuration file: `--config` was given, `FLOWCACHE_CONFIG` is
 * set, or `flowcache.yaml` (or `.yml`) exists in `cwd`; never with `config: false`.
 */
export function usesConfigFile(
  options: Pick<CacheCommandOptions, 'config'>,
  env: Record<string, string | undefined>,
  cwd: string,
): boolean {
  if (options.config === false) return false
  if (options.config !== undefined) return true
  if (env.FLOWCACHE_CONFIG !== undefined && env.FLOWCACHE_CONFIG !== '') return true
  return CONFIG_FILE_NAMES.some((name) => existsSync(resolve(cwd, name)))
}

/**
 * Loads the configuration for a command: the file, the environment, and `--store` over both.
 * The start-up fallback is always `fail`: a command on an unreachable Redis or NATS store fails
 * instead of working on a memory cache that is gone when it exits.
 */
async function commandConfig(
  options: CacheCommandOptions,
  env: Record<string, string | undefined>,
  cwd: string,
): Promise<ResolvedConfig> {
  const config = await loadConfig({
    ...(typeof options.config === 'string' ? { file: options.config } : {}),
    env,
    cwd,
    overrides: options.store === undefined ? [] : storeOverrides(options.store),
    exampleFlowsDir: null,
  })
  return { ...config, cache: { ...config.cache, fallback: 'fail' } }
}

/**
 * Opens the cache a command works on: checks `--namespace`, opens the store (of the
 * configuration file when there is one, see {@link usesConfigFile}, with `--store` over it;
 * else `--store`, default `memory`), waits until a Redis or NATS store answers (an unreachable
 * one fails instead of falling back to memory) and returns the namespace view. Throws
 * {@link UsageError} for a bad `--store` or `--namespace`, `ConfigError` (`E_CONFIG`) for a
 * configuration file that is missing or invalid, `StoreUnavailableError` when the store cannot
 * be reached. A `read` command's view sets no quota in the store (see {@link CommandAccess}).
 */
export async function cacheForCommand(
  options: CacheCommandOptions,
  where: CacheCommandEnv = {},
  access: CommandAccess = 'write',
): Promise<CommandCache> {
  const names = parseNamespace(options.namespace)
  const env = where.env ?? process.env
  const cwd = resolve(where.cwd ?? process.cwd())
  let root: Cache
  let configFile: string | undefined
  if (usesConfigFile(options, env, cwd)) {
    const config = await commandConfig(options, env, cwd)
    configFile = config.file
    root = await createCacheFromConfig(config)
    try {
      await root.ready()
    } catch (error) {
      await root.close().catch(() => undefined)
      throw error
    }
  } else {
    root = await openCache(options.store ?? 'memory')
  }
  try {
    const cache = namespaceView(root, names, access)
    return {
      cache,
      root,
      close: () => root.close(),
      ...(configFile === undefined ? {} : { configFile }),
    }
  } catch (error) {
    await root.close().catch(() => undefined)
    throw error
  }
}

/**
 * Adds `--config`, `--store` and `--namespace` (the options of {@link CacheCommandOptions}) to
 * `command`.
 */
export function addCacheOptions(command: Command): Command {
  return command
    .option(
      '-c, --config <file>',
      'read the cache settings from this flowcache.yaml (default: ./flowcache.yaml when it exists)',
    )
    .option(
      '-s, --store <store>',
      `the store: ${STORE_SPEC_HELP} (default: the config file's store, else memory)`,
    )
    .option(
      '-n, --namespace <path>',
      'namespace names separated by /, e.g. tenant:acme/flow:orders (default: the root)',
    )
}
