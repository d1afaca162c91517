/**
 * `cache.watch()`: a store's change feed as an async iterable of one namespace's events, with a
 * bounded buffer between the store (which never waits) and a consumer that may be slow.
 *
 * When the consumer falls more than `buffer` events behind, further events are dropped until it
 * catches up, and one `overflow` event with the number dropped takes their place in the order,
 * so the consumer knows exactly where it missed changes (and can re-read what it needs). A break
 * in the store's subscription (a Redis or NATS disconnect) is reported the same way, with the
 * number unknown. The iteration ends when the signal aborts, the loop breaks or returns, `close()`
 * is called, or the cache is closed.
 */
import type { Revision, Store, StoreChange, StoreWatch } from '../types/store.js'

/** A change to an entry of the watched namespace. */
export interface CacheChangeEvent<T = unknown> {
  /** `set`: written; `delete`: deleted, cleared or evicted; `expire`: removed because its TTL passed. */
  type: 'set' | 'delete' | 'expire'
  /** The key, without the namespace. */
  key: string
  /** Revision of the write or marker, when the store reports it. */
  revision?: Revision
  /** The written value of a `set`, when the store sends it (memory, sqlite, nats; not redis). */
  value?: T
  /** When it happened, in ms since the epoch (store clock; for `expire`, the deadline). */
  at: number
}

/** Events were lost here: the consumer fell behind, or the store's subscription broke. */
export interface CacheOverflowEvent {
  type: 'overflow'
  /** Why: `buffer` (the consumer fell behind) or `interrupted` (the subscription broke). */
  reason: 'buffer' | 'interrupted'
  /** How many events were dropped; `undefined` when the store cannot tell (`interrupted`). */
  dropped: number | undefined
  /** When it was noticed, in ms since the epoch. */
  at: number
}

/** What `cache.watch()` yields. */
export type CacheEvent<T = unknown> = CacheChangeEvent<T> | CacheOverflowEvent

/** A running `cache.watch()`: iterate it with `for await`. */
export interface CacheWatch<T = unknown> extends AsyncIterableIterator<CacheEvent<T>> {
  /** Resolves once the store delivers changes (events before that are not seen); rejects when subscribing failed. */
  ready(): Promise<void>
  /** Ends the iteration and unsubscribes. Idempotent. */
  close(): Promise<void>
}

/** How one watch turns store changes into events of its namespace. */
export interface WatchSource {
  readonly store: Store
  /** Store-key prefix to subscribe to. */
  readonly storePrefix: string
  /** The namespace's key of a store key, or `undefined` when it is not one of its direct keys. */
  keyOf(storeKey: string): string | undefined
  /** Decodes a value; throws when it cannot. */
  decode(bytes: Uint8Array): unknown
  readonly buffer: number
  readonly signal: AbortSignal | undefined
}

/** Open watches per cache core, so that closing the cache ends them. */
const openWatches = new WeakMap<object, Set<WatchStream>>()

/** Ends every watch opened on `owner` (a cache core). */
export async function closeWatches(owner: object): Promise<void> {
  const watches = openWatches.get(owner)
  if (watches === undefined) return
  await Promise.all([...watches].map((watch) => watch.close()))
}

/** Starts a watch registered under `owner`. */
export function startWatch<T>(owner: object, source: WatchSource): CacheWatch<T> {
  let watches = openWatches.get(owner)
  if (watches === undefined) {
    watches = new Set()
    openWatches.set(owner, watches)
  }
  const stream = new WatchStream(source, () => watches.delete(stream))
  watches.add(stream)
  return stream as unknown as CacheWatch<T>
}

class WatchStream implements AsyncIterableIterator<CacheEvent> {
  readonly #source: WatchSource
  readonly #queue: CacheEvent[] = []
  readonly #ready: Promise<void>
  readonly #onClose: () => void
  #subscription: StoreWatch | undefined
  #waiter: ((result: IteratorResult<CacheEvent>) => void) | undefined
  #failure: ((error: unknown) => void) | undefined
  #error: unknown
  #done = false
  readonly #abort = (): void => void this.close()

