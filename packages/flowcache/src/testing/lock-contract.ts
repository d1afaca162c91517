/**
 * The lock contract: what `cache.locks` must guarantee on every store. Run it against a real
 * backend with `runLockContract`, like the store contract. TTLs here are real (short) because
 * lock deadlines run on the monotonic clock of the process.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Cache } from '../core/cache.js'
import type { Store } from '../types/store.js'
import type { TestApi } from './store-contract.js'

/** What `createCache` returns: the cache, its store and the cache's `prefix`. */
export interface LockContractSetup {
  cache: Cache
  store: Store
  /** The `prefix` the cache was created with. */
  prefix: string
}

/** Options of {@link runLockContract}. */
export interface LockContractOptions {
  /** Store name, used in test names. */
  name: string
  /**
   * A cache over the store under test, with its own random `prefix` so runs never meet. Called
   * once per test; the suite closes it. `store` must be given too when the cache wraps it, so the
   * suite can delete a lock key behind the cache's back.
   */
  createCache(): Promise<LockContractSetup> | LockContractSetup
  /** Lease used by tests that wait for expiry, in ms. @default 300 */
  leaseMs?: number
}

/** Registers the lock contract tests with the runner. */
export function runLockContract(api: TestApi, options: LockContractOptions): void {
  const leaseMs = options.leaseMs ?? 300
  const open: Cache[] = []
  const setup = async (): Promise<LockContractSetup> => {
    const made = await options.createCache()
    open.push(made.cache)
    return made
  }
  const closeAll = async (): Promise<void> => {
    await Promise.all(open.splice(0).map((cache) => cache.close()))
  }

  api.describe(`lock contract: ${options.name}`, () => {
    api.afterEach?.(closeAll)
    api.afterAll?.(closeAll)

    api.it('a free lock is granted once; a held one is refused until released', async () => {
      const { cache } = await setup()
      const first = await cache.locks.acquire('job', { ttl: '10s', owner: 'a' })
      assert.ok(first !== null)
      assert.equal(first.owner, 'a')
      assert.equal(typeof first.token, 'bigint')
      assert.ok(first.held)
      assert.equal(await cache.locks.acquire('job', { ttl: '10s', owner: 'b' }), null)
      assert.deepEqual((await cache.locks.holder('job'))?.owner, 'a')
      assert.equal(await first.release(), true)
      assert.equal(first.held, false)
      const second = await cache.locks.acquire('job', { ttl: '10s', owner: 'b' })
      assert.ok(second !== null && second.token > first.token)
      await second.release()
    })

    api.it(
      'holder() reports the fencing token and acquisition time, also after extend',
      async () => {
        const { cache } = await setup()
        const lock = await cache.locks.acquire('job', { ttl: '10s', owner: 'a' })
        assert.ok(lock !== null)
        const expected = { owner: 'a', token: lock.token, acquiredAt: lock.acquiredAt }
        assert.deepEqual(await cache.locks.holder('job'), expected)
        await lock.extend('20s')
        await lock.extend('30s')
        assert.deepEqual(await cache.locks.holder('job'), expected)
        await lock.release()
      },
    )

    api.it('of many concurrent acquires exactly one wins', async () => {
      const { cache } = await setup()
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          cache.locks.acquire('hot', { ttl: '10s', owner: `o${i}` }),
        ),
      )
      assert.equal(results.filter((lock) => lock !== null).length, 1)
    })

    api.it(
      'tokens grow across expiry, release and a lock key deleted behind the cache',
      async () => {
        const { cache, store, prefix } = await setup()
        const tokens: bigint[] = []
        const a = await cache.locks.acquire('fence', { ttl: leaseMs })
        assert.ok(a !== null)
        tokens.push(a.token)
        await sleep(leaseMs + 100)
        const b = await cache.locks.acquire('fence', { ttl: '10s' })
        assert.ok(b !== null, 'an expired lease is free again')
        tokens.push(b.token)
        // The lock key vanishes (a flush, a failover): the next holder still gets a larger token.
        let deleted = 0
        for await (const key of store.list(`${prefix}.`)) {
          if (key === `${prefix}.l/fence` && (await store.delete(key))) deleted++
        }
        assert.ok(deleted >= 1, 'found the lock key in the store')
        const c = await cache.locks.acquire('fence', { ttl: '10s' })
        assert.ok(c !== null)
        tokens.push(c.token)
        await c.release()
        const d = await cache.locks.acquire('fence', { ttl: '10s' })
        assert.ok(d !== null)
        tokens.push(d.token)
        for (let i = 1; i < tokens.length; i++) {
          assert.ok(
            (tokens[i] as bigint) > (tokens[i - 1] as bigint),
            `token ${i} grew: ${tokens.join(' < ')}`,
          )
        }
        await d.release()
      },
    )

    api.it(
      'a holder whose lease ran out cannot release or extend the next holder’s lock',
      async () => {
        const { cache } = await setup()
        const stale = await cache.locks.acquire('job', { ttl: leaseMs, owner: 'paused' })
        assert.ok(stale !== null)
        await sleep(leaseMs + 100)
        assert.equal(stale.held, false)
        assert.ok(stale.signal.aborted, 'the signal aborted at the local deadline')
        const next = await cache.locks.acquire('job', { ttl: '10s', owner: 'next' })
        assert.ok(next !== null)
        await assert.rejects(stale.extend('10s'), { code: 'E_LOCK_LOST' })
        assert.equal(await stale.release(), false)
        assert.equal((await cache.locks.holder('job'))?.owner, 'next')
        assert.ok(next.held)
        await next.release()
      },
    )

    api.it('only the owner releases by name; a forged release changes nothing', async () => {
      const { cache } = await setup()
      const lock = await cache.locks.acquire('job', { ttl: '10s', owner: 'worker-1' })
      assert.ok(lock !== null)
      assert.equal(await cache.locks.release('job', 'intruder'), false)
      assert.equal((await cache.locks.holder('job'))?.owner, 'worker-1')
      assert.equal(await cache.locks.release('job', 'worker-1'), true)
      assert.equal(await cache.locks.holder('job'), undefined)
      assert.equal(await cache.locks.release('job', 'worker-1'), false)
    })

    api.it('extend keeps the lock past its first lease; without it the signal aborts', async () => {
      const { cache } = await setup()
      const lock = await cache.locks.acquire('long', { ttl: leaseMs })
      assert.ok(lock !== null)
      await sleep(leaseMs / 2)
      await lock.extend(leaseMs * 3)
      await sleep(leaseMs)
      assert.ok(lock.held, 'still held after the first lease would have ended')
      assert.equal(await cache.locks.acquire('long', { ttl: '10s' }), null)
      assert.equal(lock.signal.aborted, false)
      await sleep(leaseMs * 3)
      assert.ok(lock.signal.aborted)
      assert.equal((lock.signal.reason as { code?: string } | undefined)?.code, 'E_LOCK_LOST')
    })

    api.it('acquire with wait gets the lock once the holder releases it', async () => {
      const { cache } = await setup()
      const holder = await cache.locks.acquire('queue', { ttl: '10s' })
      assert.ok(holder !== null)
      setTimeout(() => void holder.release(), 100)
      const waiter = await cache.locks.acquire('queue', { ttl: '10s', wait: '5s', retryEvery: 20 })
      assert.ok(waiter !== null && waiter.token > holder.token)
      await waiter.release()
    })

    api.it(
      'withLock runs the function, releases afterwards, also on error, and times out',
      async () => {
        const { cache } = await setup()
        assert.equal(await cache.locks.withLock('w', (lock) => lock.held, { ttl: '10s' }), true)
        assert.equal(await cache.locks.holder('w'), undefined)
        await assert.rejects(
          cache.locks.withLock('w', () => Promise.reject(new Error('boom')), { ttl: '10s' }),
          /boom/,
        )
        assert.equal(await cache.locks.holder('w'), undefined)
        const other = await cache.locks.acquire('w', { ttl: '10s' })
        assert.ok(other !== null)
        await assert.rejects(
          cache.locks.withLock('w', () => 1, { ttl: '10s', wait: 50 }),
          {
            code: 'E_LOCK_TIMEOUT',
          },
        )
        await other.release()
      },
    )

    api.it('a lock survives clear() and heavy writes to the cache', async () => {
      const { cache } = await setup()
      const lock = await cache.locks.acquire('keep', { ttl: '10s', owner: 'keeper' })
      assert.ok(lock !== null)
      for (let i = 0; i < 300; i++) await cache.set(`filler-${i}`, 'x'.repeat(200))
      await cache.clear()
      assert.equal((await cache.locks.holder('keep'))?.owner, 'keeper')
      assert.ok(lock.held)
      await lock.release()
    })

    api.it('locks of different namespaces never meet', async () => {
      const { cache } = await setup()
      const a = await cache.namespace('tenant:a').locks.acquire('job', { ttl: '10s' })
      const b = await cache.namespace('tenant:b').locks.acquire('job', { ttl: '10s' })
      assert.ok(a !== null && b !== null)
      assert.equal(await cache.namespace('tenant:a').locks.acquire('job', { ttl: '10s' }), null)
      await a.release()
      await b.release()
    })

    api.it('bad arguments are typed errors before any I/O', async () => {
      const { cache } = await setup()
      await assert.rejects(cache.locks.acquire('x', { ttl: 0 }), { code: 'E_INVALID_ARGUMENT' })
      await assert.rejects(cache.locks.acquire('x', { ttl: 'soon' }), {
        code: 'E_INVALID_ARGUMENT',
      })
      await assert.rejects(cache.locks.acquire('', { ttl: '1s' }), { code: 'E_INVALID_ARGUMENT' })
      await assert.rejects(cache.locks.acquire('x', { ttl: '1s', owner: '' }), {
        code: 'E_INVALID_ARGUMENT',
      })
      assert.equal(await cache.locks.holder('x'), undefined)
    })
  })
}
