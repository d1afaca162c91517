/**
 * Namespace quotas on the NATS store, beyond the store contract: replicas sharing one ledger,
 * usage that outlives every process, expiry, and what eviction must never touch. Runs against
 * the shared server found by the global setup, in a bucket of its own deleted at the end.
 */
import assert from 'node:assert/strict'
import { randomBytes, randomInt } from 'node:crypto'

import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, afterEach, beforeAll, describe, it } from 'vitest'

import { ManualClock } from '../../src/core/clock.js'
import {
  InvalidArgumentError,
  StoreUnavailableError,
  ValueTooLargeError,
} from '../../src/errors.js'
import { jsonCodec } from '../../src/core/codec.js'
import { childPrefix, isUserKey, rootPrefix, systemKey, userKey } from '../../src/core/keyspace.js'
import { natsStore, type NatsStore, type NatsStoreOptions } from '../../src/stores/nats/index.js'
import { entrySize, NatsQuotas, type QuotaIo } from '../../src/stores/nats/quota.js'
import { natsUrl } from '../helpers/services.js'

const run = randomBytes(4).toString('hex')
const bucket = `fc-test-nats-quota-${run}`
const MAX_KEY = 1024

/** Figures printed once at the end, for the record (never asserted as timings). */
const figures: string[] = []
const opened: NatsStore[] = []
let nc: NatsConnection

function open(options: NatsStoreOptions = {}): NatsStore {
  const store = natsStore({ servers: natsUrl(), bucket, sweepIntervalMs: 0, ...options })
  opened.push(store)
  return store
}

/** A namespace prefix of its own: `t<random>.<name>.`. */
function namespace(name: string): string {
  return childPrefix(rootPrefix(`t${randomBytes(6).toString('hex')}`), name, MAX_KEY)
}

const user = (prefix: string, key: string): string => userKey(prefix, key, MAX_KEY)

function filled(size: number, byte: number): Uint8Array {
  return new Uint8Array(size).fill(byte)
}

/**
 * What the bucket holds under `prefix` (user entries and their bytes, payload + key), from a
 * headers-only scan. Exact only while nobody writes: the scan is not a snapshot.
 */
async function stored(
  prefix: string,
  name = bucket,
): Promise<{ entries: number; bytes: number; keys: string[] }> {
  const jsm = await jetstreamManager(nc)
  const js = jetstream(nc)
  const stream = `KV_${name}`
  const subjects = `$KV.${name}.`
  const info = await jsm.consumers.add(stream, {
    filter_subject: `${subjects}${prefix}>`,
    deliver_policy: DeliverPolicy.LastPerSubject,
    ack_policy: AckPolicy.None,
    headers_only: true,
    mem_storage: true,
    inactive_threshold: nanos(30_000),
  })
  const result = { entries: 0, bytes: 0, keys: [] as string[] }
  try {
    let pending = info.num_pending
    const consumer = js.consumers.getConsumerFromInfo(info)
    while (pending > 0) {
      const batch = await consumer.fetch({ max_messages: Math.min(pending, 1024), expires: 2000 })
      let got = 0
      for await (const message of batch) {
        got++
        pending = message.info.pending
        const key = message.subject.slice(subjects.length)
        const operation = message.headers?.get('KV-Operation') ?? ''
        if (operation !== '' || !isUserKey(key)) continue
        result.entries++
        result.bytes += Number(message.headers?.get('Nats-Msg-Size') ?? '0') + key.length
        result.keys.push(key)
        if (pending === 0) break
      }
      if (got === 0) break
    }
  } finally {
    await jsm.consumers.delete(stream, info.name).catch(() => false)
  }
  return result
}

beforeAll(async () => {
  nc = await connect({ servers: natsUrl() })
})

afterEach(async () => {
  await Promise.all(opened.splice(0).map((store) => store.close()))
})

afterAll(async () => {
  const jsm = await jetstreamManager(nc)
  for (const name of [bucket, `${bucket}-hammer`]) {
    await jsm.streams.delete(`KV_${name}`).catch(() => false)
  }
  await nc.close()
  if (figures.length > 0) process.stdout.write(`[nats quota figures]\n  ${figures.join('\n  ')}\n`)
})