  constructor(source: WatchSource, onClose: () => void) {
    this.#source = source
    this.#onClose = onClose
    source.signal?.addEventListener('abort', this.#abort, { once: true })
    const store = source.store
    if (store.watch === undefined) throw new Error('the store has no watch()')
    this.#ready = store
      .watch(source.storePrefix, {
        change: (change) => this.#change(change),
        interrupted: () => this.#overflow('interrupted'),
      })
      .then(
        async (subscription) => {
          this.#subscription = subscription
          if (this.#done) await subscription.close()
        },
        (error: unknown) => {
          this.#error = error
          this.#finish()
          throw error
        },
      )
    // Observed through ready() and the iteration; never an unhandled rejection.
    this.#ready.catch(() => undefined)
    if (source.signal?.aborted === true) void this.close()
  }

  ready(): Promise<void> {
    return this.#ready
  }

  [Symbol.asyncIterator](): this {
    return this
  }

  next(): Promise<IteratorResult<CacheEvent>> {
    const event = this.#queue.shift()
    if (event !== undefined) return Promise.resolve({ value: event, done: false })
    if (this.#error !== undefined) {
      const error = this.#error
      this.#error = undefined
      return Promise.reject(error instanceof Error ? error : new Error('the watch failed'))
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true })
    return new Promise((resolve, reject) => {
      this.#waiter = resolve
      this.#failure = reject
    })
  }

  async return(): Promise<IteratorResult<CacheEvent>> {
    await this.close()
    return { value: undefined, done: true }
  }

  async close(): Promise<void> {
    if (this.#done) {
      await this.#subscription?.close()
      return
    }
    this.#finish()
    this.#queue.length = 0
    await this.#ready.catch(() => undefined)
    await this.#subscription?.close()
  }

  #finish(): void {
    if (this.#done) return
    this.#done = true
    this.#source.signal?.removeEventListener('abort', this.#abort)
    this.#onClose()
    const waiter = this.#waiter
    const failure = this.#failure
    this.#waiter = undefined
    this.#failure = undefined
    if (this.#error !== undefined && failure !== undefined) {
      const error = this.#error
      this.#error = undefined
      failure(error)
    } else {
      waiter?.({ value: undefined, done: true })
    }
  }

  #change(change: StoreChange): void {
    if (this.#done) return
    const key = this.#source.keyOf(change.key)
    if (key === undefined) return
    const event: CacheChangeEvent = { type: change.type, key, at: change.at }
    if (change.revision !== undefined) event.revision = change.revision
    if (change.value !== undefined) {
      try {
        event.value = this.#source.decode(change.value)
      } catch {
        // Not decodable with this cache's codec: the event goes without its value.
      }
    }
    this.#push(event)
  }

  #overflow(reason: 'interrupted'): void {
    if (this.#done) return
    this.#deliverOrQueue({ type: 'overflow', reason, dropped: undefined, at: Date.now() })
  }

  #push(event: CacheEvent): void {
    if (this.#waiter === undefined && this.#queue.length >= this.#source.buffer) {
      // Full: count the loss in an overflow event at the tail, which holds the gap's place.
      const tail = this.#queue.at(-1)
      if (tail?.type === 'overflow' && tail.reason === 'buffer') {
        tail.dropped = (tail.dropped ?? 0) + 1
      } else {
        this.#queue.push({ type: 'overflow', reason: 'buffer', dropped: 1, at: Date.now() })
      }
      return
    }
    this.#deliverOrQueue(event)
  }

  #deliverOrQueue(event: CacheEvent): void {
    const waiter = this.#waiter
    if (waiter !== undefined) {
      this.#waiter = undefined
      this.#failure = undefined
      waiter({ value: event, done: false })
      return
    }
    this.#queue.push(event)
  }
}
