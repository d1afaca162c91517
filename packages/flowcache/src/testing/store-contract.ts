/**
 * The store contract test suite: one set of behaviour tests that every flowcache store (memory,
 * sqlite, redis, nats, third-party) runs against a real backend. It registers tests through the
 * runner functions it is given, so it works under vitest and `node:test` alike, and asserts with
 * `node:assert/strict` only, so it carries no test-runner dependency.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'

import { ManualClock } from '../core/clock.js'
import {
  childPrefix,
  isUserKey,
  KeyKind,
  rootPrefix,
  systemKey,
  userKey,
  userKeyPrefix,
} from '../core/keyspace.js'
import { DecodeError, InvalidArgumentError, UnsupportedValueError } from '../errors.js'
import type { Codec } from '../types/codec.js'
import type { Revision, Store, StoreEntry } from '../types/store.js'

/**
 * The part of a test runner the suite needs. `import * as vitest from 'vitest'` fits as is; for
 * `node:test` pass `{ describe, it, afterAll: after }`. `node:test` ignores a timeout given as a
 * third argument; to apply it, pass `it: (name, fn, timeout) => it(name, { timeout }, fn)`.
 */
export interface TestApi {
  /** Declares a group of tests. */
  describe(name: string, fn: () => void): unknown
  /**
   * Declares one test. The suite passes a timeout because backend round trips and real-clock TTL
   * waits can exceed a runner's default. The runner's test context, when it has a `skip(note)`
   * method (vitest, `node:test`), is used to report tests that do not apply as skipped.
   */
  it(name: string, fn: (context: unknown) => Promise<void>, timeoutMs?: number): unknown
  /** Runs `fn` before each test; the suite does not need it, but runners that have it fit. */
  beforeEach?(fn: () => Promise<void> | void): unknown
  /** Runs `fn` after each test; the suite does not need it, but runners that have it fit. */
  afterEach?(fn: () => Promise<void> | void): unknown
  /** Runs `fn` once after every test; the suite uses it to close stores a timed-out test left open. */
  afterAll?(fn: () => Promise<void> | void): unknown
}

/** What `createStore` receives. */
export interface StoreContractContext {
  /**
   * The clock the store must use for TTL when the suite runs with `clock: 'manual'`;
   * `undefined` with `clock: 'real'`.
   */
  clock: ManualClock | undefined
}

/** Names of the test groups, usable in {@link StoreContractOptions.skip}. */
export const storeContractGroups = [
  'capabilities',
  'read-write',
  'create',
  'compareAndSet',
  'delete',
  'increment',
  'list',
  'clear',
  'ttl',
  'local',
  'quotas',
  'prune',
  'stats',
  'concurrency',
  'history',
  'watch',
  'close',
] as const

/** One of {@link storeContractGroups}. */
export type StoreContractGroup = (typeof storeContractGroups)[number]

/** Options of {@link runStoreContract}. */
export interface StoreContractOptions {
  /** Store name shown in the test titles. */
  name: string
  /**
   * Makes a store. Called once per test (and a few more times by the cross-connection
   * concurrency tests); the suite closes every store it made. Stores may share one backend:
   * every test works under its own random root prefix and deletes its keys afterwards.
   */
  createStore(context: StoreContractContext): Store | Promise<Store>
  /**
   * `manual`: the suite passes a {@link ManualClock} and tests TTL by moving it (exact, no
   * sleeping); the store must declare `capabilities.injectableClock`. `real`: the suite uses
   * short real TTLs ({@link StoreContractOptions.realTtlMs}) and bounded waits, for stores whose
   * backend expires entries itself.
   * @default 'real'
   */
  clock?: 'manual' | 'real'
  /** Racing calls in each concurrency test. @default 50 */
  concurrency?: number
  /**
   * Groups the store cannot run. They are reported as skipped tests, never left out silently.
   * Optional methods (`increment`, `setQuota`, `prune`, `stats`, `local`) are detected from the
   * store itself, so this is rarely needed.
   */
  skip?: readonly string[]
  /** TTL of the real-clock tests, in ms; raise it for backends with a coarse TTL. @default 150 */
  realTtlMs?: number
  /**
   * Real-clock slack, in ms: how far a reported `expiresAt` may be from the local estimate
   * (clock skew with the backend) and how long after its deadline a backend may still return an
   * entry before the suite calls it a failure.
   * @default 1000
   */
  timingToleranceMs?: number
}

/** TTL of the manual-clock tests; long, since with a manual clock waiting costs nothing. */
const MANUAL_TTL_MS = 60_000
const MAX_KEY_BYTES = 1024
const ONE_MIB = 1024 * 1024
/** Stores opened by the cross-connection tests; enough to interleave clients, few enough to be cheap. */
const CONNECTIONS = 4

const utf8 = new TextEncoder()
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

/** UTF-8 bytes of `text`. */
function bytes(text: string): Uint8Array {
  return utf8.encode(text)
}

/** Bytes of `length` filled with `fill`. */
function filled(length: number, fill: number): Uint8Array {
  return new Uint8Array(length).fill(fill)
}

function encodeJson(value: unknown): Uint8Array {
  const text: string | undefined = JSON.stringify(value)
  if (text === undefined)
    throw new UnsupportedValueError(`contract codec cannot encode ${typeof value}`)
  return utf8.encode(text)
}

/**
 * A minimal JSON codec, enough for `increment` tests. The suite carries its own so that a store
 * is tested against the `Codec` interface, not against one codec's quirks.
 */
const contractCodec: Codec = {
  name: 'contract-json',
  encode: encodeJson,
  decode(data: Uint8Array): unknown {
    try {
      return JSON.parse(strictUtf8.decode(data)) as unknown
    } catch (cause) {
      throw new DecodeError('contract codec: bytes are not JSON', { cause })
    }
  },
  encodedSize(value: unknown): number {
    return encodeJson(value).byteLength
  },
}

/** Drains an async iterable. */
async function collect(iterable: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = []
  for await (const item of iterable) out.push(item)
  return out
}

/** Sorted copy, so key sets compare regardless of listing order (the contract sets none). */
function sorted(keys: readonly string[]): string[] {
  return [...keys].sort()
}

/** Asserts that `actual` holds exactly `expected`, without printing megabytes on a mismatch. */
function assertBytes(actual: Uint8Array | undefined, expected: Uint8Array, what: string): void {
  assert.ok(actual instanceof Uint8Array, `${what}: expected a Uint8Array, got ${String(actual)}`)
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength)
  const e = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)
  if (a.equals(e)) return
  let at = 0
  while (at < a.length && at < e.length && a[at] === e[at]) at++
  assert.fail(
    `${what}: ${a.length} bytes read back, ${e.length} written; first difference at byte ${at}`,
  )
}

/** Asserts that the entry exists and holds `expected`; returns it for further checks. */
function assertEntry(
  entry: StoreEntry | undefined,
  expected: Uint8Array,
  what: string,
): StoreEntry {
  assert.ok(entry !== undefined, `${what}: expected an entry, got undefined`)
  assertBytes(entry.value, expected, what)
  assertRevision(entry.revision, `${what} revision`)
  return entry
}

/** Asserts a usable revision: a non-empty string. */
function assertRevision(
  revision: Revision | undefined,
  what: string,
): asserts revision is Revision {
  assert.equal(
    typeof revision,
    'string',
    `${what}: expected a revision string, got ${String(revision)}`,
  )
  assert.ok(revision !== undefined && revision.length > 0, `${what}: revision must not be empty`)
}

/** Sum of the value sizes of `keys`, read through `get`. */
async function valueBytes(store: Store, keys: readonly string[]): Promise<number> {
  let total = 0
  for (const entry of await store.getMany(keys)) total += entry?.value.byteLength ?? 0
  return total
}

/** Result of a test body that found the behaviour does not apply to this store. */
class NotApplicable {
  constructor(readonly reason: string) {}
}

function isSkippable(context: unknown): context is { skip(note?: string): unknown } {
  // vitest 4 hands tests a callable context object, so a function is as good as an object here.
  return (
    (typeof context === 'object' || typeof context === 'function') &&
    context !== null &&
    'skip' in context &&
    typeof context.skip === 'function'
  )
}

/** Settings resolved from the options once, shared by every test. */
interface Settings {
  readonly options: StoreContractOptions
  readonly manual: boolean
  readonly concurrency: number
  readonly realTtlMs: number
  readonly toleranceMs: number
  /** Harnesses still open, so `afterAll` can close what a timed-out test abandoned. */
  readonly live: Set<Harness>
}

/**
 * Everything one test works with: its stores, its clock and its own root prefix. It closes the
 * stores and deletes the test's keys when the test ends, so backends shared across runs stay clean.
 */
class Harness {
  readonly root: string
  readonly clock: ManualClock | undefined
  readonly ttlMs: number
  readonly #settings: Settings
  readonly #startMs: number
  readonly #stores: Store[] = []
  readonly #closed = new Set<Store>()

  private constructor(settings: Settings) {
    this.#settings = settings
    // A random root keeps tests apart even when several runs share one backend.
    this.root = `t${randomBytes(8).toString('hex')}`
    this.clock = settings.manual ? new ManualClock() : undefined
    this.#startMs = this.clock?.now() ?? 0
    this.ttlMs = settings.manual ? MANUAL_TTL_MS : settings.realTtlMs
  }

  /** Opens the harness and its first store. */
  static async open(settings: Settings): Promise<Harness> {
    const harness = new Harness(settings)
    settings.live.add(harness)
    await harness.openStore()
    return harness
  }

  /** The store the test runs on. */
  get store(): Store {
    const first = this.#stores[0]
    assert.ok(first !== undefined, 'no store open')
    return first
  }

