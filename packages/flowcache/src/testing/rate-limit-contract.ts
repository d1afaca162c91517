/**
 * The rate-limit contract: what `RateLimiter` must guarantee on every store. Run it against a
 * real backend with `runRateLimitContract`, like the store and lock contracts; it asserts with
 * `node:assert/strict` only. Windows here are real and short, and timing assertions are made
 * against the times the limiter reports (`checkedAt`, store clock), so a slow machine makes the
 * tests slower, not flaky; only the real-time check of the trailing-window test uses this
 * process's clock, with `clockToleranceMs` of slack.
 */
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type {
  RateLimiter,
  RateLimitAlgorithm,
  RateLimitOptions,
  RateLimitResult,
} from '../coord/rate-limit.js'
import { StoreUnavailableError } from '../errors.js'
import type { Store } from '../types/store.js'
import type { TestApi } from './store-contract.js'

/** What the suite asks `createLimiter` for. */
export interface RateLimitContractRequest {
  /**
   * How many limiters to return, sharing one fresh key space like replicas of one cache. Over a
   * store with connections (sqlite, redis, nats), give each its own store instance; over an
   * in-process store, give them the same store.
   */
  replicas: number
  /**
   * Must be applied to every store before a limiter uses it (`store: () => wrap(store)` once per
   * store instance): the suite injects store faults through it. Returns its argument unless the
   * test injects faults.
   */
  wrap(store: Store): Store
}

/** What `createLimiter` returns. */
export interface RateLimitContractSetup {
  /** `replicas` limiters over the store under test, sharing one fresh key space. */
  limiters: RateLimiter[]
  /** A limiter over the same store as `limiters[0]` in another namespace (another key prefix). */
  otherNamespace: RateLimiter
  /** Closes every store `createLimiter` opened; the suite calls it after each test. */
  close(): Promise<void>
}

/** Options of {@link runRateLimitContract}. */
export interface RateLimitContractOptions {
  /** Store name, used in test names. */
  name: string
  /** Limiters over the store under test, in a key space no other test uses. Called once per test. */
  createLimiter(
    request: RateLimitContractRequest,
  ): Promise<RateLimitContractSetup> | RateLimitContractSetup
  /** Window of the real-time tests, in ms. @default 500 */
  windowMs?: number
  /** Calls per loop of the trailing-window test (3 loops on 3 replicas). @default 300 */
  callsPerLoop?: number
  /**
   * How far the replicas' readings of the store clock may disagree, in ms: the trailing-window
   * test checks real time with windows this much shorter. Redis replicas each estimate the
   * server clock from a sampled `TIME`, off by up to half that sample's round trip.
   * @default 25
   */
  clockToleranceMs?: number
}

const algorithms: readonly RateLimitAlgorithm[] = ['sliding-window', 'token-bucket']

/** Store methods that reach the backend: the ones the fault injector can make fail. */
const BACKEND_CALLS: ReadonlySet<string> = new Set([
  'get',
  'getMany',
  'set',
  'setMany',
  'create',
  'compareAndSet',
  'delete',
  'deleteMany',
  'increment',
  'clear',
])

/** Which backend calls fail right now; the suite flips it during a test. */
interface FaultSwitch {
  failing: ReadonlySet<string>
}

/**
 * A real store whose backend calls reject with `StoreUnavailableError` while `faults` says so,
 * as they do when the backend is unreachable. Everything else reaches the store untouched.
 */
function withFaults(store: Store, faults: FaultSwitch): Store {
  return new Proxy(store, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function') return value
      const method = value as (...args: unknown[]) => unknown
      return (...args: unknown[]): unknown => {
        if (typeof property === 'string' && faults.failing.has(property)) {
          return Promise.reject(new StoreUnavailableError(`injected fault in ${property}()`))
        }
        // Stores keep private fields, so their methods must run on the store, not the proxy.
        return Reflect.apply(method, target, args)
      }
    },
  })
}

/** Most admissions found in any trailing window of `windowMs` ending at an admission. */
function busiestWindow(sortedTimes: readonly number[], windowMs: number): number {
  let busiest = 0
  let start = 0
  for (let end = 0; end < sortedTimes.length; end++) {
    const at = sortedTimes[end] as number
    while ((sortedTimes[start] as number) <= at - windowMs) start++
    busiest = Math.max(busiest, end - start + 1)
  }
  return busiest
}

/** One admitted call: its time on the store clock and its call interval on this process's clock. */
interface Admission {
  at: number
  sentAt: number
  answeredAt: number
}

