/**
 * Every error flowcache throws is a {@link FlowcacheError} with a stable `code`. Branch on `code`
 * (or `instanceof`), never on message text: messages may be reworded, codes never change.
 */

/** Options accepted by every flowcache error. */
export interface FlowcacheErrorOptions {
  /** The underlying error, when this one wraps another (a driver error, a parse error…). */
  cause?: unknown
}

/** Base class of every error flowcache throws. */
export class FlowcacheError extends Error {
  /** Stable machine-readable code of this error class. */
  static readonly code: string = 'E_FLOWCACHE'
  /** Stable machine-readable code, e.g. `E_INVALID_ARGUMENT`. */
  readonly code: string

  constructor(message: string, options?: FlowcacheErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = new.target.code
  }
}

/** An argument or option is invalid: a bad TTL, key, value, limit or option. Fix the call. */
export class InvalidArgumentError extends FlowcacheError {
  static override readonly code: string = 'E_INVALID_ARGUMENT'

  /** Builds the message `<name> <problem>` so every argument error reads the same way. */
  static format(
    name: string,
    problem: string,
    options?: FlowcacheErrorOptions,
  ): InvalidArgumentError {
    return new InvalidArgumentError(`${name} ${problem}`, options)
  }
}

/** A key is longer than the configured `maxKeyBytes`. */
export class KeyTooLongError extends InvalidArgumentError {
  static override readonly code = 'E_KEY_TOO_LONG'
}

/** A value cannot be stored: a function, symbol, class instance, cycle or `undefined`. */
export class UnsupportedValueError extends InvalidArgumentError {
  static override readonly code = 'E_UNSUPPORTED_VALUE'
}

/** An encoded value is larger than the configured `maxValueBytes`. */
export class ValueTooLargeError extends InvalidArgumentError {
  static override readonly code = 'E_VALUE_TOO_LARGE'
}

/** A batch (getMany, setMany, deleteMany) has more items than `maxBatchSize`. */
export class BatchTooLargeError extends InvalidArgumentError {
  static override readonly code = 'E_BATCH_TOO_LARGE'
}

/** A stored value could not be decoded: it was written by something else or is corrupt. */
export class DecodeError extends FlowcacheError {
  static override readonly code = 'E_DECODE'
}

/** The store cannot be reached or answered with a fault. Never reported as a miss. */
export class StoreUnavailableError extends FlowcacheError {
  static override readonly code = 'E_STORE_UNAVAILABLE'
}

/** The cache (or its store) was closed; create a new one. */
export class ClosedError extends FlowcacheError {
  static override readonly code = 'E_CLOSED'
}

/** `increment` found a stored value that is not a number. */
export class NotANumberError extends FlowcacheError {
  static override readonly code = 'E_NOT_A_NUMBER'
}

/** A lock's lease was lost (expired, or taken over) before it was extended or released. */
export class LockLostError extends FlowcacheError {
  static override readonly code = 'E_LOCK_LOST'
}

/** A lock could not be taken within the time allowed (`withLock`). */
export class LockTimeoutError extends FlowcacheError {
  static override readonly code = 'E_LOCK_TIMEOUT'
}

/** An action needed leadership this replica does not hold (or no longer holds). */
export class NotLeaderError extends FlowcacheError {
  static override readonly code = 'E_NOT_LEADER'
}

/**
 * The system of record behind a `writeThrough` or `writeBehind` writer (its `WriteTarget`)
 * failed or rejected a write; the target's own error is in `cause`.
 */
export class WriteTargetError extends FlowcacheError {
  static override readonly code = 'E_WRITE_TARGET'
}

/**
 * A `getOrSet` factory did not settle within its hard timeout (`timeout.hard`), and no stale value
 * was available to serve instead. The factory's `ctx.signal` was aborted with this error.
 */
export class FactoryTimeoutError extends FlowcacheError {
  static override readonly code = 'E_FACTORY_TIMEOUT'
}

/** Every error class by its code, for callers that map codes (HTTP statuses, script errors). */
export const errors = {
  E_FLOWCACHE: FlowcacheError,
  E_INVALID_ARGUMENT: InvalidArgumentError,
  E_KEY_TOO_LONG: KeyTooLongError,
  E_UNSUPPORTED_VALUE: UnsupportedValueError,
  E_VALUE_TOO_LARGE: ValueTooLargeError,
  E_BATCH_TOO_LARGE: BatchTooLargeError,
  E_DECODE: DecodeError,
  E_STORE_UNAVAILABLE: StoreUnavailableError,
  E_CLOSED: ClosedError,
  E_NOT_A_NUMBER: NotANumberError,
  E_LOCK_LOST: LockLostError,
  E_LOCK_TIMEOUT: LockTimeoutError,
  E_NOT_LEADER: NotLeaderError,
  E_WRITE_TARGET: WriteTargetError,
  E_FACTORY_TIMEOUT: FactoryTimeoutError,
} as const

/** Union of every stable error code. */
export type ErrorCode = keyof typeof errors
