/**
 * Counters and latency samples of one cache. Counting is a few integer increments per call;
 * latency is timed on one call in {@link SAMPLE_EVERY} per operation, because reading the clock
 * twice on every hit would cost more than the hit itself.
 */

import type { LockStats } from '../coord/locks.js'
import type { RateLimitStats } from '../coord/rate-limit.js'
import type { GetOrSetStats } from './get-or-set.js'
import type { L1Stats } from '../tiers/l1.js'
import type { WriteBehindTotals } from '../patterns/write-behind.js'

/** Latency of one operation, from sampled calls, in milliseconds. */
export interface LatencySummary {
  /** Calls timed (a sample of all calls). */
  samples: number
  /** Median, ms. */
  p50: number
  /** 99th percentile, ms. */
  p99: number
}

/** What `cache.stats()` returns. */
export interface CacheStats {
  /** Reads that found a value (a stored `null` is a hit). */
  hits: number
  /** Reads that found nothing. */
  misses: number
  /** hits / (hits + misses), or 0 before the first read. */
  hitRatio: number
  /** Successful writes (set, add that wrote, setMany items, increment, compareAndSet that wrote). */
  sets: number
  /** Entries deleted by delete / deleteMany / clear. */
  deletes: number
  /** Entries the store evicted for its limits or a quota (store-wide). */
  evictions: number
  /** Entries the store removed because their TTL passed (store-wide). */
  expirations: number
  /** Entries in the store now (store-wide, user and system). */
  entries: number
  /** Encoded bytes in the store now (store-wide). */
  bytes: number
  /** Latency per operation name (`get`, `set`, …), from sampled calls. */
  latency: Record<string, LatencySummary>
  /** Memory fallback of a distributed store: whether it serves now, and how often it was entered. */
  fallback: { active: boolean; activations: number }
  /** Rate-limit outcomes of all namespaces: allowed, denied, failed open, failed closed, lost races. */
  rateLimits: RateLimitStats
  /** Lock outcomes of all namespaces: acquired, contended, extended, released, lost, failed. */
  locks: LockStats
  /** Write-behind writers of this cache: open writers, queued operations, flushed, failures, retries. */
  writeBehind: WriteBehindTotals
  /** `getOrSet` and `memoize` outcomes of all namespaces: hits, misses, factory calls, grace, timeouts, refreshes. */
  getOrSet: GetOrSetStats
  /** The L1 tier's counters, when the cache has one. */
  l1?: L1Stats
}

/** One call in this many is timed. */
export const SAMPLE_EVERY = 32
const RESERVOIR = 1024

class LatencyReservoir {
  readonly values = new Float64Array(RESERVOIR)
  count = 0

  add(ms: number): void {
    this.values[this.count % RESERVOIR] = ms
    this.count++
  }

  summary(): LatencySummary {
    const size = Math.min(this.count, RESERVOIR)
    const sorted = Array.from(this.values.subarray(0, size)).sort((a, b) => a - b)
    const at = (q: number): number =>
      size === 0 ? 0 : (sorted[Math.min(size - 1, Math.floor(q * size))] ?? 0)
    return { samples: this.count, p50: at(0.5), p99: at(0.99) }
  }
}

/** Mutable counters shared by a cache and all its namespace views. */
export class StatsRecorder {
  hits = 0
  misses = 0
  sets = 0
  deletes = 0
  #countdown = SAMPLE_EVERY
  readonly #latency = new Map<string, LatencyReservoir>()

  /** Whether to time this call: true once every {@link SAMPLE_EVERY} calls. */
  shouldSample(): boolean {
    if (--this.#countdown > 0) return false
    this.#countdown = SAMPLE_EVERY
    return true
  }

  /** Records one timed call. */
  recordLatency(operation: string, ms: number): void {
    let reservoir = this.#latency.get(operation)
    if (reservoir === undefined) {
      reservoir = new LatencyReservoir()
      this.#latency.set(operation, reservoir)
    }
    reservoir.add(ms)
  }

  /** Latency summaries of every operation seen so far. */
  latency(): Record<string, LatencySummary> {
    const out: Record<string, LatencySummary> = {}
    for (const [operation, reservoir] of this.#latency) out[operation] = reservoir.summary()
    return out
  }
}
