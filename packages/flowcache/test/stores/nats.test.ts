/**
 * The NATS JetStream KV store against real servers: the shared one found by the global setup
 * (`natsUrl()`), and private ones for the crash and outage tests. Buckets are unique per run and
 * deleted at the end.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'

import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import * as vitest from 'vitest'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'

import { createCache } from '../../src/core/cache.js'
import { ManualClock } from '../../src/core/clock.js'
import { jsonCodec } from '../../src/core/codec.js'
import { natsStore, type NatsStore, type NatsStoreOptions } from '../../src/stores/nats/index.js'
import { runStoreContract } from '../../src/testing/index.js'
import { processStopped, waitUntil } from '../fixtures/fault-harness.js'
import { startNatsServer, type ServerHandle } from '../helpers/servers.js'
import { natsUrl } from '../helpers/services.js'

const run = randomBytes(4).toString('hex')
/** Bucket of the contract runs and of most tests below. */
const bucket = `fc-test-nats-${run}`
/** Bucket with history 5, for the history and sweep-race tests. */
const historyBucket = `fc-test-nats-history-${run}`

const utf8 = new TextEncoder()
const text = (bytes: Uint8Array | undefined): string | undefined =>
  bytes === undefined ? undefined : new TextDecoder().decode(bytes)

/** Figures printed once at the end, for the record (timings are measured, never asserted tightly). */
const figures: string[] = []

runStoreContract(vitest, {
  name: 'nats',
  clock: 'manual',
  createStore: ({ clock }) => natsStore({ servers: natsUrl(), bucket, clock }),
})

// The same contract on real time: the path production takes, where deadlines are Date.now().
runStoreContract(vitest, {
  name: 'nats (real clock)',
  clock: 'real',
  createStore: () => natsStore({ servers: natsUrl(), bucket }),
})

/** A raw client on the shared server, to look at what the store wrote. */
let raw: { nc: NatsConnection; jsm: JetStreamManager; kv: KV; historyKv: KV }
/** Stores opened by a test; closed after it. */
const opened: NatsStore[] = []

function open(options: NatsStoreOptions = {}): NatsStore {
  const store = natsStore({ servers: natsUrl(), bucket, sweepIntervalMs: 0, ...options })
  opened.push(store)
  return store
}

/** A fresh root token, so tests never see each other's keys. */
function root(): string {
  return `t${randomBytes(6).toString('hex')}`
}

beforeAll(async () => {
  const nc = await connect({ servers: natsUrl() })
  const kvm = new Kvm(nc)
  raw = {
    nc,
    jsm: await jetstreamManager(nc),
    kv: await kvm.create(bucket),
    historyKv: await kvm.create(historyBucket, { history: 5 }),
  }
})

afterEach(async () => {
  await Promise.all(opened.splice(0).map((store) => store.close()))
})

afterAll(async () => {
  for (const name of [bucket, historyBucket]) {
    await raw.jsm.streams.delete(`KV_${name}`).catch(() => false)
  }
  await raw.nc.close()
  if (figures.length > 0) process.stdout.write(`[nats figures]\n  ${figures.join('\n  ')}\n`)
})

