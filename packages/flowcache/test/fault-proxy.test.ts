/**
 * The TCP fault proxy (helpers/fault-proxy.ts) against the real Redis from the global setup,
 * driven through ioredis. Timing assertions are lower bounds only.
 */
import { randomUUID } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as natsConnect } from '@nats-io/transport-node'
import { Redis, type RedisOptions } from 'ioredis'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { startFaultProxy, type FaultProxy } from './helpers/fault-proxy.js'
import { natsUrl, redisUrl } from './helpers/services.js'

const proxies: FaultProxy[] = []
const clients: Redis[] = []
const keys: string[] = []

afterEach(async () => {
  for (const client of clients.splice(0)) client.disconnect()
  await Promise.all(proxies.splice(0).map((proxy) => proxy.close()))
  const used = keys.splice(0)
  if (used.length > 0) {
    const direct = new Redis(redisUrl(), { maxRetriesPerRequest: 1 })
    try {
      await direct.del(...used)
    } finally {
      direct.disconnect()
    }
  }
})

function newKey(): string {
  const key = `flowcache:test:fault-proxy:${randomUUID()}`
  keys.push(key)
  return key
}

async function newProxy(targetUrl = redisUrl()): Promise<FaultProxy> {
  const url = new URL(targetUrl)
  const proxy = await startFaultProxy({
    target: {
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || (url.protocol === 'nats:' ? 4222 : 6379)),
    },
  })
  proxies.push(proxy)
  return proxy
}

/** An ioredis client (through the proxy if `url` is the proxy's) whose errors are recorded. */
function newClient(url: string, options: RedisOptions = {}): { redis: Redis; errors: Error[] } {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, ...options })
  const errors: Error[] = []
  redis.on('error', (error: Error) => errors.push(error))
  clients.push(redis)
  return { redis, errors }
}

/** Open a raw TCP connection: resolves 'connected' or the error code (e.g. 'ECONNREFUSED'). */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve('connected')
    })
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
  })
}

