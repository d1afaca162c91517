import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../../src/core/cache.js'
import { silentLogger } from '../../src/core/logger.js'
import type { Election, Term } from '../../src/coord/leader.js'
import { StoreUnavailableError } from '../../src/errors.js'
import { memoryStore } from '../../src/stores/memory/index.js'
import { natsStore } from '../../src/stores/nats/index.js'
import { redisStore } from '../../src/stores/redis/index.js'
import { sqliteStore } from '../../src/stores/sqlite/index.js'
import type { Store } from '../../src/types/store.js'
import { destroyNatsBucket, natsUrl, redisUrl } from '../helpers/services.js'

const LEASE = 600
const RENEW = 150
const dir = mkdtempSync(join(tmpdir(), 'flowcache-leader-'))
const bucket = `leader-${randomBytes(4).toString('hex')}`

/** A store whose calls can be made to fail, as when this replica is cut off from the backend. */
function breakable(inner: Store): { store: Store; cut: () => void } {
  let broken = false
  const store = new Proxy(inner, {
    get(target, property) {
      // Getters run on the store itself: its private fields are not on the proxy.
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function' || property === 'close' || property === 'now') return value
      return (...args: unknown[]) => {
        if (broken)
          return Promise.reject(new StoreUnavailableError('cut off from the store (test)'))
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
  return { store, cut: () => (broken = true) }
}

type Backend = { name: string; make: () => Store; shared: boolean }
const sqlitePath = join(dir, 'leader.db')
const backends: Backend[] = [
  {
    name: 'memory',
    make: () => memoryStore({ maxEntries: 50 }),
    shared: true,
  },
  { name: 'sqlite', make: () => sqliteStore({ path: sqlitePath, maxEntries: 50 }), shared: false },
  { name: 'redis', make: () => redisStore({ url: redisUrl() }), shared: false },
  { name: 'nats', make: () => natsStore({ servers: natsUrl(), bucket }), shared: false },
]

const opened: Cache[] = []
const elections: Election[] = []
afterEach(async () => {
  await Promise.all(elections.splice(0).map((election) => election.stop()))
  await Promise.all(opened.splice(0).map((cache) => cache.close().catch(() => undefined)))
})
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  await destroyNatsBucket(bucket)
})

interface Candidate {
  election: Election
  cut: () => void
  terms: Array<{ token: bigint; start: number; end?: number }>
}

function candidates(backend: Backend, count: number, prefix: string): Candidate[] {
  // An in-process store is shared by the candidates; the others connect to one backend each.
  const shared = backend.shared ? backend.make() : undefined
  return Array.from({ length: count }, (_, i) => {
    const { store, cut } = breakable(shared ?? backend.make())
    const cache = createCache({ store, prefix, fallback: 'fail', logger: silentLogger })
    // A shared in-process store must outlive each cache: close only the first.
    if (!backend.shared || i === 0) opened.push(cache)
    const terms: Candidate['terms'] = []
    const election = cache.leader('nightly-report', {
      lease: LEASE,
      renewEvery: RENEW,
      owner: `replica-${i}`,
      onElected: (term: Term) => {
        terms.push({ token: term.token, start: performance.now() })
        term.signal.addEventListener('abort', () => {
          const current = terms.at(-1)
          if (current !== undefined) current.end = performance.now()
        })
      },
    })
    elections.push(election)
    return { election, cut, terms }
  })
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<number> {
  const start = performance.now()
  while (!condition()) {
    if (performance.now() - start > timeoutMs) throw new Error(`not reached within ${timeoutMs} ms`)
    await sleep(10)
  }
  return performance.now() - start
}

function noOverlap(all: Candidate[]): void {
  const terms = all.flatMap((c) =>
    c.terms.map((t) => ({ ...t, end: t.end ?? Number.POSITIVE_INFINITY })),
  )
  terms.sort((a, b) => a.start - b.start)
  for (let i = 1; i < terms.length; i++) {
    const previous = terms[i - 1]!
    const next = terms[i]!
    expect(next.start, 'a term started before the previous one ended').toBeGreaterThanOrEqual(
      previous.end,
    )
    expect(next.token > previous.token, 'tokens grow from term to term').toBe(true)
  }
}

describe.each(backends)('leader election on $name', (backend) => {
  it('exactly one of three candidates leads; stop() hands over at once', async () => {
    const all = candidates(backend, 3, `e${randomBytes(5).toString('hex')}`)
    await waitFor(() => all.some((c) => c.election.isLeader), LEASE * 4)
    for (let i = 0; i < 20; i++) {
      expect(all.filter((c) => c.election.isLeader).length).toBeLessThanOrEqual(1)
      await sleep(25)
    }
    const leader = all.find((c) => c.election.isLeader)!
    expect(typeof leader.election.token).toBe('bigint')
    await leader.election.stop()
    expect(leader.election.isLeader).toBe(false)
    expect(leader.election.signal.aborted).toBe(true)
    // The lease was handed back: a follower takes over within its polling interval, not the lease.
    const handover = await waitFor(
      () => all.some((c) => c !== leader && c.election.isLeader),
      RENEW * 4 + 1000,
    )
    expect(handover).toBeLessThan(LEASE + RENEW * 4 + 1000)
    noOverlap(all)
  })

  it('a leader cut off from the store steps down at its local deadline, before anyone takes over', async () => {
    const all = candidates(backend, 2, `e${randomBytes(5).toString('hex')}`)
    await waitFor(() => all.some((c) => c.election.isLeader), LEASE * 4)
    const leader = all.find((c) => c.election.isLeader)!
    const follower = all.find((c) => c !== leader)!
    const cutAt = performance.now()
    leader.cut()
    await waitFor(() => !leader.election.isLeader, LEASE + 500)
    const steppedDownAfter = performance.now() - cutAt
    expect(steppedDownAfter).toBeLessThanOrEqual(LEASE + 1000)
    const takeover = await waitFor(() => follower.election.isLeader, LEASE + RENEW * 4 + 1000)
    expect(cutAt + takeover).toBeLessThan(cutAt + LEASE + RENEW * 4 + 1000)
    noOverlap(all)
  })

  it('leases are system keys: heavy writes and clear() never remove them', async () => {
    const prefix = `e${randomBytes(5).toString('hex')}`
    // One store for the candidate and the writer, as in one replica.
    const cache = createCache({
      store: backend.make(),
      prefix,
      fallback: 'fail',
      logger: silentLogger,
    })
    opened.push(cache)
    const terms: bigint[] = []
    // A long lease: this test is about eviction, so a renewal delayed by a loaded host must not
    // end the term.
    const lease = 5000
    const election = cache.leader('compaction', {
      lease,
      renewEvery: 500,
      onElected: (term) => void terms.push(term.token),
    })
    elections.push(election)
    await waitFor(() => election.isLeader, lease)
    for (let i = 0; i < 200; i++) await cache.set(`k${i}`, 'x'.repeat(100))
    await cache.clear()
    // Past a few renewals: each one must find the lease still there.
    await sleep(1600)
    expect(election.isLeader).toBe(true)
    expect(terms).toHaveLength(1)
  })
})

describe('election options', () => {
  it('rejects a renewEvery that leaves no room for a failed renewal', () => {
    const cache = createCache({ logger: silentLogger })
    opened.push(cache)
    expect(() => cache.leader('x', { lease: '1s', renewEvery: '600ms' })).toThrow(/renewEvery/)
    expect(() => cache.leader('x', { lease: 0 })).toThrow(/lease/)
    expect(() => cache.leader('', {})).toThrow(/namespace|key|empty/)
  })
})
