/**
 * Hostile scripts: each must be stopped or refused, the host must keep running, the next script
 * must run, and neither the canary environment variable nor the other tenant's canary value may
 * appear in any result, log line or error.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../src/flowcache.js'
import {
  createSandbox,
  ScriptError,
  ScriptMemoryError,
  ScriptTimeoutError,
  type RunLimits,
  type RunResult,
  type Sandbox,
} from '../src/sandbox/index.js'
import { flowView, rejectionOf, runIn } from './helpers/sandbox.js'

const ENV_CANARY = `env-canary-${randomBytes(8).toString('hex')}`
const TENANT_CANARY = `tenant-canary-${randomBytes(8).toString('hex')}`
const ENV_NAME = 'FLOWCACHE_SANDBOX_TEST_CANARY'

/**
 * Script text defining `realm(fn)`: 'isolate' when `fn` was created by the isolate's own
 * Function constructors (plain, async or generator), 'foreign' otherwise, 'none' for no function.
 */
const REALM = `const realm = (fn) => {
  if (typeof fn !== 'function') return 'none'
  const ctor = fn.constructor
  return ctor === Function || (ctor && ctor.constructor === Function && Object.getPrototypeOf(ctor) === Function)
    ? 'isolate' : 'foreign'
}`

let sandbox: Sandbox
let root: Cache
let tenantA: Cache
let tenantB: Cache
/** Every string a hostile run produced: results, logs, error messages, codes and stacks. */
const outputs: string[] = []

beforeAll(async () => {
  process.env[ENV_NAME] = ENV_CANARY
  sandbox = await createSandbox({ memoryLimitMb: 32 })
  root = createCache()
  tenantA = flowView(root, 'A', 'orders')
  tenantB = flowView(root, 'B', 'orders')
  await tenantB.set('secret', TENANT_CANARY)
  await tenantB.set('../secret', TENANT_CANARY)
})

afterAll(async () => {
  delete process.env[ENV_NAME]
  await sandbox.close()
  await root.close()
})

afterEach(async () => {
  // The host survived and the next script runs.
  const next = await runIn(sandbox, tenantA, 'return { data: event.data + 1 }', { data: 41 })
  expect(next.value).toEqual({ data: 42 })
})

function record(result: RunResult): RunResult {
  outputs.push(JSON.stringify(result.value), ...result.logs.map((entry) => entry.message))
  return result
}

async function failure(
  source: string,
  limits?: Partial<RunLimits>,
): Promise<Error & { code?: string }> {
  const options: { tenant: string; limits?: Partial<RunLimits> } = { tenant: 'A' }
  if (limits !== undefined) options.limits = limits
  const error = await rejectionOf(runIn(sandbox, tenantA, source, options))
  outputs.push(String(error), error.message, error.stack ?? '', JSON.stringify(error))
  if (error instanceof ScriptError) outputs.push(String(error.scriptCode), String(error.scriptName))
  if ('logs' in error && Array.isArray(error.logs)) {
    outputs.push(...error.logs.map((entry: { message: string }) => entry.message))
  }
  return error
}

/** Runs a script that may or may not fail: `ok`, or the error's code. */
async function settle(source: string): Promise<string> {
  try {
    await success(source)
    return 'ok'
  } catch (error) {
    const typed = error as Error & { code?: string }
    outputs.push(String(typed), typed.message, typed.stack ?? '')
    return typed.code ?? 'unknown'
  }
}

async function success(source: string, limits?: Partial<RunLimits>): Promise<unknown> {
  const options: { tenant: string; limits?: Partial<RunLimits> } = { tenant: 'A' }
  if (limits !== undefined) options.limits = limits
  const result = record(await runIn(sandbox, tenantA, source, options))
  return (result.value as { data?: unknown } | null)?.data
}

