import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { deleteRedisKeys, redisUrl } from '../../flowcache/test/helpers/services.js'
import { redisStore } from '../../flowcache/src/stores/redis/index.js'
import { ClosedError, createCache, InvalidArgumentError, type Cache } from '../src/flowcache.js'
import {
  FlowRunner,
  FlowStepError,
  flowNamespace,
  parseFlow,
  stepCacheNamespace,
  type FlowDefinition,
} from '../src/flows/index.js'
import { ScriptError, ScriptTimeoutError } from '../src/sandbox/index.js'
import { rejectionOf } from './helpers/sandbox.js'

/** A flow from YAML steps (indented under `steps:`), as if loaded from `flows/<name>.yaml`. */
function flowOf(name: string, steps: string, tenant = 'acme'): FlowDefinition {
  const text = `name: ${name}\ntenant: ${tenant}\ntrigger: { http: { method: POST, path: /${name} } }\nsteps:\n${steps}`
  return parseFlow(text, `flows/${name}.yaml`, `${process.cwd()}/flows/${name}.yaml`).flow
}

/**
 * A memoized step that counts its runs in the flow's namespace (`runs:<step>`). It logs before
 * its first await: a line logged after an awaited ctx call can reach the host after the result.
 */
function countingStep(name: string, cache: string): string {
  return `  - name: ${name}
    cache: ${cache}
    script: |
      ctx.log('running', event.data)
      const runs = await ctx.cache.increment('runs:${name}')
      return { data: { ...event.data, runs } }
`
}

let root: Cache
let runner: FlowRunner

beforeAll(() => {
  root = createCache()
  runner = new FlowRunner({ cache: root })
})

afterAll(async () => {
  await runner.close()
  await root.close()
})

describe('running steps', () => {
  it('runs the steps in order, each on the previous result, with the flow namespace', async () => {
    const flow = flowOf(
      'chain',
      `  - name: first
    script: |
      await ctx.cache.set('seen', event.data.id)
      return { data: { id: event.data.id, trail: [ctx.flow.step] } }
  - name: second
    script: |
      return { data: { ...event.data, trail: [...event.data.trail, ctx.flow.step], flow: ctx.flow.name, tenant: ctx.flow.tenant } }
`,
    )
    const result = await runner.run(flow, { data: { id: 7 } }, { runId: 'run-1' })
    expect(result).toMatchObject({
      runId: 'run-1',
      flow: 'chain',
      dropped: false,
      output: { data: { id: 7, trail: ['first', 'second'], flow: 'chain', tenant: 'acme' } },
    })
    expect(result.steps.map((step) => [step.name, step.hit])).toEqual([
      ['first', null],
      ['second', null],
    ])
    expect(await flowNamespace(root, flow).get('seen')).toBe(7)
  })

  it('drops the event when a step returns null: later steps do not run', async () => {
    const flow = flowOf(
      'dedup',
      `  - name: dedup
    script: |
      const first = await ctx.cache.add('seen:' + event.data.id, true, '1h')
      return first ? event : null
  - name: after
    script: |
      await ctx.cache.increment('after')
      return event
`,
    )
    const first = await runner.run(flow, { data: { id: 1 } })
    expect(first).toMatchObject({ dropped: false, output: { data: { id: 1 } } })
    expect(first.steps.map((step) => step.name)).toEqual(['dedup', 'after'])
    const repeat = await runner.run(flow, { data: { id: 1 } })
    expect(repeat).toMatchObject({ dropped: true, output: null })
    expect(repeat.steps.map((step) => step.name)).toEqual(['dedup'])
    expect(await flowNamespace(root, flow).get('after')).toBe(1)
  })

  it('refuses an event that is not a JSON object before running anything', async () => {
    const flow = flowOf('strict', '  - name: s\n    script: return event\n')
    for (const event of [null, [1], 'text', 3]) {
      const error = await rejectionOf(runner.run(flow, event))
      expect(error).toBeInstanceOf(InvalidArgumentError)
      expect(error.message).toMatch(/^event must be a JSON object/)
    }
  })
})

