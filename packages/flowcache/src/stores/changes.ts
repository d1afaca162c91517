/**
 * Shared pieces of `history()` and `watch()` for the stores that keep their own version log
 * (memory, sqlite, redis): the `history` option, the life of a deleted key's log, and the fan-out
 * of changes to in-process watchers. The `limit` of a `history()` call and the expiry a history
 * infers from a passed deadline serve the NATS store as well.
 */
import { positiveInteger } from '../core/checks.js'
import { InvalidArgumentError } from '../errors.js'
import type {
  StoreChange,
  StoreHistoryOptions,
  StoreVersion,
  StoreWatch,
  StoreWatchListener,
} from '../types/store.js'

/** Most versions a store keeps per key: NATS KV's limit (ADR-8), used by every store. */
export const MAX_HISTORY = 64

/**
 * How long the log of a deleted or expired key is kept after its delete or expire marker, in ms:
 * one hour, like the NATS store's default `tombstoneTtl`. A later write to the key continues the
 * log instead.
 */
export const TOMBSTONE_TTL_MS = 3_600_000

/**
 * The `history` option of a store: versions kept per user key, current one included, `0` to 64.
 * `0` keeps no log at all (the store then has no `history()` capability).
 */
export function historyDepth(value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_HISTORY) {
    throw InvalidArgumentError.format(
      'history',
      `must be an integer from 0 to ${MAX_HISTORY} (versions kept per key); got ${String(value)}`,
    )
  }
  return value
}

/** The `limit` of a `history()` call: a positive integer, default no limit. */
export function historyLimit(options: StoreHistoryOptions | undefined): number {
  return positiveInteger(options?.limit, 'limit', Number.MAX_SAFE_INTEGER)
}

/** The last `limit` versions of `versions` (oldest first). */
export function lastVersions<T>(versions: T[], limit: number): T[] {
  return versions.length > limit ? versions.slice(versions.length - limit) : versions
}

/**
 * The `expire` version a history ends with when its newest version, `last`, is a value whose
 * deadline has passed by `now` but no marker was recorded for it (the backend removed it, or
 * nothing has removed it yet): at the deadline, without revision. `undefined` otherwise.
 */
export function inferredExpiry(
  last: StoreVersion | undefined,
  now: number,
): (StoreVersion & { operation: 'expire'; at: number }) | undefined {
  if (last?.operation !== 'set' || last.expiresAt === null || last.expiresAt > now) return undefined
  return {
    operation: 'expire',
    revision: undefined,
    at: last.expiresAt,
    value: undefined,
    expiresAt: null,
  }
}

/**
 * The in-process watchers of one store. A store calls {@link Watchers.emit} for each change to
 * a user entry; `active` is false while nobody watches, so a store can skip building changes.
 */
export class Watchers {
  readonly #all = new Set<{ prefix: string; listener: StoreWatchListener }>()

  /** Whether anyone watches: stores check it before building a change. */
  get active(): boolean {
    return this.#all.size > 0
  }

  /** Whether a change of `key` would reach a watcher. */
  wants(key: string): boolean {
    for (const watcher of this.#all) if (key.startsWith(watcher.prefix)) return true
    return false
  }

  /** Registers a watcher of the keys that start with `prefix`. */
  add(prefix: string, listener: StoreWatchListener): StoreWatch {
    const watcher = { prefix, listener }
    this.#all.add(watcher)
    return {
      close: async () => {
        this.#all.delete(watcher)
      },
    }
  }

  /** Delivers a change to every watcher whose prefix matches; a throwing listener is skipped. */
  emit(change: StoreChange): void {
    for (const watcher of this.#all) {
      if (!change.key.startsWith(watcher.prefix)) continue
      try {
        watcher.listener.change(change)
      } catch {
        // A listener's bug must not fail the write that triggered it.
      }
    }
  }

  /** Tells every watcher that it was stopped (the store closed). */
  interruptAll(reason: string): void {
    for (const watcher of this.#all) {
      try {
        watcher.listener.interrupted?.(reason)
      } catch {
        // As in emit.
      }
    }
    this.#all.clear()
  }
}