describe('resource exhaustion', () => {
  it('stops while(true){} on its CPU budget', async () => {
    const error = await failure('while (true) {}', { cpuTime: 50 })
    expect(error).toBeInstanceOf(ScriptTimeoutError)
    expect((error as ScriptTimeoutError).budget).toBe('cpu')
    expect((error as ScriptTimeoutError).usedMs).toBeGreaterThanOrEqual(50)
  })

  it('stops an endless loop of awaits (microtasks only)', async () => {
    const error = await failure('for (;;) { await null }', { cpuTime: 50 })
    expect(error).toBeInstanceOf(ScriptTimeoutError)
    expect(error.code).toBe('E_SCRIPT_TIMEOUT')
  })

  it('stops an endless async loop that keeps awaiting the host', async () => {
    const error = await failure(
      `async function again() { await ctx.cache.get('x'); return again() }
       return again()`,
      { cpuTime: 100, wallTime: 300, maxCalls: 1_000_000_000 },
    )
    expect(error).toBeInstanceOf(ScriptTimeoutError)
  })

  it('stops a catastrophic regular expression', async () => {
    const error = await failure(`return { data: /^(a+)+$/.test('a'.repeat(40) + 'b') }`, {
      cpuTime: 50,
    })
    expect(error).toBeInstanceOf(ScriptTimeoutError)
  })

  it('stops a memory bomb on the isolate memory limit', async () => {
    const error = await failure(
      `const hoard = []
       for (;;) hoard.push(new Array(100000).fill(hoard.length))`,
      { cpuTime: 10_000, wallTime: 20_000 },
    )
    expect(error).toBeInstanceOf(ScriptMemoryError)
    expect(error.code).toBe('E_SCRIPT_MEMORY')
  })

  it('stops or refuses an ArrayBuffer bomb', async () => {
    const error = await failure(
      `const hoard = []
       for (;;) hoard.push(new Uint8Array(16 * 1024 * 1024).fill(1))`,
      { cpuTime: 10_000, wallTime: 20_000 },
    )
    expect(['E_SCRIPT_MEMORY', 'E_SCRIPT']).toContain(error.code)
  })

  it('refuses deep recursion with a RangeError', async () => {
    const error = await failure('function down(n) { return down(n + 1) + 1 }\nreturn down(0)', {
      cpuTime: 5000,
    })
    expect(error).toBeInstanceOf(ScriptError)
    expect((error as ScriptError).scriptName).toBe('RangeError')
  })

  it('stops or refuses a 100 MB return value', async () => {
    const error = await failure(`return { data: 'x'.repeat(100 * 1024 * 1024) }`, {
      cpuTime: 10_000,
      wallTime: 20_000,
    })
    expect(['E_SCRIPT_MEMORY', 'E_SCRIPT_RESULT']).toContain(error.code)
  })

  it('refuses a result nested too deeply to encode', async () => {
    const error = await failure(
      `let deep = {}; const top = deep
       for (let i = 0; i < 200000; i++) { deep.next = {}; deep = deep.next }
       return { data: top }`,
      // Generous budgets (liveness bounds only): the run takes about 1s, and on a loaded machine
      // its synchronous part can outlast a 2s budget, which ends it as a timeout instead.
      { cpuTime: '20s', wallTime: '40s' },
    )
    expect(error.code).toBe('E_SCRIPT_RESULT')
  })

  it('keeps a log flood within the caps and stops it on time', async () => {
    const error = await failure(`for (;;) ctx.log('x'.repeat(10000))`, { cpuTime: 50 })
    expect(error).toBeInstanceOf(ScriptTimeoutError)
    const logs = (error as ScriptTimeoutError).logs
    expect(logs.length).toBeLessThanOrEqual(100)
    expect(logs.reduce((sum, entry) => sum + entry.message.length, 0)).toBeLessThanOrEqual(
      64 * 1024,
    )
  })

  it('stops a getter on the returned event that never returns', async () => {
    const error = await failure(
      `Object.defineProperty(event, 'data', { enumerable: true, get() { for (;;) {} } })
       return event`,
      { cpuTime: 50 },
    )
    expect(error).toBeInstanceOf(ScriptTimeoutError)
  })
})

