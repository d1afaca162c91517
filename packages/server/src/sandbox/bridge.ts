/**
 * The host side of the `ctx` bridge. A script's `ctx.cache.get('k')` arrives here as the
 * operation name and its arguments as JSON text; this module parses them, checks their types,
 * calls the flow's `Cache` view and answers with a plain reply object that isolated-vm copies
 * into the script. Nothing the script sends is a host object, and nothing sent back is one:
 * locks go back as `{ key, owner, token, acquiredAt }`, errors as `{ code, name, message }`.
 *
 * Every operation acts on the view the host handed to the run, so the namespace is fixed by the
 * host: keys are plain strings inside that view, whatever characters they contain.
 */
import {
  FlowcacheError,
  InvalidArgumentError,
  LockLostError,
  type AcquireOptions,
  type Cache,
  type Duration,
  type Lock,
  type RateLimitOptions,
} from '../flowcache.js'

/** Most keys `ctx.cache.keys()` returns; a script that needs more should keep an index key. */
export const MAX_LISTED_KEYS = 1000

/** What the bridge answers; copied into the isolate as-is. */
export type Reply =
  { ok: true; value: unknown } | { ok: false; code: string; name: string; message: string }

/** The state of one run the bridge works for. */
export interface BridgeRun {
  /** The flow's namespace view: every cache, lock and rate-limit call goes through it. */
  readonly cache: Cache
  /** Aborted when the run ends or is stopped; ends lock waits early. */
  readonly signal: AbortSignal
  /** Locks this run took and has not released, by `key \0 token`. */
  readonly locks: Map<string, Lock>
}

type Operation = (run: BridgeRun, args: readonly unknown[]) => Promise<unknown>

function text(value: unknown, name: string): string {
  if (typeof value !== 'string') {
    throw InvalidArgumentError.format(name, `must be a string; got ${kindOf(value)}`)
  }
  return value
}

function optionalText(value: unknown, name: string): string | undefined {
  return value === undefined || value === null ? undefined : text(value, name)
}

function kindOf(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value
}

function optional(value: unknown): unknown {
  return value === null ? undefined : value
}

function duration(value: unknown, name: string): Duration | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' && typeof value !== 'string') {
    throw InvalidArgumentError.format(
      name,
      `must be ms or a duration string like "30s"; got ${kindOf(value)}`,
    )
  }
  return value
}

function record(value: unknown, name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw InvalidArgumentError.format(name, `must be an object; got ${kindOf(value)}`)
  }
  return value as Record<string, unknown>
}

/** `set`'s third argument: a TTL, or `{ ttl, tags, dependsOn }`. */
function setOptions(value: unknown): unknown {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'number' || typeof value === 'string') return value
  const given = record(value, 'options')
  const options: { ttl?: Duration; tags?: string[]; dependsOn?: string[] } = {}
  const ttl = duration(given.ttl, 'ttl')
  if (ttl !== undefined) options.ttl = ttl
  if (given.tags !== undefined) options.tags = strings(given.tags, 'tags')
  if (given.dependsOn !== undefined) options.dependsOn = strings(given.dependsOn, 'dependsOn')
  return options
}

function strings(value: unknown, name: string): string[] {
  if (!Array.isArray(value)) throw InvalidArgumentError.format(name, 'must be an array of strings')
  return value.map((item, index) => text(item, `${name}[${index}]`))
}

/** A lock as the script sees it: plain data, the fencing token as a decimal string. */
interface LockData {
  key: string
  owner: string
  token: string
  acquiredAt: number
}

function lockData(lock: Lock): LockData {
  return {
    key: lock.key,
    owner: lock.owner,
    token: lock.token.toString(),
    acquiredAt: lock.acquiredAt,
  }
}

function heldLock(run: BridgeRun, given: unknown): Lock | undefined {
  const lock = record(given, 'lock')
  return run.locks.get(`${text(lock.key, 'lock.key')}\0${text(lock.token, 'lock.token')}`)
}