describe('fault proxy', () => {
  it('pass: forwards PING/SET/GET and counts connections', async () => {
    const proxy = await newProxy()
    expect(proxy.url('redis')).toBe(`redis://127.0.0.1:${proxy.port}`)
    expect(new URL(proxy.url(redisUrl())).port).toBe(String(proxy.port))
    const { redis } = newClient(proxy.url(redisUrl()))
    const key = newKey()

    await redis.connect()
    expect(await redis.ping()).toBe('PONG')
    expect(await redis.set(key, 'hello', 'EX', 60)).toBe('OK')
    expect(await redis.get(key)).toBe('hello')
    expect(proxy.connections()).toBe(1)
    expect(proxy.totalConnections).toBe(1)
    expect(proxy.mode).toEqual({ kind: 'pass' })

    redis.disconnect()
    await vi.waitFor(() => expect(proxy.connections()).toBe(0))
    expect(proxy.totalConnections).toBe(1)
  })

  it('delay: each direction waits at least the delay', async () => {
    const proxy = await newProxy()
    const { redis } = newClient(proxy.url(redisUrl()))
    await redis.connect()
    await redis.ping()

    proxy.delay(200)
    const start = performance.now()
    expect(await redis.ping()).toBe('PONG')
    // 200 ms on the way up plus 200 ms on the way down.
    expect(performance.now() - start).toBeGreaterThanOrEqual(400)
  })

  it('delay with jitter keeps the byte order', async () => {
    const proxy = await newProxy()
    const { redis } = newClient(proxy.url(redisUrl()))
    const key = newKey()
    await redis.connect()

    proxy.delay(5, 40)
    const replies: Promise<number>[] = []
    for (let i = 0; i < 30; i++) {
      replies.push(redis.incr(key))
      await sleep(2) // separate writes, so separate chunks with different jitter
    }
    expect(await Promise.all(replies)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
  })

  it('blackhole: commands time out without a reset; pass() heals the same connection', async () => {
    const proxy = await newProxy()
    const { redis, errors } = newClient(proxy.url(redisUrl()), { commandTimeout: 300 })
    let closes = 0
    redis.on('close', () => closes++)
    await redis.connect()
    expect(await redis.ping()).toBe('PONG')

    proxy.blackhole()
    await expect(redis.ping()).rejects.toThrow(/timed out/i)
    // New connections are still accepted (no RST, no refusal), they just get nothing.
    expect(await tryConnect(proxy.port)).toBe('connected')
    expect(closes).toBe(0)
    expect(errors).toEqual([])

    await proxy.pass()
    expect(await redis.ping()).toBe('PONG')
    expect(closes).toBe(0)
  })

  it('blackhole: bytes sent during the partition arrive after it heals', async () => {
    const proxy = await newProxy()
    proxy.blackhole()
    const socket = netConnect({ host: '127.0.0.1', port: proxy.port })
    let received = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => (received += chunk))
    try {
      await new Promise((resolve) => socket.once('connect', resolve))
      socket.write('PING\r\n')
      await sleep(300)
      expect(received).toBe('')
      expect(proxy.connections()).toBe(1)

      await proxy.pass()
      await vi.waitFor(() => expect(received).toBe('+PONG\r\n'))
    } finally {
      socket.destroy()
    }
  })

  it('reset: the client sees ECONNRESET, reconnects and works', async () => {
    const proxy = await newProxy()
    const { redis, errors } = newClient(proxy.url(redisUrl()))
    await redis.connect()
    expect(await redis.ping()).toBe('PONG')
    const closed = new Promise((resolve) => redis.once('close', resolve))

    proxy.reset()
    await closed
    expect(errors.map((error) => (error as NodeJS.ErrnoException).code)).toContain('ECONNRESET')
    expect(await redis.ping()).toBe('PONG') // queued until ioredis has reconnected
    expect(proxy.totalConnections).toBe(2)
    expect(proxy.connections()).toBe(1)
  })

  it('refuse: new connections get ECONNREFUSED until pass(), on the same port', async () => {
    const proxy = await newProxy()
    const port = proxy.port
    const { redis: existing } = newClient(proxy.url(redisUrl()))
    await existing.connect()

    await proxy.refuse()
    expect(proxy.refusing).toBe(true)
    expect(await tryConnect(port)).toBe('ECONNREFUSED')
    const { redis: fresh, errors } = newClient(proxy.url(redisUrl()), { retryStrategy: () => null })
    await expect(fresh.connect()).rejects.toThrow()
    expect(errors.map((error) => (error as NodeJS.ErrnoException).code)).toContain('ECONNREFUSED')
    // Refusing new connections leaves the current ones alone.
    expect(await existing.ping()).toBe('PONG')

    await proxy.pass()
    expect(proxy.refusing).toBe(false)
    expect(proxy.port).toBe(port)
    const { redis: again } = newClient(proxy.url(redisUrl()))
    await again.connect()
    expect(await again.ping()).toBe('PONG')
  })

  it("oneway('up'): a SET reaches Redis but its reply never arrives", async () => {
    const proxy = await newProxy()
    const { redis } = newClient(proxy.url(redisUrl()), { commandTimeout: 300 })
    const { redis: direct } = newClient(redisUrl())
    const key = newKey()
    await Promise.all([redis.connect(), direct.connect()])

    proxy.oneway('up')
    await expect(redis.set(key, 'written', 'EX', 60)).rejects.toThrow(/timed out/i)
    await vi.waitFor(async () => expect(await direct.get(key)).toBe('written'))

    await proxy.pass()
    expect(await redis.get(key)).toBe('written')
  })

  it('throttle: a large value takes at least size / rate', async () => {
    const proxy = await newProxy()
    const { redis } = newClient(proxy.url(redisUrl()))
    const key = newKey()
    await redis.connect()

    proxy.throttle(50_000)
    const start = performance.now()
    await redis.set(key, 'x'.repeat(50_000), 'EX', 60)
    // 50 kB at 50 kB/s is about 1 s; the first 50 ms slice goes out at once.
    expect(performance.now() - start).toBeGreaterThanOrEqual(500)
  })

  it('close: drops every connection and stops listening', async () => {
    const proxy = await newProxy()
    const { redis } = newClient(proxy.url(redisUrl()), { retryStrategy: () => null })
    await redis.connect()
    const closed = new Promise((resolve) => redis.once('close', resolve))

    await proxy.close()
    await closed
    expect(proxy.connections()).toBe(0)
    expect(await tryConnect(proxy.port)).toBe('ECONNREFUSED')
  })

  it('also carries NATS: a request/reply round trip through the proxy', async () => {
    const proxy = await newProxy(natsUrl())
    const nc = await natsConnect({ servers: proxy.url(natsUrl()), timeout: 5_000 })
    try {
      const subject = `flowcache.test.fault-proxy.${randomUUID()}`
      nc.subscribe(subject, { callback: (_error, msg) => void msg.respond(msg.data) })
      const reply = await nc.request(subject, 'hello', { timeout: 2_000 })
      expect(reply.string()).toBe('hello')
      expect(proxy.connections()).toBe(1)
    } finally {
      await nc.close()
    }
  })
})