  get settings(): Settings {
    return this.#settings
  }

  /** Opens one more store (another connection, for stores on a shared backend). */
  async openStore(): Promise<Store> {
    const store = await this.#settings.options.createStore({ clock: this.clock })
    this.#stores.push(store)
    return store
  }

  /** Closes a store and remembers it, so cleanup does not use or close it again. */
  async closeStore(store: Store): Promise<void> {
    this.#closed.add(store)
    await store.close()
  }

  /** Prefix of a namespace path under this test's root; no names = the root namespace. */
  ns(...names: string[]): string {
    let prefix = rootPrefix(this.root)
    for (const name of names) prefix = childPrefix(prefix, name, MAX_KEY_BYTES)
    return prefix
  }

  /** Store key of a user entry. */
  user(prefix: string, key: string): string {
    return userKey(prefix, key, MAX_KEY_BYTES)
  }

  /** Store key of a system entry. */
  system(prefix: string, kind: Exclude<KeyKind, 'k'>, key: string): string {
    return systemKey(prefix, kind, key, MAX_KEY_BYTES)
  }

  /** The time the store's TTL is measured against. */
  now(): number {
    return this.clock?.now() ?? Date.now()
  }

  /**
   * Lets time move between two operations, so stores that order recency by timestamp see
   * distinct times (with a manual clock they would otherwise all tie).
   */
  async tick(): Promise<void> {
    if (this.clock !== undefined) this.clock.advance(1)
    else await sleep(2)
  }

  /**
   * In real-clock mode, writes a probe entry with the test's TTL in a namespace of its own and
   * returns its key: once the probe is gone, everything written before it with the same TTL is
   * past its deadline too. Waiting on the tested keys themselves would let a read that deletes
   * expired entries clean them up before the behaviour under test is observed.
   */
  async expiryProbe(): Promise<string | undefined> {
    if (this.clock !== undefined) return undefined
    const probe = this.user(this.ns('probe'), 'probe')
    await this.store.set(probe, bytes('probe'), { ttlMs: this.ttlMs })
    return probe
  }

  /**
   * Brings time to just before `deadline`. With a real clock it cannot wait backwards, so it
   * checks that the deadline is still ahead instead of reporting a slow backend as a TTL bug.
   */
  beforeDeadline(deadline: number): void {
    if (this.clock !== undefined) {
      this.clock.set(deadline - 1)
      return
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `the test reached its TTL deadline before it could check the entry was still there; ` +
          `raise realTtlMs (now ${this.ttlMs} ms) for this backend`,
      )
    }
  }

  /**
   * Brings time to exactly `deadline` with a manual clock. With a real clock, sleeps until the
   * deadline and then waits (bounded by timingToleranceMs) until the backend no longer returns
   * `probe`.
   */
  async reachDeadline(deadline: number, probe: string | undefined): Promise<void> {
    await this.passTime(deadline)
    if (this.clock !== undefined) return
    assert.ok(probe !== undefined, 'real-clock expiry needs a probe key')
    const giveUpAt = Date.now() + this.#settings.toleranceMs
    while ((await this.store.get(probe)) !== undefined) {
      if (Date.now() > giveUpAt) {
        assert.fail(
          `an entry with ttlMs ${this.ttlMs} was still returned ${Date.now() - deadline} ms after its deadline ` +
            `(timingToleranceMs ${this.#settings.toleranceMs})`,
        )
      }
      await sleep(10)
    }
  }

  /** Moves a manual clock forward to `until`, or sleeps until the real clock has passed it. */
  async passTime(until: number): Promise<void> {
    if (this.clock !== undefined) {
      if (this.clock.now() < until) this.clock.set(until)
      return
    }
    const wait = until - Date.now()
    if (wait >= 0) await sleep(wait + 1)
  }

  /** Asserts `expiresAt` of a write made between `before` and `after` with `ttlMs`. */
  assertExpiresAt(
    entry: StoreEntry,
    before: number,
    after: number,
    ttlMs: number,
    what: string,
  ): void {
    const expiresAt = entry.expiresAt
    assert.equal(
      typeof expiresAt,
      'number',
      `${what}: expiresAt must be a number, got ${String(expiresAt)}`,
    )
    if (this.clock !== undefined) {
      assert.equal(expiresAt, before + ttlMs, `${what}: expiresAt must be clock.now() + ttlMs`)
      return
    }
    const slack = this.#settings.toleranceMs
    assert.ok(
      expiresAt !== null &&
        expiresAt >= before + ttlMs - slack &&
        expiresAt <= after + ttlMs + slack,
      `${what}: expiresAt ${String(expiresAt)} is not near now + ${ttlMs} (${before + ttlMs}..${after + ttlMs} ± ${slack})`,
    )
  }

  /** Every key under this test's root, user and system. */
  async keysUnderRoot(store: Store = this.store): Promise<string[]> {
    return collect(store.list(rootPrefix(this.root)))
  }

  /**
   * Deletes the test's keys and closes its stores. With `strict`, a failure of either is thrown;
   * otherwise (the test already failed) it is dropped so the test's own error is the one shown.
   */
  async dispose(strict: boolean): Promise<void> {
    this.#settings.live.delete(this)
    const errors: unknown[] = []
    const open = this.#stores.filter((store) => !this.#closed.has(store))
    const first = open[0]
    if (first !== undefined) {
      try {
        // Moving the manual clock back revives entries the test let expire, so they are deleted
        // too instead of lingering in a persistent backend.
        this.clock?.set(this.#startMs)
        const keys = await this.keysUnderRoot(first)
        for (let i = 0; i < keys.length; i += 500) await first.deleteMany(keys.slice(i, i + 500))
      } catch (error) {
        errors.push(error)
      }
    }
    for (const store of open) {
      try {
        this.#closed.add(store)
        await store.close()
      } catch (error) {
        errors.push(error)
      }
    }
    if (strict && errors.length > 0) throw errors[0]
  }
}

/** Declares one contract test: a fresh harness, the body, then cleanup and skip reporting. */
type Declare = (
  name: string,
  body: (h: Harness) => Promise<NotApplicable | void>,
  timeoutMs?: number,
) => void

function validate(options: StoreContractOptions): Settings {
  if (typeof options.name !== 'string' || options.name === '') {
    throw InvalidArgumentError.format('options.name', 'must be a non-empty string')
  }
  if (typeof options.createStore !== 'function') {
    throw InvalidArgumentError.format('options.createStore', 'must be a function')
  }
  const clock = options.clock ?? 'real'
  if (clock !== 'manual' && clock !== 'real') {
    throw InvalidArgumentError.format(
      'options.clock',
      `must be 'manual' or 'real'; got ${JSON.stringify(clock)}`,
    )
  }
  const concurrency = options.concurrency ?? 50
  if (!Number.isSafeInteger(concurrency) || concurrency < 2) {
    throw InvalidArgumentError.format(
      'options.concurrency',
      `must be an integer >= 2; got ${String(concurrency)}`,
    )
  }
  const realTtlMs = options.realTtlMs ?? 150
  if (!Number.isSafeInteger(realTtlMs) || realTtlMs < 1) {
    throw InvalidArgumentError.format(
      'options.realTtlMs',
      `must be a positive integer; got ${String(realTtlMs)}`,
    )
  }
  const toleranceMs = options.timingToleranceMs ?? 1000
  if (!Number.isFinite(toleranceMs) || toleranceMs < 0) {
    throw InvalidArgumentError.format(
      'options.timingToleranceMs',
      `must be >= 0; got ${String(toleranceMs)}`,
    )
  }
  const known: readonly string[] = storeContractGroups
  for (const group of options.skip ?? []) {
    if (!known.includes(group)) {
      // A typo would otherwise run a group the store meant to skip, or skip nothing.
      throw InvalidArgumentError.format(
        'options.skip',
        `has unknown group "${group}"; known: ${known.join(', ')}`,
      )
    }
  }
  return {
    options,
    manual: clock === 'manual',
    concurrency,
    realTtlMs,
    toleranceMs,
    live: new Set(),
  }
}

/**
 * Registers the store contract tests for one store. Call it at the top level of a test file:
 *
 * ```ts
 * import * as vitest from 'vitest'
 * import { runStoreContract } from 'flowcache/testing'
 * runStoreContract(vitest, { name: 'mystore', createStore: () => myStore({ url }) })
 * ```
 *
 * Groups that do not apply (an optional method the store lacks, a group named in `skip`) show up
 * as skipped tests with the reason.
 */
export function runStoreContract(api: TestApi, options: StoreContractOptions): void {
  const settings = validate(options)
  const skipped = new Set(options.skip ?? [])
  const baseTimeout =
    10_000 + (settings.manual ? 0 : 4 * settings.realTtlMs + 3 * settings.toleranceMs)

  const declare: Declare = (name, body, timeoutMs = baseTimeout) => {
    api.it(
      name,
      async (runnerContext: unknown) => {
        const harness = await Harness.open(settings)
        let outcome: NotApplicable | void
        try {
          outcome = await body(harness)
        } catch (error) {
          await harness.dispose(false)
          throw error
        }
        await harness.dispose(true)
        // Skip only after cleanup: vitest's skip() throws to end the test.
        if (outcome instanceof NotApplicable && isSkippable(runnerContext))
          runnerContext.skip(outcome.reason)
      },
      timeoutMs,
    )
  }

  api.describe(`store contract: ${options.name}`, () => {
    const groups: Record<StoreContractGroup, (test: Declare) => void> = {
      capabilities: capabilityTests,
      'read-write': readWriteTests,
      create: createTests,
      compareAndSet: compareAndSetTests,
      delete: deleteTests,
      increment: incrementTests,
      list: listTests,
      clear: clearTests,
      ttl: ttlTests,
      local: localTests,
      quotas: quotaTests,
      prune: pruneTests,
      stats: statsTests,
      concurrency: concurrencyTests,
      history: historyTests,
      watch: watchTests,
      close: closeTests,
    }
    for (const group of storeContractGroups) {
      api.describe(group, () => {
        if (skipped.has(group)) {
          declare(`skipped: the store's test file lists "${group}" in options.skip`, async () => {
            return new NotApplicable(`"${group}" is listed in options.skip of ${options.name}`)
          })
          return
        }
        groups[group](declare)
      })
    }
    api.afterAll?.(async () => {
      // Only a test that timed out leaves a harness behind; close its stores so the run can exit.
      for (const harness of [...settings.live]) await harness.dispose(false)
    })
  })
}

