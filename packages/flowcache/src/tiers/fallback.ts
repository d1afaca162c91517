/**
 * Start-up fallback for distributed stores. When Redis or NATS cannot be reached at start, the
 * cache keeps serving from an in-process memory store (as the workflow platforms' caches do),
 * says so once in the log and in `health()`, keeps trying to connect in the background with
 * capped, jittered backoff, and switches back when the store answers. Entries written while in
 * fallback live only in this process and are dropped on the switch back.
 *
 * Only the start-up connection falls back: once the store has answered, a later outage makes
 * calls fail fast with `StoreUnavailableError` instead of silently splitting state per process.
 * Coordination (locks, leaders, limits) never uses the fallback.
 */
import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { StoreUnavailableError } from '../errors.js'
import { memoryStore } from '../stores/memory/index.js'
import type { Codec } from '../types/codec.js'
import type {
  QuotaLimits,
  QuotaUsage,
  Revision,
  Store,
  StoreCapabilities,
  StoreEntry,
  StoreHealth,
  StoreListOptions,
  StoreStats,
  StoreWriteItem,
  StoreWriteOptions,
} from '../types/store.js'

/** What to do when a distributed store cannot be reached at start. */
export type FallbackMode = 'memory' | 'fail'

/** Options of {@link FallbackStore}. */
export interface FallbackOptions {
  /** `memory`: serve from memory and reconnect in the background; `fail`: start-up fails. @default 'memory' */
  mode: FallbackMode
  logger: Logger
  clock: Clock
  /** First reconnect delay in ms; doubles per attempt up to `reconnectMaxMs`, with full jitter. @default 250 */
  reconnectBaseMs?: number
  /** Longest reconnect delay in ms. @default 5000 */
  reconnectMaxMs?: number
  /** Called whenever the fallback state changes (for metrics). */
  onChange?: (state: 'primary' | 'fallback') => void
}

type State = 'starting' | 'primary' | 'fallback' | 'failed' | 'closed'

/** A store that is the primary store once connected, or a memory store while it cannot be reached. */
export class FallbackStore implements Store {
  readonly name: string
  readonly primary: Store
  readonly #options: FallbackOptions
  #state: State = 'starting'
  #active: Store
  #memory: Store | undefined
  /** Quotas set so far, applied to every new memory fallback too. */
  readonly #quotas = new Map<string, QuotaLimits>()
  #reason: string | undefined
  #since: number
  #activations = 0
  #attempt = 0
  #timer: NodeJS.Timeout | undefined
  #failure: StoreUnavailableError | undefined
  readonly #ready: Promise<void>

  constructor(primary: Store, options: FallbackOptions) {
    this.primary = primary
    this.name = primary.name
    this.#options = options
    this.#active = primary
    this.#since = options.clock.now()
    if (primary.increment !== undefined) {
      this.increment = async (key, by, codec, options) => {
        const target = await this.#target()
        // Both the primary (checked above) and the memory fallback implement increment.
        return (target.increment as NonNullable<Store['increment']>).call(
          target,
          key,
          by,
          codec,
          options,
        )
      }
    }
    this.#ready = this.#start()
    // Callers observe a failed start through ready() and through every call; never unhandled.
    this.#ready.catch(() => undefined)
  }

  /** The primary's capabilities, read each time: a store may learn more once connected. */
  get capabilities(): StoreCapabilities {
    return this.primary.capabilities
  }

  /** Resolves once start-up is decided; rejects in `fail` mode when the store is unreachable. */
  ready(): Promise<void> {
    return this.#ready
  }

  /** Whether calls are being served by the memory fallback. */
  get inFallback(): boolean {
    return this.#state === 'fallback'
  }

  /** How many times the cache switched to the memory fallback. */
  get activations(): number {
    return this.#activations
  }

