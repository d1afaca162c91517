/**
 * Time source of a cache and its stores. Injected so that TTL tests move time instead of
 * sleeping. `now()` is wall-clock milliseconds since the epoch: TTL deadlines are compared with it.
 */
export interface Clock {
  /** Wall-clock time in milliseconds since the epoch. */
  now(): number
}

/** The real clock: `Date.now()`. */
export const systemClock: Clock = { now: () => Date.now() }

/** A clock that only moves when told to; for tests of TTL and expiry. */
export class ManualClock implements Clock {
  #nowMs: number

  /** @param startMs initial time in ms since the epoch (default: a fixed, arbitrary instant). */
  constructor(startMs = 1_700_000_000_000) {
    this.#nowMs = startMs
  }

  now(): number {
    return this.#nowMs
  }

  /** Moves time forward by `ms` milliseconds. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError('ManualClock.advance needs ms >= 0')
    this.#nowMs += ms
  }

  /** Sets the current time to `ms` since the epoch (may go backwards, like a real wall clock). */
  set(ms: number): void {
    this.#nowMs = ms
  }
}
