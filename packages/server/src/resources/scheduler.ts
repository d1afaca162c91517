/**
 * Timers of the refreshing resources, injectable so that tests move time instead of sleeping.
 */
import type { ManualClock } from '../flowcache.js'

/** Schedules callbacks; the resource caches take one so that tests can drive time. */
export interface Scheduler {
  /**
   * Calls `callback` once, `delayMs` milliseconds from now. Returns a function that cancels the
   * call (a no-op once it ran).
   */
  schedule(callback: () => void, delayMs: number): () => void
}

/**
 * The real scheduler: `setTimeout`, unref'd so that a pending refresh never keeps the process
 * alive on its own.
 */
export const systemScheduler: Scheduler = {
  schedule(callback, delayMs) {
    const timer = setTimeout(callback, delayMs)
    timer.unref()
    return () => clearTimeout(timer)
  },
}

interface PendingTimer {
  at: number
  seq: number
  callback: () => void
}

/**
 * A scheduler driven by a {@link ManualClock}: nothing runs until {@link ManualScheduler.advance}
 * moves the clock past a callback's time. For tests of refresh and retry timing.
 */
export class ManualScheduler implements Scheduler {
  readonly #clock: ManualClock
  #timers: PendingTimer[] = []
  #seq = 0

  /** @param clock the clock this scheduler reads and moves; share it with the code under test. */
  constructor(clock: ManualClock) {
    this.#clock = clock
  }

  schedule(callback: () => void, delayMs: number): () => void {
    const timer: PendingTimer = {
      at: this.#clock.now() + Math.max(0, delayMs),
      seq: this.#seq++,
      callback,
    }
    this.#timers.push(timer)
    return () => {
      this.#timers = this.#timers.filter((pending) => pending !== timer)
    }
  }

  /** How many callbacks are waiting. */
  get pending(): number {
    return this.#timers.length
  }

  /** When the next callback is due (ms since the epoch), or `null` when none is waiting. */
  get nextAt(): number | null {
    const next = this.#next()
    return next === undefined ? null : next.at
  }

  /**
   * Moves the clock forward by `ms`, running each callback that falls due, in time order, with
   * the clock set to its due time. Callbacks scheduled by those callbacks run too when they fall
   * within the window.
   */
  advance(ms: number): void {
    const end = this.#clock.now() + ms
    for (;;) {
      const next = this.#next()
      if (next === undefined || next.at > end) break
      this.#timers = this.#timers.filter((pending) => pending !== next)
      if (next.at > this.#clock.now()) this.#clock.set(next.at)
      next.callback()
    }
    this.#clock.set(end)
  }

  #next(): PendingTimer | undefined {
    let best: PendingTimer | undefined
    for (const timer of this.#timers) {
      if (
        best === undefined ||
        timer.at < best.at ||
        (timer.at === best.at && timer.seq < best.seq)
      )
        best = timer
    }
    return best
  }
}