describe('memoized steps', () => {
  it('keys by the template: same key hits without running the script, another key misses', async () => {
    const flow = flowOf(
      'lookup',
      countingStep('customer', "{ key: 'c:{{event.data.customer}}', ttl: 1h }"),
    )
    const first = await runner.run(flow, { data: { customer: 'ann', order: 1 } })
    expect(first.steps).toMatchObject([{ name: 'customer', hit: false }])
    expect(first.steps[0]?.logs).toEqual([
      { level: 'info', message: 'running {"customer":"ann","order":1}' },
    ])
    expect(first.output).toEqual({ data: { customer: 'ann', order: 1, runs: 1 } })
    // Same customer, another order: the cached result of the first run.
    const second = await runner.run(flow, { data: { customer: 'ann', order: 2 } })
    expect(second.steps).toMatchObject([{ name: 'customer', hit: true }])
    expect(second.steps[0]?.logs).toBeUndefined()
    expect(second.output).toEqual(first.output)
    const other = await runner.run(flow, { data: { customer: 'bob', order: 3 } })
    expect(other.steps).toMatchObject([{ hit: false }])
    expect(await flowNamespace(root, flow).get('runs:customer')).toBe(2)
  })

  it('escapes placeholder values so that separators in data cannot make keys collide', async () => {
    const flow = flowOf(
      'pair',
      countingStep('pair', "{ key: '{{event.data.a}}:{{event.data.b}}', ttl: 1h }"),
    )
    await runner.run(flow, { data: { a: 'x:y', b: 'z' } })
    const other = await runner.run(flow, { data: { a: 'x', b: 'y:z' } })
    expect(other.steps[0]?.hit).toBe(false)
    const keys = await flowNamespace(root, flow)
      .namespace(stepCacheNamespace({ name: 'pair' }))
      .keys()
    expect(keys.map((key) => key.slice(key.indexOf(':') + 1)).sort()).toEqual([
      'x%3Ay:z',
      'x:y%3Az',
    ])
  })

  it('without a key, keys by a stable hash of the whole input event', async () => {
    const flow = flowOf('whole', countingStep('whole', '{ ttl: 1h }'))
    expect((await runner.run(flow, { data: { a: 1, b: 2 } })).steps[0]?.hit).toBe(false)
    expect((await runner.run(flow, { data: { b: 2, a: 1 } })).steps[0]?.hit).toBe(true)
    expect((await runner.run(flow, { data: { a: 1, b: 3 } })).steps[0]?.hit).toBe(false)
  })

  it('caches a dropped event too, and a changed script misses', async () => {
    const dropping = flowOf(
      'drops',
      `  - name: gate
    cache: { ttl: 1h }
    script: |
      await ctx.cache.increment('gate')
      return null
  - name: never
    script: return event
`,
    )
    expect(await runner.run(dropping, { data: 1 })).toMatchObject({
      dropped: true,
      steps: [{ hit: false }],
    })
    expect(await runner.run(dropping, { data: 1 })).toMatchObject({
      dropped: true,
      steps: [{ hit: true }],
    })
    const changed = flowOf('drops', countingStep('gate', '{ ttl: 1h }'))
    expect((await runner.run(changed, { data: 1 })).steps[0]?.hit).toBe(false)
  })

  it('fails the step when a placeholder is missing from the event', async () => {
    const flow = flowOf(
      'needs',
      countingStep('needs', "{ key: 'c:{{event.data.customer}}', ttl: 1h }"),
    )
    const error = await rejectionOf(runner.run(flow, { data: {} }))
    expect(error).toBeInstanceOf(FlowStepError)
    expect((error as FlowStepError).cause).toBeInstanceOf(InvalidArgumentError)
    expect(error.message).toMatch(/\{\{event\.data\.customer\}\} is not in the event/)
  })

  it('debug runs run the script and neither read nor write the step cache', async () => {
    const flow = flowOf('debugged', countingStep('step', '{ ttl: 1h }'))
    const view = flowNamespace(root, flow)
    const debugRun = await runner.run(flow, { data: { n: 1 } }, { debug: true })
    expect(debugRun.steps).toMatchObject([{ name: 'step', hit: null, bypassed: true }])
    expect(await view.get('runs:step')).toBe(1)
    // The debug run wrote nothing to the step cache: the next normal run misses.
    expect((await runner.run(flow, { data: { n: 1 } })).steps[0]?.hit).toBe(false)
    expect((await runner.run(flow, { data: { n: 1 } })).steps[0]?.hit).toBe(true)
    // And a debug run does not read the cached result: the script runs again.
    const again = await runner.run(flow, { data: { n: 1 } }, { debug: true })
    expect(again.output).toEqual({ data: { n: 1, runs: 3 } })
    expect(await view.get('runs:step')).toBe(3)
  })
})