describe('nats store: TTL on a server that ignores per-message TTL', () => {
  it('a key set with a 1 s TTL is never returned after 1 s, while the raw @nats-io/kv client still returns it', async () => {
    const store = open()
    const prefix = `${root()}.k/`
    // `polled` is read through the store across its deadline; `untouched` only by the raw
    // client, since a store read past the deadline removes the entry.
    const [polled, untouched] = [`${prefix}polled`, `${prefix}untouched`]
    const start = Date.now()
    const revision = await store.set(polled, utf8.encode('"v"'), { ttlMs: 1000 })
    await store.set(untouched, utf8.encode('"v"'), { ttlMs: 1000 })
    const deadline = (await store.get(polled))?.expiresAt
    assert.ok(
      typeof deadline === 'number' && deadline >= start + 1000 && deadline <= Date.now() + 1000,
    )
    let lastHit = 0
    let firstMiss = 0
    while (Date.now() < start + 1200) {
      const readAt = Date.now()
      const entry = await store.get(polled)
      if (entry !== undefined) {
        assert.ok(readAt < deadline, `returned ${readAt - deadline} ms after its deadline`)
        assert.equal(firstMiss, 0, 'returned again after a miss')
        lastHit = Date.now()
      } else {
        firstMiss ||= readAt
      }
      await sleep(5)
    }
    assert.ok(firstMiss > 0, 'the entry expired')
    const version = raw.nc.info?.version ?? ''
    const oldServer = /^v?2\.(\d|10)\./.test(version)
    const rawEntry = await raw.kv.get(untouched)
    const rawAgeMs = Date.now() - start
    if (oldServer) {
      assert.equal(rawEntry?.operation, 'PUT', `nats-server ${version} ignores per-key TTL`)
      assert.equal(rawEntry?.string(), '"v"')
    }
    assert.equal(await store.get(untouched), undefined, 'get after the deadline')
    assert.deepEqual(await store.getMany([untouched, polled]), [undefined, undefined])
    const listed: string[] = []
    for await (const key of store.list(prefix)) listed.push(key)
    assert.deepEqual(listed, [], 'list after the deadline')
    assert.equal(await store.compareAndSet(polled, utf8.encode('"x"'), revision), undefined)
    assert.equal(await store.delete(polled, { expected: revision }), false)
    figures.push(
      `TTL 1 s on nats-server ${version}: deadline ${deadline - start} ms after the write; last store hit ` +
        `${lastHit - start} ms, first miss ${firstMiss - start} ms (${firstMiss - deadline} ms after the deadline); ` +
        `raw client still returned the value at ${rawAgeMs} ms (${oldServer ? 'server ignores per-key TTL' : 'newer server'})`,
    )
  })

  it('an expired entry is removed by a later read, fenced so that a newer write survives', async () => {
    // Both stores share one connection, so the server sees the read before the rewrite: the
    // lazy purge is then decided on a revision that is already stale.
    const clock = new ManualClock()
    const nc = await connect({ servers: natsUrl() })
    try {
      const expiring = open({ connection: nc, servers: undefined, bucket: historyBucket, clock })
      const writer = open({ connection: nc, servers: undefined, bucket: historyBucket })
      await Promise.all([expiring.connect(), writer.connect()])
      const key = `${root()}.k/race`
      await expiring.set(key, utf8.encode('"old"'), { ttlMs: 1000 })
      clock.advance(1000)
      const [seen, rewritten] = await Promise.all([
        expiring.get(key),
        writer.set(key, utf8.encode('"new"')),
      ])
      await expiring.close() // waits for its background purge
      const after = await writer.get(key)
      assert.equal(text(after?.value), '"new"', 'the rewrite survives the purge of the old entry')
      assert.equal(after?.revision, rewritten)
      // The read was answered before the rewrite, so the purge was fenced on a stale revision…
      assert.equal(seen, undefined, 'the read saw the expired entry')
      // …and the server refused it: no delete after the rewrite.
      assert.deepEqual(
        (await writer.history(key)).map((v) => [v.kvOperation, text(v.value)]),
        [
          ['PUT', '"old"'],
          ['PUT', '"new"'],
        ],
      )
    } finally {
      await Promise.all(opened.splice(0).map((store) => store.close()))
      await nc.close()
    }
  })

  it('a sweep racing rewrites of the keys it expires never deletes a newer write', async () => {
    const clock = new ManualClock()
    const sweeper = open({ bucket: historyBucket, clock })
    const writer = open({ bucket: historyBucket })
    await writer.connect()
    const prefix = `${root()}.k/`
    const keys = Array.from({ length: 200 }, (_, i) => `${prefix}${i}`)
    await sweeper.setMany(keys.map((key) => ({ key, value: utf8.encode('"old"'), ttlMs: 1000 })))
    clock.advance(1000)
    // Rewrites go in the opposite order from the sweep's deletes, so they meet in the middle.
    const rewrite = async (): Promise<void> => {
      await writer.setMany([...keys].reverse().map((key) => ({ key, value: utf8.encode('"new"') })))
    }
    const [pruned] = await Promise.all([sweeper.prune(), rewrite()])
    const entries = await writer.getMany(keys)
    const lost = keys.filter((_, i) => text(entries[i]?.value) !== '"new"')
    assert.deepEqual(lost, [], 'every rewrite survives the sweep')
    // With history kept, a deletion after the rewrite would show as the newest version.
    let sweptFirst = 0
    for (const key of keys) {
      const versions = await writer.history(key)
      assert.equal(versions.at(-1)?.kvOperation, 'PUT', `${key}: newest version is the rewrite`)
      if (versions.some((v) => v.expired)) sweptFirst++
    }
    assert.equal(sweptFirst, pruned, 'prune counts exactly the expiries it wrote')
    figures.push(
      `sweep race over 200 keys: sweep expired ${pruned} before their rewrite, ${200 - pruned} rewrites came first (scan or fence), 0 rewrites lost`,
    )
  })

  it('the background sweep removes expired entries on its own, marking the delete as an expiry', async () => {
    const clock = new ManualClock()
    const store = open({ bucket: historyBucket, clock, sweepIntervalMs: 100 })
    const key = `${root()}.k/swept`
    const forever = `${key}-forever`
    await store.set(key, utf8.encode('1'), { ttlMs: 5000 })
    await store.set(forever, utf8.encode('2'))
    clock.advance(5000)
    const giveUpAt = Date.now() + 10_000
    while ((await raw.historyKv.get(key))?.operation !== 'DEL') {
      assert.ok(Date.now() < giveUpAt, 'the sweep did not remove the expired entry within 10 s')
      await sleep(50)
    }
    const versions = await store.history(key)
    assert.deepEqual(
      versions.map((v) => [v.kvOperation, v.expired]),
      [
        ['PUT', false],
        ['DEL', true],
      ],
    )
    assert.equal(text((await store.get(forever))?.value), '2', 'an entry without TTL stays')
  })

  it('delete markers older than tombstoneTtl are compacted; the compaction never removes a later write', async () => {
    const store = open({ tombstoneTtl: '1s' })
    const prefix = `${root()}.k/`
    const [gone, rewritten] = [`${prefix}gone`, `${prefix}rewritten`]
    const stream = `KV_${bucket}`
    const subject = (key: string): string => `$KV.${bucket}.${key}`
    await store.set(gone, utf8.encode('1'))
    await store.delete(gone)
    assert.equal((await raw.kv.get(gone))?.operation, 'DEL', 'a delete leaves a marker')
    await sleep(1100)
    await store.prune()
    assert.equal(
      await raw.jsm.streams.getMessage(stream, { last_by_subj: subject(gone) }),
      null,
      'the marker is gone',
    )
    // The compaction purges up to the marker's own sequence: what the server does with a write
    // that landed after the marker was read is what keeps it safe.
    await store.set(rewritten, utf8.encode('1'))
    await store.delete(rewritten)
    const marker = await raw.jsm.streams.getMessage(stream, { last_by_subj: subject(rewritten) })
    assert.ok(marker !== null)
    const later = await store.set(rewritten, utf8.encode('2'))
    await raw.jsm.streams.purge(stream, { filter: subject(rewritten), seq: marker.seq + 1 })
    const entry = await store.get(rewritten)
    assert.equal(entry?.revision, later)
    assert.equal(text(entry?.value), '2')
  })
})

