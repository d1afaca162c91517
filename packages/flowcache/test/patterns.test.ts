import { describe, expect, it, vi } from 'vitest'
import { createCache, type Cache } from '../src/core/cache.js'
import { silentLogger, type Logger } from '../src/core/logger.js'
import { ClosedError, WriteTargetError } from '../src/errors.js'
import type { WarmProgress } from '../src/patterns/warm.js'
import type { WriteBehindFailure } from '../src/patterns/write-behind.js'
import { RecordingTarget, deferred, settle } from './helpers/recording-target.js'

function quietCache(logger: Logger = silentLogger): Cache {
  return createCache({ logger })
}

describe('writeThrough', () => {
  it('writes the target first, then the cache', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<{ total: number }>()
    const writer = cache.writeThrough(target)
    await expect(writer.set('order:1', { total: 5 })).resolves.toBe(true)
    expect(target.rows.get('order:1')).toEqual({ total: 5 })
    expect(await cache.get('order:1')).toEqual({ total: 5 })
    expect(await writer.delete('order:1')).toBe(true)
    expect(target.rows.has('order:1')).toBe(false)
    expect(await cache.has('order:1')).toBe(false)
    await cache.close()
  })

  it('a target failure throws WriteTargetError and leaves no cached value for the key', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    const writer = cache.writeThrough(target)
    await writer.set('k', 1)
    target.failNext = 1
    const error = await writer.set('k', 2).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(WriteTargetError)
    expect(error).toMatchObject({ code: 'E_WRITE_TARGET' })
    expect((error as Error).cause).toBeInstanceOf(Error)
    expect((error as Error).message).toContain('target refused write')
    // Neither the rejected value nor the previous one (the target may have applied the write).
    expect(await cache.has('k')).toBe(false)
    expect(target.rows.get('k')).toBe(1)
    target.failNext = 1
    await expect(writer.delete('k')).rejects.toBeInstanceOf(WriteTargetError)
    await cache.close()
  })

  it('checks arguments before calling the target', async () => {
    const cache = quietCache()
    const target = new RecordingTarget()
    const writer = cache.writeThrough(target)
    await expect(writer.set('k', () => 1)).rejects.toMatchObject({ code: 'E_UNSUPPORTED_VALUE' })
    await expect(writer.set('', 1)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' })
    await expect(writer.set('k', 1, -5)).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' })
    expect(target.calls).toEqual([])
    const noDelete = cache.writeThrough({ write: async () => undefined })
    await expect(noDelete.delete('k')).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' })
    expect(() => cache.writeThrough({} as never)).toThrow(/write\(items\)/)
    await cache.close()
    expect(() => cache.writeThrough(target)).toThrow(ClosedError)
  })

  it('applies concurrent writes of one key in call order, to the target and the cache', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    // A target whose calls take a random time: without ordering, later writes would overtake.
    const slow = {
      write: async (items: ReadonlyArray<{ key: string; value: number }>) => {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3))
        await target.write(items)
      },
    }
    const writer = cache.writeThrough(slow)
    await Promise.all(Array.from({ length: 30 }, (_, i) => writer.set('k', i)))
    expect(target.history.get('k')).toEqual(Array.from({ length: 30 }, (_, i) => i))
    expect(await cache.get('k')).toBe(29)
    await cache.close()
  })
})

