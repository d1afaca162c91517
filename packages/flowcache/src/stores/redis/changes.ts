/**
 * History and watch on Redis.
 *
 * - The version log of `<store key>` is the LIST `<redis key>#h` (same hash tag, so the write
 *   scripts can update it atomically with the entry; `#` is outside the keyspace alphabet, so it
 *   is never listed as an entry). Items are `op|revision|at|deadline|` followed by the value.
 * - Changes are published by the write scripts to `flowcache:w:<hash tag>`, as
 *   `op|revision|at|store key` (no value). A watcher subscribes to the channel of its prefix's
 *   tag, or to a pattern over every tag under a root-level prefix, on a connection of its own.
 * - Expiries come from keyspace notifications (`__keyevent@<db>__:expired`) when the server has
 *   them on (`notify-keyspace-events` with `E` and `x` or `A`); standalone servers only.
 */
import { type Buffer } from 'node:buffer'
import { Cluster, type Redis } from 'ioredis'

import { isUserKey } from '../../core/keyspace.js'
import type {
  StoreOperation,
  StoreVersion,
  StoreWatch,
  StoreWatchListener,
} from '../../types/store.js'
import { fromRedisKey, hashTagOf, toRedisKey } from './keys.js'
import { closeSubscriber, onDropped, subscriberFor } from './subscriber.js'

const CHANNEL_PREFIX = 'flowcache:w:'

/** The Redis key of the version log of a store key. */
export function historyKey(storeKey: string): string {
  return `${toRedisKey(storeKey)}#h`
}

/** The change channel of the hash tag of a store key. */
export function changeChannel(storeKey: string): string {
  return CHANNEL_PREFIX + hashTagOf(storeKey)
}

function operationOf(text: string): StoreOperation {
  return text === 'delete' || text === 'expire' ? text : 'set'
}

/** Parses one log item (`op|revision|at|deadline|value`). */
export function parseVersion(item: Buffer): StoreVersion {
  const fields: string[] = []
  let start = 0
  for (let i = 0; i < 4; i++) {
    const bar = item.indexOf(124 /* | */, start)
    const end = bar === -1 ? item.length : bar
    fields.push(item.toString('latin1', start, end))
    start = end + 1
  }
  const operation = operationOf(fields[0] ?? '')
  const deadline = fields[3] ?? ''
  return {
    operation,
    revision: fields[1] === '' ? undefined : fields[1],
    at: Number(fields[2]),
    value:
      operation === 'set' ? new Uint8Array(item.subarray(Math.min(start, item.length))) : undefined,
    expiresAt: operation === 'set' && deadline !== '' ? Number(deadline) : null,
  }
}

/** Escapes glob metacharacters for PSUBSCRIBE (none are in the keyspace alphabet). */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

/** One `watch()` subscription on a connection of its own. */
export class RedisWatch implements StoreWatch {
  readonly #client: Redis | Cluster
  readonly #prefix: string
  readonly #listener: StoreWatchListener
  readonly #now: () => number
  #subscriber: Redis | Cluster | undefined
  #closed = false

  constructor(
    client: Redis | Cluster,
    prefix: string,
    listener: StoreWatchListener,
    now: () => number,
  ) {
    this.#client = client
    this.#prefix = prefix
    this.#listener = listener
    this.#now = now
  }

  /** Subscribes; resolves once Redis confirmed the subscriptions. */
  async start(): Promise<void> {
    const subscriber = subscriberFor(this.#client)
    this.#subscriber = subscriber
    let up = false
    subscriber.on('message', (channel: string, text: string) => this.#message(channel, text))
    subscriber.on('pmessage', (_pattern: string, channel: string, text: string) =>
      this.#message(channel, text),
    )
    onDropped(subscriber, 'watch', (reason) => {
      if (this.#closed || !up) return
      up = false
      this.#listener.interrupted?.(reason)
    })
    await subscriber.connect()
    const prefix = this.#prefix
    const dots = prefix.split('.').length - 1
    if (dots >= 2) {
      await subscriber.subscribe(changeChannel(prefix))
    } else {
      await subscriber.psubscribe(`${CHANNEL_PREFIX}${escapeGlob(prefix.split('.')[0] ?? '')}*`)
    }
    const expired = await this.#expiryChannel()
    if (expired !== undefined) await subscriber.subscribe(expired)
    up = true
    subscriber.on('ready', () => {
      if (this.#closed || up) return
      up = true
      this.#listener.resumed?.()
    })
  }

  /** The keyspace-notification channel of expiries, when the server publishes them. */
  async #expiryChannel(): Promise<string | undefined> {
    const client = this.#client
    if (client instanceof Cluster) return undefined
    try {
      const reply = await client.config('GET', 'notify-keyspace-events')
      const flags = Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : ''
      if (!flags.includes('E') || !(flags.includes('x') || flags.includes('A'))) return undefined
      return `__keyevent@${client.options.db ?? 0}__:expired`
    } catch {
      // CONFIG may be disabled (managed Redis): then expiries are not reported.
      return undefined
    }
  }

  #message(channel: string, text: string): void {
    if (this.#closed) return
    if (channel.startsWith('__keyevent@')) {
      const storeKey = fromRedisKey(text)
      if (storeKey === undefined || !storeKey.startsWith(this.#prefix) || !isUserKey(storeKey))
        return
      this.#deliver({ type: 'expire', key: storeKey, at: this.#now() })
      return
    }
    if (!channel.startsWith(CHANNEL_PREFIX)) return
    const parts = text.split('|')
    if (parts.length !== 4) return
    const [op, revision, at, key] = parts as [string, string, string, string]
    if (!key.startsWith(this.#prefix) || !isUserKey(key)) return
    this.#deliver({
      type: operationOf(op),
      key,
      ...(revision === '' ? {} : { revision }),
      at: Number(at),
    })
  }

  #deliver(change: Parameters<StoreWatchListener['change']>[0]): void {
    try {
      this.#listener.change(change)
    } catch {
      // A listener's bug must not break the subscription.
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const subscriber = this.#subscriber
    this.#subscriber = undefined
    if (subscriber !== undefined) await closeSubscriber(subscriber)
  }
}
