import { AsyncLocalStorage } from 'node:async_hooks'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import {
  ROOT_CONTEXT,
  SpanStatusCode,
  context,
  trace,
  type Attributes,
  type Context,
  type ContextManager,
  type Exception,
  type Span,
  type SpanContext,
  type SpanOptions,
  type SpanStatus,
  type TimeInput,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api'
import { afterAll, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../src/core/cache.js'
import {
  channels,
  type ElectionEvent,
  type EvictionEvent,
  type FallbackEvent,
  type LockEvent,
  type OperationEvent,
  type RateLimitEvent,
} from '../src/core/diagnostics.js'
import { silentLogger } from '../src/core/logger.js'
import { StoreUnavailableError } from '../src/errors.js'
import { memoryStore } from '../src/stores/memory/index.js'
import { redisStore } from '../src/stores/redis/index.js'

/** A Redis URL where nothing listens: connections are refused at once. */
const UNREACHABLE = 'redis://127.0.0.1:1'
const caches: Cache[] = []

afterAll(async () => {
  await Promise.all(caches.map((cache) => cache.close()))
})

function track(cache: Cache): Cache {
  caches.push(cache)
  return cache
}

/** Collects the events of one channel until `stop()`. */
function listen<T>(name: string): { events: T[]; stop(): void } {
  const events: T[] = []
  const listener = (message: unknown): void => {
    events.push(message as T)
  }
  subscribe(name, listener)
  return { events, stop: () => unsubscribe(name, listener) }
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** The parts of an event that do not depend on timing. */
function shape(event: OperationEvent): Record<string, unknown> {
  const { durationMs, cache, error, ...rest } = event
  expect(Number.isFinite(durationMs) && durationMs >= 0, 'durationMs').toBe(true)
  expect(cache).toBeDefined()
  return error === undefined ? rest : { ...rest, error: true }
}

describe('flowcache:operation', () => {
  it('reports every call with its namespace, store and outcome, naming the root cache', async () => {
    const cache = track(createCache())
    const orders = cache.namespace('orders')
    const channel = listen<OperationEvent>(channels.operation)
    try {
      await cache.set('a', 1)
      await cache.get('a')
      await orders.get('a')
      await orders.has('a')
      await cache.has('a')
      await cache.ttl('a')
      await orders.entry('none')
      await cache.getMany(['a', 'b'])
      await cache.increment('n')
      await cache.delete('a')
    } finally {
      channel.stop()
    }
    expect(channel.events.every((event) => event.cache === cache)).toBe(true)
    const memory = { store: 'memory' }
    expect(channel.events.map(shape)).toEqual([
      { ...memory, operation: 'set', namespace: [], outcome: 'ok' },
      { ...memory, operation: 'get', namespace: [], outcome: 'hit' },
      { ...memory, operation: 'get', namespace: ['orders'], outcome: 'miss' },
      { ...memory, operation: 'has', namespace: ['orders'], outcome: 'miss' },
      { ...memory, operation: 'has', namespace: [], outcome: 'hit' },
      { ...memory, operation: 'ttl', namespace: [], outcome: 'hit' },
      { ...memory, operation: 'entry', namespace: ['orders'], outcome: 'miss' },
      { ...memory, operation: 'getMany', namespace: [], outcome: 'ok' },
      { ...memory, operation: 'increment', namespace: [], outcome: 'ok' },
      { ...memory, operation: 'delete', namespace: [], outcome: 'ok' },
    ])
  })

  it('reports getOrSet and memoize calls as one operation each, with hit or miss', async () => {
    const cache = track(createCache())
    const double = cache.memoize(async (n: number) => n * 2, { name: 'double' })
    const channel = listen<OperationEvent>(channels.operation)
    try {
      await cache.getOrSet('report', () => 'r')
      await cache.getOrSet('report', () => 'r')
      await double(2)
      await double(2)
      await expect(cache.getOrSet('bad', () => Promise.reject(new Error('x')))).rejects.toThrow('x')
    } finally {
      channel.stop()
    }
    const outer = channel.events
      .map(shape)
      .filter((event) => event.operation === 'getOrSet' || event.operation === 'memoize')
    expect(outer).toEqual([
      { store: 'memory', operation: 'getOrSet', namespace: [], outcome: 'miss' },
      { store: 'memory', operation: 'getOrSet', namespace: [], outcome: 'hit' },
      { store: 'memory', operation: 'memoize', namespace: [], outcome: 'miss' },
      { store: 'memory', operation: 'memoize', namespace: [], outcome: 'hit' },
      { store: 'memory', operation: 'getOrSet', namespace: [], outcome: 'error', error: true },
    ])
  })

  it('reports store failures as errors with their code', async () => {
    const cache = track(
      createCache({
        store: redisStore({ url: UNREACHABLE }),
        fallback: 'fail',
        logger: silentLogger,
      }),
    )
    await expect(cache.ready()).rejects.toThrow(StoreUnavailableError)
    const channel = listen<OperationEvent>(channels.operation)
    try {
      await expect(cache.get('k')).rejects.toThrow(StoreUnavailableError)
      await expect(cache.set('k', 1)).rejects.toThrow(StoreUnavailableError)
      await expect(cache.delete('k')).rejects.toThrow(StoreUnavailableError)
    } finally {
      channel.stop()
    }
    expect(channel.events.map(shape)).toEqual(
      ['get', 'set', 'delete'].map((operation) => ({
        operation,
        namespace: [],
        store: 'redis',
        outcome: 'error',
        errorCode: 'E_STORE_UNAVAILABLE',
        error: true,
      })),
    )
    expect(channel.events[0]?.error).toBeInstanceOf(StoreUnavailableError)
  })

  it('does not change latency sampling: still one call in 32 while observed', async () => {
    const cache = track(createCache())
    const channel = listen<OperationEvent>(channels.operation)
    try {
      for (let i = 0; i < 64; i++) await cache.get('k')
    } finally {
      channel.stop()
    }
    expect(channel.events).toHaveLength(64)
    expect(cache.stats().latency.get?.samples).toBe(2)
  })
})

describe('other channels', () => {
  it('flowcache:fallback reports entering the memory fallback', async () => {
    const channel = listen<FallbackEvent>(channels.fallback)
    try {
      const cache = track(
        createCache({ store: redisStore({ url: UNREACHABLE }), logger: silentLogger }),
      )
      await cache.ready()
      await waitFor(() => channel.events.length > 0)
      expect(channel.events).toEqual([{ cache, store: 'redis', state: 'fallback' }])
    } finally {
      channel.stop()
    }
  })

  it('flowcache:lock reports acquired, contended, extended, released and lost, and stats() counts them', async () => {
    const cache = track(createCache())
    const jobs = cache.namespace('jobs')
    const channel = listen<LockEvent>(channels.lock)
    try {
      const lock = await jobs.locks.acquire('nightly', { ttl: '5s', owner: 'a' })
      expect(await jobs.locks.acquire('nightly', { ttl: '5s', owner: 'b' })).toBeNull()
      await lock?.extend('5s')
      await lock?.release()
      const short = await cache.locks.acquire('short', { ttl: '30ms', owner: 'c' })
      await waitFor(() => short?.signal.aborted === true)
      const token = lock?.token
      expect(channel.events).toEqual([
        { cache, namespace: ['jobs'], lock: 'nightly', owner: 'a', outcome: 'acquired', token },
        { cache, namespace: ['jobs'], lock: 'nightly', owner: 'b', outcome: 'contended' },
        { cache, namespace: ['jobs'], lock: 'nightly', owner: 'a', outcome: 'extended', token },
        { cache, namespace: ['jobs'], lock: 'nightly', owner: 'a', outcome: 'released', token },
        {
          cache,
          namespace: [],
          lock: 'short',
          owner: 'c',
          outcome: 'acquired',
          token: short?.token,
        },
        { cache, namespace: [], lock: 'short', owner: 'c', outcome: 'lost', token: short?.token },
      ])
      expect(cache.stats().locks).toEqual({
        acquired: 2,
        contended: 1,
        extended: 1,
        released: 1,
        lost: 1,
        failed: 0,
      })
    } finally {
      channel.stop()
    }
  })

  it('flowcache:lock reports failed when the store cannot be used', async () => {
    const cache = track(
      createCache({ store: redisStore({ url: UNREACHABLE }), logger: silentLogger }),
    )
    await cache.ready()
    const channel = listen<LockEvent>(channels.lock)
    try {
      await expect(cache.locks.acquire('x', { ttl: '1s', owner: 'a' })).rejects.toThrow(
        StoreUnavailableError,
      )
    } finally {
      channel.stop()
    }
    expect(channel.events).toEqual([
      { cache, namespace: [], lock: 'x', owner: 'a', outcome: 'failed' },
    ])
    expect(cache.stats().locks.failed).toBe(1)
  })

  it('flowcache:election reports elected and revoked', async () => {
    const cache = track(createCache())
    const channel = listen<ElectionEvent>(channels.election)
    try {
      const election = cache.namespace('cron').leader('scheduler', { lease: '300ms', owner: 'n1' })
      await waitFor(() => election.isLeader)
      const token = election.token
      await election.stop()
      expect(channel.events).toEqual([
        {
          cache,
          namespace: ['cron'],
          election: 'scheduler',
          owner: 'n1',
          outcome: 'elected',
          token,
        },
        {
          cache,
          namespace: ['cron'],
          election: 'scheduler',
          owner: 'n1',
          outcome: 'revoked',
          token,
          reason: 'stopped',
        },
      ])
    } finally {
      channel.stop()
    }
  })

  it('flowcache:rate-limit reports allowed, denied, failedOpen and failedClosed', async () => {
    const cache = track(createCache())
    const down = track(
      createCache({ store: redisStore({ url: UNREACHABLE }), logger: silentLogger }),
    )
    await down.ready()
    const channel = listen<RateLimitEvent>(channels.rateLimit)
    const options = { max: 1, per: '1m' } as const
    try {
      await cache.rateLimit('api', options)
      await cache.rateLimit('api', options)
      await down.rateLimit('api', { ...options, failure: 'open' })
      await expect(down.rateLimit('api', options)).rejects.toThrow(StoreUnavailableError)
    } finally {
      channel.stop()
    }
    expect(channel.events).toEqual([
      { cache, namespace: [], key: 'api', outcome: 'allowed' },
      { cache, namespace: [], key: 'api', outcome: 'denied' },
      { cache: down, namespace: [], key: 'api', outcome: 'failedOpen' },
      { cache: down, namespace: [], key: 'api', outcome: 'failedClosed' },
    ])
  })

  it('flowcache:eviction reports what the memory store evicts', async () => {
    const cache = track(createCache({ store: memoryStore({ maxEntries: 1 }) }))
    const channel = listen<EvictionEvent>(channels.eviction)
    try {
      await cache.set('first', 1)
      await cache.set('second', 2)
    } finally {
      channel.stop()
    }
    expect(channel.events).toEqual([{ store: 'memory', count: 1, key: 'fc.k/first' }])
    expect(cache.stats().evictions).toBe(1)
  })
})

/** A span as the test tracer records it. */
class RecordedSpan implements Span {
  attributes: Attributes = {}
  status: SpanStatus = { code: SpanStatusCode.UNSET }
  exceptions: Exception[] = []
  startTime: TimeInput | undefined
  endTime: TimeInput | undefined
  ended = false

  constructor(
    public name: string,
    public options: SpanOptions,
    public parent: Span | undefined,
  ) {
    this.startTime = options.startTime
    this.setAttributes(options.attributes ?? {})
  }

  spanContext(): SpanContext {
    return {
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: 1,
    }
  }
  setAttribute(key: string, value: Attributes[string]): this {
    this.attributes[key] = value
    return this
  }
  setAttributes(attributes: Attributes): this {
    Object.assign(this.attributes, attributes)
    return this
  }
  addEvent(): this {
    return this
  }
  addLink(): this {
    return this
  }
  addLinks(): this {
    return this
  }
  setStatus(status: SpanStatus): this {
    this.status = status
    return this
  }
  updateName(name: string): this {
    this.name = name
    return this
  }
  end(endTime?: TimeInput): void {
    this.ended = true
    this.endTime = endTime
  }
  isRecording(): boolean {
    return !this.ended
  }
  recordException(exception: Exception): void {
    this.exceptions.push(exception)
  }
}

/** A tracer provider that keeps every span in memory. */
class RecordingProvider implements TracerProvider {
  readonly spans: RecordedSpan[] = []
  readonly scopes: string[] = []

  getTracer(name: string): Tracer {
    this.scopes.push(name)
    const spans = this.spans
    return {
      startSpan(spanName: string, options: SpanOptions = {}, ctx?: Context): Span {
        const span = new RecordedSpan(spanName, options, trace.getSpan(ctx ?? context.active()))
        spans.push(span)
        return span
      },
      startActiveSpan<F extends (span: Span) => unknown>(
        spanName: string,
        ...rest: unknown[]
      ): ReturnType<F> {
        const fn = rest.at(-1) as F
        return fn(this.startSpan(spanName)) as ReturnType<F>
      },
    }
  }
}

/** The context manager the OpenTelemetry SDK uses in Node, reduced to what the API needs. */
class StorageContextManager implements ContextManager {
  readonly #storage = new AsyncLocalStorage<Context>()
  active(): Context {
    return this.#storage.getStore() ?? ROOT_CONTEXT
  }
  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.#storage.run(ctx, () => fn.apply(thisArg, args))
  }
  bind<T>(_ctx: Context, target: T): T {
    return target
  }
  enable(): this {
    return this
  }
  disable(): this {
    this.#storage.disable()
    return this
  }
}

describe('OpenTelemetry spans', () => {
  it('records a span per call, child of the caller’s span, with store, namespace, hit and errors', async () => {
    const provider = new RecordingProvider()
    trace.setGlobalTracerProvider(provider)
    context.setGlobalContextManager(new StorageContextManager())
    try {
      const cache = track(createCache())
      const quiet = track(createCache({ tracing: false }))
      const failing = track(
        createCache({
          store: redisStore({ url: UNREACHABLE }),
          fallback: 'fail',
          logger: silentLogger,
        }),
      )
      await expect(failing.ready()).rejects.toThrow(StoreUnavailableError)

      const parent = trace.getTracer('app').startSpan('workflow.step')
      await context.with(trace.setSpan(context.active(), parent), async () => {
        await cache.set('a', 1)
        await cache.get('a')
        await cache.namespace('orders').get('none')
      })
      await quiet.set('a', 1)
      await quiet.get('a')
      await expect(failing.get('k')).rejects.toThrow(StoreUnavailableError)

      expect(provider.scopes).toContain('flowcache')
      const spans = provider.spans.filter((span) => span.name.startsWith('flowcache.'))
      expect(spans.map((span) => span.name)).toEqual([
        'flowcache.set',
        'flowcache.get',
        'flowcache.get',
        'flowcache.get',
      ])
      const [set, hit, miss, error] = spans as [
        RecordedSpan,
        RecordedSpan,
        RecordedSpan,
        RecordedSpan,
      ]
      for (const span of [set, hit, miss]) {
        expect(span.parent).toBe(parent)
        expect(span.ended).toBe(true)
        expect(Number(span.endTime)).toBeGreaterThanOrEqual(Number(span.startTime))
      }
      expect(set.attributes).toEqual({
        'db.system.name': 'memory',
        'db.operation.name': 'set',
        'flowcache.outcome': 'ok',
      })
      expect(hit.attributes).toMatchObject({ 'flowcache.hit': true })
      expect(miss.attributes).toMatchObject({
        'flowcache.hit': false,
        'flowcache.namespace': 'orders',
        'flowcache.outcome': 'miss',
      })
      expect(error.parent).toBeUndefined()
      expect(error.attributes).toMatchObject({
        'db.system.name': 'redis',
        'error.type': 'E_STORE_UNAVAILABLE',
        'flowcache.outcome': 'error',
      })
      expect(error.status.code).toBe(SpanStatusCode.ERROR)
      expect(error.exceptions[0]).toBeInstanceOf(StoreUnavailableError)
    } finally {
      trace.disable()
      context.disable()
    }
  })
})