describe('nats store: history, layout and API', () => {
  it('history(key) returns previous values with revision, time and operation when history > 1', async () => {
    const store = open({ bucket: historyBucket })
    const key = `${root()}.k/h`
    const before = Date.now()
    const r1 = await store.set(key, utf8.encode('"v1"'))
    const r2 = await store.set(key, utf8.encode('"v2"'), { ttlMs: 60_000 })
    await store.delete(key)
    const r3 = await store.set(key, utf8.encode('"v3"'))
    const versions = await store.history(key)
    assert.deepEqual(
      versions.map((v) => [v.kvOperation, text(v.value ?? new Uint8Array())]),
      [
        ['PUT', '"v1"'],
        ['PUT', '"v2"'],
        ['DEL', ''],
        ['PUT', '"v3"'],
      ],
    )
    assert.equal(versions[0]?.revision, r1)
    assert.equal(versions[1]?.revision, r2)
    assert.equal(versions[3]?.revision, r3)
    assert.equal(versions[0]?.expiresAt, null)
    assert.equal(typeof versions[1]?.expiresAt, 'number', 'a TTL write shows its deadline')
    const revisions = versions.map((v) => Number(v.revision))
    assert.deepEqual(
      revisions,
      [...revisions].sort((a, b) => a - b),
      'oldest first',
    )
    for (const v of versions) {
      assert.ok(v.time >= before - 1000 && v.time <= Date.now() + 1000, 'server time of the write')
    }
    assert.deepEqual(
      (await store.history(key, { limit: 2 })).map((v) => v.kvOperation),
      ['DEL', 'PUT'],
      'limit keeps the most recent versions',
    )
    assert.deepEqual(await store.history(`${key}-never-written`), [])
  })

  it('with history 1 (the default) only the current version is kept', async () => {
    const store = open()
    const key = `${root()}.k/h1`
    await store.set(key, utf8.encode('1'))
    await store.set(key, utf8.encode('2'))
    assert.deepEqual(
      (await store.history(key)).map((v) => text(v.value)),
      ['2'],
    )
  })

  it('the stored bytes are the value itself, so `nats kv get` shows the JSON text; the deadline is a header', async () => {
    const store = open()
    const key = `${root()}.k/order=3A42`
    const json = JSON.stringify({ id: 42, items: ['a', 'b'], total: 9.5 })
    await store.set(key, utf8.encode(json), { ttlMs: 60_000 })
    const entry = await raw.kv.get(key)
    assert.equal(entry?.string(), json, 'raw value bytes are the JSON text')
    const stored = await raw.jsm.streams.getMessage(`KV_${bucket}`, {
      last_by_subj: `$KV.${bucket}.${key}`,
    })
    const deadline = Number(stored?.header.get('Flowcache-Expires-At'))
    assert.equal(deadline, (await store.get(key))?.expiresAt, 'the header holds the deadline')
    // An entry without TTL carries no header at all.
    await store.set(key, utf8.encode(json))
    const plain = await raw.jsm.streams.getMessage(`KV_${bucket}`, {
      last_by_subj: `$KV.${bucket}.${key}`,
    })
    assert.equal(plain?.header?.get('Flowcache-Expires-At') ?? '', '')
    // And what another KV client writes is readable through the store.
    await raw.kv.put(key, '"from raw"')
    assert.equal(text((await store.get(key))?.value), '"from raw"')
  })

  it('the Cache API round-trips values over the nats store, Date, Map, Set and BigInt included', async () => {
    const prefix = root()
    const cache = createCache({
      store: natsStore({ servers: natsUrl(), bucket, sweepIntervalMs: 0 }),
      prefix,
    })
    try {
      const value = {
        when: new Date('2024-05-06T07:08:09.010Z'),
        tags: new Map<string, unknown>([
          ['a', 1],
          ['b', [true, null]],
        ]),
        ids: new Set([1, 2, 3]),
        big: 12345678901234567890n,
        bytes: new Uint8Array([0, 1, 255]),
        nested: { n: -0, inf: Number.POSITIVE_INFINITY, nan: Number.NaN, text: 'héllo' },
      }
      await cache.set('order:42', value)
      expect(await cache.get('order:42')).toEqual(value)
      expect(await cache.get('missing')).toBeUndefined()
      await cache.set('null', null)
      expect(await cache.get('null', 'default')).toBeNull()
      expect(await cache.add('once', 1)).toBe(true)
      expect(await cache.add('once', 2)).toBe(false)
      expect(await cache.increment('counter', 5)).toBe(5)
      expect(await cache.increment('counter', 2)).toBe(7)
      await cache.set('short', 'v', '1m')
      const ttl = await cache.ttl('short')
      expect(ttl).toBeGreaterThan(55_000)
      expect(ttl).toBeLessThanOrEqual(60_000)
      expect((await cache.keys()).sort()).toEqual(['counter', 'null', 'once', 'order:42', 'short'])
      // The store key is readable in the bucket: `nats kv get <bucket> <prefix>.k/order=3A42`.
      const stored = await raw.kv.get(`${prefix}.k/order=3A42`)
      const storedText = stored?.string() ?? ''
      expect(jsonCodec.decode(utf8.encode(storedText))).toEqual(value)
      expect(storedText).toContain('"2024-05-06T07:08:09.010Z"')
      expect(await cache.delete('once')).toBe(true)
      expect(await cache.clear()).toBe(4)
      expect(await cache.keys()).toEqual([])
    } finally {
      await cache.close()
    }
  })

  it('list asks the server for the namespace subjects only, headers only', async () => {
    const nc = await connect({ servers: natsUrl() })
    const requests: Array<{ subject: string; body: string }> = []
    const request = nc.request.bind(nc)
    nc.request = (subject, payload, options) => {
      requests.push({
        subject,
        body:
          typeof payload === 'string' ? payload : new TextDecoder().decode(payload ?? undefined),
      })
      return request(subject, payload, options)
    }
    try {
      const store = open({ connection: nc, servers: undefined })
      const ns = `${root()}.ns.`
      await store.setMany([
        { key: `${ns}k/a`, value: utf8.encode('1') },
        { key: `${ns}child.k/b`, value: utf8.encode('2') },
        { key: `${ns.slice(0, -1)}x.k/c`, value: utf8.encode('3') },
      ])
      requests.length = 0
      const keys: string[] = []
      for await (const key of store.list(ns)) keys.push(key)
      assert.deepEqual(keys.sort(), [`${ns}child.k/b`, `${ns}k/a`])
      const create = requests.find((r) => r.subject.includes('.CONSUMER.CREATE.'))
      assert.ok(create !== undefined, 'list creates one scan consumer')
      const config = (JSON.parse(create.body) as { config: Record<string, unknown> }).config
      assert.equal(config.filter_subject, `$KV.${bucket}.${ns}>`)
      assert.equal(config.headers_only, true)
      assert.equal(config.deliver_policy, 'last_per_subject')
      await store.close()
    } finally {
      await nc.close()
    }
  })

  it('an existing connection is used and left open when the store closes', async () => {
    const nc = await connect({ servers: natsUrl() })
    try {
      const store = natsStore({ connection: nc, bucket, sweepIntervalMs: 0 })
      const key = `${root()}.k/x`
      await store.set(key, utf8.encode('1'))
      await store.close()
      await store.close()
      assert.equal(nc.isClosed(), false)
      await assert.rejects(store.get(key), { code: 'E_CLOSED' })
    } finally {
      await nc.close()
    }
  })

  it('keys that cannot be NATS subjects, or do not fit a protocol line, are refused before any I/O', async () => {
    const store = open()
    for (const bad of ['a..b', '.a', 'a.', 'a b', 'a*', 'a.>', 'ü', '']) {
      await assert.rejects(store.get(bad), { code: 'E_INVALID_ARGUMENT' }, JSON.stringify(bad))
    }
    const prefix = `${root()}.k/`
    await assert.rejects(store.set(prefix + 'x'.repeat(4000), utf8.encode('1')), {
      code: 'E_KEY_TOO_LONG',
    })
    // The longest allowed key works, and the connection survived the refusals.
    const longest = prefix + 'x'.repeat(4096 - 200 - 2 * bucket.length - prefix.length)
    await store.set(longest, utf8.encode('1'))
    assert.equal(text((await store.get(longest))?.value), '1')
    const listed: string[] = []
    for await (const key of store.list(prefix)) listed.push(key)
    assert.deepEqual(listed, [longest])
    const revision = await store.compareAndSet(longest, utf8.encode('2'), String(Date.now()))
    assert.equal(revision, undefined)
    assert.equal(await store.increment(`${longest.slice(0, -1)}n`, 1, jsonCodec), 1)
    assert.equal((await store.history(longest)).length, 1)
    assert.equal(await store.delete(longest), true)
    assert.equal((await store.create(longest, utf8.encode('3'))) !== undefined, true)
    await store.prune()
  })

  it('a value over the server max_payload is refused with E_VALUE_TOO_LARGE', async () => {
    const store = open()
    const key = `${root()}.k/big`
    const max = raw.nc.info?.max_payload ?? 1024 * 1024
    // Exactly max_payload fits when nothing else travels with it (no TTL, no condition)…
    await store.set(key, new Uint8Array(max))
    // …but with the deadline header it does not.
    await assert.rejects(store.set(key, new Uint8Array(max), { ttlMs: 1000 }), {
      code: 'E_VALUE_TOO_LARGE',
    })
    await assert.rejects(store.set(key, new Uint8Array(max + 1)), { code: 'E_VALUE_TOO_LARGE' })
    await store.delete(key)
  })

  it('rejects invalid options with E_INVALID_ARGUMENT', () => {
    const bad: NatsStoreOptions[] = [
      { bucket: 'a.b' },
      { history: 0 },
      { history: 65 },
      { requestTimeoutMs: 0 },
      { sweepIntervalMs: -1 },
      { maxAge: 0 },
      { tombstoneTtl: '500ms' },
    ]
    for (const options of bad) {
      assert.throws(
        () => natsStore(options),
        { code: 'E_INVALID_ARGUMENT' },
        JSON.stringify(options),
      )
    }
  })

  it('capabilities: persistent, distributed, emulated TTL on servers before 2.11, quotas, no local path', async () => {
    const store = open()
    await store.connect()
    expect(store.capabilities).toMatchObject({
      persistent: true,
      distributed: true,
      injectableClock: true,
      quotas: true,
      local: false,
    })
    if (/^v?2\.(\d|10)\./.test(raw.nc.info?.version ?? ''))
      expect(store.capabilities.ttl).toBe('emulated')
    expect(store.health().status).toBe('ok')
  })
})

