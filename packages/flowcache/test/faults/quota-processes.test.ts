/**
 * A namespace quota across real processes: 3 child processes (fixtures/quota-writer.ts), each
 * with its own cache over its own connection to Redis, to a NATS bucket, or to one SQLite file,
 * write values of 200 B to 20 KB into the namespace `tenant`, declared with
 * `namespace('tenant', { maxBytes: 1_000_000 })` by every process, 400 writes each (about 12 MB
 * through a 1 MB allocation). Each writer reads the hot key after every write.
 *
 * Throughout the run the parent samples what the namespace holds: the user keys its store lists
 * under the prefix and the sum of their value bytes, read at one instant, and the store's own
 * `quotaUsage` where it has one. On Redis the values are measured by a script of the test's own
 * (HSTRLEN of each listed key, atomically), not through the store: a read through the store
 * counts as a use and would make every sampled key more recent than the hot one. On SQLite and
 * NATS they are read with the store's `peek`, which is not a use. It asserts:
 *
 * 1. no sample ever exceeds 1 MB + the largest value written;
 * 2. the keys of another namespace, and the lock, lease and leader keys taken before the run
 *    (in the quota's own namespace and in the other one) are all still there, unchanged;
 * 3. the hot key, written before everything else and read after every write, survives and no
 *    writer ever missed it, while a key written next to it and never read is evicted, and so are
 *    the first writes of every writer;
 * 4. the writers hit no error, and the store evicted (writes − keys left) entries.
 *
 * The parent's sampling leaves out the hot key and its never-read twin (their sizes are known),
 * so that only the writers' reads keep the hot key recent.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'

import { afterAll, afterEach, describe, expect, it } from 'vitest'

import type { Lock } from '../../src/coord/locks.js'
import type { Election } from '../../src/coord/leader.js'
import type { Cache } from '../../src/core/cache.js'
import { isUserKey } from '../../src/core/keyspace.js'
import { toRedisKey } from '../../src/stores/redis/keys.js'
import type { Store } from '../../src/types/store.js'
import { fixtureCache } from '../fixtures/child.js'
import { figureLog } from '../fixtures/fault-harness.js'
import type { QuotaWriterConfig, QuotaWriterStats, ToParent } from '../fixtures/quota-writer.js'
import { FixtureProcess } from '../helpers/fixture-process.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from '../helpers/services.js'

const fixture = fileURLToPath(new URL('../fixtures/quota-writer.ts', import.meta.url))
const run = randomBytes(4).toString('hex')
const bucket = `fc-test-quotap-${run}`
/** Root prefix of every cache of this file: `qp<run>_<n>`, unique per test. */
const rootOfRun = `qp${run}`
const sqliteDir = mkdtempSync(join(tmpdir(), 'flowcache-quota-processes-'))
let counter = 0

const PROCESSES = 3
const WRITES = 400
const MAX_BYTES = 1_000_000
const MIN_SIZE = 200
const MAX_SIZE = 20_000
const SAMPLE_EVERY_MS = 25
/** Longest the run may take once the writers are ready. */
const RUN_LIMIT_MS = 120_000

const figures = figureLog('quota-processes figures')

/** A writer process. */
class Writer extends FixtureProcess<ToParent> {
  done: Promise<QuotaWriterStats>
  #resolve: (stats: QuotaWriterStats) => void = () => undefined

