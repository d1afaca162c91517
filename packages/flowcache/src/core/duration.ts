import { InvalidArgumentError } from '../errors.js'

/** A duration: a number of milliseconds, or a string such as `"1.5s"`, `"90s"`, `"5m"`, `"1h30m"`, `"7d"`. */
export type Duration = number | string

const UNIT_MS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

const PART = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d|w)/y

/**
 * Parses a duration into whole milliseconds (fractions round up, so `"0.5ms"` is 1 ms).
 * The only duration parser in flowcache: every TTL, lease and interval goes through it.
 * Zero, negative, non-finite, unit-less strings and unknown units are an {@link InvalidArgumentError}
 * naming `name`; they never mean "no expiry".
 *
 * @param input milliseconds, or a duration string with units ms, s, m, h, d, w (parts may be combined: `"1h30m"`)
 * @param name what the duration is for, used in the error message (default `ttl`)
 */
export function parseDuration(input: unknown, name = 'ttl'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input <= 0) {
      throw InvalidArgumentError.format(
        name,
        `must be a positive number of milliseconds or a duration string like "30s"; got ${String(input)}`,
      )
    }
    return Math.ceil(input)
  }
  if (typeof input !== 'string') {
    throw InvalidArgumentError.format(
      name,
      `must be a number of milliseconds or a duration string like "5m"; got ${typeof input}`,
    )
  }
  const text = input.trim().toLowerCase()
  if (text === '')
    throw InvalidArgumentError.format(name, 'must not be an empty string; use e.g. "30s"')
  let total = 0
  let index = 0
  PART.lastIndex = 0
  while (index < text.length) {
    PART.lastIndex = index
    const match = PART.exec(text)
    if (match === null) {
      const hint = /^\d+(\.\d+)?$/.test(text)
        ? ` (a string needs a unit: "${text}ms" or "${text}s"; pass a number for milliseconds)`
        : ' (units: ms, s, m, h, d, w)'
      throw InvalidArgumentError.format(name, `is not a valid duration: "${input}"${hint}`)
    }
    total += Number(match[1]) * (UNIT_MS[match[2] as string] as number)
    index = PART.lastIndex
    while (text[index] === ' ') index++
  }
  if (!Number.isFinite(total) || total <= 0) {
    throw InvalidArgumentError.format(name, `must be greater than zero; got "${input}"`)
  }
  return Math.ceil(total)
}

/** Formats milliseconds for messages and logs: `1500` → `"1.5s"`, `90000` → `"1m30s"`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`
  const parts: string[] = []
  let rest = ms
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`)
      rest %= size
    }
  }
  if (rest > 0)
    parts.push(`${rest % 1000 === 0 ? rest / 1000 : (rest / 1000).toFixed(3).replace(/0+$/, '')}s`)
  return parts.join('')
}
