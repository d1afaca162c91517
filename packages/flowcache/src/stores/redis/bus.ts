/**
 * The L1 invalidation bus on Redis pub/sub. Publishing goes through the store's client;
 * subscribing needs a connection of its own (see subscriber.ts). Pub/sub is at-most-once: every
 * drop of the subscriber connection is reported, and every return after one.
 */
import type { Cluster, Redis } from 'ioredis'
import { closeSubscriber, onDropped, subscriberFor } from './subscriber.js'
import { decodeInvalidation, encodeInvalidation } from '../../tiers/invalidation.js'
import type { Invalidation, InvalidationBus, InvalidationListener } from '../../types/store.js'

/** Redis channel of a bus: `flowcache:l1:<channel>`. */
export function busChannel(channel: string): string {
  return `flowcache:l1:${channel}`
}

/** An invalidation bus on one Redis channel. Created by `RedisStore.createBus`. */
export class RedisInvalidationBus implements InvalidationBus {
  readonly #publisher: Redis | Cluster
  readonly #channel: string
  #subscriber: Redis | Cluster | undefined
  #closed = false

  constructor(publisher: Redis | Cluster, channel: string) {
    this.#publisher = publisher
    this.#channel = channel
  }

  async publish(invalidation: Invalidation): Promise<void> {
    await this.#publisher.publish(this.#channel, encodeInvalidation(invalidation))
  }

  async subscribe(listener: InvalidationListener): Promise<void> {
    const subscriber = subscriberFor(this.#publisher)
    this.#subscriber = subscriber
    let up = false
    subscriber.on('message', (channel: string, text: string) => {
      if (channel !== this.#channel) return
      try {
        listener.message(decodeInvalidation(text))
      } catch {
        // Not one of ours: ignore it rather than break the tier.
      }
    })
    onDropped(subscriber, 'subscriber', (reason) => {
      if (this.#closed || !up) return
      up = false
      listener.interrupted(reason)
    })
    try {
      await subscriber.connect()
      await subscriber.subscribe(this.#channel)
    } catch (error) {
      // A failed attempt must not leave a connection behind: the caller may try again.
      this.#subscriber = undefined
      subscriber.disconnect()
      throw error
    }
    up = true
    // After a reconnect, subscribe again and wait for Redis to confirm it: only then can no
    // message fall between the reconnect and the subscription.
    subscriber.on('ready', () => {
      if (this.#closed || up) return
      subscriber.subscribe(this.#channel).then(
        () => {
          if (this.#closed || up) return
          up = true
          listener.resumed()
        },
        () => undefined,
      )
    })
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const subscriber = this.#subscriber
    this.#subscriber = undefined
    if (subscriber !== undefined) await closeSubscriber(subscriber)
  }
}