  constructor(config: QuotaWriterConfig) {
    super(`writer ${config.worker}`, fixture, config)
    this.done = new Promise((resolve) => (this.#resolve = resolve))
  }

  protected override received(message: ToParent): void {
    if (message.type === 'done') this.#resolve(message.stats)
  }
}

const writers: Writer[] = []
const caches: Cache[] = []

afterEach(async () => {
  await Promise.all(writers.splice(0).map((writer) => writer.stop(5_000)))
  await Promise.all(caches.splice(0).map((cache) => cache.close()))
})

afterAll(async () => {
  figures.print()
  // Redis: every key this file wrote contains `qp<run>`; NATS: the bucket is ours alone.
  await deleteRedisKeys(`*${rootOfRun}*`)
  await destroyNatsBucket(bucket)
  rmSync(sqliteDir, { recursive: true, force: true })
})

async function listed(store: Store, prefix: string): Promise<string[]> {
  const keys: string[] = []
  for await (const key of store.list(prefix)) keys.push(key)
  return keys
}

describe.each(['redis', 'sqlite', 'nats'] as const)(
  'namespace quota across processes on %s',
  (kind) => {
    it(
      `${PROCESSES} processes × ${WRITES} writes of ${MIN_SIZE} B–${MAX_SIZE / 1000} KB into a 1 MB namespace: never over 1 MB + one value; other keys, locks and leases untouched; the hot key survives`,
      async () => {
        const prefix = `${rootOfRun}_${++counter}`
        const storeConfig = {
          kind,
          url: kind === 'redis' ? redisUrl() : kind === 'nats' ? natsUrl() : undefined,
          bucket,
          path: join(sqliteDir, `quota-${counter}.db`),
          prefix,
        }
        // The parent's cache: it creates the SQLite file and schema before the writers open it.
        const { store, cache } = fixtureCache(storeConfig)
        caches.push(cache)
        await cache.ready()
        const tenant = cache.namespace('tenant', { maxBytes: MAX_BYTES })
        const other = cache.namespace('other')
        const tenantPrefix = `${prefix}.tenant.`

        // Before the run: another namespace's keys, locks and a leader lease in both namespaces.
        const otherKeys = Array.from({ length: 30 }, (_, i) => `o${i}`)
        for (const key of otherKeys) await other.set(key, `other ${key} `.repeat(200))
        const locks: Lock[] = []
        for (const space of [tenant, other]) {
          const lock = await space.locks.acquire('job', { ttl: '30m' })
          expect(lock).not.toBeNull()
          locks.push(lock!)
        }
        const elections: Election[] = []
        for (const space of [tenant, other]) {
          let elected: () => void = () => undefined
          const isElected = new Promise<void>((resolve) => (elected = resolve))
          elections.push(space.leader('scheduler', { lease: '30m', onElected: () => elected() }))
          await isElected
        }
        const systemBefore = new Map<string, string>()
        for (const key of await listed(store, `${prefix}.`)) {
          if (isUserKey(key)) continue
          systemBefore.set(key, (await store.get(key))!.revision)
        }
        expect(systemBefore.size).toBeGreaterThanOrEqual(4)

        // The hot key and its twin, written first and of known size; only the hot one is read.
        const twinValue = 'w'.repeat(5_000)
        await tenant.set('hot', twinValue)
        await tenant.set('twin', twinValue)
        const twinBytes = twinValue.length + 2
        const hotStoreKey = (await listed(store, tenantPrefix)).find((key) => key.endsWith('k/hot'))
        const twinStoreKey = (await listed(store, tenantPrefix)).find((key) =>
          key.endsWith('k/twin'),
        )
        expect(hotStoreKey).toBeDefined()
        expect(twinStoreKey).toBeDefined()

        const start = async (worker: string): Promise<Writer> => {
          const writer = new Writer({
            ...storeConfig,
            worker,
            namespace: 'tenant',
            maxBytes: MAX_BYTES,
            writes: WRITES,
            minSize: MIN_SIZE,
            maxSize: MAX_SIZE,
            hotKey: 'hot',
          })
          writers.push(writer)
          await writer.ready
          return writer
        }
        const processes: Writer[] = []
        for (let i = 0; i < PROCESSES; i++) processes.push(await start(`w${i}`))

        /** One sample: value bytes of the user keys listed under the namespace, read at once. */
        const raw = kind === 'redis' ? new Redis(redisUrl()) : undefined
        const peek = store.peek?.bind(store)
        const sample = async (): Promise<number> => {
          const keys = (await listed(store, tenantPrefix)).filter(isUserKey)
          const read = keys.filter((key) => key !== hotStoreKey && key !== twinStoreKey)
          let bytes = (keys.length - read.length) * twinBytes
          if (raw !== undefined) {
            if (read.length === 0) return bytes
            const sum = await raw.eval(
              "local n = 0 for i = 1, #KEYS do n = n + redis.call('HSTRLEN', KEYS[i], 'v') end return n",
              read.length,
              ...read.map(toRedisKey),
            )
            return bytes + Number(sum)
          }
          if (peek === undefined) throw new Error(`the ${kind} store has no peek`)
          const entries = await Promise.all(read.map((key) => peek(key)))
          for (const entry of entries) bytes += entry?.value.byteLength ?? 0
          return bytes
        }

        const started = performance.now()
        for (const writer of processes) writer.send({ type: 'start' })
        let finished = false
        const all = Promise.all(processes.map((writer) => writer.done)).finally(() => {
          finished = true
        })
        let samples = 0
        let maxSampled = 0
        let maxUsage = 0
        while (!finished) {
          if (performance.now() - started > RUN_LIMIT_MS)
            throw new Error('the writers took too long')
          maxSampled = Math.max(maxSampled, await sample())
          const usage = await store.quotaUsage?.(tenantPrefix)
          if (usage !== undefined) maxUsage = Math.max(maxUsage, usage.bytes)
          samples++
          await sleep(SAMPLE_EVERY_MS)
        }
        const stats = await all
        const durationMs = performance.now() - started
        const finalBytes = await sample()
        await raw?.quit()

        const largest = Math.max(twinBytes, ...stats.map((s) => s.largest))
        const left = (await listed(store, tenantPrefix)).filter(isUserKey)
        const writes = stats.reduce((sum, s) => sum + s.writes, 0) + 2
        const usage = await store.quotaUsage?.(tenantPrefix)
        figures.add(
          `${kind}: ${samples} samples, max ${maxSampled} B sampled (quotaUsage max ${usage === undefined ? 'n/a' : maxUsage} B) vs limit ${MAX_BYTES} B + largest value ${largest} B; final ${finalBytes} B in ${left.length} keys; ${writes} writes, ${writes - left.length} evicted${usage === undefined ? '' : ` (quotaUsage evictions ${usage.evictions})`}; hot key read ${stats.reduce((sum, s) => sum + s.hotReads, 0)} times, missed ${stats.reduce((sum, s) => sum + s.hotMisses, 0)}; ${(durationMs / 1000).toFixed(1)} s`,
        )

        // 4. every write succeeded, and the namespace turned over many times.
        for (const s of stats) expect(s.errors, `writer ${s.pid}`).toEqual([])
        expect(writes - left.length).toBeGreaterThan(WRITES)
        // 1. never over the allocation by more than one value.
        expect(samples).toBeGreaterThan(0)
        expect(maxSampled).toBeLessThanOrEqual(MAX_BYTES + largest)
        expect(maxUsage).toBeLessThanOrEqual(MAX_BYTES + largest)
        expect(finalBytes).toBeLessThanOrEqual(MAX_BYTES + largest)
        // 3. LRU: the hot key stayed, its never-read twin and the first writes went.
        expect(stats.map((s) => s.hotMisses)).toEqual(stats.map(() => 0))
        expect(left).toContain(hotStoreKey)
        expect(left).not.toContain(twinStoreKey)
        for (let w = 0; w < PROCESSES; w++) {
          for (let i = 0; i < 10; i++) {
            expect(
              left.some((key) => key.endsWith(`k/w${w}-${i}`)),
              `w${w}-${i}`,
            ).toBe(false)
          }
        }
        // 2. other keys, locks and leases are untouched.
        expect(await other.getMany(otherKeys)).toEqual(
          otherKeys.map((key) => `other ${key} `.repeat(200)),
        )
        for (const [key, revision] of systemBefore) {
          expect((await store.get(key))?.revision, key).toBe(revision)
        }
        for (const [i, space] of [tenant, other].entries()) {
          expect((await space.locks.holder('job'))?.token).toBe(locks[i]!.token)
          expect(elections[i]!.isLeader).toBe(true)
        }
        for (const election of elections) await election.stop()
      },
      RUN_LIMIT_MS + 30_000,
    )
  },
)
