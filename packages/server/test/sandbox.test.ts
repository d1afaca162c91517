import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { deleteRedisKeys, redisUrl } from '../../flowcache/test/helpers/services.js'
import { redisStore } from '../../flowcache/src/stores/redis/index.js'
import { createCache, InvalidArgumentError, type Cache } from '../src/flowcache.js'
import {
  createSandbox,
  ScriptError,
  ScriptLimitError,
  ScriptResultError,
  type RunLimits,
  type Sandbox,
} from '../src/sandbox/index.js'
import { flowView, rejectionOf, runIn } from './helpers/sandbox.js'

let sandbox: Sandbox
let root: Cache
let view: Cache

beforeAll(async () => {
  sandbox = await createSandbox()
  root = createCache()
  view = flowView(root, 'acme', 'orders')
})

afterAll(async () => {
  await sandbox.close()
  await root.close()
})

describe('results', () => {
  it('returns the event the script returns, as a copy', async () => {
    const event = { data: { id: 7 } }
    const result = await sandbox.run('event.data.seen = true; event.data.id += 1; return event', {
      event,
      ctx: { cache: view, flow: { name: 'orders', runId: 'r1', tenant: 'acme' } },
    })
    expect(result.value).toEqual({ data: { id: 8, seen: true } })
    expect(event).toEqual({ data: { id: 7 } })
    expect(result.cpuMs).toBeGreaterThanOrEqual(0)
    expect(result.calls).toBe(0)
  })

  it('drops the event when the script returns null', async () => {
    const result = await runIn(sandbox, view, 'return null')
    expect(result.value).toBeNull()
  })

  it('accepts a synchronous body and awaits a returned promise', async () => {
    const sync = await runIn(sandbox, view, 'const x = 2 * 21\nreturn { data: x }')
    expect(sync.value).toEqual({ data: 42 })
    const later = await runIn(sandbox, view, 'return Promise.resolve({ data: "later" })')
    expect(later.value).toEqual({ data: 'later' })
  })

  it('gives the script ctx.flow as frozen plain data', async () => {
    const result = await sandbox.run(
      `ctx.flow.tenant = 'other'
       return { data: { flow: ctx.flow, frozen: Object.isFrozen(ctx.flow) } }`,
      {
        event: { data: null },
        ctx: {
          cache: view,
          flow: { name: 'orders', runId: 'run-9', tenant: 'acme', step: 'dedup' },
        },
      },
    )
    expect(result.value).toEqual({
      data: {
        flow: { name: 'orders', runId: 'run-9', tenant: 'acme', step: 'dedup' },
        frozen: true,
      },
    })
  })

  it('gives the script ctx.connections as a deeply frozen copy, {} when none is given', async () => {
    const connections = { crm: { url: 'https://crm.example.com', tags: ['a'] } }
    const result = await sandbox.run(
      `'use strict'
       let changed = 'no'
       try { ctx.connections.crm.tags.push('b'); changed = 'yes' } catch (e) { changed = e.name }
       return { data: { seen: ctx.connections, changed, frozen: Object.isFrozen(ctx.connections.crm.tags) } }`,
      {
        event: { data: null },
        ctx: { cache: view, flow: { name: 'orders', runId: 'run-1', tenant: 'acme' }, connections },
      },
    )
    expect(result.value).toEqual({
      data: { seen: connections, changed: 'TypeError', frozen: true },
    })
    expect(Object.isFrozen(connections.crm)).toBe(false)
    const none = await runIn(sandbox, view, 'return { data: ctx.connections }')
    expect(none.value).toEqual({ data: {} })
  })

  it('refuses ctx.connections that is not an object of JSON data, before running', async () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    for (const connections of [[], 'crm', cyclic, { big: 1n }]) {
      const error = await rejectionOf(
        sandbox.run('return event', {
          event: { data: null },
          ctx: {
            cache: view,
            flow: { name: 'orders', runId: 'run-1', tenant: 'acme' },
            connections: connections as Record<string, unknown>,
          },
        }),
      )
      expect(error).toBeInstanceOf(InvalidArgumentError)
      expect(error.message).toMatch(/^ctx\.connections must be/)
    }
  })

  it('refuses results that are not an event object', async () => {
    for (const [source, pattern] of [
      ['return', /returned nothing/],
      ['return 42', /returned a number/],
      ['return [1, 2]', /returned an array/],
      ['return { data: new Map([[1, 2]]) }', /Map cannot leave/],
      ['return { data: 10n }', /BigInt cannot leave/],
      ['const o = { data: null }; o.data = o; return o', /not JSON/],
    ] as const) {
      const error = await rejectionOf(runIn(sandbox, view, source))
      expect(error, source).toBeInstanceOf(ScriptResultError)
      expect(error.code).toBe('E_SCRIPT_RESULT')
      expect(error.message, source).toMatch(pattern)
    }
  })

  it('refuses a result over maxResultBytes, counted in UTF-8 bytes', async () => {
    const limits = { maxResultBytes: 1000 }
    const ascii = await runIn(sandbox, view, 'return { data: "a".repeat(900) }', { limits })
    expect(ascii.value).toEqual({ data: 'a'.repeat(900) })
    // 400 characters of 3 bytes each: 1200 bytes, over the cap although only 400 characters
    const error = await rejectionOf(
      runIn(sandbox, view, 'return { data: "€".repeat(400) }', { limits }),
    )
    expect(error).toBeInstanceOf(ScriptResultError)
    expect(error.message).toMatch(/maxResultBytes \(1000 bytes\)/)
  })

  it('gives every run a fresh global scope', async () => {
    await runIn(
      sandbox,
      view,
      `globalThis.leftover = 'x'; Array.prototype.push = () => 0; Object.prototype.polluted = 1
       return null`,
    )
    const result = await runIn(
      sandbox,
      view,
      `const a = []; a.push(1)
       return { data: [typeof leftover, a.length, ({}).polluted === undefined] }`,
    )
    expect(result.value).toEqual({ data: ['undefined', 1, true] })
  })
})

