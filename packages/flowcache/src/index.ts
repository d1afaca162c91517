/**
 * flowcache: the cache, state and coordination layer for workflow automation.
 *
 * ```ts
 * import { createCache } from 'flowcache'
 * const cache = createCache()
 * await cache.set('greeting', 'hello', '5m')
 * ```
 */
export { Cache, MAX_TRACKED_NAMESPACES, createCache } from './core/cache.js'
export type {
  CacheEntry,
  CacheHealth,
  CacheOptions,
  CacheVersion,
  HistoryOptions,
  ListKeysOptions,
  NamespaceOptions,
  SetManyItem,
  SetOptions,
  WatchOptions,
} from './core/cache.js'
export type { CacheChangeEvent, CacheEvent, CacheOverflowEvent, CacheWatch } from './core/watch.js'
export type { CacheStats, LatencySummary } from './core/stats.js'
export type {
  KeyAccessCount,
  NamespaceStats,
  NamespaceStatsOptions,
} from './core/namespace-stats.js'
export { DEFAULT_TOP_KEY_SLOTS } from './core/namespace-stats.js'
export type { QuotaOptions, QuotasOptions } from './core/quotas.js'
export { channels } from './core/diagnostics.js'
export type {
  ElectionEvent,
  EvictionEvent,
  FallbackEvent,
  LockEvent,
  LockOutcome,
  OperationEvent,
  OperationOutcome,
  RateLimitEvent,
  RateLimitOutcome,
} from './core/diagnostics.js'
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
export type { AcquireOptions, LockStats } from './coord/locks.js'
export { MAX_SLIDING_WINDOW, RateLimiter, rateLimitAlgorithms } from './coord/rate-limit.js'
export type {
  RateLimitAlgorithm,
  RateLimitOptions,
  RateLimitResult,
  RateLimitStats,
} from './coord/rate-limit.js'
export type { L1Options, L1Stats } from './tiers/l1.js'
export { WriteThroughWriter } from './patterns/write-through.js'
export { WriteBehindWriter } from './patterns/write-behind.js'
export type {
  WriteBehindCloseOptions,
  WriteBehindFailure,
  WriteBehindFlush,
  WriteBehindLastError,
  WriteBehindOptions,
  WriteBehindStats,
  WriteBehindTotals,
} from './patterns/write-behind.js'
export type { WriteItem, WriteOperation, WriteTarget } from './patterns/target.js'
export {
  DEFAULT_WARM_BATCH_SIZE,
  DEFAULT_WARM_CONCURRENCY,
  MAX_WARM_CONCURRENCY,
  MAX_WARM_ERRORS,
} from './patterns/warm.js'
export type {
  WarmBatchLoader,
  WarmContext,
  WarmFailure,
  WarmKeyLoader,
  WarmLoader,
  WarmOptions,
  WarmOutcome,
  WarmProgress,
  WarmSummary,
} from './patterns/warm.js'
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
  QuotaUsage,
  Revision,
  Store,
  StoreCapabilities,
  StoreEntry,
  StoreChange,
  StoreHealth,
  StoreHistoryOptions,
  StoreListOptions,
  StoreOperation,
  StoreStats,
  StoreVersion,
  StoreWatch,
  StoreWatchListener,
  StoreWriteItem,
  StoreWriteOptions,
} from './types/store.js'
