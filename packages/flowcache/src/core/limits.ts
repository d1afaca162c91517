import { positiveInteger } from './checks.js'
import { formatDuration, parseDuration, type Duration } from './duration.js'
import { BatchTooLargeError, InvalidArgumentError, ValueTooLargeError } from '../errors.js'

/** Limits checked before any I/O, so a bad call fails fast and nothing reaches the store. */
export interface Limits {
  /** Longest key (and namespace name), in UTF-8 bytes. @default 1024 */
  maxKeyBytes: number
  /** Largest encoded value, in bytes. @default 1 MiB (1_048_576) */
  maxValueBytes: number
  /** Longest TTL accepted, in ms. @default 365 days */
  maxTtlMs: number
  /** Most items in one getMany / setMany / deleteMany. @default 1000 */
  maxBatchSize: number
}

/** Limits as options: every field optional; `maxTtl` also takes a duration string. */
export interface LimitsOptions {
  /** @see Limits.maxKeyBytes */
  maxKeyBytes?: number
  /** @see Limits.maxValueBytes */
  maxValueBytes?: number
  /** Longest TTL accepted, as ms or a duration string. @default '365d' */
  maxTtl?: Duration
  /** @see Limits.maxBatchSize */
  maxBatchSize?: number
}

/** The defaults of every limit. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxKeyBytes: 1024,
  maxValueBytes: 1024 * 1024,
  maxTtlMs: 365 * 86_400_000,
  maxBatchSize: 1000,
})

/** Validates limit options and fills in defaults. */
export function resolveLimits(options: LimitsOptions = {}): Readonly<Limits> {
  return Object.freeze({
    maxKeyBytes: positiveInteger(
      options.maxKeyBytes,
      'limits.maxKeyBytes',
      DEFAULT_LIMITS.maxKeyBytes,
    ),
    maxValueBytes: positiveInteger(
      options.maxValueBytes,
      'limits.maxValueBytes',
      DEFAULT_LIMITS.maxValueBytes,
    ),
    maxTtlMs:
      options.maxTtl === undefined
        ? DEFAULT_LIMITS.maxTtlMs
        : parseDuration(options.maxTtl, 'limits.maxTtl'),
    maxBatchSize: positiveInteger(
      options.maxBatchSize,
      'limits.maxBatchSize',
      DEFAULT_LIMITS.maxBatchSize,
    ),
  })
}

/** Parses a TTL and checks it against `maxTtlMs`. */
export function checkTtl(ttl: unknown, limits: Limits, name = 'ttl'): number {
  const ms = parseDuration(ttl, name)
  if (ms > limits.maxTtlMs) {
    throw InvalidArgumentError.format(
      name,
      `is ${formatDuration(ms)}, longer than limits.maxTtl (${formatDuration(limits.maxTtlMs)}); shorten it or raise the limit`,
    )
  }
  return ms
}

/** Throws {@link ValueTooLargeError} when an encoded value is over `maxValueBytes`. */
export function checkValueSize(sizeBytes: number, limits: Limits, key: string): void {
  if (sizeBytes > limits.maxValueBytes) {
    throw new ValueTooLargeError(
      `value of key "${key}" is ${sizeBytes} bytes encoded; the limit is ${limits.maxValueBytes} (limits.maxValueBytes): store less, split it, or raise the limit`,
    )
  }
}

/** Throws {@link BatchTooLargeError} when a batch has more than `maxBatchSize` items. */
export function checkBatch(size: number, limits: Limits, operation: string): void {
  if (size > limits.maxBatchSize) {
    throw new BatchTooLargeError(
      `${operation} got ${size} items; the limit is ${limits.maxBatchSize} (limits.maxBatchSize): split the batch or raise the limit`,
    )
  }
}