describe('errors', () => {
  it('surfaces a thrown error as ScriptError with its message, name, code and line', async () => {
    const error = await rejectionOf(
      runIn(sandbox, view, 'const a = 1\n\n  null.boom\nreturn event'),
    )
    expect(error).toBeInstanceOf(ScriptError)
    const scriptError = error as ScriptError
    expect(scriptError.code).toBe('E_SCRIPT')
    expect(scriptError.scriptName).toBe('TypeError')
    expect(scriptError.message).toMatch(/Cannot read properties of null/)
    expect(scriptError.line).toBe(3)
    expect(scriptError.column).toBe(8)
  })

  it('gives the column on the first line relative to the script, not its wrapper', async () => {
    const error = (await rejectionOf(runIn(sandbox, view, 'null.x'))) as ScriptError
    expect(error.line).toBe(1)
    expect(error.column).toBe(6)
  })

  it('keeps the code of a thrown error object', async () => {
    const error = (await rejectionOf(
      runIn(sandbox, view, `const e = new Error('no stock'); e.code = 'E_NO_STOCK'; throw e`),
    )) as ScriptError
    expect(error.scriptCode).toBe('E_NO_STOCK')
    expect(error.message).toBe('no stock')
  })

  it('reports a thrown non-error value', async () => {
    const error = (await rejectionOf(runIn(sandbox, view, `throw 'plain text'`))) as ScriptError
    expect(error.message).toBe('plain text')
    expect(error.scriptName).toBeUndefined()
  })

  it('reports a syntax error with its line', async () => {
    const error = (await rejectionOf(
      runIn(sandbox, view, 'const a = 1\nlet = = 2\nreturn event'),
    )) as ScriptError
    expect(error).toBeInstanceOf(ScriptError)
    expect(error.scriptName).toBe('SyntaxError')
    expect(error.line).toBe(2)
    expect(error.message).not.toMatch(/\[/)
  })

  it('rethrows a host error inside the script with its code and message', async () => {
    await view.set('word', 'hello')
    const result = await runIn(
      sandbox,
      view,
      `try {
         await ctx.cache.increment('word')
       } catch (e) {
         return { data: { code: e.code, name: e.name, message: e.message, isError: e instanceof Error } }
       }`,
    )
    const data = (result.value as { data: Record<string, unknown> }).data
    expect(data.code).toBe('E_NOT_A_NUMBER')
    expect(data.name).toBe('NotANumberError')
    expect(data.isError).toBe(true)
    expect(data.message).toEqual(expect.any(String))
  })

  it('surfaces an uncaught host error as ScriptError with the host code and the line', async () => {
    const error = (await rejectionOf(
      runIn(sandbox, view, `\nawait ctx.cache.set('k', 1, -5)\nreturn event`),
    )) as ScriptError
    expect(error.scriptCode).toBe('E_INVALID_ARGUMENT')
    expect(error.message).toMatch(/ttl/)
    expect(error.line).toBe(2)
  })

  it('checks run options before running anything', async () => {
    const flow = { name: 'orders', runId: 'r', tenant: 'acme' }
    const bad = [
      () =>
        sandbox.run('return event', {
          event: { data: 1 },
          ctx: { cache: view, flow },
          limits: { cpuTime: 0 },
        }),
      () =>
        sandbox.run('return event', {
          event: { data: 1 },
          ctx: { cache: view, flow },
          limits: { maxCalls: 1.5 },
        }),
      () => sandbox.run('return event', { event: [] as never, ctx: { cache: view, flow } }),
      () => sandbox.run('return event', { event: { f: () => 1 }, ctx: { cache: view, flow } }),
      () => sandbox.run('return event', { event: { data: 1 }, ctx: { cache: {} as Cache, flow } }),
      () =>
        sandbox.run('return event', {
          event: { data: 1 },
          ctx: { cache: view, flow: { ...flow, tenant: '' } },
        }),
    ]
    for (const attempt of bad) {
      await expect(attempt()).rejects.toBeInstanceOf(InvalidArgumentError)
    }
    expect((await runIn(sandbox, view, 'return event', { data: 1 })).value).toEqual({ data: 1 })
  })
})

describe('ctx.cache', () => {
  it('reads and writes the flow namespace', async () => {
    const own = flowView(root, 'acme', 'cache-ops')
    await own.set('from-host', new Date('2024-01-02T03:04:05Z'))
    const result = await runIn(
      sandbox,
      own,
      `const out = {}
       out.set = await ctx.cache.set('a', { n: 1, tags: ['x'] }, '1m')
       out.get = await ctx.cache.get('a')
       out.missDefault = await ctx.cache.get('missing', 'fallback')
       out.addFirst = await ctx.cache.add('once', true, 60000)
       out.addAgain = await ctx.cache.add('once', true, 60000)
       out.has = await ctx.cache.has('a')
       out.inc1 = await ctx.cache.increment('n')
       out.inc5 = await ctx.cache.increment('n', 4)
       out.many = await ctx.cache.getMany(['a', 'missing', 'n'])
       out.ttlA = await ctx.cache.ttl('a')
       out.ttlN = await ctx.cache.ttl('n')
       out.ttlMissing = String(await ctx.cache.ttl('missing'))
       out.deleted = await ctx.cache.delete('once')
       out.keys = (await ctx.cache.keys()).sort()
       const when = await ctx.cache.get('from-host')
       out.date = when instanceof Date ? when.toISOString() : typeof when
       return { data: out }`,
    )
    const out = (result.value as { data: Record<string, unknown> }).data
    expect(out).toMatchObject({
      set: true,
      get: { n: 1, tags: ['x'] },
      missDefault: 'fallback',
      addFirst: true,
      addAgain: false,
      has: true,
      inc1: 1,
      inc5: 5,
      many: [{ n: 1, tags: ['x'] }, null, 5],
      ttlN: null,
      ttlMissing: 'undefined',
      deleted: true,
      keys: ['a', 'from-host', 'n'],
      date: '2024-01-02T03:04:05.000Z',
    })
    expect(out.ttlA).toBeGreaterThan(50_000)
    expect(result.calls).toBe(15)
    // The host's view of the same namespace sees the writes.
    expect(await own.get('a')).toEqual({ n: 1, tags: ['x'] })
    expect(await own.get('n')).toBe(5)
    expect(await own.has('once')).toBe(false)
  })

  it('passes misses inside getMany as undefined', async () => {
    const result = await runIn(
      sandbox,
      view,
      `const many = await ctx.cache.getMany(['nothing-here'])
       return { data: many[0] === undefined && many.length === 1 }`,
    )
    expect(result.value).toEqual({ data: true })
  })

  it('refuses undefined values and non-JSON arguments inside the script', async () => {
    const result = await runIn(
      sandbox,
      view,
      `const codes = []
       for (const attempt of [
         () => ctx.cache.set('u', undefined),
         () => ctx.cache.set('m', new Map()),
         () => ctx.cache.get(42),
         () => ctx.cache.getMany('not-an-array'),
       ]) {
         try { await attempt(); codes.push('none') } catch (e) { codes.push(e.code) }
       }
       return { data: codes }`,
    )
    expect(result.value).toEqual({
      data: [
        'E_UNSUPPORTED_VALUE',
        'E_UNSUPPORTED_VALUE',
        'E_INVALID_ARGUMENT',
        'E_INVALID_ARGUMENT',
      ],
    })
    expect(await view.has('u')).toBe(false)
  })

  it('refuses call arguments over maxCallBytes before they leave the isolate', async () => {
    const result = await runIn(
      sandbox,
      view,
      `try { await ctx.cache.set('big', 'x'.repeat(5000)) } catch (e) { return { data: e.code } }`,
      { limits: { maxCallBytes: 1000 } },
    )
    expect(result.value).toEqual({ data: 'E_VALUE_TOO_LARGE' })
    expect(result.calls).toBe(0)
    expect(await view.has('big')).toBe(false)
  })

  it('stops a run after maxCalls ctx calls', async () => {
    const error = await rejectionOf(
      runIn(sandbox, view, 'for (let i = 0; i < 100; i++) await ctx.cache.get("k")\nreturn event', {
        limits: { maxCalls: 10 },
      }),
    )
    expect(error).toBeInstanceOf(ScriptLimitError)
    expect(error.code).toBe('E_SCRIPT_LIMIT')
    expect((await runIn(sandbox, view, 'return event', { data: 'next' })).value).toEqual({
      data: 'next',
    })
  })
})

describe('ctx.locks and ctx.rateLimit', () => {
  it('acquires, refuses, extends and releases locks as plain data', async () => {
    const own = flowView(root, 'acme', 'locks')
    const result = await runIn(
      sandbox,
      own,
      `const lock = await ctx.locks.acquire('job', { ttl: '10s' })
       const second = await ctx.locks.acquire('job', { ttl: '10s' })
       const extended = await ctx.locks.extend(lock, '20s')
       const released = await ctx.locks.release(lock)
       const again = await ctx.locks.acquire('job', { ttl: '10s', owner: 'me' })
       const byOwner = await ctx.locks.release('job', 'me')
       const inside = await ctx.locks.withLock('job', async (l) => typeof l.token, { ttl: '5s' })
       return { data: { token: typeof lock.token, frozen: Object.isFrozen(lock), second, extended,
         released, grew: BigInt(again.token) > BigInt(lock.token), byOwner, inside } }`,
    )
    expect(result.value).toEqual({
      data: {
        token: 'string',
        frozen: true,
        second: null,
        extended: true,
        released: true,
        grew: true,
        byOwner: true,
        inside: 'string',
      },
    })
    expect(await own.locks.holder('job')).toBeUndefined()
  })

  it('withLock throws E_LOCK_TIMEOUT when the lock is held', async () => {
    const own = flowView(root, 'acme', 'locks-held')
    const held = await own.locks.acquire('job', { ttl: '10s' })
    const result = await runIn(
      sandbox,
      own,
      `try { await ctx.locks.withLock('job', () => 1, { ttl: '1s' }) } catch (e) { return { data: e.code } }`,
    )
    expect(result.value).toEqual({ data: 'E_LOCK_TIMEOUT' })
    await held?.release()
  })

  it('releases the locks of a run that was stopped', async () => {
    const own = flowView(root, 'acme', 'locks-stopped')
    await rejectionOf(
      runIn(sandbox, own, `await ctx.locks.acquire('job', { ttl: '1m' }); for (;;) {}`),
    )
    expect(await own.locks.holder('job')).toBeUndefined()
  })

  it('rate-limits through the flow namespace', async () => {
    const own = flowView(root, 'acme', 'limits')
    const source = `const r = await ctx.rateLimit('api', { max: 2, per: '1m' })
      return { data: { allowed: r.allowed, remaining: r.remaining, limit: r.limit } }`
    const results = []
    for (let i = 0; i < 3; i++) results.push((await runIn(sandbox, own, source)).value)
    expect(results).toEqual([
      { data: { allowed: true, remaining: 1, limit: 2 } },
      { data: { allowed: true, remaining: 0, limit: 2 } },
      { data: { allowed: false, remaining: 0, limit: 2 } },
    ])
  })
})

describe('ctx.log', () => {
  it('captures ctx.log and console output with levels', async () => {
    const result = await runIn(
      sandbox,
      view,
      `ctx.log('order', 7, { a: 1 })
       console.warn('careful')
       console.error(new Error('bad').message)
       console.debug(undefined, null)
       return null`,
    )
    expect(result.logs).toEqual([
      { level: 'info', message: 'order 7 {"a":1}' },
      { level: 'warn', message: 'careful' },
      { level: 'error', message: 'bad' },
      { level: 'debug', message: 'undefined null' },
    ])
    expect(result.logsTruncated).toBe(false)
  })

  it('keeps at most maxLogLines lines and maxLogBytes bytes', async () => {
    const lines = await runIn(
      sandbox,
      view,
      'for (let i = 0; i < 1000; i++) ctx.log("line", i)\nreturn null',
      {
        limits: { maxLogLines: 5 },
      },
    )
    expect(lines.logs.map((entry) => entry.message)).toEqual([
      'line 0',
      'line 1',
      'line 2',
      'line 3',
      'line 4',
    ])
    expect(lines.logsTruncated).toBe(true)
    const bytes = await runIn(
      sandbox,
      view,
      'for (let i = 0; i < 10; i++) ctx.log("é".repeat(100))\nreturn null',
      {
        limits: { maxLogBytes: 300 },
      },
    )
    const total = bytes.logs.reduce((sum, entry) => sum + Buffer.byteLength(entry.message), 0)
    expect(total).toBeLessThanOrEqual(300)
    expect(bytes.logs.length).toBeGreaterThan(0)
    expect(bytes.logsTruncated).toBe(true)
  })

  it('attaches the logs to the error of a failed run', async () => {
    const error = (await rejectionOf(
      runIn(sandbox, view, 'ctx.log("before"); throw new Error("after")'),
    )) as ScriptError
    expect(error.logs).toEqual([{ level: 'info', message: 'before' }])
  })
})

describe('ctx.log after awaited ctx calls', () => {
  // A line written after an awaited ctx call used to be able to reach the host after the result;
  // each case runs many times, because whether it did depended on thread timing.
  const ROUNDS = 25

  /** Runs `source` `ROUNDS` times and returns the messages of every run. */
  async function messagesOf(
    source: string,
    cache: Cache = view,
    limits?: Partial<RunLimits>,
  ): Promise<string[][]> {
    const runs: string[][] = []
    for (let i = 0; i < ROUNDS; i++) {
      const options = limits === undefined ? {} : { limits }
      const result = await runIn(sandbox, cache, source, options)
      runs.push(result.logs.map((entry) => entry.message))
    }
    return runs
  }

  it('keeps a line written after an awaited cache call', async () => {
    for (const call of [
      "ctx.cache.increment('after:count')",
      "ctx.cache.get('after:missing')",
      "ctx.cache.set('after:k', 1, '1m')",
      "ctx.cache.getMany(['after:k', 'after:other'])",
    ]) {
      const runs = await messagesOf(`await ${call}; ctx.log('after'); return event`)
      expect(runs, call).toEqual(Array.from({ length: ROUNDS }, () => ['after']))
    }
  })

  it('keeps lines written after awaited lock and rate-limit calls', async () => {
    const own = flowView(root, 'acme', 'log-after-locks')
    for (const [call, line] of [
      ["ctx.locks.acquire('job:' + ctx.flow.runId, { ttl: '2s' })", 'acquired true'],
      ["ctx.locks.release('job', 'nobody')", 'released false'],
      ["ctx.rateLimit('api', { max: 1000, per: '1m' }).then((r) => r.allowed)", 'limited true'],
    ] as const) {
      const [label] = line.split(' ')
      const runs = await messagesOf(
        `const got = await ${call}
         console.warn('${label}', got !== null && got !== false)
         return event`,
        own,
      )
      expect(runs, call).toEqual(Array.from({ length: ROUNDS }, () => [line]))
    }
  })

  it('keeps interleaved lines in the order they were written, with their levels', async () => {
    const result = await runIn(
      sandbox,
      view,
      `ctx.log('start')
       for (let i = 0; i < 5; i++) {
         await ctx.cache.increment('interleaved')
         console.debug('step', i)
       }
       await ctx.cache.delete('interleaved')
       console.error('end')
       return null`,
    )
    expect(result.logs).toEqual([
      { level: 'info', message: 'start' },
      ...[0, 1, 2, 3, 4].map((i) => ({ level: 'debug', message: `step ${i}` })),
      { level: 'error', message: 'end' },
    ])
    const runs = await messagesOf(
      `ctx.log('a'); await ctx.cache.get('y'); console.info('b'); ctx.log('c')
       return event`,
    )
    expect(runs).toEqual(Array.from({ length: ROUNDS }, () => ['a', 'b', 'c']))
  })

  it('keeps every line up to maxLogLines after an await, and marks the rest as dropped', async () => {
    const runs = await messagesOf(
      `await ctx.cache.increment('many')
       for (let i = 0; i < 150; i++) ctx.log('line', i)
       return event`,
      view,
      { maxLogLines: 100 },
    )
    const expected = Array.from({ length: 100 }, (_, i) => `line ${i}`)
    expect(runs).toEqual(Array.from({ length: ROUNDS }, () => expected))
    const truncated = await runIn(
      sandbox,
      view,
      `await ctx.cache.increment('many'); for (let i = 0; i < 150; i++) ctx.log(i); return event`,
      { limits: { maxLogLines: 100 } },
    )
    expect(truncated.logsTruncated).toBe(true)
    const exact = await runIn(
      sandbox,
      view,
      `await ctx.cache.increment('many'); for (let i = 0; i < 100; i++) ctx.log(i); return event`,
      { limits: { maxLogLines: 100 } },
    )
    expect(exact.logs).toHaveLength(100)
    expect(exact.logsTruncated).toBe(false)
    const bytes = await runIn(
      sandbox,
      view,
      `await ctx.cache.increment('many'); for (let i = 0; i < 10; i++) ctx.log('é'.repeat(100))
       return event`,
      { limits: { maxLogBytes: 300 } },
    )
    const total = bytes.logs.reduce((sum, entry) => sum + Buffer.byteLength(entry.message), 0)
    expect(total).toBeLessThanOrEqual(300)
    expect(total).toBeGreaterThan(200)
    expect(bytes.logsTruncated).toBe(true)
  })

  it('attaches lines written after an await to the error of a failing script', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const thrown = (await rejectionOf(
        runIn(
          sandbox,
          view,
          `ctx.log('before'); await ctx.cache.increment('fail'); ctx.log('after')
           throw new Error('boom')`,
        ),
      )) as ScriptError
      expect(thrown).toBeInstanceOf(ScriptError)
      expect(thrown.message).toBe('boom')
      expect(thrown.logs.map((entry) => entry.message)).toEqual(['before', 'after'])
      const invalid = (await rejectionOf(
        runIn(sandbox, view, `await ctx.cache.get('fail'); ctx.log('returning 42'); return 42`),
      )) as ScriptResultError
      expect(invalid).toBeInstanceOf(ScriptResultError)
      expect(invalid.logs).toEqual([{ level: 'info', message: 'returning 42' }])
    }
  })

  it('keeps lines written while the result is converted, and none written after', async () => {
    const runs = await messagesOf(
      `await ctx.cache.get('late')
       Promise.resolve().then(() => Promise.resolve()).then(() => ctx.log('after the result'))
       return { data: { toJSON() { ctx.log('converting'); return 1 } } }`,
    )
    expect(runs).toEqual(Array.from({ length: ROUNDS }, () => ['converting']))
  })
})

