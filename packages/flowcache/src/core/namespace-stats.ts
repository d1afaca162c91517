/**
 * Per-namespace statistics: read counters and the most-accessed keys of the namespaces a cache
 * tracks (those with a quota, and those opened with `trackStats: true`).
 *
 * The most-accessed keys come from a space-saving counter: a fixed number of slots, each a key
 * with its read count. A read of a key without a slot takes the slot of the least-read key and
 * starts from that key's count (kept as the new key's `error`, the most its count may be over).
 * Any key read more often than reads / slots is guaranteed a slot, so the hot keys are found in
 * bounded memory whatever the number of distinct keys. The slots form a min-heap on the count, so
 * a recorded read costs one Map lookup and a few swaps at most. Hits and misses are counted on
 * every read; the keys only on a random sample of them (one in `topKeySampleEvery` on average),
 * which keeps tracked reads cheap and still finds every hot key.
 */
import { InvalidArgumentError } from '../errors.js'
import type { QuotaLimits } from '../types/store.js'

/** Slots of the most-accessed-keys counter of each tracked namespace. @default */
export const DEFAULT_TOP_KEY_SLOTS = 64
/** Most slots a namespace may ask for. */
export const MAX_TOP_KEY_SLOTS = 10_000
/** One read in this many (on average, at random intervals) feeds the most-accessed-keys counter. @default */
export const DEFAULT_TOP_KEY_SAMPLE_EVERY = 8

/** One of the most-accessed keys of a namespace. */
export interface KeyAccessCount {
  /** The key as the application wrote it (not the store key). */
  key: string
  /** Namespace path of the key below the tracked namespace; empty for the namespace's own keys. */
  namespace: readonly string[]
  /**
   * Reads counted for the key: sampled reads × the sampling interval, so an estimate unless
   * `topKeySampleEvery` is 1, and then an upper bound (the true count is at least `count - error`).
   */
  count: number
  /** How much of `count` may belong to keys that held the slot before (scaled like `count`). */
  error: number
}

/** What {@link Cache.namespaceStats} returns. */
export interface NamespaceStats {
  /** Namespace path of the view. */
  namespace: readonly string[]
  /** Whether this process counts reads of the namespace (it has a quota, or `trackStats: true`). */
  tracked: boolean
  /** The namespace's quota as set by this process, if any. */
  quota: QuotaLimits | undefined
  /**
   * User entries in the namespace (children included), as the store accounts its quota (shared
   * by every process on a distributed store). `undefined` when the namespace has no quota or the
   * store does not report quota usage.
   */
  entries: number | undefined
  /** Encoded bytes of those entries; `undefined` like `entries`. */
  bytes: number | undefined
  /** Entries the namespace's quota evicted since it was first set; `undefined` like `entries`. */
  evictions: number | undefined
  /** Reads in this process that found a value (children included); 0 when not tracked. */
  hits: number
  /** Reads in this process that found nothing; 0 when not tracked. */
  misses: number
  /** hits / (hits + misses), or 0 before the first read. */
  hitRatio: number
  /** The most-read keys in this process, most read first; empty when not tracked. */
  topKeys: KeyAccessCount[]
}

/** Options of {@link Cache.namespaceStats}. */
export interface NamespaceStatsOptions {
  /** How many of the most-accessed keys to return, up to the slots kept. @default 10 */
  top?: number
}

interface Slot {
  id: string
  key: string
  namespace: readonly string[]
  count: number
  error: number
  /** Position in the heap. */
  at: number
}

/** Space-saving top-k counter: bounded slots, min-heap on the count. */
export class TopKeys {
  readonly #slots: Slot[] = []
  readonly #byId = new Map<string, Slot>()
  readonly #capacity: number

  constructor(capacity: number) {
    this.#capacity = capacity
  }

  /** Counts one read of `key` (identified by `id`, unique across `namespace` paths). */
  record(id: string, key: string, namespace: readonly string[]): void {
    let slot = this.#byId.get(id)
    if (slot !== undefined) {
      slot.count++
      this.#down(slot.at)
      return
    }
    const slots = this.#slots
    if (slots.length < this.#capacity) {
      slot = { id, key, namespace, count: 1, error: 0, at: slots.length }
      slots.push(slot)
      this.#byId.set(id, slot)
      this.#up(slot.at)
      return
    }
    // Take over the least-read slot: the new key may have been read that often unseen.
    const least = slots[0] as Slot
    this.#byId.delete(least.id)
    least.error = least.count
    least.count++
    least.id = id
    least.key = key
    least.namespace = namespace
    this.#byId.set(id, least)
    this.#down(0)
  }

