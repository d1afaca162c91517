/**
 * The HTTP server of `flowcache serve` (fastify): the REST API under `/v1` (cache per namespace,
 * locks, rate limits, leaders, flows, stats), `/metrics`, `/healthz`, `/readyz`, the
 * HTTP-triggered flows under `/flows/*` and the web console under `/console/`. See
 * {@link createServer}.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { extname } from 'node:path'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { Registry } from 'prom-client'
import type { ResolvedConfig } from '../config/types.js'
import { isLoopbackHost } from '../config/load.js'
import {
  InvalidArgumentError,
  KeyKind,
  parseStoreKey,
  silentLogger,
  type Cache,
  type Logger,
  type RateLimitOptions,
} from '../flowcache.js'
import { registerMetrics, type CacheMetrics } from '../../../flowcache/src/prometheus/index.js'
import type { FlowHost } from '../host/host.js'
import type { FlowRunResult } from '../flows/types.js'
import { TokenCheck } from './auth.js'
import { errorAnswer, HttpError } from './errors.js'

/** Runs the flow `name` once on `event`, whatever its trigger; `undefined` when no flow has that name. */
export type RunFlow = (
  name: string,
  event: Record<string, unknown>,
  options: { debug: boolean },
) => Promise<FlowRunResult | undefined>

/** Options of {@link createServer}. */
export interface ServerOptions {
  /** The resolved configuration: `server.host`, `port`, `token` and `body_limit` are used. */
  config: ResolvedConfig
  /** The root cache the API serves (namespaces are views of it). The server never closes it. */
  cache: Cache
  /** The flow host: HTTP flows, leaders, flow status. Stopped by `close()`. @default no flows */
  host?: FlowHost
  /** Runs a flow by name for `POST /v1/flows/:name/run`. @default the route answers 404 */
  runFlow?: RunFlow
  /** Where requests that fail with a server error and state changes are reported. @default silentLogger */
  logger?: Logger
  /**
   * Serve the web console (static files of `packages/server/console/`) at `/console/`, with `/`
   * redirecting there. The console's files hold no data and are served without the token; every
   * call they make to the API needs it when the server requires one. @default true
   */
  console?: boolean
}

/** One route of the server, as registered. */
export interface RouteInfo {
  method: string
  /** Route pattern, e.g. `/v1/ns/:ns/keys/:key`. */
  url: string
  /**
   * Whether the route answers without the token: `/healthz` and the console's static files
   * (which hold no data). Every other route needs it when the server requires one.
   */
  public: boolean
}

/** What {@link createServer} returns. */
export interface FlowcacheServer {
  /** Starts listening on `config.server.host` and `port`; resolves with the base URL, e.g. `http://127.0.0.1:7700`. */
  listen(): Promise<string>
  /**
   * Graceful stop: no new connections, requests in flight finish, then the flow host stops
   * (its runs in progress finish, a leader hands its lease back) and the metrics are
   * unregistered. The cache stays open: close it afterwards (that flushes pending writes).
   * Idempotent.
   */
  close(): Promise<void>
  /** Every route, in registration order (one entry per method). */
  routes(): RouteInfo[]
  /** The fastify instance, e.g. for `inject()` in tests. */
  readonly fastify: FastifyInstance
  /** Whether every route but the public ones (`/healthz`, the console's files) needs the bearer token. */
  readonly authRequired: boolean
}

/** Separator of nested namespaces in the `:ns` segment: `tenant:acme/flow:orders` (URL-encoded). */
export const NAMESPACE_SEPARATOR = '/'

/** Most namespace views kept between requests. */
const MAX_VIEWS = 1024

/** The Content-Security-Policy of the console's pages and files: this origin only, never framed. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

/** The Content-Security-Policy of API answers (JSON, metrics): nothing may load, nothing may frame them. */
export const API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"

/** Headers of the public routes: the console's files and `/healthz`. */
const CONSOLE_HEADERS: Record<string, string> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
}

/** Headers of every other answer; kept short, as they go with every API call. */
const API_HEADERS: Record<string, string> = {
  'content-security-policy': API_CONTENT_SECURITY_POLICY,
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
}

const FLOW_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const

/** Route option of the routes that answer without the token. */
const PUBLIC = { config: { public: true } } as const

