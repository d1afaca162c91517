/**
 * The flow host's resource caches: immutable artifacts on the filesystem, and refreshing
 * resources (connections, secrets, configuration files) in memory.
 */
export {
  createArtifactCache,
  type ArtifactCache,
  type ArtifactCacheOptions,
  type ArtifactCacheStats,
  type ArtifactFetcher,
  type ArtifactGetOptions,
  type ArtifactInfo,
  type ArtifactRequest,
  type ArtifactSource,
} from './artifacts.js'
export {
  ArtifactDigestError,
  ArtifactFetchError,
  ResourceLoadError,
  ResourceParseError,
} from './errors.js'
export {
  fileResource,
  loadResourceFile,
  type FileFormat,
  type FileResourceOptions,
} from './file.js'
export {
  createRefreshingResource,
  type LoadContext,
  type LoadReason,
  type RefreshingResource,
  type RefreshingResourceOptions,
  type RefreshingResourceStats,
  type ResourceGetOptions,
} from './refreshing.js'
export { ManualScheduler, systemScheduler, type Scheduler } from './scheduler.js'
