/**
 * flowcache's `node:diagnostics_channel` channels: every event the library reports, in one place.
 * Subscribe with `subscribe(name, listener)` from `node:diagnostics_channel`; the names are in
 * {@link channels}. Events are published only while a channel has subscribers, so an
 * unobserved cache pays one property read per call and no timing.
 *
 * Listeners run synchronously inside the call that publishes: keep them short, and never throw
 * from one (Node reports a throwing listener as an uncaught exception).
 */
import { channel } from 'node:diagnostics_channel'
import type { Cache } from './cache.js'

/** Names of flowcache's diagnostics channels. */
export const channels = {
  /** One {@link OperationEvent} per cache call (`get`, `set`, `delete`, …). */
  operation: 'flowcache:operation',
  /** One {@link FallbackEvent} when a cache enters or leaves its start-up memory fallback. */
  fallback: 'flowcache:fallback',
  /** One {@link LockEvent} per lock outcome. */
  lock: 'flowcache:lock',
  /** One {@link ElectionEvent} when a candidate becomes leader or its term ends. */
  election: 'flowcache:election',
  /** One {@link RateLimitEvent} per rate-limit decision. */
  rateLimit: 'flowcache:rate-limit',
  /** One {@link EvictionEvent} when a store evicts entries for its limits or a quota. */
  eviction: 'flowcache:eviction',
} as const

/** Result of one cache call: a read that found a value or not, another call that succeeded, or an error. */
export type OperationOutcome = 'hit' | 'miss' | 'ok' | 'error'

/** Payload of `flowcache:operation`. */
export interface OperationEvent {
  /** The cache the call was made on: the one `createCache` returned, also for namespace views. */
  cache: Cache
  /** Method name: `get`, `set`, `add`, `delete`, `has`, `ttl`, `entry`, `getMany`, `setMany`, … */
  operation: string
  /** Namespace path of the view the call was made on (empty for the root cache). */
  namespace: readonly string[]
  /** Store name: `memory`, `sqlite`, `redis`, `nats` or a custom store's. */
  store: string
  /** `hit`/`miss` for single-key reads, `error` when the call threw, else `ok`. */
  outcome: OperationOutcome
  /** Wall time of the call in milliseconds (`performance.now()` resolution). */
  durationMs: number
  /** `code` of the error when `outcome` is `error` and the error is a `FlowcacheError`. */
  errorCode?: string
  /** The error the call threw, when `outcome` is `error`. */
  error?: unknown
}

/** Payload of `flowcache:fallback`. */
export interface FallbackEvent {
  cache: Cache
  /** Name of the distributed store that is replaced (`redis`, `nats`). */
  store: string
  /** `fallback`: the memory fallback serves from now on; `primary`: the store is back. */
  state: 'fallback' | 'primary'
}

/** What happened to a lock. */
export type LockOutcome = 'acquired' | 'contended' | 'extended' | 'released' | 'lost' | 'failed'

/** Payload of `flowcache:lock`. */
export interface LockEvent {
  cache: Cache
  namespace: readonly string[]
  /** Lock name, as given to `acquire`. */
  lock: string
  /** Owner id of the caller. */
  owner: string
  /**
   * `acquired`; `contended` when another owner held it (after any `wait`); `extended`;
   * `released` by its holder; `lost` when the lease expired, was taken over or reached its local
   * deadline; `failed` when the store call failed.
   */
  outcome: LockOutcome
  /** Fencing token, for `acquired`, `extended`, `released` and `lost`. */
  token?: bigint
}

/** Payload of `flowcache:election`. */
export interface ElectionEvent {
  cache: Cache
  namespace: readonly string[]
  /** Election name. */
  election: string
  /** Id of this candidate. */
  owner: string
  /** `elected` when this candidate became leader, `revoked` when its term ended. */
  outcome: 'elected' | 'revoked'
  /** Fencing token of the term. */
  token: bigint
  /** Why the term ended (for `revoked`). */
  reason?: string
}

/** How a rate-limit call was decided. */
export type RateLimitOutcome = 'allowed' | 'denied' | 'failedOpen' | 'failedClosed'

/** Payload of `flowcache:rate-limit`. */
export interface RateLimitEvent {
  cache: Cache
  namespace: readonly string[]
  /** Limit key. */
  key: string
  /** `allowed` or `denied` by the limit; `failedOpen` / `failedClosed` when the store failed. */
  outcome: RateLimitOutcome
}

/** Payload of `flowcache:eviction`. */
export interface EvictionEvent {
  /** Store name. Stores are not tied to one cache, so the event names no cache. */
  store: string
  /** Entries evicted by this event. */
  count: number
  /** Store key of the evicted entry, when the store reports one entry at a time (memory). */
  key?: string
}

/** @internal */
export const operationChannel = channel(channels.operation)
/** @internal */
export const fallbackChannel = channel(channels.fallback)
/** @internal */
export const lockChannel = channel(channels.lock)
/** @internal */
export const electionChannel = channel(channels.election)
/** @internal */
export const rateLimitChannel = channel(channels.rateLimit)
/** @internal */
export const evictionChannel = channel(channels.eviction)

/** Publishes `event` on `flowcache:eviction` when it has subscribers. */
export function reportEviction(event: EvictionEvent): void {
  if (evictionChannel.hasSubscribers) evictionChannel.publish(event)
}
