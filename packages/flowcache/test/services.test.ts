/**
 * Smoke test for the integration-test infrastructure: the Redis and NATS JetStream servers the
 * global setup provides really work, and the private-server launcher starts and stops servers.
 */
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { jetstreamManager } from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import { connect } from '@nats-io/transport-node'
import { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import {
  isProcessAlive,
  probeNats,
  probeRedis,
  startNatsServer,
  startRedisServer,
  type ServerHandle,
} from './helpers/servers.js'
import { natsUrl, redisUrl } from './helpers/services.js'

const unique = (): string => randomUUID().replaceAll('-', '')

describe('provided services', () => {
  it('exposes the URLs through inject and process.env', () => {
    expect(redisUrl()).toMatch(/^rediss?:\/\//)
    expect(natsUrl()).toMatch(/^nats:\/\//)
    expect(process.env.FLOWCACHE_REDIS_URL).toBe(redisUrl())
    expect(process.env.FLOWCACHE_NATS_URL).toBe(natsUrl())
  })

  it('Redis: SET/GET round trip', async () => {
    const redis = new Redis(redisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 })
    const key = `flowcache:test:services:${unique()}`
    try {
      await redis.connect()
      expect(await redis.set(key, 'hello', 'EX', 60)).toBe('OK')
      expect(await redis.get(key)).toBe('hello')
      expect(await redis.del(key)).toBe(1)
      expect(await redis.exists(key)).toBe(0)
    } finally {
      await redis.del(key).catch(() => 0)
      redis.disconnect()
    }
  })

  it('NATS: KV bucket create/put/get/delete', async () => {
    const nc = await connect({ servers: natsUrl(), timeout: 5_000 })
    const bucket = `flowcache_test_${unique()}`
    try {
      const kv = await new Kvm(nc).create(bucket, { history: 1 })
      const revision = await kv.put('greeting', 'hello')
      expect(revision).toBeGreaterThan(0)
      const entry = await kv.get('greeting')
      expect(entry?.string()).toBe('hello')
      expect(entry?.revision).toBe(revision)
      expect(await kv.destroy()).toBe(true)

      const jsm = await jetstreamManager(nc)
      const streams: string[] = []
      for await (const name of jsm.streams.names()) streams.push(name)
      expect(streams).not.toContain(`KV_${bucket}`)
    } finally {
      await nc.close()
    }
  })
})

describe('server launcher', () => {
  const servers: ServerHandle[] = []
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.stop({ graceMs: 1_000 })))
  })

  it('starts a private redis-server, answers PING, stops by pid', async () => {
    const server = await startRedisServer()
    servers.push(server)
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`)
    expect(server.port).not.toBe(6379)
    expect(isProcessAlive(server.pid)).toBe(true)

    const redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
    try {
      await redis.connect()
      expect(await redis.ping()).toBe('PONG')
    } finally {
      redis.disconnect()
    }

    await server.stop()
    expect(server.running).toBe(false)
    expect(isProcessAlive(server.pid)).toBe(false)
    expect(existsSync(server.dir)).toBe(false)
    expect(await probeRedis(server.url, 500)).toMatchObject({ ok: false })
  })

  it('starts a private nats-server with JetStream, stops by pid', async () => {
    const server = await startNatsServer()
    servers.push(server)
    expect(server.url).toBe(`nats://127.0.0.1:${server.port}`)
    expect(server.port).not.toBe(4222)
    expect(isProcessAlive(server.pid)).toBe(true)
    expect(await probeNats(server.url)).toEqual({ ok: true })

    const nc = await connect({ servers: server.url, timeout: 5_000 })
    try {
      const kv = await new Kvm(nc).create(`launcher_${unique()}`)
      await kv.put('k', 'v')
      expect((await kv.get('k'))?.string()).toBe('v')
    } finally {
      await nc.close()
    }

    await server.stop()
    expect(server.running).toBe(false)
    expect(isProcessAlive(server.pid)).toBe(false)
    expect(existsSync(server.dir)).toBe(false)
    expect(await probeNats(server.url, 500)).toMatchObject({ ok: false })
  })
})