describe('writeBehind', () => {
  it('10 000 writes then cache.close(): all 10 000 are in the target', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<{ n: number }>()
    const writer = cache.namespace('orders').writeBehind(target, { flushEvery: '1h' })
    await Promise.all(Array.from({ length: 10_000 }, (_, i) => writer.set(`o:${i}`, { n: i })))
    expect(await cache.namespace('orders').get('o:9999')).toEqual({ n: 9999 })
    await cache.close()
    expect(target.rows.size).toBe(10_000)
    const wrong = Array.from({ length: 10_000 }, (_, i) => i).filter(
      (i) => target.rows.get(`o:${i}`)?.n !== i,
    )
    expect(wrong).toEqual([])
    expect(writer.closed).toBe(true)
    expect(cache.stats().writeBehind).toMatchObject({
      writers: 0,
      pending: 0,
      flushed: 10_000,
      failures: 0,
    })
    // Batches of at most batchSize (100) operations, never two target calls at once.
    expect(Math.max(...target.calls.map((call) => call.keys.length))).toBeLessThanOrEqual(100)
    expect(target.maxInFlight).toBe(1)
  })

  it('a target failing for a while: every batch is retried, nothing is dropped, failures are counted', async () => {
    const warnings: string[] = []
    const logger: Logger = { ...silentLogger, warn: (message) => warnings.push(message) }
    const cache = quietCache(logger)
    const target = new RecordingTarget<number>()
    target.failNext = 6
    const failures: Array<{ error: WriteTargetError; failure: WriteBehindFailure<number> }> = []
    const writer = cache.writeBehind(target, {
      flushEvery: 5,
      batchSize: 50,
      retry: { baseMs: 1, maxMs: 4 },
      onError: (error, failure) => {
        failures.push({ error, failure })
        expect(writer.stats().consecutiveFailures).toBe(failure.attempt)
      },
    })
    for (let i = 0; i < 1000; i++) await writer.set(`k${i}`, i)
    await writer.flush()
    expect(target.rows.size).toBe(1000)
    for (let i = 0; i < 1000; i++) expect(target.rows.get(`k${i}`)).toBe(i)
    const stats = writer.stats()
    expect(stats).toMatchObject({
      pending: 0,
      flushed: 1000,
      failures: 6,
      retries: 6,
      consecutiveFailures: 0,
    })
    expect(stats.lastError?.message).toContain('target refused write')
    expect(failures.map(({ failure }) => failure.attempt)).toEqual([1, 2, 3, 4, 5, 6])
    expect(failures.every(({ error }) => error.code === 'E_WRITE_TARGET')).toBe(true)
    expect(failures.every(({ failure }) => failure.retryInMs <= 4)).toBe(true)
    expect(cache.stats().writeBehind).toMatchObject({ failures: 6, retries: 6, failing: 0 })
    expect(warnings).toHaveLength(1)
    await cache.close()
  })

  it('keeps per-key order across batches while the target fails at random', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    target.failWhen = () => Math.random() < 0.3
    const writer = cache.writeBehind(target, {
      flushEvery: 1,
      batchSize: 3,
      retry: { baseMs: 1, maxMs: 2 },
    })
    for (let i = 1; i <= 200; i++) {
      await writer.set(`k${i % 5}`, i)
      if (i % 7 === 0) await settle(1)
    }
    await writer.close()
    for (let k = 0; k < 5; k++) {
      const written = target.history.get(`k${k}`) ?? []
      expect(written.length).toBeGreaterThan(0)
      expect([...written].sort((a, b) => a - b)).toEqual(written)
      expect(target.rows.get(`k${k}`)).toBe(200 - ((200 - k) % 5))
    }
    expect(writer.stats().failures).toBeGreaterThan(0)
    await cache.close()
  })

  it('a batch whose deletes failed after its sets were written retries only the deletes', async () => {
    const cache = quietCache()
    expect(cache.stats().writeBehind).toEqual({
      writers: 0,
      pending: 0,
      flushed: 0,
      batches: 0,
      failures: 0,
      retries: 0,
      coalesced: 0,
      failing: 0,
      lastError: null,
    })
    const target = new RecordingTarget<number>()
    let deleteFailures = 2
    target.failWhen = (call) => call.kind === 'delete' && deleteFailures-- > 0
    const writer = cache.writeBehind(target, { flushEvery: '1h', retry: { baseMs: 1, maxMs: 2 } })
    await writer.set('a', 1)
    await writer.delete('b')
    await writer.flush()
    expect(target.calls.map(({ kind, ok }) => `${kind}:${ok}`)).toEqual([
      'write:true',
      'delete:false',
      'delete:false',
      'delete:true',
    ])
    expect(writer.stats()).toMatchObject({ flushed: 2, batches: 1, failures: 2, retries: 2 })
    expect(cache.stats().writeBehind).toMatchObject({ writers: 1, failures: 2, failing: 0 })
    await cache.close()
  })

  it('coalesces per key: last write wins, deletes included', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    target.rows.set('b', 0)
    const writer = cache.writeBehind(target, { flushEvery: '1h' })
    await writer.set('a', 1)
    await writer.set('a', 2)
    await writer.set('b', 1)
    expect(await writer.delete('b')).toBe(true)
    await writer.set('a', 3)
    await writer.set('c', 1)
    expect(writer.stats()).toMatchObject({ pending: 3, coalesced: 3, flushed: 0 })
    expect(await cache.get('a')).toBe(3)
    expect(await cache.has('b')).toBe(false)
    expect(target.calls).toEqual([])
    await writer.flush()
    expect(target.succeeded).toEqual([
      { kind: 'write', keys: ['a', 'c'], ok: true },
      { kind: 'delete', keys: ['b'], ok: true },
    ])
    expect(target.history.get('a')).toEqual([3])
    expect(target.rows.has('b')).toBe(false)
    await cache.close()
  })

  it('a steady trickle of writes goes to the target in full batches', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    const writer = cache.writeBehind(target, { flushEvery: '1h', batchSize: 100 })
    for (let i = 0; i < 250; i++) {
      await writer.set(`k${i}`, i)
      await settle(1)
    }
    await writer.flush()
    expect(target.calls.map((call) => call.keys.length)).toEqual([100, 100, 50])
    await cache.close()
  })

  it('the target gets the value as it was at set()', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<{ n: number }>()
    const writer = cache.writeBehind(target, { flushEvery: '1h' })
    const value = { n: 1 }
    await writer.set('k', value)
    value.n = 2
    await writer.flush()
    expect(target.rows.get('k')).toEqual({ n: 1 })
    await cache.close()
  })

  it('applies backpressure: set waits while maxPending operations are queued', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    const gate = deferred()
    target.gate = gate.promise
    const writer = cache.writeBehind(target, { flushEvery: '1h', batchSize: 10, maxPending: 10 })
    const entered = target.nextCall()
    let acknowledged = 0
    const sets = Array.from({ length: 25 }, (_, i) =>
      writer.set(`k${i}`, i).then(() => acknowledged++),
    )
    await entered
    await settle()
    // The first 10 filled the queue and went to the (held) target; the other 15 wait.
    expect(acknowledged).toBe(10)
    expect(writer.stats().pending).toBe(10)
    gate.resolve()
    await Promise.all(sets)
    await writer.flush()
    expect(target.rows.size).toBe(25)
    expect(writer.stats().pending).toBe(0)
    await cache.close()
  })

  it('flush() drains the queue; the timer flushes without it', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    const slow = cache.writeBehind(target, { flushEvery: '1h' })
    for (let i = 0; i < 5; i++) await slow.set(`s${i}`, i)
    expect(slow.stats().pending).toBe(5)
    expect(target.rows.size).toBe(0)
    await slow.flush()
    expect(slow.stats()).toMatchObject({ pending: 0, flushed: 5, batches: 1 })
    expect(target.rows.size).toBe(5)

    const timed = cache.writeBehind(target, { flushEvery: 10 })
    await timed.set('t', 1)
    await vi.waitFor(() => expect(target.rows.get('t')).toBe(1), { timeout: 10_000 })
    expect(cache.stats().writeBehind).toMatchObject({ writers: 2, flushed: 6 })
    await cache.close()
  })

  it('a closed writer rejects writes with ClosedError; so does every writer of a closed cache', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    const writer = cache.writeBehind(target, { flushEvery: '1h' })
    await writer.set('a', 1)
    await writer.close()
    expect(target.rows.get('a')).toBe(1)
    await expect(writer.set('b', 2)).rejects.toBeInstanceOf(ClosedError)
    await expect(writer.delete('a')).rejects.toMatchObject({ code: 'E_CLOSED' })
    await writer.close() // idempotent

    const other = cache.writeBehind(target, { flushEvery: '1h' })
    await other.set('c', 3)
    await cache.close()
    expect(other.closed).toBe(true)
    expect(target.rows.get('c')).toBe(3)
    await expect(other.set('d', 4)).rejects.toMatchObject({ code: 'E_CLOSED' })
    expect(() => cache.writeBehind(target)).toThrow(ClosedError)
  })

  it('close({ timeout }) gives up on a target that keeps failing and hands back what is left', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<number>()
    target.failNext = Infinity
    const writer = cache.writeBehind(target, { flushEvery: 1, retry: { baseMs: 1, maxMs: 5 } })
    await writer.set('a', 1)
    expect(await writer.delete('b')).toBe(false)
    const error = await writer.close({ timeout: 50 }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(WriteTargetError)
    expect((error as Error).message).toMatch(/2 operations were not written.*target refused/)
    expect(writer.pendingWrites()).toEqual([
      { kind: 'set', key: 'a', value: 1 },
      { kind: 'delete', key: 'b' },
    ])
    expect(target.rows.size).toBe(0)
    expect(cache.stats().writeBehind.writers).toBe(0)
    expect(cache.stats().writeBehind.failures).toBeGreaterThan(0)
    await cache.close()
  })

  it('checks options and arguments before any I/O', async () => {
    const cache = quietCache()
    const target = new RecordingTarget<unknown>()
    expect(() => cache.writeBehind(target, { batchSize: 100, maxPending: 10 })).toThrow(
      /maxPending must be at least batchSize/,
    )
    expect(() => cache.writeBehind(target, { flushEvery: 0 })).toThrow(/flushEvery/)
    expect(() => cache.writeBehind(target, { retry: { baseMs: 10, maxMs: 5 } })).toThrow(
      /retry.maxMs/,
    )
    const writer = cache.writeBehind(target, { flushEvery: '1h' })
    await expect(writer.set('k', Symbol('x'))).rejects.toMatchObject({
      code: 'E_UNSUPPORTED_VALUE',
    })
    await expect(writer.set('k', 1, { ttl: '1m', tags: [] } as never)).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT',
    })
    expect(writer.stats().pending).toBe(0)
    expect(await cache.has('k')).toBe(false)
    const noDelete = cache.writeBehind({ write: async () => undefined })
    await expect(noDelete.delete('k')).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' })
    await cache.close()
    expect(target.calls).toEqual([])
  })
})

