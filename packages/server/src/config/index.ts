/**
 * The configuration of `flowcache serve` and the CLI: {@link loadConfig} reads `flowcache.yaml`,
 * the environment and command-line overrides into a {@link ResolvedConfig};
 * {@link createCacheFromConfig} opens the cache it describes.
 */
export {
  CONFIG_FILE_NAMES,
  DEFAULT_BODY_LIMIT,
  DEFAULT_HOST,
  DEFAULT_PORT,
  ENV_VARIABLES,
  EXAMPLE_FLOWS_DIR,
  isLoopbackHost,
  loadConfig,
  storeOverrides,
} from './load.js'
export type { ConfigOverride, EnvVariable, LoadConfigOptions } from './load.js'
export { createCacheFromConfig } from './cache.js'
export type { CacheFromConfigOptions } from './cache.js'
export { ConfigError, formatConfigIssue } from './errors.js'
export type { ConfigIssue } from './errors.js'
export { CACHE_TYPES } from './schema.js'
export type {
  CacheType,
  ResolvedCacheConfig,
  ResolvedConfig,
  ResolvedFlowsConfig,
  ResolvedServerConfig,
} from './types.js'
