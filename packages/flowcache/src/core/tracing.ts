/**
 * OpenTelemetry spans for cache calls. `@opentelemetry/api` is an optional peer dependency: it
 * is loaded with `require` the first time a cache is created with tracing on (the default), and
 * when it is missing nothing happens. Spans are made from the `flowcache:operation` diagnostics
 * events, after each call, with the call's start time and duration; the channel is subscribed
 * only once a tracer provider is registered, so without one the calls pay nothing.
 */
import { subscribe } from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import type * as OtelApi from '@opentelemetry/api'
import type { Cache } from './cache.js'
import { channels, type OperationEvent } from './diagnostics.js'

type Api = typeof OtelApi

/** Instrumentation scope name of flowcache's tracer. */
export const TRACER_NAME = 'flowcache'

/** Caches created with tracing on. */
const traced = new WeakSet<Cache>()
/** The API once loaded; `null` when it is not installed; `undefined` before the first try. */
let api: Api | null | undefined
let tracer: OtelApi.Tracer | undefined
let subscribed = false

function loadApi(): Api | null {
  if (api !== undefined) return api
  try {
    api = createRequire(import.meta.url)('@opentelemetry/api') as Api
  } catch {
    api = null
  }
  return api
}

/** Whether an application registered a tracer provider (the API's default is a no-op one). */
function providerRegistered(otel: Api): boolean {
  const provider = otel.trace.getTracerProvider()
  if (!(provider instanceof otel.ProxyTracerProvider)) return true
  // A fresh proxy delegates to the no-op provider; a registered SDK is something else.
  return provider.getDelegate() !== new otel.ProxyTracerProvider().getDelegate()
}

/**
 * Turns spans on for `cache` (and its namespace views). Subscribes the span maker to the
 * operation channel when `@opentelemetry/api` is installed and a tracer provider is registered.
 */
export function enableTracing(cache: Cache): void {
  const otel = loadApi()
  if (otel === null) return
  traced.add(cache)
  if (subscribed || !providerRegistered(otel)) return
  subscribed = true
  subscribe(channels.operation, (message) => recordSpan(otel, message as OperationEvent))
}

/** Makes the span `flowcache.<operation>` of one finished call. */
function recordSpan(otel: Api, event: OperationEvent): void {
  if (!traced.has(event.cache)) return
  tracer ??= otel.trace.getTracer(TRACER_NAME)
  const end = performance.timeOrigin + performance.now()
  const attributes: OtelApi.Attributes = {
    'db.system.name': event.store,
    'db.operation.name': event.operation,
    'flowcache.outcome': event.outcome,
  }
  if (event.namespace.length > 0) attributes['flowcache.namespace'] = event.namespace.join('/')
  if (event.outcome === 'hit' || event.outcome === 'miss') {
    attributes['flowcache.hit'] = event.outcome === 'hit'
  }
  if (event.errorCode !== undefined) attributes['error.type'] = event.errorCode
  const span = tracer.startSpan(`flowcache.${event.operation}`, {
    kind: otel.SpanKind.CLIENT,
    startTime: end - event.durationMs,
    attributes,
  })
  if (event.outcome === 'error') {
    const error = event.error
    if (error instanceof Error) span.recordException(error)
    span.setStatus({
      code: otel.SpanStatusCode.ERROR,
      message: error instanceof Error ? error.message : String(error),
    })
  }
  span.end(end)
}