describe('warm', () => {
  it('never runs more than `concurrency` loads at once', async () => {
    const cache = quietCache()
    let active = 0
    let most = 0
    const summary = await cache.warm(
      Array.from({ length: 60 }, (_, i) => `k${i}`),
      async (key) => {
        active++
        most = Math.max(most, active)
        await settle(1)
        active--
        return key.toUpperCase()
      },
      { concurrency: 4 },
    )
    expect(most).toBe(4)
    expect(summary).toEqual({
      total: 60,
      loaded: 60,
      skipped: 0,
      missing: 0,
      failed: 0,
      errors: [],
      aborted: false,
    })
    expect(await cache.get('k59')).toBe('K59')
    await cache.close()
  })

  it('reports progress per key and collects failures instead of throwing', async () => {
    const cache = quietCache()
    await cache.set('cached', 'old')
    const events: WarmProgress[] = []
    const keys = ['a', 'cached', 'gone', 'bad', 'b', 'a']
    const summary = await cache.warm(
      keys,
      (key) => {
        if (key === 'bad') throw new Error('source down')
        return key === 'gone' ? undefined : `value of ${key}`
      },
      { onProgress: (event) => events.push(event), ttl: '1m' },
    )
    expect(summary).toMatchObject({ total: 5, loaded: 2, skipped: 1, missing: 1, failed: 1 })
    expect(summary.errors).toHaveLength(1)
    expect(summary.errors[0]?.key).toBe('bad')
    expect((summary.errors[0]?.error as Error).message).toBe('source down')
    expect(events.map((event) => event.done)).toEqual([1, 2, 3, 4, 5])
    expect(events.every((event) => event.total === 5)).toBe(true)
    expect(events.find((event) => event.key === 'bad')).toMatchObject({ outcome: 'failed' })
    expect(events.at(-1)).toMatchObject({ loaded: 2, skipped: 1, missing: 1, failed: 1 })
    expect(await cache.get('cached')).toBe('old')
    expect(await cache.has('gone')).toBe(false)
    expect(await cache.ttl('a')).toBeLessThanOrEqual(60_000)

    const forced = await cache.warm(['cached'], () => 'new', { force: true })
    expect(forced.loaded).toBe(1)
    expect(await cache.get('cached')).toBe('new')
    await cache.close()
  })

  it('a batch loader gets chunks of batchSize, at most `concurrency` calls at once', async () => {
    const cache = quietCache()
    await cache.set('k3', 'cached')
    const calls: string[][] = []
    let active = 0
    let most = 0
    const summary = await cache.warm(
      Array.from({ length: 25 }, (_, i) => `k${i}`),
      {
        batchSize: 5,
        loadMany: async (keys) => {
          calls.push(keys)
          active++
          most = Math.max(most, active)
          await settle(1)
          active--
          return keys.map((key) => (key === 'k7' ? undefined : key.length))
        },
      },
      { concurrency: 2 },
    )
    expect(summary).toMatchObject({ total: 25, loaded: 23, skipped: 1, missing: 1, failed: 0 })
    expect(calls.every((keys) => keys.length <= 5)).toBe(true)
    expect(calls.flat()).not.toContain('k3')
    expect(most).toBe(2)
    expect(await cache.get('k24')).toBe(3)

    const wrong = await cache.warm(['x', 'y'], { loadMany: async () => [1] })
    expect(wrong).toMatchObject({ failed: 2, loaded: 0 })
    expect(String(wrong.errors[0]?.error)).toMatch(/one value per key/)
    await cache.close()
  })

  it('stops starting loads when the signal aborts', async () => {
    const cache = quietCache()
    const controller = new AbortController()
    let started = 0
    const summary = await cache.warm(
      Array.from({ length: 100 }, (_, i) => `k${i}`),
      async () => {
        started++
        await settle(1)
        return 1
      },
      {
        concurrency: 3,
        signal: controller.signal,
        onProgress: (event) => {
          if (event.done === 10) controller.abort()
        },
      },
    )
    expect(summary.aborted).toBe(true)
    expect(started).toBeLessThanOrEqual(10 + 3)
    expect(summary.loaded).toBe(started)
    await cache.close()
  })

  it('stopOnError rejects with the first failure', async () => {
    const cache = quietCache()
    let calls = 0
    const failing = cache.warm(
      Array.from({ length: 50 }, (_, i) => `k${i}`),
      (key) => {
        calls++
        if (key === 'k2') throw new Error('boom')
        return 1
      },
      { concurrency: 1, stopOnError: true },
    )
    await expect(failing).rejects.toThrow('boom')
    expect(calls).toBe(3)
    await cache.close()
  })

  it('checks keys and options before loading anything', async () => {
    const cache = quietCache()
    const loader = vi.fn(() => 1)
    await expect(cache.warm(['ok', ''], loader)).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT',
    })
    await expect(cache.warm(['ok'], loader, { concurrency: 0 })).rejects.toThrow(/concurrency/)
    await expect(cache.warm(['ok'], loader, { concurrency: 257 })).rejects.toThrow(/at most 256/)
    await expect(cache.warm(['ok'], loader, { ttl: 'soon' })).rejects.toThrow(/ttl/)
    await expect(cache.warm('ok' as never, loader)).rejects.toThrow(/keys must be/)
    await expect(
      cache.warm(['ok'], { loadMany: () => [loader()], batchSize: 5000 }),
    ).rejects.toThrow(/maxBatchSize/)
    expect(loader).not.toHaveBeenCalled()
    await cache.close()
  })
})