function capabilityTests(test: Declare): void {
  test('declares capabilities that match the methods it implements', async (h) => {
    const { store } = h
    assert.equal(typeof store.name, 'string')
    assert.ok(store.name.length > 0, 'name must not be empty')
    const caps = store.capabilities
    assert.ok(caps !== undefined && caps !== null, 'capabilities must be declared')
    for (const flag of [
      'persistent',
      'distributed',
      'injectableClock',
      'quotas',
      'local',
    ] as const) {
      assert.equal(typeof caps[flag], 'boolean', `capabilities.${flag} must be a boolean`)
    }
    assert.ok(
      caps.ttl === 'native' || caps.ttl === 'emulated',
      `capabilities.ttl must be native or emulated`,
    )
    assert.equal(
      caps.quotas,
      typeof store.setQuota === 'function',
      'capabilities.quotas must match setQuota',
    )
    assert.equal(caps.local, store.local !== undefined, 'capabilities.local must match local')
    if (h.settings.manual) {
      assert.equal(
        caps.injectableClock,
        true,
        "clock: 'manual' needs a store with capabilities.injectableClock",
      )
    }
  })
}

function readWriteTests(test: Declare): void {
  test('get of a missing key returns undefined', async (h) => {
    assert.equal(await h.store.get(h.user(h.ns(), 'missing')), undefined)
  })

  test('set then get round-trips an empty value', async (h) => {
    const key = h.user(h.ns(), 'empty')
    await h.store.set(key, new Uint8Array(0))
    assertEntry(await h.store.get(key), new Uint8Array(0), 'empty value')
  })

  test('set then get round-trips every byte value 0..255', async (h) => {
    const key = h.user(h.ns(), 'binary')
    const value = Uint8Array.from({ length: 512 }, (_, i) => (i < 256 ? i : 511 - i))
    await h.store.set(key, value)
    assertEntry(await h.store.get(key), value, 'binary value')
  })

  test('set then get round-trips a 1 MiB value', async (h) => {
    const key = h.user(h.ns(), 'large')
    const value = new Uint8Array(randomBytes(ONE_MIB))
    await h.store.set(key, value)
    assertEntry(await h.store.get(key), value, '1 MiB value')
  }, 60_000)

  test('set returns the revision get reports, and every write changes it', async (h) => {
    const key = h.user(h.ns(), 'rev')
    const seen = new Set<Revision>()
    for (let i = 0; i < 3; i++) {
      // The same bytes every time: a revision must change per write, not per content.
      const revision = await h.store.set(key, bytes('same'))
      assertRevision(revision, `write ${i}`)
      assert.ok(!seen.has(revision), `write ${i} returned a revision seen before (${revision})`)
      seen.add(revision)
      assert.equal(
        (await h.store.get(key))?.revision,
        revision,
        `get must report the revision of write ${i}`,
      )
    }
  })

  test('set replaces the value of an existing key', async (h) => {
    const key = h.user(h.ns(), 'replace')
    await h.store.set(key, bytes('first'))
    await h.store.set(key, bytes('second'))
    assertEntry(await h.store.get(key), bytes('second'), 'replaced value')
  })

  test('expiresAt is null for a write without ttlMs', async (h) => {
    const key = h.user(h.ns(), 'forever')
    await h.store.set(key, bytes('v'))
    assert.equal(assertEntry(await h.store.get(key), bytes('v'), 'entry').expiresAt, null)
  })

  test('expiresAt is now + ttlMs for a write with ttlMs', async (h) => {
    const key = h.user(h.ns(), 'ttl')
    const before = h.now()
    await h.store.set(key, bytes('v'), { ttlMs: h.ttlMs })
    const after = h.now()
    h.assertExpiresAt(
      assertEntry(await h.store.get(key), bytes('v'), 'entry'),
      before,
      after,
      h.ttlMs,
      'set',
    )
  })

  test('a set without ttlMs removes the TTL of the entry it replaces', async (h) => {
    const key = h.user(h.ns(), 'ttl-dropped')
    await h.store.set(key, bytes('v1'), { ttlMs: h.ttlMs })
    await h.store.set(key, bytes('v2'))
    assert.equal(assertEntry(await h.store.get(key), bytes('v2'), 'entry').expiresAt, null)
  })

  test('getMany returns entries in the order of the keys, with undefined for misses', async (h) => {
    const ns = h.ns()
    const [a, b, missing] = [h.user(ns, 'a'), h.user(ns, 'b'), h.user(ns, 'missing')]
    const ra = await h.store.set(a, bytes('A'))
    const rb = await h.store.set(b, bytes('B'))
    const entries = await h.store.getMany([b, missing, a, b])
    assert.equal(entries.length, 4, 'one result per requested key, duplicates included')
    assert.equal(assertEntry(entries[0], bytes('B'), 'getMany[0]').revision, rb)
    assert.equal(entries[1], undefined, 'getMany[1] is a miss')
    assert.equal(assertEntry(entries[2], bytes('A'), 'getMany[2]').revision, ra)
    assert.equal(assertEntry(entries[3], bytes('B'), 'getMany[3]').revision, rb)
  })

  test('getMany of no keys returns an empty array', async (h) => {
    assert.deepEqual(await h.store.getMany([]), [])
  })

  test('setMany writes every item, with its own TTL, and returns revisions in order', async (h) => {
    const ns = h.ns()
    const keys = [h.user(ns, 'a'), h.user(ns, 'b'), h.system(ns, KeyKind.meta, 'c')] as const
    const before = h.now()
    const revisions = await h.store.setMany([
      { key: keys[0], value: bytes('A') },
      { key: keys[1], value: bytes('B'), ttlMs: h.ttlMs },
      { key: keys[2], value: bytes('C') },
    ])
    const after = h.now()
    assert.equal(revisions.length, 3, 'one revision per item')
    const entries = await h.store.getMany(keys)
    for (const [i, text] of ['A', 'B', 'C'].entries()) {
      const entry = assertEntry(entries[i], bytes(text), `item ${i}`)
      assert.equal(entry.revision, revisions[i], `revision of item ${i}`)
    }
    assert.equal(entries[0]?.expiresAt, null, 'an item without ttlMs never expires')
    const withTtl = entries[1]
    assert.ok(withTtl !== undefined)
    h.assertExpiresAt(withTtl, before, after, h.ttlMs, 'item with ttlMs')
  })

  test('setMany of no items returns an empty array', async (h) => {
    assert.deepEqual(await h.store.setMany([]), [])
  })
}

function createTests(test: Declare): void {
  test('create writes when the key is absent and returns the new revision', async (h) => {
    const key = h.user(h.ns(), 'c')
    const revision = await h.store.create(key, bytes('v'))
    assertRevision(revision, 'create')
    assert.equal(assertEntry(await h.store.get(key), bytes('v'), 'created').revision, revision)
  })

  test('create returns undefined and changes nothing when the key exists', async (h) => {
    const key = h.user(h.ns(), 'c')
    const revision = await h.store.set(key, bytes('original'))
    assert.equal(await h.store.create(key, bytes('intruder')), undefined)
    assert.equal(await h.store.create(key, bytes('intruder'), { ttlMs: h.ttlMs }), undefined)
    const entry = assertEntry(await h.store.get(key), bytes('original'), 'entry')
    assert.equal(entry.revision, revision, 'revision unchanged')
    assert.equal(entry.expiresAt, null, 'TTL unchanged')
  })

  test('create applies ttlMs', async (h) => {
    const key = h.user(h.ns(), 'c')
    const before = h.now()
    await h.store.create(key, bytes('v'), { ttlMs: h.ttlMs })
    const after = h.now()
    h.assertExpiresAt(
      assertEntry(await h.store.get(key), bytes('v'), 'created'),
      before,
      after,
      h.ttlMs,
      'create',
    )
  })
}

