/**
 * Small argument and value checks shared by the cache and the stores, so that every option and
 * every counter reports a bad value the same way.
 */
import { InvalidArgumentError, NotANumberError } from '../errors.js'

/**
 * `value` when it is a positive safe integer, `fallback` when it is `undefined`; otherwise an
 * {@link InvalidArgumentError} naming the option.
 */
export function positiveInteger(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw InvalidArgumentError.format(name, `must be a positive integer; got ${String(value)}`)
  }
  return value
}

/**
 * `current + by` for `increment`, or {@link NotANumberError} when the stored value is not a
 * number (a counter must never silently restart from a string or an object).
 */
export function incremented(current: unknown, by: number): number {
  if (typeof current !== 'number') {
    throw new NotANumberError(
      `cannot increment: the stored value is ${current === null ? 'null' : typeof current}, not a number; delete the key or use another one`,
    )
  }
  return current + by
}
