/**
 * Event sources of `events` triggers: a JSONL file, standard input (JSONL) and a NATS subject
 * (core NATS, JSON payloads). A source turns each line or message into an event and hands it to
 * the host, one at a time and in order; a line or message that is not JSON is reported (with its
 * line number) and skipped.
 */
import { createReadStream } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { createInterface, type Interface } from 'node:readline'
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node'
import type { EventSource } from '../flows/types.js'
import type { Logger } from '../flowcache.js'
import { errorText as describe } from '../schema-text.js'

/** Counters of an event source. */
export interface SourceStats {
  /** Events read (valid lines or messages). */
  received: number
  /** Lines or messages that were not valid JSON, skipped. */
  bad: number
  /** The last bad line or message. */
  lastBad?: { line?: number; error: string }
  /** Whether the source reached its end (a file or stdin at EOF). */
  ended: boolean
  /** Why the source failed, when it did (e.g. the file does not exist). */
  error?: string
}

/** Where an event came from, added to its `meta`. */
export interface EventOrigin {
  trigger: 'events'
  source: EventSource['kind']
  /** Line number (from 1) in the file or on stdin. */
  line?: number
  /** NATS subject the message was published on. */
  subject?: string
}

/** What a source needs from the host. */
export interface SourceHooks {
  /** Flow name, for messages. */
  flow: string
  /** File the flow was loaded from: a relative events file is resolved against its folder. */
  flowFile: string
  logger: Logger
  /** Readable that a `stdin` source reads. */
  stdin: NodeJS.ReadableStream
  /** NATS server of a `nats` source that names none. */
  natsUrl: string
  /**
   * Called before each line of a file or stdin is read: resolves `true` to go on, `false` to stop
   * reading (the host is stopping). The host uses it to read only while leader.
   */
  gate(): Promise<boolean>
  /** Runs one event; never rejects (the host records failures). */
  deliver(event: Record<string, unknown>, origin: EventOrigin): Promise<void>
}

/** A running source. */
export interface SourceHandle {
  stats(): SourceStats
  /** Resolves when the source has ended or was stopped, and its last event was delivered. */
  readonly done: Promise<void>
  /** Stops reading; resolves when the event being delivered (if any) is done. */
  stop(): Promise<void>
}

/**
 * Makes an event of a parsed line or message: an object with a `data` field is taken as the event
 * (`{ data, meta? }`), anything else becomes `{ data: value }`. `origin` is merged into `meta`.
 */
export function toEvent(value: unknown, origin: EventOrigin): Record<string, unknown> {
  const isEvent =
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    Object.hasOwn(value, 'data')
  if (!isEvent) return { data: value, meta: { ...origin } }
  const event = value as Record<string, unknown>
  const meta = event.meta
  const given = typeof meta === 'object' && meta !== null && !Array.isArray(meta) ? meta : {}
  return { ...event, meta: { ...given, ...origin } }
}

/** Starts reading `source`; events go to `hooks.deliver`. */
export async function startSource(source: EventSource, hooks: SourceHooks): Promise<SourceHandle> {
  if (source.kind === 'nats') return startNats(source.subject, source.url ?? hooks.natsUrl, hooks)
  if (source.kind === 'file') {
    const path = isAbsolute(source.path)
      ? source.path
      : resolve(dirname(hooks.flowFile), source.path)
    return startLines(createReadStream(path, { encoding: 'utf8' }), 'file', path, hooks)
  }
  return startLines(hooks.stdin, 'stdin', 'stdin', hooks)
}

/** A JSONL reader over `input`, one line at a time, gated by `hooks.gate`. */
function startLines(
  input: NodeJS.ReadableStream,
  kind: 'file' | 'stdin',
  label: string,
  hooks: SourceHooks,
): SourceHandle {
  const stats: SourceStats = { received: 0, bad: 0, ended: false }
  let stopped = false
  // Read errors (a missing file) end the loop through the iterator; keep the message.
  input.on('error', (error: unknown) => {
    stats.error = describe(error)
  })
  const lines: Interface = createInterface({ input, crlfDelay: Infinity })
  const loop = async (): Promise<void> => {
    let line = 0
    try {
      for await (const text of lines) {
        line++
        if (stopped || !(await hooks.gate()) || stopped) break
        if (text.trim() === '') continue
        let value: unknown
        try {
          value = JSON.parse(text)
        } catch (error) {
          stats.bad++
          stats.lastBad = { line, error: describe(error) }
          hooks.logger.warn(
            `flow "${hooks.flow}": ${label} line ${line} is not valid JSON; skipped it: ${describe(error)}`,
            { flow: hooks.flow, source: kind, line },
          )
          continue
        }
        stats.received++
        await hooks.deliver(toEvent(value, { trigger: 'events', source: kind, line }), {
          trigger: 'events',
          source: kind,
          line,
        })
      }
      if (!stopped) stats.ended = true
    } catch (error) {
      stats.error = describe(error)
    }
    if (stats.error !== undefined) {
      hooks.logger.error(`flow "${hooks.flow}": cannot read events from ${label}: ${stats.error}`, {
        flow: hooks.flow,
        source: kind,
      })
    }
  }
  const done = loop()
  return {
    stats: () => ({ ...stats }),
    done,
    stop: async () => {
      stopped = true
      lines.close()
      await done
    },
  }
}

/** A core NATS subscription on `subject`: each message's payload is one JSON event. */
async function startNats(subject: string, url: string, hooks: SourceHooks): Promise<SourceHandle> {
  const stats: SourceStats = { received: 0, bad: 0, ended: false }
  const connection: NatsConnection = await connect({
    servers: url,
    name: `flowcache flow ${hooks.flow}`,
  })
  let subscription: Subscription
  try {
    subscription = connection.subscribe(subject)
    // The subscription is registered on the server once start() resolves.
    await connection.flush()
  } catch (error) {
    await connection.close().catch(() => undefined)
    throw error
  }
  let stopped = false
  const loop = async (): Promise<void> => {
    for await (const message of subscription) {
      if (stopped) break
      let value: unknown
      try {
        value = JSON.parse(message.string())
      } catch (error) {
        stats.bad++
        stats.lastBad = { error: describe(error) }
        hooks.logger.warn(
          `flow "${hooks.flow}": a message on NATS subject "${message.subject}" is not valid JSON; skipped it: ${describe(error)}`,
          { flow: hooks.flow, source: 'nats', subject: message.subject },
        )
        continue
      }
      stats.received++
      const origin: EventOrigin = { trigger: 'events', source: 'nats', subject: message.subject }
      await hooks.deliver(toEvent(value, origin), origin)
    }
  }
  const done = loop().catch((error: unknown) => {
    stats.error = describe(error)
    hooks.logger.error(
      `flow "${hooks.flow}": NATS subscription "${subject}" failed: ${stats.error}`,
      {
        flow: hooks.flow,
        source: 'nats',
      },
    )
  })
  return {
    stats: () => ({ ...stats }),
    done,
    stop: async () => {
      stopped = true
      subscription.unsubscribe()
      await done
      await connection.close().catch(() => undefined)
    },
  }
}