  /** The `top` most-read keys, most read first; counts multiplied by `scale`. */
  top(top: number, scale = 1): KeyAccessCount[] {
    return [...this.#slots]
      .sort((a, b) => b.count - a.count || a.error - b.error)
      .slice(0, top)
      .map((slot) => ({
        key: slot.key,
        namespace: slot.namespace,
        count: slot.count * scale,
        error: slot.error * scale,
      }))
  }

  #up(index: number): void {
    const slots = this.#slots
    const slot = slots[index] as Slot
    while (index > 0) {
      const parentIndex = (index - 1) >> 1
      const parent = slots[parentIndex] as Slot
      if (parent.count <= slot.count) break
      slots[index] = parent
      parent.at = index
      index = parentIndex
    }
    slots[index] = slot
    slot.at = index
  }

  #down(index: number): void {
    const slots = this.#slots
    const size = slots.length
    const slot = slots[index] as Slot
    for (;;) {
      const left = 2 * index + 1
      if (left >= size) break
      const right = left + 1
      let child = left
      if (right < size && (slots[right] as Slot).count < (slots[left] as Slot).count) child = right
      const smaller = slots[child] as Slot
      if (smaller.count >= slot.count) break
      slots[index] = smaller
      smaller.at = index
      index = child
    }
    slots[index] = slot
    slot.at = index
  }
}

/** Read counters of one tracked namespace, shared by every view of it and of its children. */
export class NamespaceTracker {
  hits = 0
  misses = 0
  /** The quota this process set on the namespace, if any. */
  quota: QuotaLimits | undefined
  readonly #topKeys: TopKeys
  readonly #sampleEvery: number
  /** Reads left until the next sampled one. */
  #countdown: number

  constructor(
    readonly path: readonly string[],
    readonly prefix: string,
    slots: number,
    sampleEvery: number,
  ) {
    this.#topKeys = new TopKeys(slots)
    this.#sampleEvery = sampleEvery
    this.#countdown = this.#gap()
  }

  /** Counts one read of `key` in the namespace `below` this one (empty: its own keys). */
  record(key: string, below: readonly string[], belowId: string, hit: boolean): void {
    if (hit) this.hits++
    else this.misses++
    if (--this.#countdown > 0) return
    this.#countdown = this.#gap()
    this.#topKeys.record(belowId === '' ? key : `${belowId}\u0000${key}`, key, below)
  }

  /** The `top` most-read keys, counts scaled to all reads. */
  topKeys(top: number): KeyAccessCount[] {
    return this.#topKeys.top(top, this.#sampleEvery)
  }

  /** Reads until the next sample: random, `sampleEvery` on average, so no access pattern aliases with it. */
  #gap(): number {
    const every = this.#sampleEvery
    return every === 1 ? 1 : 1 + Math.floor(Math.random() * (2 * every - 1))
  }
}

/** Checks `top` of {@link NamespaceStatsOptions}. */
export function checkTop(top: number | undefined): number {
  if (top === undefined) return 10
  if (!Number.isSafeInteger(top) || top < 0) {
    throw InvalidArgumentError.format('top', `must be a whole number >= 0; got ${String(top)}`)
  }
  return top
}

/** Checks the `topKeySampleEvery` option. */
export function checkSampleEvery(every: number | undefined, name: string): number {
  if (every === undefined) return DEFAULT_TOP_KEY_SAMPLE_EVERY
  if (!Number.isSafeInteger(every) || every < 1 || every > 1_000_000) {
    throw InvalidArgumentError.format(
      name,
      `must be a whole number from 1 (every read) to 1000000; got ${String(every)}`,
    )
  }
  return every
}

/** Checks the `topKeySlots` option. */
export function checkSlots(slots: number | undefined, name: string): number {
  if (slots === undefined) return DEFAULT_TOP_KEY_SLOTS
  if (!Number.isSafeInteger(slots) || slots < 1 || slots > MAX_TOP_KEY_SLOTS) {
    throw InvalidArgumentError.format(
      name,
      `must be a whole number from 1 to ${MAX_TOP_KEY_SLOTS}; got ${String(slots)}`,
    )
  }
  return slots
}