describe('escapes from the isolate', () => {
  it('finds no process through this.constructor.constructor', async () => {
    const error = await failure(`return this.constructor.constructor('return process')()`)
    expect(error).toBeInstanceOf(ScriptError)
    expect((error as ScriptError).scriptName).toBe('ReferenceError')
    expect(error.message).toBe('process is not defined')
  })

  it('finds only the isolate’s own Function behind bridged functions and promises', async () => {
    const data = await success(
      `const probe = (f) => f.constructor.constructor('return [typeof process, typeof require, typeof globalThis.Buffer].join()')()
       const pending = ctx.cache.get('k')
       await pending
       return { data: [probe(ctx.cache.get), probe(ctx.locks), probe(pending), probe(ctx.log), probe(ctx.flow), probe(ctx.connections)] }`,
    )
    expect(data).toEqual(Array(6).fill('undefined,undefined,undefined'))
  })

  it('finds no host prototype on errors thrown by host calls', async () => {
    const data = await success(
      `try { await ctx.cache.set('', 1) } catch (e) {
         return { data: {
           own: Object.getPrototypeOf(e) === Error.prototype,
           ctor: e.constructor === Error,
           escape: e.constructor.constructor('return typeof process')(),
           keys: Object.getOwnPropertyNames(e).sort(),
         } }
       }`,
    )
    expect(data).toEqual({
      own: true,
      ctor: true,
      escape: 'undefined',
      keys: ['code', 'message', 'name', 'stack'],
    })
  })

  it('gets no host frames or receivers through Error.prepareStackTrace', async () => {
    const data = await success(
      `const seen = []
       ${REALM}
       Error.prepareStackTrace = (error, frames) => {
         for (const frame of frames) {
           const self = frame.getThis && frame.getThis()
           const fn = frame.getFunction && frame.getFunction()
           seen.push([String(frame.getFileName()), typeof (self && self.process), realm(fn)])
         }
         return 'trace'
       }
       try { await ctx.cache.increment('k', 'NaN') } catch (e) { e.stack }
       try { await ctx.cache.set(Symbol('x'), 1) } catch (e) { e.stack }
       new Error('here').stack
       return { data: seen }`,
    )
    const frames = data as string[][]
    expect(frames.length).toBeGreaterThan(0)
    for (const [file, processType, escape] of frames) {
      expect(['orders.js', 'flowcache:sandbox', 'undefined', 'null']).toContain(file)
      expect(processType).toBe('undefined')
      expect(['isolate', 'none']).toContain(escape)
    }
  })

  it('walks arguments.callee.caller only through isolate functions', async () => {
    const data = await success(
      `${REALM}
       function climb() {
         const found = []
         let fn = arguments.callee.caller
         for (let i = 0; fn && i < 20; i++) {
           found.push(realm(fn))
           try { fn = fn.caller } catch (e) { break }
         }
         return found
       }
       function outer() { return climb() }
       return { data: outer() }`,
    )
    expect(data).toEqual(expect.arrayContaining(['isolate']))
    expect((data as string[]).every((found) => found === 'isolate')).toBe(true)
  })

  it('traps of a Proxy passed to ctx.cache run in the isolate and only data arrives', async () => {
    const data = await success(
      `const sneaky = new Proxy({}, {
         ownKeys: () => ['a'],
         getOwnPropertyDescriptor: () => ({ value: 1, enumerable: true, configurable: true }),
         get: (_, key) => key === 'toJSON' ? undefined : 1,
       })
       await ctx.cache.set('proxied', sneaky)
       let keyCode
       try { await ctx.cache.get(new Proxy({}, { get: () => 'secret' })) } catch (e) { keyCode = e.code }
       const wrapped = new Proxy(ctx.cache, { get: (target, key) => target[key] })
       return { data: { keyCode, viaProxy: await wrapped.get('secret') === undefined } }`,
    )
    expect(data).toEqual({ keyCode: 'E_INVALID_ARGUMENT', viaProxy: true })
    const stored = await tenantA.get('proxied')
    expect(stored).toEqual({ a: 1 })
    expect(Object.getPrototypeOf(stored)).toBe(Object.prototype)
  })

  it('then and Symbol.species hijacks stay inside the run', async () => {
    const hostThen = Promise.prototype.then
    const outcome = await settle(
      `const nativeThen = Promise.prototype.then
       Promise.prototype.then = function (ok, ko) {
         return nativeThen.call(this, () => ok({ data: 'hijacked' }), ko)
       }
       class Evil extends Promise { static get [Symbol.species]() { return Promise } }
       Object.prototype.then = function (resolve) { resolve({ data: 'thenable' }) }
       return Evil.resolve({ data: await ctx.cache.get('nothing') })`,
    )
    // Whatever the script did to its own promises (here: an endless chain of thenables, stopped
    // on its CPU budget), the host got either plain data or a typed error...
    expect(['E_SCRIPT_TIMEOUT', 'E_SCRIPT', 'ok']).toContain(outcome)
    // ...and the host's promises and objects are untouched, as are the next run's.
    expect(Promise.prototype.then).toBe(hostThen)
    expect((Object.prototype as Record<string, unknown>).then).toBeUndefined()
    const next = await success(
      `return { data: [typeof Object.prototype.then, String(Promise.prototype.then).includes('native code')] }`,
    )
    expect(next).toEqual(['undefined', true])
  })

  it('gets only data from a returned thenable that resolves to getters', async () => {
    const data = await success(
      `return { then(resolve) { resolve({ get data() { return { type: typeof process } } }) } }`,
    )
    expect(data).toEqual({ type: 'undefined' })
  })

  it('has no WebAssembly', async () => {
    const error = await failure(
      `const bytes = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])
       return { data: new WebAssembly.Module(bytes) }`,
    )
    expect((error as ScriptError).scriptName).toBe('ReferenceError')
    expect(error.message).toMatch(/WebAssembly is not defined/)
  })

  it('has no SharedArrayBuffer or Atomics.wait', async () => {
    const data = await success(`return { data: [typeof SharedArrayBuffer, typeof Atomics] }`)
    expect(data).toEqual(['undefined', 'undefined'])
    const error = await failure(
      `Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)\nreturn event`,
    )
    expect((error as ScriptError).scriptName).toBe('ReferenceError')
  })

  it('cannot import() or require() modules', async () => {
    const imported = await failure(
      `const fs = await import('node:fs')\nreturn { data: fs.readFileSync('/etc/hostname', 'utf8') }`,
    )
    expect(imported).toBeInstanceOf(ScriptError)
    const required = await failure(
      `return { data: require('node:fs').readFileSync('/etc/hostname', 'utf8') }`,
    )
    expect((required as ScriptError).scriptName).toBe('ReferenceError')
  })

  it('sees no process, environment, timers, network or host globals', async () => {
    const data = (await success(
      `return { data: {
         names: Object.getOwnPropertyNames(globalThis),
         types: [typeof process, typeof require, typeof module, typeof Buffer, typeof fetch,
                 typeof setTimeout],
         viaEval: eval('typeof process'),
         viaFunction: Function('return typeof this.process')(),
       } }`,
    )) as { names: string[]; types: string[]; viaEval: string; viaFunction: string }
    for (const name of [
      'process',
      'require',
      'module',
      'Buffer',
      'fetch',
      'setTimeout',
      'global',
      'WebAssembly',
    ]) {
      expect(data.names).not.toContain(name)
    }
    expect(data.types.slice(0, 6)).toEqual(Array(6).fill('undefined'))
    expect(data.viaEval).toBe('undefined')
    expect(data.viaFunction).toBe('undefined')
  })

  it('cannot widen its namespace by changing ctx', async () => {
    const data = await success(
      `'use strict'
       const attempts = []
       for (const change of [
         () => { ctx.cache = null },
         () => { ctx.flow.tenant = 'B' },
         () => { ctx.cache.get = () => 'forged' },
         () => { Object.defineProperty(ctx, 'tenant', { value: 'B' }) },
       ]) { try { change(); attempts.push('changed') } catch (e) { attempts.push(e.name) } }
       return { data: { attempts, tenant: ctx.flow.tenant, secret: String(await ctx.cache.get('secret')) } }`,
    )
    expect(data).toEqual({
      attempts: ['TypeError', 'TypeError', 'TypeError', 'TypeError'],
      tenant: 'A',
      secret: 'undefined',
    })
  })
})

