/**
 * The connections that pub/sub needs on Redis (the L1 invalidation bus and `watch()`): a
 * subscribed connection can run nothing else, so each subscription gets one of its own, made
 * with `duplicate()` so it has the same servers, credentials and TLS as the store's client.
 */
import { Cluster, type Redis } from 'ioredis'

/**
 * A new, not yet connected, connection like `client`'s for SUBSCRIBE: it queues its commands
 * until connected and subscribes again by itself after a reconnect. Call `connect()` on it.
 */
export function subscriberFor(client: Redis | Cluster): Redis | Cluster {
  const overrides = { enableOfflineQueue: true, autoResubscribe: true, lazyConnect: true }
  return client instanceof Cluster ? client.duplicate([], overrides) : client.duplicate(overrides)
}

/**
 * Calls `dropped` with a reason each time `subscriber` closes or starts reconnecting; `name`
 * says which connection it is in that reason (`<name> connection to Redis closed`). Errors are
 * swallowed: they are reported through the close or reconnect that follows them, and without a
 * listener ioredis would print every one.
 */
export function onDropped(
  subscriber: Redis | Cluster,
  name: string,
  dropped: (reason: string) => void,
): void {
  subscriber.on('close', () => dropped(`${name} connection to Redis closed`))
  subscriber.on('reconnecting', () => dropped(`${name} connection to Redis reconnecting`))
  subscriber.on('error', () => undefined)
}

/** Ends a subscriber connection: QUIT, or a plain disconnect when QUIT fails. */
export async function closeSubscriber(subscriber: Redis | Cluster): Promise<void> {
  try {
    await subscriber.quit()
  } catch {
    subscriber.disconnect()
  }
}
