/**
 * The ticker of a `schedule` trigger. Tick `n` is due at `start + n × everyMs` on the monotonic
 * clock, so late timers never push later ticks back (no drift accumulates). Ticks whose time
 * passed while the process was busy are not caught up: they are counted as missed and the next
 * due tick runs. A tick that comes while the previous run still runs is skipped and counted.
 */

/** Counters of a {@link Ticker}. */
export interface TickerStats {
  /** Ticks handed to the run function. */
  fired: number
  /** Ticks skipped because the previous run was still running. */
  skippedOverlap: number
  /** Ticks whose time passed while the process was busy (not caught up). */
  missed: number
}

/** What a tick tells the run function. */
export interface Tick {
  /** Tick number, from 1. */
  n: number
  /** When the tick was due, in ms since the epoch. */
  scheduledAt: number
}

/** Fires `run` every `everyMs`, one run at a time. */
export class Ticker {
  readonly #everyMs: number
  readonly #run: (tick: Tick) => Promise<void>
  /** Start on the monotonic clock, and the wall-clock time at that instant. */
  #startMono = 0
  #startWall = 0
  #next = 1
  #timer: NodeJS.Timeout | undefined
  #running: Promise<void> | undefined
  #stopped = false
  readonly #stats: TickerStats = { fired: 0, skippedOverlap: 0, missed: 0 }

  /**
   * @param everyMs period in ms (a positive number)
   * @param run called for each tick that is not skipped; its rejection is the caller's to handle
   *   inside `run` (a rejection here is swallowed)
   */
  constructor(everyMs: number, run: (tick: Tick) => Promise<void>) {
    this.#everyMs = everyMs
    this.#run = run
  }

  /** Counters (a copy). */
  stats(): TickerStats {
    return { ...this.#stats }
  }

  /** Whether a run started by a tick is still running. */
  get busy(): boolean {
    return this.#running !== undefined
  }

  /** Starts ticking: the first tick is due `everyMs` from now. */
  start(): void {
    this.#startMono = performance.now()
    this.#startWall = Date.now()
    this.#arm()
  }

  /** Stops ticking and resolves when the run in progress (if any) has finished. */
  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    await this.#running
  }

  #arm(): void {
    if (this.#stopped) return
    const due = this.#startMono + this.#next * this.#everyMs
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, due - performance.now()))
  }

  #fire(): void {
    if (this.#stopped) return
    // The latest tick that is due now; earlier ones that were never fired are missed.
    const due = Math.max(
      this.#next,
      Math.floor((performance.now() - this.#startMono) / this.#everyMs),
    )
    this.#stats.missed += due - this.#next
    this.#next = due + 1
    if (this.#running !== undefined) {
      this.#stats.skippedOverlap++
    } else {
      this.#stats.fired++
      const tick: Tick = { n: due, scheduledAt: this.#startWall + due * this.#everyMs }
      const running = this.#run(tick)
        .catch(() => undefined)
        .finally(() => {
          if (this.#running === running) this.#running = undefined
        })
      this.#running = running
    }
    this.#arm()
  }
}