/** Folder of the web console's static files. */
const CONSOLE_DIR = new URL('../../console/', import.meta.url)

/** Content types of the console's files, by extension; other files are not served. */
const CONSOLE_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
}

/** The console's files (name → content type and bytes), read once. */
function consoleFiles(): Map<string, { type: string; body: Buffer }> {
  const files = new Map<string, { type: string; body: Buffer }>()
  for (const name of readdirSync(CONSOLE_DIR).sort()) {
    const type = CONSOLE_TYPES[extname(name)]
    if (type === undefined || !/^[a-z0-9-]+\.[a-z]+$/.test(name)) continue
    files.set(name, { type, body: readFileSync(new URL(name, CONSOLE_DIR)) })
  }
  return files
}

/** Most entries `GET /v1/ns/:ns/entries` answers with (each costs a TTL read). */
const MAX_ENTRIES = 1000

/** Most store keys one listing route (`/v1/namespaces`, `/v1/locks`, `/v1/rate-limits`) reads. */
export const SCAN_LIMIT = 10_000

/** A store key of the served cache, taken apart, with its `:ns` form. */
interface ScannedKey {
  storeKey: string
  /** Namespace path joined by {@link NAMESPACE_SEPARATOR}, as in `/v1/ns/:ns`. */
  ns: string
  path: string[]
  kind: string
  key: string
}

/**
 * JSON of a value for an answer. Values JSON has no form for are written in a readable one:
 * `BigInt` as a decimal string, `Map` as an object (or a list of pairs when a key is not a
 * string), `Set` as a list, bytes as base64.
 */
export function toJson(value: unknown): string {
  // Most answers are plain JSON data: stringify them without a replacer, which is much faster.
  if (isPlainData(value, 0)) return JSON.stringify(value)
  return JSON.stringify(value, function replace(this: unknown, _key, item: unknown): unknown {
    if (typeof item === 'bigint') return item.toString()
    if (item instanceof Map) {
      const entries = [...(item as Map<unknown, unknown>).entries()]
      return entries.every(([key]) => typeof key === 'string')
        ? (Object.fromEntries(entries) as Record<string, unknown>)
        : entries
    }
    if (item instanceof Set) return [...(item as Set<unknown>)]
    if (item instanceof Uint8Array) return Buffer.from(item).toString('base64')
    if (
      typeof item === 'object' &&
      item !== null &&
      (item as { type?: unknown }).type === 'Buffer' &&
      Array.isArray((item as { data?: unknown }).data)
    ) {
      return Buffer.from((item as { data: number[] }).data).toString('base64')
    }
    return item
  })
}

/** Most nesting {@link isPlainData} walks before it leaves the value to the replacer. */
const PLAIN_DEPTH = 32

/**
 * Whether `JSON.stringify` writes `value` as {@link toJson} would without a replacer: only
 * strings, finite or non-finite numbers, booleans, null, undefined, arrays and plain objects
 * without `toJSON`.
 */
function isPlainData(value: unknown, depth: number): boolean {
  if (value === null) return true
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'undefined':
      return true
    case 'object': {
      if (depth > PLAIN_DEPTH) return false
      if (Array.isArray(value)) {
        for (const item of value) if (!isPlainData(item, depth + 1)) return false
        return true
      }
      const proto: unknown = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) return false
      if ('toJSON' in value) return false
      for (const key in value) {
        if (!isPlainData((value as Record<string, unknown>)[key], depth + 1)) return false
      }
      return true
    }
    default:
      return false
  }
}

/** Sends `body` as JSON with `status`. */
function json(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.code(status).type('application/json; charset=utf-8').send(toJson(body))
}

function notFound(what: string): HttpError {
  return new HttpError(404, 'E_NOT_FOUND', what)
}

/** A query or body value as one string (the last one when repeated). */
function single(value: unknown): string | undefined {
  if (Array.isArray(value)) return single(value[value.length - 1])
  return typeof value === 'string' ? value : undefined
}

/** An object body, or `{}` when there is none. */
function bodyObject(request: FastifyRequest): Record<string, unknown> {
  const body = request.body
  if (body === undefined || body === null || body === '') return {}
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw InvalidArgumentError.format('body', 'must be a JSON object')
  }
  return body as Record<string, unknown>
}