describe('errors', () => {
  it('surfaces a script error with flow, step, file and the line in the flow file', async () => {
    const flow = flowOf(
      'broken',
      `  - name: ok
    script: return event
  - name: parse
    script: |
      ctx.log('about to fail')
      const value = event.data.missing.field
      return event
`,
    )
    const error = await rejectionOf(runner.run(flow, { data: {} }, { runId: 'r-9' }))
    expect(error).toBeInstanceOf(FlowStepError)
    const failure = error as FlowStepError
    expect(failure).toMatchObject({
      code: 'E_FLOW_STEP',
      flow: 'broken',
      step: 'parse',
      file: flow.file,
      line: 10,
      runId: 'r-9',
      causeCode: 'E_SCRIPT',
    })
    expect(failure.cause).toBeInstanceOf(ScriptError)
    expect((failure.cause as ScriptError).scriptName).toBe('TypeError')
    expect(failure.logs).toEqual([{ level: 'info', message: 'about to fail' }])
    expect(failure.message).toMatch(
      /^flow 'broken' step 'parse' failed \(flows\/broken\.yaml:10\): .*\[E_SCRIPT\]$/,
    )
  })

  it('keeps the typed cause of a timeout, and points at the step line', async () => {
    const timing = new FlowRunner({ cache: root, limits: { cpuTime: '20ms' } })
    try {
      const flow = flowOf('spin', '  - name: spin\n    script: "while (true) {}"\n')
      const error = (await rejectionOf(timing.run(flow, { data: 1 }))) as FlowStepError
      expect(error).toBeInstanceOf(FlowStepError)
      expect(error.cause).toBeInstanceOf(ScriptTimeoutError)
      expect(error.causeCode).toBe('E_SCRIPT_TIMEOUT')
      expect(error.line).toBe(5)
      // The tenant's sandbox recovers: the next run works.
      const next = flowOf('fine', '  - name: s\n    script: return event\n')
      expect((await timing.run(next, { data: 2 })).output).toEqual({ data: 2 })
    } finally {
      await timing.close()
    }
  })

  it('rejects runs after close()', async () => {
    const closing = new FlowRunner({ cache: root })
    await closing.close()
    await closing.close()
    const flow = flowOf('late', '  - name: s\n    script: return event\n')
    expect(await rejectionOf(closing.run(flow, { data: 1 }))).toBeInstanceOf(ClosedError)
  })
})

describe('namespace isolation', () => {
  it('a script of flow A cannot read flow B keys, nor another tenant, nor a step cache', async () => {
    const writer = flowOf(
      'vault',
      `  - name: write
    cache: { ttl: 1h }
    script: |
      await ctx.cache.set('secret', 'for vault only')
      return { data: 'cached step result' }
`,
    )
    await runner.run(writer, { data: 1 })
    const probe = `  - name: probe
    script: |
      const seen = []
      for (const key of ['secret', '../flow:vault/secret', 'flow:vault/secret', 'tenant:acme/flow:vault/secret']) {
        seen.push(await ctx.cache.get(key))
      }
      return { data: { seen, keys: await ctx.cache.keys() } }
`
    for (const reader of [flowOf('thief', probe), flowOf('vault', probe, 'other-tenant')]) {
      const result = await runner.run(reader, { data: 1 })
      expect(result.output).toEqual({ data: { seen: [null, null, null, null], keys: [] } })
    }
    // The vault flow itself sees its key but not its step cache.
    const own = await runner.run(flowOf('vault', probe), { data: 1 })
    expect(own.output).toEqual({
      data: { seen: ['for vault only', null, null, null], keys: ['secret'] },
    })
  })
})

describe('on Redis', () => {
  const prefix = `fcflows${randomBytes(4).toString('hex')}`
  const caches: Cache[] = []
  const runners: FlowRunner[] = []

  afterAll(async () => {
    await Promise.all(runners.map((each) => each.close()))
    await Promise.all(caches.map((each) => each.close()))
    await deleteRedisKeys(`${prefix}*`)
  })

  /** One replica: its own cache on the shared Redis, its own runner. */
  function replica(): FlowRunner {
    const cache = createCache({ store: redisStore({ url: redisUrl() }), prefix, fallback: 'fail' })
    caches.push(cache)
    const each = new FlowRunner({ cache })
    runners.push(each)
    return each
  }

  it('shares memoized step results between runners, across runs', async () => {
    const flow = flowOf(
      'shared',
      countingStep('rate', "{ key: 'fx:{{event.data.pair}}', ttl: 1h }"),
    )
    const [a, b] = [replica(), replica()]
    const first = await a.run(flow, { data: { pair: 'usd-eur' } })
    expect(first.steps).toMatchObject([{ hit: false }])
    const second = await b.run(flow, { data: { pair: 'usd-eur' } })
    expect(second.steps).toMatchObject([{ hit: true }])
    expect(second.output).toEqual(first.output)
    expect((await b.run(flow, { data: { pair: 'usd-gbp' } })).steps).toMatchObject([{ hit: false }])
    expect((await a.run(flow, { data: { pair: 'usd-gbp' } })).steps).toMatchObject([{ hit: true }])
    expect((await b.run(flow, { data: { pair: 'usd-eur' } }, { debug: true })).steps).toMatchObject(
      [{ hit: null, bypassed: true }],
    )
    expect(await flowNamespace(caches[0]!, flow).get('runs:rate')).toBe(3)
  })
})