describe('nats store: crash and outage on a private nats-server', () => {
  const servers: ServerHandle[] = []

  afterAll(async () => {
    // The restarted servers first, then the first one, which owns (and removes) the data dir.
    for (const server of servers.reverse()) await server.stop()
  })

  it('acknowledged writes survive kill -9 of nats-server and a restart on the same store dir', async () => {
    const first = await startNatsServer()
    servers.push(first)
    const writer = open({ servers: first.url, bucket: 'crash' })
    const keys = Array.from({ length: 1000 }, (_, i) => `crash.k/${i}`)
    const revisions = await writer.setMany(
      keys.map((key, i) => ({ key, value: utf8.encode(String(i)) })),
    )
    await writer.close()
    first.kill('SIGKILL')
    await first.exited
    const restartAt = Date.now()
    const second = await startNatsServer({ dir: first.dir, port: first.port })
    servers.push(second)
    const reader = open({ servers: second.url, bucket: 'crash' })
    let entries: Awaited<ReturnType<NatsStore['getMany']>> | undefined
    // JetStream may need a moment to recover the stream after the process is up.
    const giveUpAt = Date.now() + 15_000
    while (entries === undefined) {
      try {
        entries = await reader.getMany(keys)
      } catch (error) {
        if (Date.now() > giveUpAt) throw error
        await sleep(100)
      }
    }
    const readableAfterMs = Date.now() - restartAt
    const lost = keys.filter((_, i) => text(entries[i]?.value) !== String(i))
    assert.deepEqual(lost, [], 'acknowledged writes lost')
    assert.deepEqual(
      entries.map((e) => e?.revision),
      revisions,
      'revisions survive the crash',
    )
    // Compare-and-set against a pre-crash revision still works (R9).
    assert.ok(
      (await reader.compareAndSet(keys[0] as string, utf8.encode('x'), revisions[0] as string)) !==
        undefined,
    )
    figures.push(
      `kill -9: ${keys.length - lost.length}/${keys.length} acknowledged writes readable after restart (lost ${lost.length}); readable ${readableAfterMs} ms after the restarted server answered`,
    )
    await second.stop()
  })

  it('with the server down, calls fail with E_STORE_UNAVAILABLE within requestTimeoutMs, and the same store works again after a restart', async () => {
    const first = await startNatsServer()
    servers.push(first)
    const requestTimeoutMs = 500
    const store = open({
      servers: first.url,
      bucket: 'outage',
      requestTimeoutMs,
      // Come back quickly once the server is up again.
      connectOptions: { reconnectTimeWait: 200 },
    })
    const key = 'outage.k/x'
    await store.set(key, utf8.encode('before'))

    // Paused: the server accepts nothing and answers nothing, so only the timeout can tell.
    first.kill('SIGSTOP')
    // nats-server is multi-threaded: it answers until every one of its threads has stopped.
    await waitUntil(() => processStopped(first.pid), 'every nats-server thread stopped', 5000)
    const pausedTimes: number[] = []
    for (const call of [() => store.get(key), () => store.set(key, utf8.encode('x'))]) {
      const started = Date.now()
      await assert.rejects(call(), { code: 'E_STORE_UNAVAILABLE' })
      pausedTimes.push(Date.now() - started)
    }
    first.kill('SIGCONT')
    for (const ms of pausedTimes)
      assert.ok(ms <= requestTimeoutMs + 1000, `paused: failed after ${ms} ms`)

    // The set that timed out was already on its way: whether it applied is unknown, and both
    // outcomes are valid (the server may process it after SIGCONT).
    let afterPause: string | undefined
    await waitFor(async () => {
      afterPause = text((await store.get(key))?.value)
      return true
    }, 'resume after SIGCONT')
    assert.ok(afterPause === 'before' || afterPause === 'x', `value after the pause: ${afterPause}`)

    // Killed: the connection drops, and calls fail without waiting for the timeout.
    first.kill('SIGKILL')
    await first.exited
    const downTimes: number[] = []
    const calls: Array<() => Promise<unknown>> = [
      () => store.get(key),
      () => store.set(key, utf8.encode('x')),
      () => store.create(`${key}2`, utf8.encode('x')),
      () => store.increment(`${key}n`, 1, jsonCodec),
      () => store.delete(key),
      async () => {
        for await (const listed of store.list('outage.')) void listed
      },
    ]
    for (const call of calls) {
      const started = Date.now()
      await assert.rejects(call(), (error: unknown) => {
        assert.equal((error as { code?: unknown }).code, 'E_STORE_UNAVAILABLE', String(error))
        return true
      })
      downTimes.push(Date.now() - started)
    }
    for (const ms of downTimes)
      assert.ok(ms <= requestTimeoutMs + 1000, `down: failed after ${ms} ms`)
    assert.equal(store.health().status, 'down')

    const second = await startNatsServer({ dir: first.dir, port: first.port })
    servers.push(second)
    const restartedAt = Date.now()
    await waitFor(async () => text((await store.get(key))?.value) === afterPause, 'reconnect')
    const recoveredMs = Date.now() - restartedAt
    await store.set(key, utf8.encode('after'))
    assert.equal(text((await store.get(key))?.value), 'after')
    assert.equal(store.health().status, 'ok')
    figures.push(
      `outage (requestTimeoutMs ${requestTimeoutMs}): paused server → E_STORE_UNAVAILABLE after ${pausedTimes.join('/')} ms ` +
        `(the timed-out set was ${afterPause === 'x' ? 'applied after SIGCONT' : 'not applied'}); ` +
        `killed server → after ${downTimes.join('/')} ms; same store served again ${recoveredMs} ms after the restarted server answered`,
    )
    await store.close()
    await second.stop()
  })

  it('a store whose server is down at start fails with E_STORE_UNAVAILABLE, then connects once it is up', async () => {
    const first = await startNatsServer()
    servers.push(first)
    const { port, dir } = first
    await first.stop({ keepDir: true })
    const store = open({ servers: first.url, bucket: 'late', requestTimeoutMs: 500 })
    await assert.rejects(store.connect(), { code: 'E_STORE_UNAVAILABLE' })
    await assert.rejects(store.get('late.k/x'), { code: 'E_STORE_UNAVAILABLE' })
    assert.equal(store.health().status, 'down')
    const second = await startNatsServer({ dir, port })
    servers.push(second)
    await store.connect()
    await store.set('late.k/x', utf8.encode('1'))
    assert.equal(text((await store.get('late.k/x'))?.value), '1')
    await store.close()
    await second.stop()
  })
})

async function waitFor(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs
  for (;;) {
    try {
      if (await check()) return
    } catch {
      // not yet
    }
    if (Date.now() > giveUpAt) throw new Error(`${what}: not done within ${timeoutMs} ms`)
    await sleep(50)
  }
}