function compareAndSetTests(test: Declare): void {
  test('compareAndSet with the current revision writes and returns a new revision', async (h) => {
    const key = h.user(h.ns(), 'cas')
    const first = await h.store.set(key, bytes('v1'))
    const second = await h.store.compareAndSet(key, bytes('v2'), first)
    assertRevision(second, 'compareAndSet')
    assert.notEqual(second, first, 'the write must change the revision')
    assert.equal(
      assertEntry(await h.store.get(key), bytes('v2'), 'after compareAndSet').revision,
      second,
    )
  })

  test('compareAndSet with a stale revision returns undefined and leaves the value unchanged', async (h) => {
    const key = h.user(h.ns(), 'cas')
    const stale = await h.store.set(key, bytes('v1'))
    const current = await h.store.set(key, bytes('v2'))
    assert.equal(await h.store.compareAndSet(key, bytes('v3'), stale), undefined)
    assert.equal(assertEntry(await h.store.get(key), bytes('v2'), 'entry').revision, current)
  })

  test('compareAndSet on a missing key returns undefined and writes nothing', async (h) => {
    const ns = h.ns()
    const other = await h.store.set(h.user(ns, 'other'), bytes('v'))
    const key = h.user(ns, 'cas')
    assert.equal(await h.store.compareAndSet(key, bytes('v'), other), undefined)
    assert.equal(await h.store.get(key), undefined)
  })

  test('compareAndSet applies the ttlMs of its own write', async (h) => {
    const key = h.user(h.ns(), 'cas')
    const first = await h.store.set(key, bytes('v1'))
    const before = h.now()
    const second = await h.store.compareAndSet(key, bytes('v2'), first, { ttlMs: h.ttlMs })
    const after = h.now()
    assertRevision(second, 'compareAndSet with ttlMs')
    h.assertExpiresAt(
      assertEntry(await h.store.get(key), bytes('v2'), 'entry'),
      before,
      after,
      h.ttlMs,
      'cas',
    )
    assert.ok((await h.store.compareAndSet(key, bytes('v3'), second)) !== undefined)
    assert.equal(
      (await h.store.get(key))?.expiresAt,
      null,
      'a compareAndSet without ttlMs never expires',
    )
  })
}

function deleteTests(test: Declare): void {
  test('delete returns true when the key existed and false when it did not', async (h) => {
    const key = h.user(h.ns(), 'd')
    await h.store.set(key, bytes('v'))
    assert.equal(await h.store.delete(key), true)
    assert.equal(await h.store.get(key), undefined)
    assert.equal(await h.store.delete(key), false)
  })

  test('fenced delete with a wrong revision returns false and keeps the entry', async (h) => {
    const key = h.user(h.ns(), 'lock')
    const old = await h.store.set(key, bytes('holder-1'))
    const current = await h.store.set(key, bytes('holder-2'))
    assert.equal(await h.store.delete(key, { expected: old }), false)
    assert.equal(assertEntry(await h.store.get(key), bytes('holder-2'), 'entry').revision, current)
  })

  test('fenced delete with the current revision deletes the entry', async (h) => {
    const key = h.user(h.ns(), 'lock')
    const revision = await h.store.set(key, bytes('holder'))
    assert.equal(await h.store.delete(key, { expected: revision }), true)
    assert.equal(await h.store.get(key), undefined)
  })

  test('fenced delete of a missing key returns false', async (h) => {
    const ns = h.ns()
    const revision = await h.store.set(h.user(ns, 'other'), bytes('v'))
    assert.equal(await h.store.delete(h.user(ns, 'missing'), { expected: revision }), false)
  })

  test('a key deleted and written again never gets a revision it had before', async (h) => {
    // Locks depend on it: an old holder's revision must not match the next holder's entry.
    const key = h.user(h.ns(), 'aba')
    const first = await h.store.set(key, bytes('v'))
    await h.store.delete(key)
    const second = await h.store.create(key, bytes('v'))
    assertRevision(second, 'create after delete')
    assert.notEqual(second, first)
    assert.equal(await h.store.compareAndSet(key, bytes('x'), first), undefined)
    assert.equal(await h.store.delete(key, { expected: first }), false)
    assert.equal(assertEntry(await h.store.get(key), bytes('v'), 'entry').revision, second)
  })

  test('deleteMany deletes the keys and returns how many existed', async (h) => {
    const ns = h.ns()
    const [a, b, keep, missing] = ['a', 'b', 'keep', 'missing'].map((k) => h.user(ns, k)) as [
      string,
      string,
      string,
      string,
    ]
    await h.store.setMany([
      { key: a, value: bytes('A') },
      { key: b, value: bytes('B') },
      { key: keep, value: bytes('K') },
    ])
    assert.equal(await h.store.deleteMany([a, missing, b]), 2)
    assert.deepEqual(await h.store.getMany([a, b]), [undefined, undefined])
    assertEntry(await h.store.get(keep), bytes('K'), 'key not in the batch')
    assert.equal(await h.store.deleteMany([a, b]), 0)
  })

  test('deleteMany of no keys returns 0', async (h) => {
    assert.equal(await h.store.deleteMany([]), 0)
  })
}