/** A TTL from the query or a body: ms as a number or digits, or a duration string. */
function ttlValue(input: unknown): number | string | undefined {
  if (input === undefined) return undefined
  if (typeof input === 'number') return input
  if (typeof input === 'string') return /^\d+$/.test(input) ? Number(input) : input
  throw InvalidArgumentError.format('ttl', 'must be milliseconds or a duration string like "30s"')
}

/** Rate-limit options from a body or query: `max`, `per`, `algorithm`, `cost`, `failure`. */
function rateLimitOptions(input: Record<string, unknown>): RateLimitOptions {
  const max = typeof input.max === 'string' ? Number(input.max) : input.max
  if (typeof max !== 'number') {
    throw InvalidArgumentError.format('max', 'is required: the most calls allowed per window')
  }
  const per = ttlValue(single(input.per) ?? input.per)
  if (per === undefined) {
    throw InvalidArgumentError.format('per', 'is required: the window, e.g. "1m" or 60000')
  }
  const options: RateLimitOptions = { max, per }
  const algorithm = single(input.algorithm)
  if (algorithm !== undefined) options.algorithm = algorithm as RateLimitOptions['algorithm']
  const cost = typeof input.cost === 'string' ? Number(input.cost) : input.cost
  if (cost !== undefined) options.cost = cost as number
  const failure = single(input.failure)
  if (failure !== undefined) options.failure = failure as 'open' | 'closed'
  return options
}

/** The query string of a URL (without `?`), or `''`. */
function queryOf(url: string): string {
  const at = url.indexOf('?')
  return at < 0 ? '' : url.slice(at)
}

type NsParams = { ns: string }
type KeyParams = { ns: string; key: string }

/**
 * Creates the HTTP server (not listening yet). Every route but `/healthz` requires
 * `Authorization: Bearer <token>` when `config.server.token` is set, which the configuration
 * demands when the host is not a loopback address; a token in the URL is never read. Request
 * bodies are JSON up to `config.server.bodyLimit` bytes; no CORS headers are sent.
 */
