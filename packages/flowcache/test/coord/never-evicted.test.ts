/**
 * Locks, leases and limiter state are system keys: a memory store filled far past its entry and
 * byte limits, and a namespace quota filled far past its own, evict user entries only. Every lock
 * stays held with its token, every election keeps its leader and term, and every limiter keeps
 * its count.
 */
import { randomBytes } from 'node:crypto'

import { describe, expect, it } from 'vitest'

import { createCache } from '../../src/core/cache.js'
import { silentLogger } from '../../src/core/logger.js'
import { memoryStore } from '../../src/stores/memory/index.js'
import type { Lock } from '../../src/coord/locks.js'
import type { Election } from '../../src/coord/leader.js'

const MAX_ENTRIES = 200
const MAX_BYTES = 64 * 1024
/** User writes: 500× the entry limit, about 200× the byte limit. */
const WRITES = 100_000

describe('coordination state under memory pressure', () => {
  it(`${WRITES} user writes into a store of ${MAX_ENTRIES} entries / ${MAX_BYTES} bytes evict no lock, lease or limiter`, async () => {
    const store = memoryStore({ maxEntries: MAX_ENTRIES, maxBytes: MAX_BYTES })
    const cache = createCache({ store, logger: silentLogger })
    const tenant = cache.namespace('tenant', { maxEntries: 10, maxBytes: 8192 })

    // Coordination state in the root and in a namespace with a tiny quota of its own.
    const locks: Array<{ lock: Lock; key: string; where: typeof cache }> = []
    for (const where of [cache, tenant]) {
      for (let i = 0; i < 50; i++) {
        const key = `job-${i}`
        const lock = await where.locks.acquire(key, { ttl: '10m' })
        expect(lock, `lock ${key}`).not.toBeNull()
        locks.push({ lock: lock as Lock, key, where })
      }
    }
    const elections: Election[] = []
    const elected: Array<Promise<void>> = []
    for (const where of [cache, tenant]) {
      for (let i = 0; i < 5; i++) {
        let onElected = (): void => {}
        elected.push(new Promise<void>((resolve) => (onElected = resolve)))
        elections.push(where.leader(`flow-${i}`, { lease: '10m', renewEvery: '1m', onElected }))
      }
    }
    await Promise.all(elected)
    const terms = elections.map((election) => election.token)
    const limit = { max: 10, per: '10m' } as const
    for (const where of [cache, tenant]) {
      for (let i = 0; i < 20; i++) {
        for (let n = 0; n <= i % 10; n++) await where.rateLimit(`user-${i}`, limit)
      }
    }
    const remainingBefore = await Promise.all(
      [cache, tenant].flatMap((where) =>
        Array.from({ length: 20 }, (_, i) => where.rateLimits.status(`user-${i}`, limit)),
      ),
    )

    // Fill far past every limit with values of random size (16 B to 1 KB).
    for (let i = 0; i < WRITES; i++) {
      const target = i % 4 === 0 ? tenant : cache
      await target.set(
        `fill-${i}`,
        randomBytes(8 + Math.floor(Math.random() * 504)).toString('hex'),
      )
    }
    const stats = store.stats()
    expect(stats.evictions).toBeGreaterThan(WRITES - MAX_ENTRIES - 1)
    // stats().entries counts system keys too; the limits apply to user entries only.
    const userEntries = (await cache.keys()).length + (await tenant.keys()).length
    expect(userEntries).toBeGreaterThan(0)
    expect(userEntries).toBeLessThanOrEqual(MAX_ENTRIES)
    expect((await tenant.keys()).length).toBeLessThanOrEqual(10)
    expect(stats.entries).toBe(userEntries + locks.length + elections.length + 40)

    // Every lock is still held, by its owner, with its token; extending it works.
    for (const { lock, key, where } of locks) {
      expect(lock.signal.aborted, `lock ${key} lost`).toBe(false)
      const holder = await where.locks.holder(key)
      expect(holder?.owner, `holder of ${key}`).toBe(lock.owner)
      expect(holder?.token, `token of ${key}`).toBe(lock.token)
      await lock.extend('10m')
    }
    // Every election kept its leader and its term.
    elections.forEach((election, i) => {
      expect(election.isLeader, `election ${i} lost its leader`).toBe(true)
      expect(election.token).toBe(terms[i])
      expect(election.signal.aborted).toBe(false)
    })
    // Every limiter kept its count.
    const remainingAfter = await Promise.all(
      [cache, tenant].flatMap((where) =>
        Array.from({ length: 20 }, (_, i) => where.rateLimits.status(`user-${i}`, limit)),
      ),
    )
    expect(remainingAfter.map((r) => r.remaining)).toEqual(remainingBefore.map((r) => r.remaining))
    expect(remainingAfter.map((r) => r.remaining)).toContain(0)

    for (const { lock } of locks) await lock.release()
    await cache.close()
  }, 120_000)
})