describe('runtime check', () => {
  it('refuses to create a sandbox without --no-node-snapshot, saying what to add', () => {
    const module = fileURLToPath(new URL('../src/sandbox/index.ts', import.meta.url))
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { createSandbox } = await import(${JSON.stringify(module)})
         try { await createSandbox(); console.log('created') } catch (e) { console.log(e.code + ': ' + e.message) }`,
      ],
      { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 },
    )
    expect(child.stderr).toBe('')
    expect(child.stdout).toMatch(/^E_SANDBOX_SETUP: .*--no-node-snapshot/)
  })
})

describe('ctx.cache on Redis', () => {
  const prefix = `fcsbx${randomBytes(4).toString('hex')}`
  let redisCache: Cache

  beforeAll(() => {
    redisCache = createCache({ store: redisStore({ url: redisUrl() }), prefix })
  })

  afterAll(async () => {
    await redisCache.close()
    await deleteRedisKeys(`${prefix}*`)
  })

  it('runs the bridge against a Redis-backed namespace', async () => {
    const own = flowView(redisCache, 'acme', 'orders')
    const other = flowView(redisCache, 'globex', 'orders')
    await other.set('seen:1', 'theirs')
    const source = `const first = await ctx.cache.add('seen:' + event.data.id, true, '1h')
      const count = await ctx.cache.increment('count')
      const lock = await ctx.locks.acquire('job', { ttl: '5s' })
      await ctx.locks.release(lock)
      return first ? { data: { id: event.data.id, count, token: lock.token } } : null`
    const first = await runIn(sandbox, own, source, { data: { id: 1 } })
    const duplicate = await runIn(sandbox, own, source, { data: { id: 1 } })
    expect(first.value).toMatchObject({ data: { id: 1, count: 1, token: expect.any(String) } })
    expect(duplicate.value).toBeNull()
    expect(await own.get('count')).toBe(2)
    expect(await own.get('seen:1')).toBe(true)
    expect(await other.get('seen:1')).toBe('theirs')
    expect(await other.has('count')).toBe(false)
  })
})