const operations = new Map<string, Operation>([
  ['cache.get', (run, [key]) => run.cache.get(text(key, 'key'))],
  [
    'cache.set',
    (run, [key, value, options]) =>
      run.cache.set(text(key, 'key'), value, setOptions(options) as Duration | undefined),
  ],
  [
    'cache.add',
    (run, [key, value, ttl]) => run.cache.add(text(key, 'key'), value, duration(ttl, 'ttl')),
  ],
  ['cache.delete', (run, [key]) => run.cache.delete(text(key, 'key'))],
  ['cache.has', (run, [key]) => run.cache.has(text(key, 'key'))],
  [
    'cache.increment',
    (run, [key, by, ttl]) => {
      const step = optional(by)
      if (step !== undefined && typeof step !== 'number') {
        throw InvalidArgumentError.format('by', `must be a number; got ${kindOf(step)}`)
      }
      return run.cache.increment(text(key, 'key'), step, duration(ttl, 'ttl'))
    },
  ],
  ['cache.getMany', (run, [keys]) => run.cache.getMany(strings(keys, 'keys'))],
  ['cache.ttl', (run, [key]) => run.cache.ttl(text(key, 'key'))],
  [
    'cache.keys',
    (run, [prefix]) =>
      run.cache.listKeys(optionalText(prefix, 'prefix'), { limit: MAX_LISTED_KEYS }),
  ],
  [
    'locks.acquire',
    async (run, [key, given]) => {
      const name = text(key, 'key')
      const options = record(given, 'options')
      const acquire: AcquireOptions = { ttl: duration(options.ttl, 'ttl') ?? 0, signal: run.signal }
      const owner = optionalText(options.owner, 'owner')
      if (owner !== undefined) acquire.owner = owner
      const wait = duration(options.wait, 'wait')
      if (wait !== undefined) acquire.wait = wait
      const retryEvery = duration(options.retryEvery, 'retryEvery')
      if (retryEvery !== undefined) acquire.retryEvery = retryEvery
      const lock = await run.cache.locks.acquire(name, acquire)
      if (lock === null) return null
      run.locks.set(`${lock.key}\0${lock.token.toString()}`, lock)
      return lockData(lock)
    },
  ],
  [
    'locks.release',
    async (run, [given, owner]) => {
      if (typeof given === 'string') return run.cache.locks.release(given, text(owner, 'owner'))
      const lock = heldLock(run, given)
      if (lock === undefined) {
        const data = record(given, 'lock')
        return run.cache.locks.release(text(data.key, 'lock.key'), text(data.owner, 'lock.owner'))
      }
      run.locks.delete(`${lock.key}\0${lock.token.toString()}`)
      return lock.release()
    },
  ],
  [
    'locks.extend',
    async (run, [given, ttl]) => {
      const lock = heldLock(run, given)
      if (lock === undefined) {
        throw new LockLostError(
          'this run does not hold that lock; only locks it acquired can be extended',
        )
      }
      await lock.extend(duration(ttl, 'ttl') ?? 0)
      return true
    },
  ],
  [
    'rateLimit',
    (run, [key, given]) => {
      const options = record(given, 'options')
      const limit: RateLimitOptions = {
        max: options.max as number,
        per: options.per as Duration,
      }
      if (options.algorithm !== undefined)
        limit.algorithm = options.algorithm as RateLimitOptions['algorithm']
      if (options.cost !== undefined) limit.cost = options.cost as number
      if (options.failure !== undefined)
        limit.failure = options.failure as RateLimitOptions['failure']
      return run.cache.rateLimit(text(key, 'key'), limit)
    },
  ],
])

/**
 * Turns an error into the reply a script sees. A flowcache error keeps its code, class name
 * and message (they only ever name this run's own keys and options); anything else is reported
 * without its message, which might carry host details.
 */
export function errorReply(error: unknown, operation: string): Reply {
  if (error instanceof FlowcacheError) {
    return { ok: false, code: error.code, name: error.name, message: error.message }
  }
  return {
    ok: false,
    code: 'E_SANDBOX',
    name: 'Error',
    message: `ctx.${operation} failed in the host; the error was logged there`,
  }
}

/**
 * Runs one bridge call: `operation` with its arguments as JSON text. Never throws: failures are
 * replies with `ok: false`. `onUnexpected` receives errors that are not flowcache errors.
 */
export async function dispatch(
  run: BridgeRun,
  operation: unknown,
  argsJson: unknown,
  onUnexpected: (error: unknown) => void,
): Promise<Reply> {
  const name = typeof operation === 'string' ? operation : String(operation)
  const handler = typeof operation === 'string' ? operations.get(operation) : undefined
  try {
    if (handler === undefined) {
      throw InvalidArgumentError.format(
        'operation',
        `"${name.slice(0, 100)}" is not a ctx operation`,
      )
    }
    if (typeof argsJson !== 'string') {
      throw InvalidArgumentError.format('arguments', 'must be JSON text')
    }
    let args: unknown
    try {
      args = JSON.parse(argsJson)
    } catch (cause) {
      throw InvalidArgumentError.format('arguments', 'must be JSON text', { cause })
    }
    if (!Array.isArray(args)) throw InvalidArgumentError.format('arguments', 'must be an array')
    run.signal.throwIfAborted()
    return { ok: true, value: await handler(run, args) }
  } catch (error) {
    if (!(error instanceof FlowcacheError)) onUnexpected(error)
    return errorReply(error, name.slice(0, 100))
  }
}
