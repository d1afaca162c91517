/**
 * Flood protection of the route table's on-demand reloads: a request to an unknown route may
 * reload the table, but concurrent requests share one reload (single-flight) and at most `max`
 * reloads start in any trailing `per` window (an in-process sliding window), so a flood of
 * unknown routes costs the loader a bounded number of calls.
 */
import type { Clock } from '../flowcache.js'

/** What {@link ReloadGuard.reload} did. */
export type ReloadOutcome =
  /** This call started a reload, which succeeded. */
  | 'reloaded'
  /** A reload was already running; this call waited for it (it succeeded). */
  | 'joined'
  /** The rate limit was reached: no reload, the caller goes on with the current table. */
  | 'limited'
  /** The reload (started or joined) failed; the current table stays. */
  | 'failed'

/** Counters of a {@link ReloadGuard}. */
export interface ReloadGuardStats {
  /** Reloads started. */
  started: number
  /** Calls that joined a reload already running. */
  joined: number
  /** Calls turned away by the rate limit. */
  limited: number
  /** Reloads that failed. */
  failed: number
}

/** Single-flight plus a sliding-window limit around one reload function. */
export class ReloadGuard {
  readonly #reload: () => Promise<void>
  readonly #max: number
  readonly #perMs: number
  readonly #clock: Clock
  /** Start times of the reloads of the current window, oldest first (at most `max`). */
  readonly #starts: number[] = []
  #inFlight: Promise<boolean> | undefined
  readonly #stats: ReloadGuardStats = { started: 0, joined: 0, limited: 0, failed: 0 }

  /**
   * @param reload the reload to guard; its rejection is reported as `'failed'`, not rethrown
   * @param max reloads allowed per window (a positive integer)
   * @param perMs the window, in ms
   * @param clock time source of the window
   */
  constructor(reload: () => Promise<void>, max: number, perMs: number, clock: Clock) {
    this.#reload = reload
    this.#max = max
    this.#perMs = perMs
    this.#clock = clock
  }

  /** Counters since creation (a copy). */
  stats(): ReloadGuardStats {
    return { ...this.#stats }
  }

  /**
   * Reloads unless a reload is running (then waits for that one) or the window is full (then
   * returns `'limited'` at once). Never rejects.
   */
  async reload(): Promise<ReloadOutcome> {
    if (this.#inFlight !== undefined) {
      this.#stats.joined++
      return (await this.#inFlight) ? 'joined' : 'failed'
    }
    const now = this.#clock.now()
    while (this.#starts.length > 0 && (this.#starts[0] as number) <= now - this.#perMs) {
      this.#starts.shift()
    }
    if (this.#starts.length >= this.#max) {
      this.#stats.limited++
      return 'limited'
    }
    this.#starts.push(now)
    this.#stats.started++
    const run = this.#reload().then(
      () => true,
      () => {
        this.#stats.failed++
        return false
      },
    )
    this.#inFlight = run
    try {
      return (await run) ? 'reloaded' : 'failed'
    } finally {
      this.#inFlight = undefined
    }
  }
}
