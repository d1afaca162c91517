/**
 * flowcache: the cache, state and coordination layer for workflow automation.
 *
 * ```ts
 * import { createCache } from 'flowcache'
 * const cache = createCache()
 * await cache.set('greeting', 'hello', '5m')
 * ```
 */
export { Cache, createCache } from './core/cache.js'
export type {
  CacheEntry,
  CacheHealth,
  CacheOptions,
  ListKeysOptions,
  NamespaceOptions,
  SetManyItem,
  SetOptions,
} from './core/cache.js'
export type { CacheStats, LatencySummary } from './core/stats.js'
export type {
  Factory,
  FactoryContext,
  GetOrSetOptions,
  GetOrSetResult,
  GetOrSetStats,
} from './core/get-or-set.js'
export { hashArguments } from './core/memoize.js'
export type { Memoized, MemoizedResult, MemoizeOptions } from './core/memoize.js'
export { ManualClock, systemClock } from './core/clock.js'
export type { Clock } from './core/clock.js'
export { silentLogger, stderrLogger } from './core/logger.js'
export type { Logger } from './core/logger.js'
export type { FallbackMode } from './tiers/fallback.js'
export { Election } from './coord/leader.js'
export type { LeaderOptions, Term } from './coord/leader.js'
export { Lock, Locks } from './coord/locks.js'
export type { AcquireOptions } from './coord/locks.js'
export { MAX_SLIDING_WINDOW, RateLimiter, rateLimitAlgorithms } from './coord/rate-limit.js'
export type {
  RateLimitAlgorithm,
  RateLimitOptions,
  RateLimitResult,
  RateLimitStats,
} from './coord/rate-limit.js'
export type { L1Options, L1Stats } from './tiers/l1.js'
export { formatDuration, parseDuration } from './core/duration.js'
export type { Duration } from './core/duration.js'
export { DEFAULT_LIMITS } from './core/limits.js'
export type { Limits, LimitsOptions } from './core/limits.js'
export { canonicalize, jsonCodec, valuesEqual } from './core/codec.js'
export {
  KeyKind,
  escapeKeyPart,
  isUserKey,
  parseStoreKey,
  unescapeKeyPart,
} from './core/keyspace.js'
export type { ParsedKey } from './core/keyspace.js'
export * from './errors.js'
export { MemoryStore, ValueIsolation, memoryStore } from './stores/memory/index.js'
export type { MemoryStoreOptions } from './stores/memory/index.js'
export type { Codec } from './types/codec.js'
export type {
  Invalidation,
  InvalidationBus,
  InvalidationListener,
  LocalAccess,
  QuotaLimits,
  Revision,
  Store,
  StoreCapabilities,
  StoreEntry,
  StoreHealth,
  StoreListOptions,
  StoreStats,
  StoreWriteItem,
  StoreWriteOptions,
} from './types/store.js'