describe('namespaces', () => {
  const crafted = [
    '../secret',
    '../../tenant:B/flow:orders/secret',
    'fc.tenantB.k/secret',
    'tenant:B/flow:orders/secret',
    '\u0000secret',
    'secret\u0000',
    '*',
    '>',
    '..',
    '/secret',
    '__proto__',
    'constructor',
    'fc:tenant:B:flow:orders:k:secret',
  ]

  it('keeps crafted keys inside the flow namespace', async () => {
    await tenantA.clear()
    const data = (await success(
      `const keys = ${JSON.stringify(crafted)}
       const reads = {}
       for (const key of keys) reads[key] = await ctx.cache.get(key)
       const many = await ctx.cache.getMany(['secret', '../secret'])
       for (const key of keys) await ctx.cache.set(key, 'from-A')
       const listed = await ctx.cache.keys()
       const patterns = [await ctx.cache.keys('*'), await ctx.cache.keys('../'), await ctx.cache.keys('\\u0000')]
       return { data: { reads, listed, patterns, many } }`,
    )) as {
      reads: Record<string, unknown>
      listed: string[]
      patterns: string[][]
      many: unknown[]
    }
    expect(Object.values(data.reads).every((value) => value === undefined)).toBe(true)
    expect(data.many).toEqual([null, null])
    expect([...data.listed].sort()).toEqual([...crafted].sort())
    expect(data.patterns[0]).toEqual(['*'])
    expect([...(data.patterns[1] ?? [])].sort()).toEqual([
      '../../tenant:B/flow:orders/secret',
      '../secret',
    ])
    // The other tenant, read directly, still has exactly what it had.
    expect((await tenantB.keys()).sort()).toEqual(['../secret', 'secret'])
    expect(await tenantB.get('secret')).toBe(TENANT_CANARY)
    expect(await tenantB.get('../secret')).toBe(TENANT_CANARY)
    // And the writes landed in A.
    for (const key of crafted) expect(await tenantA.get(key)).toBe('from-A')
  })

  it('cannot delete or count in another namespace with crafted keys', async () => {
    await tenantA.clear()
    const data = await success(
      `const out = []
       for (const key of ['secret', '../secret', '../../tenant:B/flow:orders/secret']) {
         out.push(await ctx.cache.delete(key), await ctx.cache.has(key))
       }
       await ctx.cache.increment('../../tenant:B/flow:orders/secret')
       const lock = await ctx.locks.acquire('../../tenant:B/flow:orders/job', { ttl: '5s' })
       return { data: { out, token: typeof lock.token } }`,
    )
    expect(data).toEqual({ out: [false, false, false, false, false, false], token: 'string' })
    expect(await tenantB.get('secret')).toBe(TENANT_CANARY)
    expect(await tenantB.locks.holder('job')).toBeUndefined()
    expect(await tenantB.locks.holder('../../tenant:B/flow:orders/job')).toBeUndefined()
  })
})

describe('canaries', () => {
  it('never appear in any result, log or error of the hostile runs', () => {
    expect(outputs.length).toBeGreaterThan(40)
    const all = outputs.join('\n')
    expect(all).not.toContain(ENV_CANARY)
    expect(all).not.toContain(TENANT_CANARY)
  })
})