function incrementTests(test: Declare): void {
  const lacks = (store: Store): NotApplicable | undefined =>
    store.increment === undefined
      ? new NotApplicable(`${store.name} has no increment()`)
      : undefined

  test('increment of a missing key creates it with `by` and ttlMs', async (h) => {
    const store = h.store
    if (store.increment === undefined) return lacks(store)
    const key = h.user(h.ns(), 'n')
    const before = h.now()
    assert.equal(await store.increment(key, 5, contractCodec, { ttlMs: h.ttlMs }), 5)
    const after = h.now()
    const entry = assertEntry(await store.get(key), contractCodec.encode(5), 'created counter')
    h.assertExpiresAt(entry, before, after, h.ttlMs, 'increment')
  })

  test('increment adds to the stored number, returns the sum and changes the revision', async (h) => {
    const store = h.store
    if (store.increment === undefined) return lacks(store)
    const key = h.user(h.ns(), 'n')
    const initial = await store.set(key, contractCodec.encode(10))
    assert.equal(await store.increment(key, 5, contractCodec), 15)
    assert.equal(await store.increment(key, -3, contractCodec), 12)
    const entry = assertEntry(await store.get(key), contractCodec.encode(12), 'counter')
    assert.notEqual(entry.revision, initial, 'increment is a write and must change the revision')
    assert.equal(entry.expiresAt, null)
  })

  test('increment keeps the TTL of an existing entry', async (h) => {
    const store = h.store
    if (store.increment === undefined) return lacks(store)
    const key = h.user(h.ns(), 'n')
    const deadline = h.now() + h.ttlMs
    await store.increment(key, 1, contractCodec, { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    const original = (await store.get(key))?.expiresAt
    assert.equal(typeof original, 'number')
    if (h.clock !== undefined) h.clock.advance(h.ttlMs / 2)
    // Neither a different ttlMs nor none at all may move the deadline of a counter that exists.
    assert.equal(await store.increment(key, 1, contractCodec, { ttlMs: h.ttlMs * 10 }), 2)
    assert.equal(await store.increment(key, 1, contractCodec), 3)
    assert.equal((await store.get(key))?.expiresAt, original, 'expiresAt after increment')
    h.beforeDeadline(deadline)
    assertEntry(await store.get(key), contractCodec.encode(3), 'counter before its deadline')
    await h.reachDeadline(deadline, probe)
    assert.equal(await store.get(key), undefined, 'the counter expires at its first deadline')
  })

  test('increment treats an expired entry as missing and starts again from `by`', async (h) => {
    const store = h.store
    if (store.increment === undefined) return lacks(store)
    const key = h.user(h.ns(), 'n')
    const deadline = h.now() + h.ttlMs
    await store.set(key, contractCodec.encode(40), { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    await h.reachDeadline(deadline, probe)
    assert.equal(await store.increment(key, 2, contractCodec), 2)
    assert.equal(
      assertEntry(await store.get(key), contractCodec.encode(2), 'restarted counter').expiresAt,
      null,
    )
  })

  test('increment of a value that is not a number throws E_NOT_A_NUMBER and changes nothing', async (h) => {
    const store = h.store
    if (store.increment === undefined) return lacks(store)
    const key = h.user(h.ns(), 'text')
    const revision = await store.set(key, contractCodec.encode('abc'))
    await assert.rejects(store.increment(key, 1, contractCodec), (error: unknown) => {
      assert.equal((error as { code?: unknown }).code, 'E_NOT_A_NUMBER')
      return true
    })
    assert.equal(
      assertEntry(await store.get(key), contractCodec.encode('abc'), 'entry').revision,
      revision,
    )
  })
}

function listTests(test: Declare): void {
  test('list returns exactly the live keys under the prefix, user and system, child namespaces included', async (h) => {
    const a = h.ns('a')
    const inside = [
      h.user(a, 'x'),
      h.user(a, 'order:42'),
      h.user(h.ns('a', 'child'), 'y'),
      h.system(a, KeyKind.lock, 'job'),
      h.system(a, KeyKind.lease, 'leader'),
      h.system(a, KeyKind.limiter, 'api'),
      h.system(a, KeyKind.meta, 'schema'),
    ]
    const outside = [
      h.user(h.ns(), 'x'),
      h.user(h.ns('b'), 'x'),
      h.system(h.ns(), KeyKind.lock, 'job'),
    ]
    for (const key of [...inside, ...outside]) await h.store.set(key, bytes(key))
    assert.deepEqual(sorted(await collect(h.store.list(a))), sorted(inside))
  })

  test('list never returns keys of a sibling namespace that shares leading characters', async (h) => {
    const [a, ab] = [h.ns('a'), h.ns('ab')]
    await h.store.set(h.user(a, 'x'), bytes('1'))
    await h.store.set(h.user(ab, 'x'), bytes('2'))
    await h.store.set(h.system(ab, KeyKind.lock, 'x'), bytes('3'))
    assert.deepEqual(await collect(h.store.list(a)), [h.user(a, 'x')])
    assert.deepEqual(
      sorted(await collect(h.store.list(ab))),
      sorted([h.user(ab, 'x'), h.system(ab, KeyKind.lock, 'x')]),
    )
  })

  test('list matches the prefix as plain text: `k/x` finds x and xy, `k/xy` finds only xy', async (h) => {
    const ns = h.ns()
    const [x, xy, y] = [h.user(ns, 'x'), h.user(ns, 'xy'), h.user(ns, 'y')]
    for (const key of [x, xy, y]) await h.store.set(key, bytes('v'))
    assert.deepEqual(
      sorted(await collect(h.store.list(userKeyPrefix(ns, 'x', MAX_KEY_BYTES)))),
      sorted([x, xy]),
    )
    assert.deepEqual(await collect(h.store.list(userKeyPrefix(ns, 'xy', MAX_KEY_BYTES))), [xy])
  })

  test('list stops after `limit` keys', async (h) => {
    const ns = h.ns('many')
    const keys = Array.from({ length: 7 }, (_, i) => h.user(ns, `k${i}`))
    await h.store.setMany(keys.map((key) => ({ key, value: bytes('v') })))
    const limited = await collect(h.store.list(ns, { limit: 3 }))
    assert.equal(limited.length, 3, 'limit 3 yields 3 keys')
    assert.equal(new Set(limited).size, 3, 'no key twice')
    for (const key of limited) assert.ok(keys.includes(key), `${key} is not under the prefix`)
    assert.deepEqual(sorted(await collect(h.store.list(ns, { limit: 100 }))), sorted(keys))
  })

  test('list of a prefix without keys yields nothing', async (h) => {
    await h.store.set(h.user(h.ns('full'), 'x'), bytes('v'))
    assert.deepEqual(await collect(h.store.list(h.ns('empty'))), [])
  })
}

function clearTests(test: Declare): void {
  test('clear deletes the user entries under the prefix, child namespaces included, and returns the count', async (h) => {
    const a = h.ns('a')
    const users = [h.user(a, 'x'), h.user(a, 'y'), h.user(h.ns('a', 'child'), 'z')]
    for (const key of users) await h.store.set(key, bytes('v'))
    assert.equal(await h.store.clear(a), 3)
    assert.deepEqual(await h.store.getMany(users), [undefined, undefined, undefined])
    assert.deepEqual(await collect(h.store.list(a)), [])
  })

  test('clear leaves system keys under the prefix untouched', async (h) => {
    const a = h.ns('a')
    const systemKeys = [
      h.system(a, KeyKind.lock, 'job'),
      h.system(a, KeyKind.lease, 'leader'),
      h.system(a, KeyKind.limiter, 'api'),
      h.system(a, KeyKind.meta, 'schema'),
      h.system(h.ns('a', 'child'), KeyKind.lock, 'job'),
    ]
    const revisions = new Map<string, Revision>()
    for (const key of systemKeys) revisions.set(key, await h.store.set(key, bytes(key)))
    await h.store.set(h.user(a, 'x'), bytes('v'))
    assert.equal(await h.store.clear(a), 1, 'only the user entry counts')
    for (const key of systemKeys) {
      assert.equal(
        assertEntry(await h.store.get(key), bytes(key), key).revision,
        revisions.get(key),
      )
    }
    assert.deepEqual(sorted(await collect(h.store.list(a))), sorted(systemKeys))
  })

  test('clear leaves sibling prefixes and the parent namespace untouched', async (h) => {
    const [a, ab] = [h.ns('a'), h.ns('ab')]
    const others = [h.user(ab, 'x'), h.user(h.ns(), 'x'), h.user(h.ns('b'), 'x')]
    for (const key of [h.user(a, 'x'), ...others]) await h.store.set(key, bytes('v'))
    assert.equal(await h.store.clear(a), 1)
    for (const key of others) assertEntry(await h.store.get(key), bytes('v'), key)
  })

  test('clear matches the prefix as plain text: `k/x` clears x and xy, not y', async (h) => {
    const ns = h.ns()
    const [x, xy, y] = [h.user(ns, 'x'), h.user(ns, 'xy'), h.user(ns, 'y')]
    for (const key of [x, xy, y]) await h.store.set(key, bytes('v'))
    assert.equal(await h.store.clear(userKeyPrefix(ns, 'x', MAX_KEY_BYTES)), 2)
    assert.deepEqual(await collect(h.store.list(ns)), [y])
  })

  test('clear of a prefix without user entries returns 0', async (h) => {
    await h.store.set(h.system(h.ns('a'), KeyKind.lock, 'job'), bytes('v'))
    assert.equal(await h.store.clear(h.ns('a')), 0)
    assert.equal(await h.store.clear(h.ns('nothing')), 0)
  })
}

function ttlTests(test: Declare): void {
  test('an entry with ttlMs is returned by get, getMany and list until just before its deadline', async (h) => {
    const ns = h.ns()
    const key = h.user(ns, 'ttl')
    const deadline = h.now() + h.ttlMs
    await h.store.set(key, bytes('v'), { ttlMs: h.ttlMs })
    h.beforeDeadline(deadline)
    assertEntry(await h.store.get(key), bytes('v'), 'get')
    assertEntry((await h.store.getMany([key]))[0], bytes('v'), 'getMany')
    assert.deepEqual(await collect(h.store.list(ns)), [key])
  })

  test('get returns undefined at and after the deadline', async (h) => {
    const key = h.user(h.ns(), 'ttl')
    const deadline = h.now() + h.ttlMs
    await h.store.set(key, bytes('v'), { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    await h.reachDeadline(deadline, probe)
    assert.equal(await h.store.get(key), undefined, 'at the deadline')
    h.clock?.advance(h.ttlMs)
    assert.equal(await h.store.get(key), undefined, 'after the deadline')
  })

  test('getMany returns undefined for an expired entry', async (h) => {
    const ns = h.ns()
    const [expiring, forever] = [h.user(ns, 'ttl'), h.user(ns, 'forever')]
    const deadline = h.now() + h.ttlMs
    await h.store.set(expiring, bytes('v'), { ttlMs: h.ttlMs })
    await h.store.set(forever, bytes('w'))
    const probe = await h.expiryProbe()
    await h.reachDeadline(deadline, probe)
    const [first, second] = await h.store.getMany([expiring, forever])
    assert.equal(first, undefined)
    assertEntry(second, bytes('w'), 'entry without TTL')
  })

  test('list does not return an expired key', async (h) => {
    const ns = h.ns('a')
    const [expiring, forever] = [h.user(ns, 'ttl'), h.system(ns, KeyKind.lease, 'forever')]
    const deadline = h.now() + h.ttlMs
    await h.store.set(expiring, bytes('v'), { ttlMs: h.ttlMs })
    await h.store.set(h.system(ns, KeyKind.lock, 'ttl'), bytes('v'), { ttlMs: h.ttlMs })
    await h.store.set(forever, bytes('w'))
    const probe = await h.expiryProbe()
    await h.reachDeadline(deadline, probe)
    assert.deepEqual(await collect(h.store.list(ns)), [forever])
  })

  test('create succeeds over an expired entry, with a new revision', async (h) => {
    const key = h.user(h.ns(), 'ttl')
    const deadline = h.now() + h.ttlMs
    const old = await h.store.set(key, bytes('old'), { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    await h.reachDeadline(deadline, probe)
    const revision = await h.store.create(key, bytes('new'))
    assertRevision(revision, 'create over an expired entry')
    assert.notEqual(revision, old)
    const entry = assertEntry(await h.store.get(key), bytes('new'), 'created')
    assert.equal(entry.revision, revision)
    assert.equal(entry.expiresAt, null, 'the new entry has the TTL of the create, none')
  })

  test('compareAndSet on an expired entry returns undefined and writes nothing', async (h) => {
    const key = h.user(h.ns(), 'ttl')
    const deadline = h.now() + h.ttlMs
    const revision = await h.store.set(key, bytes('old'), { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    await h.reachDeadline(deadline, probe)
    assert.equal(await h.store.compareAndSet(key, bytes('new'), revision), undefined)
    assert.equal(await h.store.get(key), undefined)
  })

  test('delete, fenced delete and deleteMany treat an expired entry as absent', async (h) => {
    const ns = h.ns()
    const [a, b, c] = [h.user(ns, 'a'), h.user(ns, 'b'), h.user(ns, 'c')]
    const deadline = h.now() + h.ttlMs
    await h.store.set(a, bytes('v'), { ttlMs: h.ttlMs })
    const rb = await h.store.set(b, bytes('v'), { ttlMs: h.ttlMs })
    await h.store.set(c, bytes('v'), { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    await h.reachDeadline(deadline, probe)
    assert.equal(await h.store.delete(a), false, 'delete')
    assert.equal(await h.store.delete(b, { expected: rb }), false, 'fenced delete')
    assert.equal(await h.store.deleteMany([c]), 0, 'deleteMany')
  })

  test('an entry without ttlMs does not expire', async (h) => {
    const ns = h.ns()
    const [forever, expiring] = [h.user(ns, 'forever'), h.user(ns, 'ttl')]
    await h.store.set(forever, bytes('v'))
    const deadline = h.now() + h.ttlMs
    await h.store.set(expiring, bytes('v'), { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    await h.reachDeadline(deadline, probe)
    h.clock?.advance(10 * 365 * 86_400_000)
    assertEntry(await h.store.get(forever), bytes('v'), 'entry without TTL')
  })

  test('rewriting an entry with ttlMs moves its deadline', async (h) => {
    const key = h.user(h.ns(), 'ttl')
    const firstDeadline = h.now() + h.ttlMs
    await h.store.set(key, bytes('v1'), { ttlMs: h.ttlMs })
    await h.passTime(h.now() + Math.floor(h.ttlMs / 2))
    const secondDeadline = h.now() + h.ttlMs
    await h.store.set(key, bytes('v2'), { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    await h.passTime(firstDeadline)
    h.beforeDeadline(secondDeadline)
    assertEntry(await h.store.get(key), bytes('v2'), 'entry past its first deadline')
    await h.reachDeadline(secondDeadline, probe)
    assert.equal(await h.store.get(key), undefined, 'entry at its second deadline')
  })
}

function localTests(test: Declare): void {
  const lacks = (store: Store): NotApplicable =>
    new NotApplicable(`${store.name} has no local fast path`)

  test('local reads decode an entry written as bytes, and has() tells live from missing', async (h) => {
    const local = h.store.local
    if (local === undefined) return lacks(h.store)
    const key = h.user(h.ns(), 'bytes')
    await h.store.set(key, local.codec.encode({ n: 1, list: ['a'] }))
    assert.deepEqual(local.read(key), { n: 1, list: ['a'] })
    assert.equal(local.has(key), true)
    const missing = h.user(h.ns(), 'missing')
    assert.equal(local.read(missing), undefined)
    assert.equal(local.has(missing), false)
  })

  test('local writes are the same entries the byte API reads, lists and deletes', async (h) => {
    const local = h.store.local
    if (local === undefined) return lacks(h.store)
    const ns = h.ns()
    const key = h.user(ns, 'value')
    const value = { n: 2, text: 'héllo' }
    const revision = local.write(key, value, local.codec.encodedSize(value), undefined)
    assertRevision(revision, 'local.write')
    const entry = assertEntry(
      await h.store.get(key),
      local.codec.encode(value),
      'get of a local write',
    )
    assert.equal(entry.revision, revision)
    assert.deepEqual(local.codec.decode(entry.value), value)
    assert.deepEqual(await collect(h.store.list(ns)), [key])
    assert.equal(await h.store.delete(key, { expected: revision }), true)
    assert.equal(local.has(key), false)
  })

  test('local writes honour ttlMs', async (h) => {
    const local = h.store.local
    if (local === undefined) return lacks(h.store)
    const key = h.user(h.ns(), 'ttl')
    const deadline = h.now() + h.ttlMs
    local.write(key, 'v', local.codec.encodedSize('v'), h.ttlMs)
    const probe = await h.expiryProbe()
    h.beforeDeadline(deadline)
    assert.equal(local.read(key), 'v')
    await h.reachDeadline(deadline, probe)
    assert.equal(local.has(key), false)
    assert.equal(local.read(key), undefined)
  })
}

/** User keys under `prefix`, as listed. */
async function userKeysUnder(store: Store, prefix: string): Promise<string[]> {
  return (await collect(store.list(prefix))).filter(isUserKey)
}

/**
 * For stores with `setQuota`: a namespace `a` with a quota of 3 entries holding k0, k1 and k2, written in that order with a
 * tick between writes, and the name of a fourth key k3.
 */
async function threeUnderQuota(
  h: Harness,
): Promise<{ a: string; k0: string; k1: string; k2: string; k3: string }> {
  const a = h.ns('a')
  await h.store.setQuota?.(a, { maxEntries: 3 })
  const [k0, k1, k2, k3] = ['k0', 'k1', 'k2', 'k3'].map((k) => h.user(a, k)) as [
    string,
    string,
    string,
    string,
  ]
  for (const key of [k0, k1, k2]) {
    await h.store.set(key, bytes('v'))
    await h.tick()
  }
  return { a, k0, k1, k2, k3 }
}

function quotaTests(test: Declare): void {
  const lacks = (store: Store): NotApplicable =>
    new NotApplicable(`${store.name} does not declare capabilities.quotas`)

  test('setQuota maxEntries keeps at most maxEntries user entries under the prefix', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    const a = h.ns('a')
    await store.setQuota(a, { maxEntries: 3 })
    const keys = Array.from({ length: 6 }, (_, i) => h.user(a, `k${i}`))
    for (const key of keys) {
      await store.set(key, bytes('v'))
      await h.tick()
    }
    assert.deepEqual(
      sorted(await userKeysUnder(store, a)),
      sorted(keys.slice(3)),
      'the 3 most recent writes stay',
    )
  })

  test('setQuota maxEntries evicts the least recently used entry: a key read recently survives', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    const { a, k0, k2, k3 } = await threeUnderQuota(h)
    assertEntry(await store.get(k0), bytes('v'), 'k0 read before the eviction')
    await h.tick()
    await store.set(k3, bytes('v'))
    assert.deepEqual(
      sorted(await userKeysUnder(store, a)),
      sorted([k0, k2, k3]),
      'k1, the least recently used, goes',
    )
  })

  test('peek reads like get but is not a use: a key only peeked stays least recently used', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    if (store.peek === undefined) return new NotApplicable(`${store.name} has no peek`)
    const { a, k0, k1, k2, k3 } = await threeUnderQuota(h)
    const peeked = await store.peek(k0)
    const read = await store.get(k1)
    assertEntry(peeked, bytes('v'), 'peek finds k0')
    assert.equal(peeked?.revision, (await store.peek(k0))?.revision, 'peek is repeatable')
    assertEntry(read, bytes('v'), 'get finds k1')
    assert.equal(await store.peek(h.user(a, 'missing')), undefined, 'peek of a missing key')
    await h.tick()
    await store.set(k3, bytes('v'))
    assert.deepEqual(
      sorted(await userKeysUnder(store, a)),
      sorted([k1, k2, k3]),
      'k0, only peeked, goes first',
    )
  })

  test('quota eviction never removes system keys, and system keys do not count toward the quota', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    const a = h.ns('a')
    await store.setQuota(a, { maxEntries: 2 })
    const systemKeys = [
      h.system(a, KeyKind.lock, 'job'),
      h.system(a, KeyKind.lease, 'leader'),
      h.system(a, KeyKind.limiter, 'api'),
      h.system(a, KeyKind.meta, 'schema'),
    ]
    for (const key of systemKeys) {
      await store.set(key, bytes('system'))
      await h.tick()
    }
    const users = [h.user(a, 'u0'), h.user(a, 'u1')]
    for (const key of users) {
      await store.set(key, bytes('v'))
      await h.tick()
    }
    assert.deepEqual(
      sorted(await userKeysUnder(store, a)),
      sorted(users),
      'both user entries fit the quota of 2',
    )
    for (let i = 2; i < 6; i++) {
      await store.set(h.user(a, `u${i}`), bytes('v'))
      await h.tick()
    }
    for (const key of systemKeys) assertEntry(await store.get(key), bytes('system'), key)
    assert.equal((await userKeysUnder(store, a)).length, 2)
  })

  test('quota eviction never touches keys of other prefixes', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    const [a, ab] = [h.ns('a'), h.ns('ab')]
    const others = [h.user(ab, 'x'), h.user(ab, 'y'), h.user(h.ns(), 'x'), h.user(h.ns('b'), 'x')]
    for (const key of others) {
      await store.set(key, bytes('other'))
      await h.tick()
    }
    await store.setQuota(a, { maxEntries: 1 })
    for (let i = 0; i < 5; i++) {
      await store.set(h.user(a, `k${i}`), bytes('v'))
      await h.tick()
    }
    assert.deepEqual(await userKeysUnder(store, a), [h.user(a, 'k4')])
    for (const key of others) assertEntry(await store.get(key), bytes('other'), key)
  })

  test('setQuota maxBytes keeps the bytes of user entries under the prefix within the limit, LRU first', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    const [a, ab] = [h.ns('a'), h.ns('ab')]
    const maxBytes = 1000
    const bigSystem = h.system(a, KeyKind.meta, 'big')
    const sibling = h.user(ab, 'big')
    await store.set(bigSystem, filled(5 * maxBytes, 1))
    await store.set(sibling, filled(5 * maxBytes, 2))
    await store.setQuota(a, { maxBytes })
    const keys = Array.from({ length: 12 }, (_, i) => h.user(a, `e${i}`))
    const first = keys[0] as string
    for (const key of keys) {
      await h.tick()
      await store.set(key, filled(100, 3))
      // Reading e0 after every write keeps it among the most recently used.
      await h.tick()
      await store.get(first)
    }
    const live = await userKeysUnder(store, a)
    assert.ok(
      (await valueBytes(store, live)) <= maxBytes,
      `value bytes under the prefix exceed maxBytes ${maxBytes}`,
    )
    assert.ok(live.includes(keys[11] as string), 'the newest entry stays')
    assert.ok(live.includes(first), 'the entry read after every write stays')
    assert.ok(!live.includes(keys[1] as string), 'the least recently used entry goes')
    assertEntry(await store.get(bigSystem), filled(5 * maxBytes, 1), 'system key under the prefix')
    assertEntry(await store.get(sibling), filled(5 * maxBytes, 2), 'user key of a sibling prefix')
  })

  test('setQuota replaces the earlier quota of the prefix', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    const a = h.ns('a')
    await store.setQuota(a, { maxEntries: 2 })
    await store.setQuota(a, { maxEntries: 4 })
    for (let i = 0; i < 4; i++) {
      await store.set(h.user(a, `k${i}`), bytes('v'))
      await h.tick()
    }
    assert.equal((await userKeysUnder(store, a)).length, 4, 'the raised maxEntries applies')
    // A quota given as maxBytes only has no entry limit left from the one it replaces.
    await store.setQuota(a, { maxBytes: 1_000_000 })
    for (let i = 4; i < 8; i++) {
      await store.set(h.user(a, `k${i}`), bytes('v'))
      await h.tick()
    }
    assert.equal(
      (await userKeysUnder(store, a)).length,
      8,
      'no maxEntries left after the replacement',
    )
  })

  const noUsage = (store: Store): NotApplicable =>
    new NotApplicable(`${store.name} does not implement quotaUsage`)

  test('quotaUsage counts the user entries and bytes under the prefix after writes, overwrites and deletes', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    if (store.quotaUsage === undefined) return noUsage(store)
    const [a, b] = [h.ns('a'), h.ns('b')]
    assert.equal(await store.quotaUsage(a), undefined, 'no quota set on the prefix yet')
    await store.set(h.user(a, 'before'), filled(40, 1))
    await store.setQuota(a, { maxEntries: 100 })
    const initial = await store.quotaUsage(a)
    assert.ok(initial !== undefined, 'usage of a prefix with a quota')
    assert.equal(initial.entries, 1, 'an entry written before the quota counts')
    assert.ok(initial.bytes >= 40, `bytes ${initial.bytes} cover the 40-byte value`)
    assert.equal(initial.evictions, 0, 'nothing evicted yet')
    await store.set(h.system(a, KeyKind.lock, 'job'), filled(500, 2))
    await store.set(h.user(b, 'other'), filled(500, 3))
    await store.set(h.user(a, 'x'), filled(100, 4))
    await store.set(h.user(a, 'y'), filled(100, 5))
    const written = await store.quotaUsage(a)
    assert.equal(written?.entries, 3, 'system keys and other prefixes do not count')
    assert.ok(
      written !== undefined && written.bytes >= 240 && written.bytes < 240 + 1000,
      `bytes ${String(written?.bytes)} count the three values and nothing of the 500-byte others`,
    )
    await store.set(h.user(a, 'x'), filled(300, 6))
    const grown = await store.quotaUsage(a)
    assert.equal(grown?.entries, 3, 'an overwrite adds no entry')
    assert.ok(
      grown !== undefined && grown.bytes - written.bytes >= 150,
      `an overwrite 200 bytes larger adds its bytes (${String(grown?.bytes)} after ${written.bytes})`,
    )
    await store.delete(h.user(a, 'x'))
    await store.delete(h.user(a, 'y'))
    await store.delete(h.user(a, 'before'))
    const emptied = await store.quotaUsage(a)
    assert.deepEqual(
      emptied,
      { entries: 0, bytes: 0, evictions: 0 },
      'deleting every entry leaves nothing, and deletes are not evictions',
    )
  })

  test('quotaUsage counts the entries the quota evicted', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    if (store.quotaUsage === undefined) return noUsage(store)
    const a = h.ns('a')
    await store.setQuota(a, { maxEntries: 2 })
    for (let i = 0; i < 7; i++) {
      await store.set(h.user(a, `k${i}`), bytes('v'))
      await h.tick()
    }
    const usage = await store.quotaUsage(a)
    assert.equal(usage?.entries, 2, 'the quota keeps two entries')
    assert.equal(usage?.evictions, 5, 'seven writes under a quota of two evict five')
    // Setting the same quota again keeps the count: evictions count since it was first set.
    await store.setQuota(a, { maxEntries: 2 })
    assert.equal((await store.quotaUsage(a))?.evictions, 5, 'the count survives setQuota')
  })

  test('a key read between every few writes survives many quota evictions while cold keys go first (maxEntries)', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    const a = h.ns('a')
    const maxEntries = 5
    await store.setQuota(a, { maxEntries })
    const hot = h.user(a, 'hot')
    await store.set(hot, bytes('hot'))
    await h.tick()
    const cold = Array.from({ length: 40 }, (_, i) => h.user(a, `cold${i}`))
    for (const [i, key] of cold.entries()) {
      await store.set(key, bytes('cold'))
      await h.tick()
      if (i % 3 === 2) {
        assertEntry(await store.get(hot), bytes('hot'), `hot key after ${i + 1} cold writes`)
        await h.tick()
      }
    }
    const live = await userKeysUnder(store, a)
    assert.ok(live.includes(hot), 'the hot key survives')
    assert.equal(live.length, maxEntries, 'the quota holds')
    assert.deepEqual(
      sorted(live.filter((key) => key !== hot)),
      sorted(cold.slice(-(maxEntries - 1))),
      'the cold keys left are the most recently written ones',
    )
    if (store.quotaUsage !== undefined) {
      assert.equal(
        (await store.quotaUsage(a))?.evictions,
        cold.length + 1 - maxEntries,
        'every eviction was of a cold key',
      )
    }
  })

  test('a key read between every few writes survives many quota evictions while cold keys go first (maxBytes)', async (h) => {
    const store = h.store
    if (!store.capabilities.quotas || store.setQuota === undefined) return lacks(store)
    const a = h.ns('a')
    const maxBytes = 2000
    await store.setQuota(a, { maxBytes })
    const hot = h.user(a, 'hot')
    await store.set(hot, filled(300, 1))
    await h.tick()
    const cold = Array.from({ length: 30 }, (_, i) => h.user(a, `cold${i}`))
    for (const [i, key] of cold.entries()) {
      await store.set(key, filled(300, 2))
      await h.tick()
      if (i % 2 === 1) {
        assertEntry(await store.get(hot), filled(300, 1), `hot key after ${i + 1} cold writes`)
        await h.tick()
      }
    }
    const live = await userKeysUnder(store, a)
    assert.ok(live.includes(hot), 'the hot key survives')
    assert.ok((await valueBytes(store, live)) <= maxBytes, 'the quota holds')
    assert.ok(live.includes(cold.at(-1) as string), 'the newest cold key stays')
    assert.ok(!live.includes(cold[0] as string), 'the oldest cold key goes')
    for (const key of live) {
      if (key === hot) continue
      assert.ok(
        cold.indexOf(key) >= cold.length - live.length,
        `${key} is among the most recently written cold keys`,
      )
    }
  })
}

function pruneTests(test: Declare): void {
  test('prune removes expired entries, reports how many, and keeps live ones', async (h) => {
    const store = h.store
    if (store.prune === undefined) return new NotApplicable(`${store.name} has no prune()`)
    const ns = h.ns()
    const expiring = [h.user(ns, 'a'), h.user(ns, 'b'), h.system(ns, KeyKind.lease, 'c')]
    const deadline = h.now() + h.ttlMs
    for (const key of expiring) await store.set(key, bytes('v'), { ttlMs: h.ttlMs })
    const longer = h.user(ns, 'longer')
    await store.set(longer, bytes('v'), { ttlMs: h.ttlMs * 3 })
    const forever = h.user(ns, 'forever')
    await store.set(forever, bytes('v'))
    const probe = await h.expiryProbe()
    const statsBefore = store.stats?.()
    await h.reachDeadline(deadline, probe)
    const pruned = await store.prune()
    assert.ok(
      Number.isSafeInteger(pruned) && pruned >= 0,
      `prune must return a count, got ${String(pruned)}`,
    )
    if (store.capabilities.ttl === 'emulated') {
      // Other tenants of a shared backend may have expired entries too, hence at least.
      assert.ok(
        pruned >= expiring.length,
        `prune reported ${pruned}; ${expiring.length} entries had expired`,
      )
    }
    assertEntry(await store.get(longer), bytes('v'), 'entry with a later deadline')
    assertEntry(await store.get(forever), bytes('v'), 'entry without TTL')
    const statsAfter = store.stats?.()
    if (statsBefore !== undefined && statsAfter !== undefined && h.clock !== undefined) {
      assert.equal(
        statsAfter.expirations - statsBefore.expirations,
        pruned,
        'stats.expirations counts pruned entries',
      )
      assert.equal(
        statsBefore.entries - statsAfter.entries,
        pruned,
        'stats.entries drops by the pruned count',
      )
    }
    if (h.clock !== undefined) {
      assert.equal(await store.prune(), 0, 'a second prune finds nothing')
      // With the clock moved back the pruned entries would be live again, unless prune removed them.
      h.clock.set(deadline - 1)
      assert.deepEqual(
        await store.getMany(expiring),
        expiring.map(() => undefined),
        'pruned entries are gone',
      )
    }
  })
}

function statsTests(test: Declare): void {
  const lacks = (store: Store): NotApplicable => new NotApplicable(`${store.name} has no stats()`)

  test('stats entries and bytes follow writes, overwrites and deletes', async (h) => {
    const store = h.store
    if (store.stats === undefined) return lacks(store)
    const ns = h.ns()
    const [x, lock] = [h.user(ns, 'x'), h.system(ns, KeyKind.lock, 'job')]
    const s0 = store.stats()
    for (const field of ['entries', 'bytes', 'evictions', 'expirations'] as const) {
      assert.ok(Number.isSafeInteger(s0[field]) && s0[field] >= 0, `stats.${field} must be a count`)
    }
    await store.set(x, filled(100, 1))
    await store.set(lock, filled(50, 2))
    const s1 = store.stats()
    assert.equal(s1.entries - s0.entries, 2, 'two writes, two entries (system keys count)')
    // A store may add per-entry overhead (keys), so a new entry costs at least its value.
    assert.ok(
      s1.bytes - s0.bytes >= 150,
      `bytes grew by ${s1.bytes - s0.bytes}, less than the 150 value bytes`,
    )
    await store.set(x, filled(10, 1))
    const s2 = store.stats()
    assert.equal(s2.entries, s1.entries, 'an overwrite adds no entry')
    assert.equal(
      s1.bytes - s2.bytes,
      90,
      'an overwrite changes bytes by the difference of the values',
    )
    await store.delete(x)
    await store.delete(lock)
    const s3 = store.stats()
    assert.equal(s3.entries, s0.entries, 'deletes remove the entries')
    assert.equal(s3.bytes, s0.bytes, 'deletes release the bytes')
  })

  test('stats expirations count entries removed because their TTL passed', async (h) => {
    const store = h.store
    if (store.stats === undefined) return lacks(store)
    if (store.prune === undefined) {
      return new NotApplicable(
        `${store.name} has no prune(), so expirations cannot be forced and counted exactly`,
      )
    }
    if (store.capabilities.ttl === 'native') {
      return new NotApplicable(
        `${store.name} has native TTL: its backend removes expired entries on its own schedule`,
      )
    }
    const ns = h.ns()
    const deadline = h.now() + h.ttlMs
    await store.set(h.user(ns, 'a'), bytes('v'), { ttlMs: h.ttlMs })
    await store.set(h.system(ns, KeyKind.lease, 'b'), bytes('v'), { ttlMs: h.ttlMs })
    const probe = await h.expiryProbe()
    const before = store.stats()
    await h.reachDeadline(deadline, probe)
    await store.prune()
    const after = store.stats()
    // The real-clock probe expires as well.
    const expected = 2 + (probe === undefined ? 0 : 1)
    assert.equal(
      after.expirations - before.expirations,
      expected,
      'stats.expirations counts each expired entry once',
    )
    assert.equal(
      before.entries - after.entries,
      expected,
      'expired entries no longer count as entries',
    )
  })

  test('stats evictions count entries removed for a quota', async (h) => {
    const store = h.store
    if (store.stats === undefined) return lacks(store)
    if (!store.capabilities.quotas || store.setQuota === undefined) {
      return new NotApplicable(`${store.name} has no quotas, so the suite cannot force an eviction`)
    }
    const a = h.ns('a')
    await store.setQuota(a, { maxEntries: 1 })
    const before = store.stats()
    for (let i = 0; i < 3; i++) {
      await store.set(h.user(a, `k${i}`), bytes('v'))
      await h.tick()
    }
    const after = store.stats()
    assert.equal(
      after.evictions - before.evictions,
      2,
      'three writes under a quota of one evict two',
    )
    assert.equal(after.entries - before.entries, 1, 'one entry remains')
  })
}

/**
 * The stores a cross-connection race runs on, or why it cannot run: the factory must return
 * stores that see each other's writes, otherwise there is nothing shared to race on.
 */
async function sharedStores(h: Harness): Promise<Store[] | NotApplicable> {
  const stores = [h.store]
  while (stores.length < Math.min(CONNECTIONS, h.settings.concurrency))
    stores.push(await h.openStore())
  const probe = h.user(h.ns('probe'), 'shared')
  await h.store.set(probe, bytes('shared'))
  const seen = await Promise.all(
    stores.map(async (store) => (await store.get(probe)) !== undefined),
  )
  await h.store.delete(probe)
  if (seen.every(Boolean)) return stores
  if (seen.slice(1).some(Boolean))
    assert.fail('some stores from createStore share a backend and some do not')
  return new NotApplicable(
    'createStore returns isolated stores (one does not see the writes of another)',
  )
}

function concurrencyTests(test: Declare): void {
  const timeout = 60_000

  const raceCreate = async (h: Harness, stores: readonly Store[]): Promise<void> => {
    const key = h.user(h.ns(), 'race')
    const results = await Promise.all(
      Array.from({ length: h.settings.concurrency }, (_, i) =>
        (stores[i % stores.length] as Store).create(key, bytes(`writer-${i}`)),
      ),
    )
    const winners = results.flatMap((revision, i) => (revision === undefined ? [] : [i]))
    assert.equal(winners.length, 1, `exactly one create must win; ${winners.length} did`)
    const winner = winners[0] as number
    assert.equal(
      assertEntry(await h.store.get(key), bytes(`writer-${winner}`), 'winner').revision,
      results[winner],
    )
  }

  const raceCompareAndSet = async (h: Harness, stores: readonly Store[]): Promise<void> => {
    const key = h.user(h.ns(), 'race')
    const expected = await h.store.set(key, bytes('start'))
    const results = await Promise.all(
      Array.from({ length: h.settings.concurrency }, (_, i) =>
        (stores[i % stores.length] as Store).compareAndSet(key, bytes(`writer-${i}`), expected),
      ),
    )
    const winners = results.flatMap((revision, i) => (revision === undefined ? [] : [i]))
    assert.equal(winners.length, 1, `exactly one compareAndSet must win; ${winners.length} did`)
    const winner = winners[0] as number
    assert.equal(
      assertEntry(await h.store.get(key), bytes(`writer-${winner}`), 'winner').revision,
      results[winner],
    )
  }

  const raceIncrement = async (h: Harness, stores: readonly Store[]): Promise<void> => {
    const key = h.user(h.ns(), 'counter')
    const n = h.settings.concurrency
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const store = stores[i % stores.length] as Store
        assert.ok(store.increment !== undefined)
        return store.increment(key, 1, contractCodec)
      }),
    )
    // Every increment must see a distinct previous value, so the results are exactly 1..n.
    assert.deepEqual(
      [...results].sort((x, y) => x - y),
      Array.from({ length: n }, (_, i) => i + 1),
    )
    assertEntry(await h.store.get(key), contractCodec.encode(n), 'final counter')
  }

  const noIncrement = (store: Store): NotApplicable =>
    new NotApplicable(`${store.name} has no increment()`)

  test(
    'concurrent creates of one key: exactly one returns a revision',
    (h) => raceCreate(h, [h.store]),
    timeout,
  )
  test(
    'concurrent compareAndSet with the same expected revision: exactly one succeeds',
    (h) => raceCompareAndSet(h, [h.store]),
    timeout,
  )
  test(
    'concurrent increments by 1: the counter ends at the number of calls',
    async (h) =>
      h.store.increment === undefined ? noIncrement(h.store) : raceIncrement(h, [h.store]),
    timeout,
  )
  test(
    'concurrent creates of one key across connections: exactly one returns a revision',
    async (h) => {
      const stores = await sharedStores(h)
      return stores instanceof NotApplicable ? stores : raceCreate(h, stores)
    },
    timeout,
  )
  test(
    'concurrent compareAndSet across connections: exactly one succeeds',
    async (h) => {
      const stores = await sharedStores(h)
      return stores instanceof NotApplicable ? stores : raceCompareAndSet(h, stores)
    },
    timeout,
  )
  test(
    'concurrent increments by 1 across connections: the counter ends at the number of calls',
    async (h) => {
      if (h.store.increment === undefined) return noIncrement(h.store)
      const stores = await sharedStores(h)
      return stores instanceof NotApplicable ? stores : raceIncrement(h, stores)
    },
    timeout,
  )
}

function historyTests(test: Declare): void {
  const lacks = (store: Store, depth: number): NotApplicable =>
    new NotApplicable(
      `${store.name} declares capabilities.history ${String(store.capabilities.history ?? 0)}; these tests need ${depth} (create the store with history >= ${depth})`,
    )

  test('history returns sets and delete markers oldest first, with revisions, and honours limit', async (h) => {
    const store = h.store
    if (store.history === undefined || (store.capabilities.history ?? 0) < 3) return lacks(store, 3)
    const key = h.user(h.ns('h'), 'k')
    const r1 = await store.set(key, bytes('"one"'))
    await store.delete(key)
    const r3 = await store.set(key, bytes('"three"'))
    const versions = await store.history(key)
    assert.deepEqual(
      versions.map((v) => [
        v.operation,
        v.value === undefined ? undefined : strictUtf8.decode(v.value),
      ]),
      [
        ['set', '"one"'],
        ['delete', undefined],
        ['set', '"three"'],
      ],
    )
    assert.equal(versions[0]?.revision, r1)
    assert.equal(versions[2]?.revision, r3)
    for (const v of versions) assert.equal(typeof v.at, 'number', 'every version has a time')
    assert.deepEqual(
      (await store.history(key, { limit: 1 })).map((v) => v.operation),
      ['set'],
      'limit keeps the most recent',
    )
    assert.deepEqual(await store.history(h.user(h.ns('h'), 'never')), [])
  })

  test('history keeps at most capabilities.history versions', async (h) => {
    const store = h.store
    const depth = store.capabilities.history ?? 0
    if (store.history === undefined || depth < 1) return lacks(store, 1)
    const key = h.user(h.ns('h'), 'many')
    for (let i = 0; i < depth + 2; i++) await store.set(key, bytes(String(i)))
    const versions = await store.history(key)
    assert.equal(versions.length, depth)
    assert.equal(strictUtf8.decode(versions.at(-1)?.value), String(depth + 1), 'the newest is last')
  })
}

function watchTests(test: Declare): void {
  const lacks = (store: Store): NotApplicable =>
    new NotApplicable(`${store.name} does not declare capabilities.watch`)

  test('watch reports sets and deletes of user keys under the prefix, in order, and stops on close', async (h) => {
    const store = h.store
    if (store.watch === undefined || store.capabilities.watch === undefined) return lacks(store)
    const prefix = h.ns('w')
    const seen: string[] = []
    const watch = await store.watch(prefix, {
      change: (change) => seen.push(`${change.type} ${change.key}`),
    })
    const a = h.user(prefix, 'a')
    const other = h.user(h.ns('other'), 'a')
    await store.set(other, bytes('1'))
    await store.set(h.system(prefix, 'l', 'lock'), bytes('1'))
    await store.set(a, bytes('1'))
    await store.delete(a)
    const giveUpAt = Date.now() + 10_000
    while (seen.length < 2 && Date.now() < giveUpAt) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(seen, [`set ${a}`, `delete ${a}`])
    await watch.close()
    await store.set(a, bytes('2'))
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(seen.length, 2, 'nothing after close')
  })
}

function closeTests(test: Declare): void {
  test('close is idempotent: a second close, and two at once, resolve', async (h) => {
    await h.closeStore(h.store)
    await h.closeStore(h.store)
    const other = await h.openStore()
    await Promise.all([h.closeStore(other), h.closeStore(other)])
  })
}
