import type { WriteItem, WriteTarget } from '../../src/patterns/target.js'

/** One call a {@link RecordingTarget} received. */
export interface TargetCall {
  kind: 'write' | 'delete'
  keys: string[]
  ok: boolean
}

/**
 * A system of record in memory for the write-pattern tests: it keeps rows, logs every call and
 * every value written per key, and can be told to fail, or to hold calls until released.
 */
export class RecordingTarget<T = unknown> implements WriteTarget<T> {
  readonly rows = new Map<string, T>()
  readonly calls: TargetCall[] = []
  /** Every value written, per key, in the order the target accepted them. */
  readonly history = new Map<string, T[]>()
  /** Calls still to fail (decremented per failed call); `Infinity` fails until reset. */
  failNext = 0
  /** When set, each call decides whether to fail. */
  failWhen: ((call: Omit<TargetCall, 'ok'>) => boolean) | undefined
  /** When set, calls wait for it before doing anything. */
  gate: Promise<void> | undefined
  /** Calls currently inside the target. */
  inFlight = 0
  maxInFlight = 0
  #entered: Array<() => void> = []

  async write(items: ReadonlyArray<WriteItem<T>>): Promise<void> {
    await this.#enter(
      'write',
      items.map((item) => item.key),
    )
    for (const { key, value } of items) {
      this.rows.set(key, value)
      const values = this.history.get(key) ?? []
      values.push(value)
      this.history.set(key, values)
    }
  }

  async delete(keys: readonly string[]): Promise<void> {
    await this.#enter('delete', [...keys])
    for (const key of keys) this.rows.delete(key)
  }

  /** Resolves when the next call has entered the target (before the gate). */
  nextCall(): Promise<void> {
    return new Promise((resolve) => this.#entered.push(resolve))
  }

  /** Calls that succeeded. */
  get succeeded(): TargetCall[] {
    return this.calls.filter((call) => call.ok)
  }

  async #enter(kind: TargetCall['kind'], keys: string[]): Promise<void> {
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    for (const wake of this.#entered.splice(0)) wake()
    try {
      if (this.gate !== undefined) await this.gate
      let fail = this.failWhen?.({ kind, keys }) ?? false
      if (this.failNext > 0) {
        this.failNext--
        fail = true
      }
      this.calls.push({ kind, keys, ok: !fail })
      if (fail) throw new Error(`target refused ${kind} of ${keys.length} keys`)
    } finally {
      this.inFlight--
    }
  }
}

/** A promise and the function that resolves it. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => undefined
  const promise = new Promise<void>((done) => {
    resolve = done
  })
  return { promise, resolve }
}

/** Lets pending promise callbacks and timers of 0 ms run. */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve))
}
