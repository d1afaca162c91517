/**
 * The L1 invalidation bus on NATS: a plain core-NATS subject per cache, on the store's own
 * connection. Core NATS is at-most-once, so the bus reports every disconnect (the L1 tier then
 * stops trusting itself) and every reconnect (it empties itself and resumes).
 */
import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import { decodeInvalidation, encodeInvalidation } from '../../tiers/invalidation.js'
import type { Invalidation, InvalidationBus, InvalidationListener } from '../../types/store.js'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** Subject of a bus: `flowcache.l1.<bucket>.<channel>`. */
export function busSubject(bucket: string, channel: string): string {
  return `flowcache.l1.${bucket}.${channel}`
}

/** An invalidation bus on one NATS subject. Created by `NatsStore.createBus`. */
export class NatsInvalidationBus implements InvalidationBus {
  readonly #connection: () => Promise<NatsConnection>
  readonly #subject: string
  #subscription: Subscription | undefined
  #stopStatus: (() => void) | undefined
  #closed = false

  constructor(connection: () => Promise<NatsConnection>, subject: string) {
    this.#connection = connection
    this.#subject = subject
  }

  async publish(invalidation: Invalidation): Promise<void> {
    const nc = await this.#connection()
    nc.publish(this.#subject, encoder.encode(encodeInvalidation(invalidation)))
  }

  async subscribe(listener: InvalidationListener): Promise<void> {
    const nc = await this.#connection()
    this.#subscription = nc.subscribe(this.#subject, {
      callback: (error, message) => {
        if (error !== null) {
          listener.interrupted(`subscription error: ${error.message}`)
          return
        }
        try {
          listener.message(decodeInvalidation(decoder.decode(message.data)))
        } catch {
          // A message that is not ours on our subject: ignore it rather than break the tier.
        }
      },
    })
    // The subscription must be registered on the server before the tier trusts its L1.
    await nc.flush()
    const statuses = nc.status()
    if ('stop' in statuses && typeof statuses.stop === 'function') {
      const stop = statuses.stop as () => void
      this.#stopStatus = () => stop.call(statuses)
    }
    const watch = async (): Promise<void> => {
      for await (const status of statuses) {
        if (this.#closed) return
        if (status.type === 'disconnect') listener.interrupted('connection to NATS lost')
        else if (status.type === 'reconnect') listener.resumed()
      }
    }
    watch().catch(() => undefined)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#stopStatus?.()
    this.#subscription?.unsubscribe()
  }
}