export function createServer(options: ServerOptions): FlowcacheServer {
  const { config, cache } = options
  const host = options.host
  const logger = options.logger ?? silentLogger
  const token = config.server.token
  if (token === undefined && !isLoopbackHost(config.server.host)) {
    throw InvalidArgumentError.format(
      'config.server.token',
      `is required to bind ${config.server.host}, which is reachable from other machines: set FLOWCACHE_TOKEN or server.token`,
    )
  }
  const tokenCheck = token === undefined ? undefined : new TokenCheck(token)
  const app = Fastify({
    logger: false,
    bodyLimit: config.server.bodyLimit,
    routerOptions: { maxParamLength: 8192 },
    forceCloseConnections: 'idle',
    return503OnClosing: true,
  })
  const registered: RouteInfo[] = []
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('*')) return
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    for (const method of methods) {
      if (method === 'HEAD' && route.prefixTrailingSlash !== undefined) continue
      const config: { public?: unknown } | undefined = route.config
      registered.push({ method, url: route.url, public: config?.public === true })
    }
  })

  const registry = new Registry()
  const metrics: CacheMetrics = registerMetrics(cache, { registry })

  /** Views by `:ns`, one cache per mode: a reading view and a writing one differ. */
  const views = { read: new Map<string, Cache>(), write: new Map<string, Cache>() }
  /**
   * The namespace view of a `:ns` segment (`a/b` is `namespace('a').namespace('b')`). GET routes
   * take a `read` view (`applyQuotas: false`): reading a namespace, say one another application
   * writes to, must not put the configured allocation on it. Routes that change state take a
   * `write` view, which applies the quotas.
   */
  const view = (ns: string, mode: 'read' | 'write'): Cache => {
    const cached = views[mode]
    let found = cached.get(ns)
    if (found !== undefined) return found
    const names = ns.split(NAMESPACE_SEPARATOR)
    if (names.some((name) => name === '')) {
      throw InvalidArgumentError.format(
        'namespace',
        `"${ns}" has an empty part; separate nested namespaces with a single "/" (URL-encoded as %2F)`,
      )
    }
    const options = mode === 'read' ? { applyQuotas: false } : {}
    found = names.reduce((parent, name) => parent.namespace(name, options), cache)
    if (cached.size >= MAX_VIEWS) cached.clear()
    cached.set(ns, found)
    return found
  }

  // A callback hook, not an async one: it runs on every request, and a promise costs a tick.
  app.addHook('onRequest', (request, reply, done) => {
    const routeConfig = request.routeOptions.config as { public?: unknown } | undefined
    const isPublic = routeConfig?.public === true
    reply.headers(isPublic ? CONSOLE_HEADERS : API_HEADERS)
    if (tokenCheck === undefined || isPublic || tokenCheck.accepts(request.headers.authorization)) {
      done()
      return
    }
    reply.header('www-authenticate', 'Bearer realm="flowcache"')
    done(
      new HttpError(
        401,
        'E_UNAUTHORIZED',
        'send the API token in the header "Authorization: Bearer <token>" (it is never read from the URL)',
      ),
    )
  })

  app.setErrorHandler((error, request, reply) => {
    const answer = errorAnswer(error)
    if (answer.status >= 500 && answer.body.error.code === 'E_INTERNAL') {
      logger.error(`${request.method} ${request.routeOptions.url ?? '?'} failed`, {
        error: error instanceof Error ? (error.stack ?? error.message) : String(error),
      })
    }
    void json(reply, answer.status, answer.body)
  })
  app.setNotFoundHandler((request, reply) => {
    void json(reply, 404, {
      error: {
        code: 'E_NOT_FOUND',
        message: `no route ${request.method} ${request.url.split('?')[0]}`,
      },
    })
  })

  // Health, readiness, metrics.
  app.get('/healthz', PUBLIC, async (_request, reply) => json(reply, 200, { status: 'ok' }))
  app.get('/readyz', async (_request, reply) => {
    const health = cache.health()
    const hostState = host?.status().state
    const ready = health.status === 'ok' && (hostState === undefined || hostState === 'running')
    return json(reply, ready ? 200 : 503, {
      status: ready ? 'ready' : 'not-ready',
      cache: health,
      ...(hostState === undefined ? {} : { host: hostState }),
    })
  })
  app.get('/metrics', async (_request, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  )

  /**
   * Store keys of the served cache (under its root prefix) of the given kinds, in namespaces the
   * `:ns` segment can name; at most {@link SCAN_LIMIT} store keys are read.
   */
  const rootPrefix = `${config.cache.prefix ?? 'fc'}.`
  const scan = async (
    kinds: readonly string[],
  ): Promise<{ found: ScannedKey[]; scanned: number; truncated: boolean }> => {
    const found: ScannedKey[] = []
    let scanned = 0
    for await (const storeKey of cache.store.list(rootPrefix, { limit: SCAN_LIMIT })) {
      scanned++
      const parsed = parseStoreKey(storeKey)
      if (parsed === undefined || !kinds.includes(parsed.kind)) continue
      const path = parsed.namespaces
      if (path.length === 0 || path.some((name) => name.includes(NAMESPACE_SEPARATOR))) continue
      found.push({
        storeKey,
        ns: path.join(NAMESPACE_SEPARATOR),
        path,
        kind: parsed.kind,
        key: parsed.key,
      })
    }
    return { found, scanned, truncated: scanned >= SCAN_LIMIT }
  }

  // Listings for the console.
  app.get('/v1/namespaces', async (_request, reply) => {
    const { found, scanned, truncated } = await scan([
      KeyKind.user,
      KeyKind.lock,
      KeyKind.limiter,
      KeyKind.lease,
    ])
    const counts = new Map<
      string,
      {
        ns: string
        path: string[]
        keys: number
        locks: number
        rateLimits: number
        leases: number
      }
    >()
    for (const entry of found) {
      let count = counts.get(entry.ns)
      if (count === undefined) {
        count = { ns: entry.ns, path: entry.path, keys: 0, locks: 0, rateLimits: 0, leases: 0 }
        counts.set(entry.ns, count)
      }
      if (entry.kind === KeyKind.user) count.keys++
      else if (entry.kind === KeyKind.lock) count.locks++
      else if (entry.kind === KeyKind.limiter) count.rateLimits++
      else count.leases++
    }
    const namespaces = [...counts.values()].sort((a, b) => (a.ns < b.ns ? -1 : 1))
    return json(reply, 200, { namespaces, scanned, truncated })
  })
  app.get('/v1/locks', async (_request, reply) => {
    const { found, scanned, truncated } = await scan([KeyKind.lock])
    const locks = await Promise.all(
      found.map(async (entry) => {
        const [holder, stored] = await Promise.all([
          view(entry.ns, 'read').locks.holder(entry.key),
          cache.store.get(entry.storeKey),
        ])
        if (holder === undefined) return undefined
        return { ns: entry.ns, key: entry.key, ...holder, expiresAt: stored?.expiresAt ?? null }
      }),
    )
    return json(reply, 200, {
      locks: locks.filter((lock) => lock !== undefined),
      stats: cache.stats().locks,
      now: Date.now(),
      scanned,
      truncated,
    })
  })
  app.get('/v1/rate-limits', async (_request, reply) => {
    const { found, scanned, truncated } = await scan([KeyKind.limiter])
    const rateLimits = await Promise.all(
      found.map(async (entry) => {
        const stored = await cache.store.get(entry.storeKey)
        return { ns: entry.ns, key: entry.key, expiresAt: stored?.expiresAt ?? null }
      }),
    )
    return json(reply, 200, {
      rateLimits,
      stats: cache.stats().rateLimits,
      now: Date.now(),
      scanned,
      truncated,
    })
  })

  // Cache.
  app.get<{ Params: NsParams; Querystring: Record<string, unknown> }>(
    '/v1/ns/:ns/keys',
    async (request, reply) => {
      const prefix = single(request.query.prefix)
      const limitText = single(request.query.limit)
      const limit = limitText === undefined ? 1000 : Number(limitText)
      const namespace = view(request.params.ns, 'read')
      const keys = await namespace.listKeys(prefix === '' ? undefined : prefix, { limit })
      return json(reply, 200, { keys })
    },
  )
  app.get<{ Params: NsParams; Querystring: Record<string, unknown> }>(
    '/v1/ns/:ns/entries',
    async (request, reply) => {
      const prefix = single(request.query.prefix)
      const limitText = single(request.query.limit)
      const limit = limitText === undefined ? 200 : Number(limitText)
      if (!Number.isSafeInteger(limit) || limit <= 0 || limit > MAX_ENTRIES) {
        throw InvalidArgumentError.format(
          'limit',
          `must be an integer from 1 to ${MAX_ENTRIES} (each entry costs a TTL read); got ${limitText}`,
        )
      }
      const namespace = view(request.params.ns, 'read')
      const keys = await namespace.listKeys(prefix === '' ? undefined : prefix, { limit })
      const ttls = await Promise.all(keys.map((key) => namespace.ttl(key)))
      const entries = keys.flatMap((key, i) => {
        const ttl = ttls[i]
        return ttl === undefined ? [] : [{ key, ttl }]
      })
      return json(reply, 200, { entries, now: Date.now() })
    },
  )
  app.get<{ Params: KeyParams }>('/v1/ns/:ns/keys/:key', async (request, reply) => {
    const { ns, key } = request.params
    const value = await view(ns, 'read').get(key)
    if (value === undefined) throw notFound(`no entry "${key}" in namespace "${ns}"`)
    return json(reply, 200, { key, value })
  })
  app.put<{ Params: KeyParams; Querystring: Record<string, unknown> }>(
    '/v1/ns/:ns/keys/:key',
    async (request, reply) => {
      const { ns, key } = request.params
      const body = bodyObject(request)
      if (!('value' in body)) {
        throw InvalidArgumentError.format(
          'body',
          'must be a JSON object with the value to store: {"value": …, "ttl": "5m"}',
        )
      }
      const queryTtl = ttlValue(single(request.query.ttl))
      const bodyTtl = ttlValue(body.ttl)
      if (queryTtl !== undefined && bodyTtl !== undefined) {
        throw InvalidArgumentError.format('ttl', 'is given twice (query and body); keep one')
      }
      const ttl = queryTtl ?? bodyTtl
      await view(ns, 'write').set(key, body.value, ttl === undefined ? undefined : { ttl })
      return json(reply, 200, { key, stored: true })
    },
  )
  app.delete<{ Params: KeyParams }>('/v1/ns/:ns/keys/:key', async (request, reply) => {
    const { ns, key } = request.params
    return json(reply, 200, { key, deleted: await view(ns, 'write').delete(key) })
  })
  app.get<{ Params: KeyParams }>('/v1/ns/:ns/keys/:key/ttl', async (request, reply) => {
    const { ns, key } = request.params
    const ttl = await view(ns, 'read').ttl(key)
    if (ttl === undefined) throw notFound(`no entry "${key}" in namespace "${ns}"`)
    return json(reply, 200, { key, ttl })
  })

  // Locks.
  app.post<{ Params: KeyParams }>('/v1/ns/:ns/locks/:key', async (request, reply) => {
    const { ns, key } = request.params
    const body = bodyObject(request)
    const ttl = ttlValue(body.ttl)
    if (ttl === undefined) {
      throw InvalidArgumentError.format('ttl', 'is required: the lease, e.g. {"ttl": "30s"}')
    }
    const wait = ttlValue(body.wait)
    if (body.owner !== undefined && typeof body.owner !== 'string') {
      throw InvalidArgumentError.format('owner', 'must be a string')
    }
    const locks = view(ns, 'write').locks
    const lock = await locks.acquire(key, {
      ttl,
      ...(wait === undefined ? {} : { wait }),
      ...(body.owner === undefined ? {} : { owner: body.owner }),
    })
    if (lock === null) {
      const holder = await locks.holder(key)
      return json(reply, 409, {
        error: {
          code: 'E_LOCK_TIMEOUT',
          message: `lock "${key}" is held by another owner; retry later or pass "wait"`,
        },
        holder:
          holder === undefined
            ? null
            : { owner: holder.owner, token: holder.token, acquiredAt: holder.acquiredAt },
      })
    }
    return json(reply, 200, {
      key,
      acquired: true,
      owner: lock.owner,
      token: lock.token,
      acquiredAt: lock.acquiredAt,
      ttlMs: lock.remainingMs(),
    })
  })
  app.delete<{ Params: KeyParams; Querystring: Record<string, unknown> }>(
    '/v1/ns/:ns/locks/:key',
    async (request, reply) => {
      const { ns, key } = request.params
      const owner = single(bodyObject(request).owner) ?? single(request.query.owner)
      if (owner === undefined) {
        throw InvalidArgumentError.format('owner', 'is required: the owner acquire returned')
      }
      return json(reply, 200, { key, released: await view(ns, 'write').locks.release(key, owner) })
    },
  )
  app.get<{ Params: KeyParams }>('/v1/ns/:ns/locks/:key', async (request, reply) => {
    const { ns, key } = request.params
    const holder = await view(ns, 'read').locks.holder(key)
    return json(reply, 200, { key, held: holder !== undefined, holder: holder ?? null })
  })

  // Rate limits.
  app.post<{ Params: KeyParams }>('/v1/ns/:ns/rate-limits/:key', async (request, reply) => {
    const { ns, key } = request.params
    const result = await view(ns, 'write').rateLimit(key, rateLimitOptions(bodyObject(request)))
    if (!result.allowed) reply.header('retry-after', Math.ceil(result.retryAfterMs / 1000))
    return json(reply, 200, { key, ...result })
  })
  app.get<{ Params: KeyParams; Querystring: Record<string, unknown> }>(
    '/v1/ns/:ns/rate-limits/:key',
    async (request, reply) => {
      const { ns, key } = request.params
      const result = await view(ns, 'read').rateLimits.status(key, rateLimitOptions(request.query))
      return json(reply, 200, { key, ...result })
    },
  )
  app.delete<{ Params: KeyParams }>('/v1/ns/:ns/rate-limits/:key', async (request, reply) => {
    const { ns, key } = request.params
    return json(reply, 200, { key, reset: await view(ns, 'write').rateLimits.reset(key) })
  })

  // Leaders and flows.
  app.get('/v1/leaders', async (_request, reply) => {
    const flows = host?.status().flows ?? []
    const leaders = flows
      .filter((flow) => flow.leader !== undefined)
      .map((flow) => ({
        flow: flow.name,
        tenant: flow.tenant,
        election: `flow:${flow.name}`,
        ...flow.leader,
      }))
    return json(reply, 200, { leaders })
  })
  app.get('/v1/flows', async (_request, reply) => {
    const status = host?.status()
    const flows = (status?.flows ?? []).map(({ recent, ...flow }) => ({
      ...flow,
      lastRun: recent[recent.length - 1] ?? null,
    }))
    return json(reply, 200, {
      state: status?.state ?? 'none',
      routes: status?.routes ?? null,
      flows,
    })
  })
  app.get<{ Params: { name: string } }>('/v1/flows/:name/runs', async (request, reply) => {
    const flow = host?.status().flows.find((entry) => entry.name === request.params.name)
    if (flow === undefined) throw notFound(`no flow "${request.params.name}"`)
    return json(reply, 200, { flow: flow.name, runs: flow.runs, recent: flow.recent })
  })
  app.post<{ Params: { name: string } }>('/v1/flows/:name/run', async (request, reply) => {
    const body = bodyObject(request)
    const event = body.event ?? {}
    if (typeof event !== 'object' || event === null || Array.isArray(event)) {
      throw InvalidArgumentError.format('event', 'must be a JSON object, e.g. {"data": {"id": 1}}')
    }
    if (body.debug !== undefined && typeof body.debug !== 'boolean') {
      throw InvalidArgumentError.format('debug', 'must be true or false')
    }
    const result = await options.runFlow?.(request.params.name, event as Record<string, unknown>, {
      debug: body.debug === true,
    })
    if (result === undefined) throw notFound(`no flow "${request.params.name}"`)
    return json(reply, 200, result)
  })

  app.get<{ Params: NsParams; Querystring: Record<string, unknown> }>(
    '/v1/ns/:ns/stats',
    async (request, reply) => {
      const topText = single(request.query.top)
      const top = topText === undefined ? undefined : Number(topText)
      const stats = await view(request.params.ns, 'read').namespaceStats(
        top === undefined ? {} : { top },
      )
      return json(reply, 200, stats)
    },
  )
  app.get('/v1/namespace-stats', async (_request, reply) =>
    json(reply, 200, { namespaces: await cache.trackedNamespaceStats() }),
  )
  app.get('/v1/stats', async (_request, reply) => {
    const status = host?.status()
    return json(reply, 200, {
      cache: cache.stats(),
      health: cache.health(),
      flows:
        status === undefined
          ? null
          : { state: status.state, count: status.flows.length, routes: status.routes.size },
    })
  })

  // HTTP-triggered flows.
  app.route<{ Params: { '*': string } }>({
    method: [...FLOW_METHODS],
    url: '/flows/*',
    handler: async (request, reply) => {
      if (host === undefined) throw notFound('no flows are loaded')
      const path = `/${request.params['*']}${queryOf(request.url)}`
      const debug = single(request.headers['x-flowcache-debug']) === 'true'
      const result = await host.dispatch(request.method, path, request.body, { debug })
      if (result.kind === 'ok') return json(reply, 200, result.result)
      if (result.kind === 'method-not-allowed') {
        reply.header('allow', result.allow.join(', '))
        return json(reply, 405, {
          error: {
            code: 'E_METHOD_NOT_ALLOWED',
            message: `${request.method} is not routed here; use ${result.allow.join(', ')}`,
          },
        })
      }
      throw notFound(`no flow is routed at ${request.method} ${path.split('?')[0]}`)
    },
  })

  // The web console: static files, no data in them.
  if (options.console !== false) {
    const files = consoleFiles()
    const redirect = async (_request: FastifyRequest, reply: FastifyReply) =>
      reply.redirect('/console/', 302)
    app.get('/', PUBLIC, redirect)
    app.get('/console', PUBLIC, redirect)
    for (const [name, file] of files) {
      const url = name === 'index.html' ? '/console/' : `/console/${name}`
      app.get(url, PUBLIC, async (_request, reply) => reply.type(file.type).send(file.body))
    }
  }

  let closing: Promise<void> | undefined
  return {
    fastify: app,
    authRequired: tokenCheck !== undefined,
    routes: () => registered.map((route) => ({ ...route })),
    async listen() {
      await app.listen({ host: config.server.host, port: config.server.port })
      const address = app.server.address()
      const port =
        typeof address === 'object' && address !== null ? address.port : config.server.port
      const shown = config.server.host.includes(':')
        ? `[${config.server.host}]`
        : config.server.host
      return `http://${shown}:${port}`
    },
    close() {
      closing ??= (async () => {
        await app.close()
        await host?.stop()
        metrics.close()
      })()
      return closing
    },
  }
}