/**
 * How much shorter than `windowMs` a window must be so that no `max + 1` admitted calls lie
 * wholly inside one: 0 when the admissions respect the limit in real time.
 */
function realTimeSlackNeeded(
  admissions: readonly Admission[],
  windowMs: number,
  max: number,
): number {
  const bySent = [...admissions].sort((a, b) => a.sentAt - b.sentAt)
  let needed = 0
  for (let i = 0; i + max < bySent.length; i++) {
    const start = (bySent[i] as Admission).sentAt
    const ends = bySent
      .slice(i)
      .map((admission) => admission.answeredAt)
      .sort((a, b) => a - b)
    // The earliest moment by which `max + 1` calls sent at or after `start` have all returned.
    const end = ends[max] as number
    needed = Math.max(needed, windowMs - (end - start))
  }
  return needed
}

/** Registers the rate-limit contract tests with the runner. */
export function runRateLimitContract(api: TestApi, options: RateLimitContractOptions): void {
  const windowMs = options.windowMs ?? 500
  const callsPerLoop = options.callsPerLoop ?? 300
  const clockToleranceMs = options.clockToleranceMs ?? 25
  const open: RateLimitContractSetup[] = []
  const setup = async (
    replicas = 1,
    wrap: (store: Store) => Store = (store) => store,
  ): Promise<RateLimitContractSetup> => {
    const made = await options.createLimiter({ replicas, wrap })
    open.push(made)
    assert.equal(made.limiters.length, replicas, 'createLimiter returned one limiter per replica')
    return made
  }
  const first = (made: RateLimitContractSetup): RateLimiter => made.limiters[0] as RateLimiter
  const closeAll = async (): Promise<void> => {
    await Promise.all(open.splice(0).map((made) => made.close()))
  }

  api.describe(`rate-limit contract: ${options.name}`, () => {
    api.afterEach?.(closeAll)
    api.afterAll?.(closeAll)

    for (const algorithm of algorithms) {
      api.it(
        `${algorithm}: admits exactly max, then denies with retryAfterMs and resetAt`,
        async () => {
          const limiter = first(await setup())
          const opts: RateLimitOptions = { max: 5, per: '1m', algorithm }
          const admitted: RateLimitResult[] = []
          for (let i = 0; i < 5; i++) {
            const result = await limiter.limit('api', opts)
            assert.equal(result.allowed, true, `call ${i + 1} of 5 is admitted`)
            assert.equal(result.remaining, 4 - i)
            assert.equal(result.retryAfterMs, 0)
            assert.equal(result.limit, 5)
            assert.equal(result.failedOpen, undefined)
            admitted.push(result)
          }
          const denied = await limiter.limit('api', opts)
          assert.equal(denied.allowed, false)
          assert.equal(denied.remaining, 0)
          assert.equal(denied.limit, 5)
          assert.ok(denied.retryAfterMs > 0, `retryAfterMs ${denied.retryAfterMs} > 0`)
          assert.ok(denied.resetAt > denied.checkedAt, 'resetAt lies ahead')
          const firstAt = (admitted[0] as RateLimitResult).checkedAt
          const lastAt = (admitted[4] as RateLimitResult).checkedAt
          if (algorithm === 'sliding-window') {
            // The first admission must leave the window before anything else fits.
            assert.equal(denied.retryAfterMs, firstAt + 60_000 - denied.checkedAt)
            assert.equal(denied.resetAt, lastAt + 60_000)
          } else {
            // One token takes per / max = 12 s; the full bucket at most per.
            assert.ok(denied.retryAfterMs <= 12_000, `retryAfterMs ${denied.retryAfterMs}`)
            assert.ok(denied.resetAt - denied.checkedAt <= 60_000)
            assert.ok(denied.resetAt - denied.checkedAt > 60_000 - 12_000)
          }
          assert.equal((await limiter.limit('api', opts)).allowed, false, 'still denied')
        },
      )
    }

    api.it('cost consumes several units; a call that does not fit consumes nothing', async () => {
      const limiter = first(await setup())
      for (const algorithm of algorithms) {
        const key = `cost-${algorithm}`
        const opts = { max: 5, per: '1m', algorithm } as const
        const three = await limiter.limit(key, { ...opts, cost: 3 })
        assert.equal(three.allowed, true)
        assert.equal(three.remaining, 2)
        const tooMuch = await limiter.limit(key, { ...opts, cost: 3 })
        assert.equal(tooMuch.allowed, false, `${algorithm}: 3 more do not fit in 2`)
        assert.equal(tooMuch.remaining, 2)
        const two = await limiter.limit(key, { ...opts, cost: 2 })
        assert.equal(two.allowed, true, `${algorithm}: the denied call left its 2 units`)
        assert.equal(two.remaining, 0)
      }
    })

    api.it(
      'sliding-window: capacity comes back exactly as old admissions leave the window',
      async () => {
        const limiter = first(await setup())
        const opts = { max: 3, per: windowMs, algorithm: 'sliding-window' } as const
        const times: number[] = []
        const admit = async (): Promise<RateLimitResult> => {
          const result = await limiter.limit('edge', opts)
          if (result.allowed) times.push(result.checkedAt)
          return result
        }
        assert.equal((await admit()).allowed, true)
        assert.equal((await admit()).allowed, true)
        await sleep(windowMs / 2)
        assert.equal((await admit()).allowed, true)
        const full = await admit()
        assert.equal(full.allowed, false)
        assert.equal(full.retryAfterMs, (times[0] as number) + windowMs - full.checkedAt)
        await sleep(full.retryAfterMs + 20)
        let after = await admit()
        assert.equal(after.allowed, true, 'the oldest admission left the window')
        let freed = 1
        while (after.allowed && freed <= 3) {
          after = await admit()
          if (after.allowed) freed++
        }
        assert.equal(after.allowed, false)
        // Exactly `max` admissions are in the trailing window of the denial: none too many, and
        // capacity was not held back either.
        const inWindow = times.filter((at) => at > after.checkedAt - windowMs)
        assert.equal(inWindow.length, 3, `admitted at ${times.join(', ')}`)
        assert.equal(after.retryAfterMs, (inWindow[0] as number) + windowMs - after.checkedAt)
      },
      windowMs * 6 + 5_000,
    )

    api.it(
      'token-bucket: refills continuously at max per `per`',
      async () => {
        const limiter = first(await setup())
        const opts = { max: 10, per: windowMs, algorithm: 'token-bucket' } as const
        const msPerToken = windowMs / 10
        // One tick: decided in one batch at one instant, so the bucket is empty to the token.
        const burst = await Promise.all(
          Array.from({ length: 11 }, () => limiter.limit('refill', opts)),
        )
        assert.equal(burst.filter((result) => result.allowed).length, 10)
        const emptyAt = (burst[0] as RateLimitResult).checkedAt
        const denied = burst.find((result) => !result.allowed)
        assert.ok(denied !== undefined)
        assert.equal(denied.retryAfterMs, Math.ceil(msPerToken))
        await sleep(windowMs * 0.3)
        const partial = await limiter.status('refill', opts)
        const expected = Math.min(10, Math.floor((partial.checkedAt - emptyAt) / msPerToken + 1e-9))
        assert.equal(
          partial.remaining,
          expected,
          `refilled after ${partial.checkedAt - emptyAt} ms`,
        )
        assert.ok(partial.remaining >= 1)
        if (partial.checkedAt - emptyAt < windowMs - msPerToken) {
          assert.ok(partial.remaining < 10, 'not the whole bucket at once')
        }
        await sleep(windowMs + 20)
        const full = await limiter.status('refill', opts)
        assert.equal(full.remaining, 10)
        assert.ok(full.resetAt <= full.checkedAt)
      },
      windowMs * 4 + 5_000,
    )

    api.it('status neither consumes nor writes; it answers what limit would', async () => {
      const limiter = first(await setup())
      for (const algorithm of algorithms) {
        const key = `status-${algorithm}`
        const opts = { max: 3, per: '1m', algorithm } as const
        const fresh = await limiter.status(key, opts)
        assert.equal(fresh.allowed, true)
        assert.equal(fresh.remaining, 3)
        assert.equal(fresh.retryAfterMs, 0)
        for (let i = 0; i < 5; i++) assert.equal((await limiter.status(key, opts)).remaining, 3)
        assert.equal((await limiter.limit(key, opts)).remaining, 2)
        assert.equal((await limiter.status(key, opts)).remaining, 2)
        assert.equal((await limiter.status(key, { ...opts, cost: 3 })).allowed, false)
        await limiter.limit(key, opts)
        await limiter.limit(key, opts)
        const exhausted = await limiter.status(key, opts)
        assert.equal(exhausted.allowed, false)
        assert.equal(exhausted.remaining, 0)
        assert.ok(exhausted.retryAfterMs > 0)
      }
      assert.deepEqual(
        { ...limiter.stats(), conflicts: 0 },
        { allowed: 6, denied: 0, failedOpen: 0, failedClosed: 0, conflicts: 0 },
        'status is not counted as a decision',
      )
    })

    api.it('reset gives the full limit back', async () => {
      const limiter = first(await setup())
      for (const algorithm of algorithms) {
        const key = `reset-${algorithm}`
        const opts = { max: 2, per: '1h', algorithm } as const
        await limiter.limit(key, opts)
        await limiter.limit(key, opts)
        assert.equal((await limiter.limit(key, opts)).allowed, false)
        assert.equal(await limiter.reset(key), true)
        const again = await limiter.limit(key, opts)
        assert.equal(again.allowed, true)
        assert.equal(again.remaining, 1)
      }
      assert.equal(await limiter.reset('never-used'), false)
    })

    for (const algorithm of algorithms) {
      api.it(
        `${algorithm}: of 200 concurrent calls over 4 replicas, exactly max (50) are admitted`,
        async () => {
          const made = await setup(4)
          const opts = { max: 50, per: '1h', algorithm } as const
          const results = await Promise.all(
            Array.from({ length: 200 }, (_, i) =>
              (made.limiters[i % 4] as RateLimiter).limit('hot', opts),
            ),
          )
          assert.equal(results.filter((result) => result.allowed).length, 50)
          for (const result of results.filter((r) => !r.allowed)) {
            assert.ok(result.retryAfterMs > 0)
            assert.equal(result.remaining, 0)
          }
          const totals = { allowed: 0, denied: 0 }
          for (const limiter of made.limiters) {
            totals.allowed += limiter.stats().allowed
            totals.denied += limiter.stats().denied
          }
          assert.deepEqual(totals, { allowed: 50, denied: 150 })
          // One replica alone, 200 calls in one tick: same answer.
          const single = made.limiters[0] as RateLimiter
          const alone = await Promise.all(
            Array.from({ length: 200 }, () => single.limit('hot-single', opts)),
          )
          assert.equal(alone.filter((result) => result.allowed).length, 50)
        },
        30_000,
      )
    }

    api.it('keys and namespaces are independent', async () => {
      const made = await setup()
      const limiter = first(made)
      const opts = { max: 2, per: '1h' } as const
      await limiter.limit('a', opts)
      await limiter.limit('a', opts)
      assert.equal((await limiter.limit('a', opts)).allowed, false)
      assert.equal((await limiter.limit('b', opts)).remaining, 1, 'another key')
      assert.equal((await made.otherNamespace.limit('a', opts)).remaining, 1, 'another namespace')
      assert.equal(await made.otherNamespace.reset('a'), true)
      assert.equal((await limiter.limit('a', opts)).allowed, false, 'reset stayed in its namespace')
    })

    api.it('bad arguments are typed errors naming the field, before any I/O', async () => {
      // Every backend call fails: a check made after I/O would surface as a store fault.
      const faults: FaultSwitch = { failing: BACKEND_CALLS }
      const limiter = first(await setup(1, (store) => withFaults(store, faults)))
      const cases: Array<[string, unknown]> = [
        ['max', { max: 0, per: '1s' }],
        ['max', { max: -1, per: '1s' }],
        ['max', { max: 1.5, per: '1s' }],
        ['max', { max: Number.NaN, per: '1s' }],
        ['max', { max: '5', per: '1s' }],
        ['max', { per: '1s' }],
        ['max', { max: 10_001, per: '1s', algorithm: 'sliding-window' }],
        ['per', { max: 5, per: 0 }],
        ['per', { max: 5, per: -5 }],
        ['per', { max: 5, per: 'soon' }],
        ['per', { max: 5 }],
        ['per', { max: 5, per: '400d' }],
        ['cost', { max: 5, per: '1s', cost: 0 }],
        ['cost', { max: 5, per: '1s', cost: 6 }],
        ['cost', { max: 5, per: '1s', cost: 1.5 }],
        ['algorithm', { max: 5, per: '1s', algorithm: 'fixed-window' }],
        ['failure', { max: 5, per: '1s', failure: 'maybe' }],
        ['options', null],
      ]
      for (const [field, bad] of cases) {
        for (const failure of ['closed', 'open'] as const) {
          const withPolicy =
            bad !== null && typeof bad === 'object' && !('failure' in bad)
              ? { ...bad, failure }
              : bad
          for (const call of [
            () => limiter.limit('x', withPolicy as RateLimitOptions),
            () => limiter.status('x', withPolicy as RateLimitOptions),
          ]) {
            await assert.rejects(call(), (error: unknown) => {
              const { code, message } = error as { code?: string; message?: string }
              assert.equal(code, 'E_INVALID_ARGUMENT', `${JSON.stringify(bad)}: ${message}`)
              assert.ok(message?.startsWith(field), `"${message}" names ${field}`)
              return true
            })
          }
        }
      }
      await assert.rejects(limiter.limit('', { max: 1, per: '1s' }), {
        code: 'E_INVALID_ARGUMENT',
      })
      await assert.rejects(limiter.reset(''), { code: 'E_INVALID_ARGUMENT' })
      assert.deepEqual(limiter.stats(), {
        allowed: 0,
        denied: 0,
        failedOpen: 0,
        failedClosed: 0,
        conflicts: 0,
      })
    })

    api.it(
      'a store fault rejects with failure closed, admits with failure open, and both are counted',
      async () => {
        const faults: FaultSwitch = { failing: new Set() }
        const limiter = first(await setup(1, (store) => withFaults(store, faults)))
        for (const algorithm of algorithms) {
          const key = `fault-${algorithm}`
          const opts = { max: 3, per: '1h', algorithm } as const
          assert.equal((await limiter.limit(key, opts)).remaining, 2)
          for (const failing of [BACKEND_CALLS, new Set(['create', 'compareAndSet'])]) {
            faults.failing = failing
            await assert.rejects(limiter.limit(key, opts), { code: 'E_STORE_UNAVAILABLE' })
            await assert.rejects(limiter.limit(key, { ...opts, failure: 'closed' }), {
              code: 'E_STORE_UNAVAILABLE',
            })
            const admitted = await limiter.limit(key, { ...opts, failure: 'open' })
            assert.equal(admitted.allowed, true)
            assert.equal(admitted.failedOpen, true)
            assert.equal(admitted.limit, 3)
          }
          faults.failing = BACKEND_CALLS
          await assert.rejects(limiter.status(key, opts), { code: 'E_STORE_UNAVAILABLE' })
          assert.equal((await limiter.status(key, { ...opts, failure: 'open' })).failedOpen, true)
          await assert.rejects(limiter.reset(key), { code: 'E_STORE_UNAVAILABLE' })
          faults.failing = new Set()
          const back = await limiter.limit(key, opts)
          assert.equal(back.failedOpen, undefined)
          assert.equal(back.remaining, 1, 'calls answered without the store consumed nothing')
        }
        assert.deepEqual(limiter.stats(), {
          allowed: 4,
          denied: 0,
          failedOpen: 6,
          failedClosed: 10,
          conflicts: 0,
        })
      },
    )

    api.it(
      'within any trailing window never more than max are admitted (3 replicas, bursts at window edges)',
      async () => {
        const made = await setup(3)
        const max = 20
        const opts = { max, per: windowMs, algorithm: 'sliding-window' } as const
        const origin = performance.now()
        const admissions: Admission[] = []
        let denied = 0
        const loop = async (limiter: RateLimiter): Promise<void> => {
          for (let call = 0; call < callsPerLoop; call++) {
            const phase = call % 50
            if (phase === 25) {
              // Wait for the next window edge (seen from the start), give or take 3 ms, then burst.
              const sinceOrigin = performance.now() - origin
              const edge = Math.ceil(sinceOrigin / windowMs) * windowMs
              await sleep(Math.max(0, edge - sinceOrigin + (Math.random() * 6 - 3)))
            } else if (phase < 25 || phase >= 35) {
              await sleep(Math.random() * 4)
            }
            const sentAt = performance.now()
            const result = await limiter.limit('edges', opts)
            const answeredAt = performance.now()
            if (result.allowed) admissions.push({ at: result.checkedAt, sentAt, answeredAt })
            else denied++
          }
        }
        await Promise.all(made.limiters.map(loop))
        const times = admissions.map((a) => a.at).sort((a, b) => a - b)
        assert.equal(busiestWindow(times, windowMs), max, 'the busiest window holds exactly max')
        assert.ok(denied > 0)
        // The same on this process's monotonic clock: no `max + 1` admissions whose whole
        // calls, from send to answer, fit inside one window. Replicas estimate the store clock
        // separately (Redis: from a sampled TIME), so the window is shortened by the tolerance.
        const slack = realTimeSlackNeeded(admissions, windowMs, max)
        assert.ok(
          slack <= clockToleranceMs,
          `${max + 1} calls were admitted within ${(windowMs - slack).toFixed(1)} ms of this process's clock; replicas' store clocks disagree by more than ${clockToleranceMs} ms`,
        )
      },
      120_000,
    )
  })
}