describe('nats store: namespace quotas shared by replicas', () => {
  it('two replicas hammering one namespace under maxBytes 1 MB: stored bytes never exceed the limit + the largest value, hot keys survive, other keys stay', async () => {
    const maxBytes = 1_000_000
    // A bucket of its own that keeps 64 versions per key, so that a consumer reading the stream
    // from its start sees every write, delete and ledger update in order, none replaced before
    // it is read: the replay below is the bucket's exact state at every sequence.
    const hammered = `${bucket}-hammer`
    const [a, b] = [open({ bucket: hammered, history: 64 }), open({ bucket: hammered })]
    await a.connect()
    // A replica that only reads: its reads reach the writers through the recent-read record.
    const c = open({ bucket: hammered })
    const ns = namespace('tenant')
    const ledgerKey = `==flowcache-quota.${ns.slice(0, -1)}`
    const subjects = `$KV.${hammered}.`
    const replay = {
      seq: 0,
      entries: new Map<string, number>(),
      bytes: 0,
      ledger: 0,
      maxBytes: 0,
      maxLedger: 0,
      /** Largest excess of what the bucket held over what the ledger counted, at any sequence. */
      overLedger: Number.NEGATIVE_INFINITY,
      ledgerUpdates: 0,
    }
    const js = jetstream(nc)
    const consumer = await js.consumers.get(`KV_${hammered}`, {
      filter_subjects: `${subjects}>`,
      deliver_policy: DeliverPolicy.All,
    })
    const messages = await consumer.consume()
    const pump = (async () => {
      for await (const message of messages) {
        replay.seq = message.seq
        const key = message.subject.slice(subjects.length)
        if (key === ledgerKey) {
          replay.ledger = (
            JSON.parse(new TextDecoder().decode(message.data)) as { bytes: number }
          ).bytes
          replay.ledgerUpdates++
        } else if (key.startsWith(ns) && isUserKey(key)) {
          replay.bytes -= replay.entries.get(key) ?? 0
          replay.entries.delete(key)
          if ((message.headers?.get('KV-Operation') ?? '') === '') {
            replay.entries.set(key, message.data.byteLength + key.length)
            replay.bytes += message.data.byteLength + key.length
          }
        } else continue
        replay.maxBytes = Math.max(replay.maxBytes, replay.bytes)
        replay.maxLedger = Math.max(replay.maxLedger, replay.ledger)
        replay.overLedger = Math.max(replay.overLedger, replay.bytes - replay.ledger)
      }
    })()

    const other = namespace('other')
    // Present before the run: another namespace's entries and this namespace's system keys.
    const kept = new Map<string, Uint8Array>([
      [user(other, 'x'), filled(50_000, 1)],
      [user(other, 'y'), filled(5_000, 2)],
      [systemKey(ns, 'l', 'job', MAX_KEY), filled(100, 3)],
      [systemKey(ns, 'e', 'leader', MAX_KEY), filled(100, 4)],
      [systemKey(ns, 'r', 'api', MAX_KEY), filled(100, 5)],
    ])
    for (const [key, value] of kept) await a.set(key, value)
    await Promise.all([a.setQuota(ns, { maxBytes }), b.setQuota(ns, { maxBytes })])
    const hot = user(ns, 'hot')
    await a.set(hot, filled(1000, 9))
    const readOnlyHot = user(ns, 'hot-c')
    await a.set(readOnlyHot, filled(1000, 8))

    let largest = 0
    let writes = 0
    let stop = false
    const writer = async (store: NatsStore, id: number): Promise<void> => {
      while (!stop) {
        const size = randomInt(200, 20_001)
        const key = user(ns, `k${id}-${randomInt(0, 400)}`)
        largest = Math.max(largest, size + key.length)
        await store.set(key, filled(size, 7))
        writes++
      }
    }
    let hotMisses = 0
    const reader = async (store: NatsStore, key: string): Promise<void> => {
      while (!stop) {
        if ((await store.get(key)) === undefined) hotMisses++
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }
    const ledgerSamples: number[] = []
    const sampler = async (): Promise<void> => {
      while (!stop) {
        ledgerSamples.push((await a.quotaUsage(ns))?.bytes ?? Number.NaN)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
    const work = [
      ...[0, 1, 2].map((i) => writer(a, i)),
      ...[3, 4, 5].map((i) => writer(b, i)),
      reader(a, hot),
      reader(b, hot),
      reader(c, readOnlyHot),
      sampler(),
    ]
    // Run until well past the point where the namespace is full and evicting.
    const started = Date.now()
    while (Date.now() - started < 8000 && writes < 1500) {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    stop = true
    await Promise.all(work)
    const elapsed = Date.now() - started

    const usage = await b.quotaUsage(ns)
    const now = await stored(ns, hammered)
    // Let the replay reach the end of the stream.
    const jsm = await jetstreamManager(nc)
    const last = (await jsm.streams.info(`KV_${hammered}`)).state.last_seq
    for (let i = 0; i < 500 && replay.seq < last; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    await messages.close()
    await pump
    figures.push(
      `2 replicas x 3 writers, ${writes} writes of 200 B-20 KB into maxBytes ${maxBytes}, replayed from the stream ` +
        `(${replay.ledgerUpdates} ledger updates): max stored ${replay.maxBytes} B (limit + largest value = ${maxBytes + largest}), ` +
        `max ledger ${replay.maxLedger} B, stored - ledger at most ${replay.overLedger} B; ${ledgerSamples.length} quotaUsage samples, ` +
        `max ${Math.max(...ledgerSamples)} B; evictions ${usage?.evictions}, hot key misses ${hotMisses}, ` +
        `${(elapsed / writes).toFixed(2)} ms per write overall`,
    )
    assert.ok(writes > 0 && ledgerSamples.length > 0)
    assert.ok(replay.seq >= last, 'the replay read the whole stream')
    // The replay ends where the bucket is: it saw every change.
    assert.deepEqual(
      { entries: replay.entries.size, bytes: replay.bytes },
      {
        entries: now.entries,
        bytes: now.bytes,
      },
    )
    assert.ok(
      replay.maxBytes <= maxBytes + largest,
      `stored bytes reached ${replay.maxBytes}, over ${maxBytes} + ${largest}`,
    )
    // The design's invariant: growth is reserved before it is written, so the bucket never
    // holds more than the ledger counts, and the ledger never counts more than the limit.
    assert.ok(replay.overLedger <= 0, `the bucket held ${replay.overLedger} B more than the ledger`)
    assert.ok(replay.maxLedger <= maxBytes, `the ledger reached ${replay.maxLedger}`)
    for (const sample of ledgerSamples) assert.ok(sample <= maxBytes, `ledger at ${sample}`)
    assert.ok((usage?.evictions ?? 0) > 0, 'the namespace filled up and evicted')
    // Accounting is exact once the writers are done: the ledger is what the bucket holds.
    assert.deepEqual(
      { entries: usage?.entries, bytes: usage?.bytes },
      { entries: now.entries, bytes: now.bytes },
    )
    assert.ok(now.keys.includes(hot), 'the key read all along survives')
    assert.ok(now.keys.includes(readOnlyHot), 'the key read by the read-only replica survives')
    assert.equal(hotMisses, 0, 'the hot keys were never evicted')
    for (const [key, value] of kept) {
      const found = (await a.get(key))?.value
      assert.ok(found !== undefined && Buffer.from(found).equals(value), `${key} is untouched`)
    }
  })

  it('usage survives closing every store; a new process sees it, enforces the quota without setting it, and does not count twice', async () => {
    const ns = namespace('restart')
    const first = open()
    await first.setQuota(ns, { maxEntries: 3 })
    for (let i = 0; i < 5; i++) await first.set(user(ns, `k${i}`), filled(100, i))
    const before = await first.quotaUsage(ns)
    assert.deepEqual(before, { entries: 3, bytes: 3 * (100 + user(ns, 'k0').length), evictions: 2 })
    await first.close()

    // A new store that never calls setQuota: the definition and the usage come from the bucket.
    const second = open()
    assert.deepEqual(await second.quotaUsage(ns), before)
    await second.set(user(ns, 'k5'), filled(100, 5))
    assert.deepEqual(await second.quotaUsage(ns), { ...before, evictions: 3 })
    assert.equal((await stored(ns)).entries, 3)
    // Setting the same quota again (a restarted process does) keeps what was counted.
    await second.setQuota(ns, { maxEntries: 3 })
    assert.deepEqual(await second.quotaUsage(ns), { ...before, evictions: 3 })
    assert.equal(await second.quotaUsage(namespace('none')), undefined)
  })

  it('every write path keeps the ledger equal to what the bucket holds', async () => {
    const ns = namespace('paths')
    const store = open()
    await store.setQuota(ns, { maxBytes: 100_000 })
    const check = async (step: string): Promise<void> => {
      const usage = await store.quotaUsage(ns)
      const real = await stored(ns)
      assert.deepEqual(
        { entries: usage?.entries, bytes: usage?.bytes },
        { entries: real.entries, bytes: real.bytes },
        step,
      )
    }
    const [k1, k2, k3, k4] = ['k1', 'k2', 'k3', 'k4'].map((k) => user(ns, k)) as [
      string,
      string,
      string,
      string,
    ]
    await store.set(k1, filled(1000, 1))
    await check('set')
    await store.set(k1, filled(3000, 1))
    await check('overwrite, larger')
    const revision = await store.set(k1, filled(10, 1))
    await check('overwrite, smaller')
    await store.compareAndSet(k1, filled(500, 2), revision)
    await check('compareAndSet')
    assert.equal(await store.compareAndSet(k1, filled(900, 2), revision), undefined)
    await check('compareAndSet that lost')
    await store.create(k2, filled(700, 3))
    assert.equal(await store.create(k2, filled(800, 3)), undefined)
    await check('create')
    await store.setMany([
      { key: k3, value: filled(2000, 4) },
      { key: k4, value: filled(200, 5) },
      { key: k2, value: filled(100, 6) },
    ])
    await check('setMany')
    const counter = user(ns, 'counter')
    for (let i = 0; i < 12; i++) await store.increment(counter, 1, jsonCodec)
    await check('increment')
    await store.delete(k3)
    await check('delete')
    await store.deleteMany([k4, k2, user(ns, 'missing')])
    await check('deleteMany')
    await store.set(k3, filled(100, 7))
    await store.clear(ns)
    await check('clear')
    assert.equal((await store.quotaUsage(ns))?.entries, 0)
  })

  it('nested quotas: an eviction for one quota is subtracted from every quota covering the key', async () => {
    const outer = namespace('tenant')
    const inner = childPrefix(outer, 'sub', MAX_KEY)
    const store = open()
    await store.setQuota(outer, { maxEntries: 6 })
    await store.setQuota(inner, { maxEntries: 3 })
    const check = async (step: string): Promise<void> => {
      for (const prefix of [outer, inner]) {
        const usage = await store.quotaUsage(prefix)
        const real = await stored(prefix)
        assert.deepEqual(
          { entries: usage?.entries, bytes: usage?.bytes },
          { entries: real.entries, bytes: real.bytes },
          `${step}: ${prefix}`,
        )
      }
    }
    // The inner quota evicts 2 of its 5: the outer ledger must lose them too.
    for (let i = 0; i < 5; i++) await store.set(user(inner, `in${i}`), filled(50, i))
    await check('evictions in the inner quota')
    assert.equal((await store.quotaUsage(inner))?.evictions, 2)
    assert.equal((await store.quotaUsage(outer))?.evictions, 0)
    // The outer quota evicts its least recently used entries, the inner ones first: the inner
    // ledger must lose them too.
    for (let i = 0; i < 5; i++) await store.set(user(outer, `out${i}`), filled(80, i))
    await check('evictions in the outer quota')
    assert.equal((await store.quotaUsage(outer))?.evictions, 2)
    assert.equal((await stored(outer)).entries, 6)
    // Both at once, from a second process that knows both quotas from the bucket.
    const other = open()
    for (let i = 5; i < 12; i++) await other.set(user(inner, `in${i}`), filled(60, i))
    for (let i = 5; i < 9; i++) await other.set(user(outer, `out${i}`), filled(70, i))
    await check('both, from another process')
    assert.ok((await stored(inner)).entries <= 3)
    assert.ok((await stored(outer)).entries <= 6)
  })

  it('a write that one of its quotas refuses gives back what it reserved in the others', async () => {
    const outer = namespace('tenant')
    const inner = childPrefix(outer, 'sub', MAX_KEY)
    const store = open()
    const limits = { maxEntries: Number.MAX_SAFE_INTEGER, maxBytes: 100_000 }
    await store.setQuota(outer, limits)
    await store.setQuota(inner, limits)
    await store.set(user(inner, 'k0'), filled(100, 1))
    const before = await store.quotaUsage(outer)
    // The bookkeeping of another process over the same bucket, whose requests to the inner
    // ledger fail (its connection broke), while the outer ledger is reachable.
    const kv = await new Kvm(nc).open(bucket)
    const innerLedger = `==flowcache-quota.${inner.slice(0, -1)}`
    const io: QuotaIo = {
      read: async (key) => {
        const entry = await kv.get(key)
        if (entry === null) return undefined
        const deleted = entry.operation !== 'PUT'
        return {
          seq: entry.revision,
          value: entry.value,
          size: entry.length,
          expiresAt: null,
          deleted,
        }
      },
      put: async (key, value, expectedSeq) => {
        if (key === innerLedger) throw new StoreUnavailableError('nats store: connection lost')
        return (
          expectedSeq === 0 ? kv.create(key, value) : kv.update(key, value, expectedSeq)
        ).catch(() => undefined)
      },
      remove: () => Promise.reject(new Error('no eviction expected')),
      // eslint-disable-next-line require-yield
      scan: async function* () {
        throw new Error('no scan expected')
      },
      now: () => Date.now(),
    }
    const quotas = new NatsQuotas()
    const states = [quotas.define(outer, limits), quotas.define(inner, limits)]
    const key = user(inner, 'k1')
    await assert.rejects(
      quotas.admit(io, states, { entries: 1, bytes: entrySize(key, 500), evictions: 0 }, key),
      StoreUnavailableError,
    )
    assert.deepEqual(await store.quotaUsage(outer), before, 'the outer reservation was given back')
    assert.deepEqual(await store.quotaUsage(inner), before)
  })

  it('expired entries stop counting: removed by prune, and first in line when the quota is full', async () => {
    const clock = new ManualClock()
    const ns = namespace('expiry')
    const store = open({ clock })
    await store.setQuota(ns, { maxEntries: 4 })
    const size = (key: string): number => 100 + user(ns, key).length
    await store.set(user(ns, 'e0'), filled(100, 1), { ttlMs: 1000 })
    await store.set(user(ns, 'e1'), filled(100, 1), { ttlMs: 1000 })
    await store.set(user(ns, 'live'), filled(100, 2))
    clock.advance(1000)
    assert.equal(await store.prune(), 2)
    assert.deepEqual(await store.quotaUsage(ns), { entries: 1, bytes: size('live'), evictions: 0 })

    // Expired entries go before live ones, and are not counted as evictions.
    await store.set(user(ns, 'e2'), filled(100, 1), { ttlMs: 1000 })
    await store.set(user(ns, 'e3'), filled(100, 1), { ttlMs: 1000 })
    await store.set(user(ns, 'l1'), filled(100, 2))
    clock.advance(1000)
    await store.set(user(ns, 'l2'), filled(100, 2))
    await store.set(user(ns, 'l3'), filled(100, 2))
    const usage = await store.quotaUsage(ns)
    assert.deepEqual(usage, {
      entries: 4,
      bytes: ['live', 'l1', 'l2', 'l3'].reduce((total, key) => total + size(key), 0),
      evictions: 0,
    })
    assert.deepEqual(
      (await stored(ns)).keys.sort(),
      ['live', 'l1', 'l2', 'l3'].map((k) => user(ns, k)).sort(),
    )
  })

  it('a key read in another replica survives while cold keys go first', async () => {
    const ns = namespace('lru')
    const [writer, reader] = [open(), open()]
    await writer.setQuota(ns, { maxEntries: 10 })
    const hot = user(ns, 'hot')
    await writer.set(hot, filled(10, 1))
    for (let burst = 0; burst < 8; burst++) {
      // The reader is another process's store: its reads reach the writer through the bucket,
      // flushed every 50 ms or, here, at once.
      assert.ok((await reader.get(hot)) !== undefined, `hot key evicted before burst ${burst}`)
      await reader.flushReads()
      for (let i = 0; i < 5; i++) await writer.set(user(ns, `cold${burst}-${i}`), filled(10, 2))
    }
    const keys = (await stored(ns)).keys
    assert.ok(keys.includes(hot), 'the hot key survives 40 writes into a quota of 10')
    assert.equal(keys.length, 10)
    assert.ok(!keys.includes(user(ns, 'cold0-0')), 'the oldest cold key went')
    assert.equal((await writer.quotaUsage(ns))?.evictions, 31)
  })

  it('the sweep recounts a ledger that drifted (a process died between a write and its accounting) once nobody changed it for a while', async () => {
    const ns = namespace('drift')
    const store = open({ requestTimeoutMs: 300 })
    await store.setQuota(ns, { maxEntries: 2 })
    for (let i = 0; i < 3; i++) await store.set(user(ns, `k${i}`), filled(100, i))
    const right = await store.quotaUsage(ns)
    assert.equal(right?.evictions, 1)
    // What a process killed after its reservation leaves behind: a ledger counting one more.
    const kv = await new Kvm(nc).open(bucket)
    const ledgerKey = `==flowcache-quota.${ns.slice(0, -1)}`
    const drifted = { entries: 3, bytes: (right?.bytes ?? 0) + 5000, evictions: 1 }
    await kv.put(ledgerKey, JSON.stringify(drifted))
    assert.deepEqual(await store.quotaUsage(ns), drifted)
    await store.prune() // notes the ledger's revision
    assert.deepEqual(await store.quotaUsage(ns), drifted, 'a ledger just changed is left alone')
    await new Promise((resolve) => setTimeout(resolve, 1100)) // 1 s without a change (3 x 300 ms)
    await store.prune()
    assert.deepEqual(await store.quotaUsage(ns), right, 'recounted, evictions kept')
    const real = await stored(ns)
    assert.deepEqual(
      { entries: right?.entries, bytes: right?.bytes },
      {
        entries: real.entries,
        bytes: real.bytes,
      },
    )
  })

  it('the sweep raises a ledger that keeps changing when it counts less than the bucket holds (writes of a process that did not know the quota)', async () => {
    const ns = namespace('unaware')
    const store = open()
    await store.setQuota(ns, { maxEntries: 100 })
    await store.set(user(ns, 'k0'), filled(100, 0))
    // A process that does not know the quota yet writes 3 entries the ledger never sees.
    const kv = await new Kvm(nc).open(bucket)
    for (let i = 0; i < 3; i++) await kv.put(user(ns, `u${i}`), filled(40, i))
    assert.equal((await store.quotaUsage(ns))?.entries, 1)
    await store.prune() // a first look only notes the ledger's revision
    assert.equal((await store.quotaUsage(ns))?.entries, 1)
    // The ledger changed since the sweep last looked, so it is not quiet: counted, and raised.
    await store.set(user(ns, 'k1'), filled(100, 1))
    await store.prune()
    const usage = await store.quotaUsage(ns)
    const real = await stored(ns)
    assert.deepEqual(
      { entries: usage?.entries, bytes: usage?.bytes, evictions: usage?.evictions },
      { entries: real.entries, bytes: real.bytes, evictions: 0 },
    )
    assert.equal(real.entries, 5)
    // A ledger that counts more than the bucket holds is not lowered while it is busy.
    const ledgerKey = `==flowcache-quota.${ns.slice(0, -1)}`
    const over = { entries: 9, bytes: 9000, evictions: 0 }
    await kv.put(ledgerKey, JSON.stringify(over))
    await store.prune()
    assert.deepEqual(await store.quotaUsage(ns), over)
  })

  it('refuses a prefix that is not a namespace, a limit that is not a positive integer, and a value that can never fit', async () => {
    const store = open()
    const ns = namespace('checks')
    assert.throws(() => store.setQuota('no-dot', { maxEntries: 1 }), InvalidArgumentError)
    assert.throws(() => store.setQuota(ns, { maxBytes: 0 }), InvalidArgumentError)
    await store.setQuota(ns, { maxBytes: 500 })
    await assert.rejects(store.set(user(ns, 'big'), filled(600, 1)), ValueTooLargeError)
    assert.deepEqual(await store.quotaUsage(ns), { entries: 0, bytes: 0, evictions: 0 })
  })

  it('writing to a quota costs more round trips than a plain write; reads stay one request', async () => {
    const store = open()
    const plain = namespace('plain')
    const quoted = namespace('quoted')
    await store.setQuota(quoted, { maxBytes: 200_000 })
    const time = async (fn: (i: number) => Promise<unknown>, n: number): Promise<number> => {
      const start = performance.now()
      for (let i = 0; i < n; i++) await fn(i)
      return (performance.now() - start) / n
    }
    const n = 300
    const value = filled(1000, 1)
    const setPlain = await time((i) => store.set(user(plain, `k${i}`), value), n)
    const setQuota = await time((i) => store.set(user(quoted, `k${i}`), value), n)
    const getPlain = await time((i) => store.get(user(plain, `k${i}`)), n)
    const getQuota = await time((i) => store.get(user(quoted, `k${(i % 150) + 150}`)), n)
    const usage = await store.quotaUsage(quoted)
    figures.push(
      `sequential, 1 KB values, one store: set ${setPlain.toFixed(3)} ms plain vs ${setQuota.toFixed(3)} ms under a full quota ` +
        `(${usage?.evictions} evictions); get ${getPlain.toFixed(3)} ms plain vs ${getQuota.toFixed(3)} ms under a quota`,
    )
    assert.ok((usage?.bytes ?? Number.POSITIVE_INFINITY) <= 200_000)
    assert.ok((usage?.evictions ?? 0) > 0)
  })
})