  health(): StoreHealth {
    if (this.#state === 'fallback' || this.#state === 'failed') {
      return {
        status: this.#state === 'fallback' ? 'degraded' : 'down',
        reason: this.#reason ?? 'store unreachable',
        since: this.#since,
      }
    }
    const inner = this.primary.health?.()
    return inner ?? { status: 'ok', since: this.#since }
  }

  async #start(): Promise<void> {
    if (this.primary.connect === undefined) {
      this.#state = 'primary'
      return
    }
    try {
      await this.primary.connect()
      if (this.#state === 'starting') this.#state = 'primary'
    } catch (error) {
      if (this.#state === 'closed') return
      const reason = `${this.primary.name} store unreachable at start: ${messageOf(error)}`
      if (this.#options.mode === 'fail') {
        this.#state = 'failed'
        this.#reason = reason
        this.#since = this.#options.clock.now()
        this.#failure = new StoreUnavailableError(`${reason} (fallback: 'fail')`, { cause: error })
        throw this.#failure
      }
      this.#enterFallback(reason)
    }
  }

  #enterFallback(reason: string): void {
    const memory = memoryStore({ clock: this.#options.clock })
    for (const [prefix, limits] of this.#quotas) memory.setQuota(prefix, limits)
    this.#memory = memory
    this.#active = this.#memory
    this.#state = 'fallback'
    this.#reason = reason
    this.#since = this.#options.clock.now()
    this.#activations++
    this.#options.logger.warn(
      `${reason}; serving from an in-process memory store and reconnecting in the background`,
      { store: this.primary.name },
    )
    this.#options.onChange?.('fallback')
    this.#scheduleReconnect()
  }

  #scheduleReconnect(): void {
    const base = this.#options.reconnectBaseMs ?? 250
    const max = this.#options.reconnectMaxMs ?? 5000
    const ceiling = Math.min(max, base * 2 ** Math.min(this.#attempt, 30))
    this.#attempt++
    // Full jitter: replicas that lost the store together do not come back in lockstep.
    const delay = Math.max(10, Math.floor(Math.random() * ceiling))
    this.#timer = setTimeout(() => void this.#reconnect(), delay)
    this.#timer.unref()
  }

  async #reconnect(): Promise<void> {
    if (this.#state !== 'fallback') return
    try {
      await this.primary.connect?.()
    } catch {
      if (this.#state === 'fallback') this.#scheduleReconnect()
      return
    }
    if (this.#state !== 'fallback') return
    const memory = this.#memory
    this.#active = this.primary
    this.#memory = undefined
    this.#state = 'primary'
    this.#reason = undefined
    this.#attempt = 0
    this.#since = this.#options.clock.now()
    this.#options.logger.info(
      `${this.primary.name} store reachable again; switched back from memory`,
      {
        store: this.primary.name,
      },
    )
    this.#options.onChange?.('primary')
    await memory?.close()
  }

  async #target(): Promise<Store> {
    if (this.#state === 'starting') {
      // A failed start in 'fail' mode rejects here, so every call reports it.
      await this.#ready
    }
    if (this.#state === 'failed' && this.#failure !== undefined) throw this.#failure
    return this.#active
  }

  async get(key: string): Promise<StoreEntry | undefined> {
    return (await this.#target()).get(key)
  }

  async peek(key: string): Promise<StoreEntry | undefined> {
    const target = await this.#target()
    return target.peek === undefined ? target.get(key) : target.peek(key)
  }

  async getMany(keys: readonly string[]): Promise<Array<StoreEntry | undefined>> {
    return (await this.#target()).getMany(keys)
  }

  async set(key: string, value: Uint8Array, options?: StoreWriteOptions): Promise<Revision> {
    return (await this.#target()).set(key, value, options)
  }

  async setMany(items: readonly StoreWriteItem[]): Promise<Revision[]> {
    return (await this.#target()).setMany(items)
  }

  async create(
    key: string,
    value: Uint8Array,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    return (await this.#target()).create(key, value, options)
  }

  async compareAndSet(
    key: string,
    value: Uint8Array,
    expected: Revision,
    options?: StoreWriteOptions,
  ): Promise<Revision | undefined> {
    return (await this.#target()).compareAndSet(key, value, expected, options)
  }

  async delete(key: string, options?: { expected?: Revision }): Promise<boolean> {
    return (await this.#target()).delete(key, options)
  }

  async deleteMany(keys: readonly string[]): Promise<number> {
    return (await this.#target()).deleteMany(keys)
  }

  /** Present when the primary store has `increment`; the memory fallback always has it. */
  readonly increment?: (
    key: string,
    by: number,
    codec: Codec,
    options?: StoreWriteOptions,
  ) => Promise<number>

  async *list(prefix: string, options?: StoreListOptions): AsyncIterable<string> {
    yield* (await this.#target()).list(prefix, options)
  }

  async clear(prefix: string): Promise<number> {
    return (await this.#target()).clear(prefix)
  }

  /**
   * Sets the quota on the primary store and on the memory fallback (now and whenever a new one
   * starts), so a namespace keeps its limits while the primary is unreachable. Returns what the
   * primary returns: its promise when it records the quota asynchronously.
   */
  setQuota(prefix: string, limits: QuotaLimits): void | Promise<void> {
    this.#quotas.set(prefix, { ...limits })
    void this.#memory?.setQuota?.(prefix, limits)
    return this.primary.setQuota?.(prefix, limits)
  }

  /** Usage of the quota on `prefix` in the store serving now (the memory fallback while active). */
  async quotaUsage(prefix: string): Promise<QuotaUsage | undefined> {
    const target = await this.#target()
    return target.quotaUsage?.(prefix)
  }

  now(): number {
    const active = this.#active
    return active.now === undefined ? Date.now() : active.now()
  }

  stats(): StoreStats {
    return this.#active.stats?.() ?? { entries: 0, bytes: 0, evictions: 0, expirations: 0 }
  }

  async connect(): Promise<void> {
    return this.#ready
  }

  async close(): Promise<void> {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    await Promise.all([this.primary.close(), this.#memory?.close()])
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
