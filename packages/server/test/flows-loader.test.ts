import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  FlowDefinitions,
  FlowValidationError,
  loadFlowFile,
  loadFlowsDir,
  parseFlow,
  type FlowIssue,
} from '../src/flows/index.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-flows-loader-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

const ORDERS = `name: orders
tenant: acme
trigger:
  http: { method: post, path: /orders/:id }
steps:
  - name: dedup
    script: |
      const first = await ctx.cache.add('seen:' + event.data.id, true, '1h')
      if (!first) return null
      return event
  - name: enrich
    cache: { key: 'customer:{{event.data.customer}}', ttl: 5m }
    script: "return { ...event, enriched: true }"
`

/** The issues a text is rejected with, as `line:col path: message` strings. */
function issuesOf(text: string, file = 'flows/bad.yaml'): FlowIssue[] {
  try {
    parseFlow(text, file)
  } catch (error) {
    expect(error).toBeInstanceOf(FlowValidationError)
    const invalid = error as FlowValidationError
    expect(invalid.code).toBe('E_FLOW_INVALID')
    expect(invalid.file).toBe(file)
    return [...invalid.issues]
  }
  return expect.fail('expected the flow to be rejected')
}

function where(issue: FlowIssue): string {
  return `${issue.line}:${issue.column} ${issue.path}`
}

describe('valid flows', () => {
  it('parses every field, with defaults, lines and the revision', () => {
    const { flow, namePosition } = parseFlow(ORDERS, 'flows/orders.yaml', '/abs/orders.yaml')
    expect(flow).toEqual({
      name: 'orders',
      tenant: 'acme',
      file: '/abs/orders.yaml',
      revision: createHash('sha256').update(ORDERS).digest('hex'),
      trigger: { kind: 'http', method: 'POST', path: '/orders/:id' },
      requireLeaderElection: false,
      steps: [
        {
          name: 'dedup',
          script:
            "const first = await ctx.cache.add('seen:' + event.data.id, true, '1h')\nif (!first) return null\nreturn event\n",
          line: 6,
          scriptLine: 8,
        },
        {
          name: 'enrich',
          script: 'return { ...event, enriched: true }',
          cache: { key: 'customer:{{event.data.customer}}', ttlMs: 300_000 },
          line: 11,
          scriptLine: 13,
        },
      ],
    })
    expect(namePosition).toEqual({ line: 1, column: 7 })
  })

  it('reads schedule and events triggers, tenant default and leader election', () => {
    const steps = 'steps:\n  - name: only\n    script: return event\n'
    const schedule = parseFlow(
      `name: tick\ntrigger:\n  schedule: { every: 30s }\nrequire_leader_election: true\n${steps}`,
      'tick.yaml',
    ).flow
    expect(schedule.tenant).toBe('default')
    expect(schedule.trigger).toEqual({ kind: 'schedule', everyMs: 30_000 })
    expect(schedule.requireLeaderElection).toBe(true)
    expect(
      parseFlow(`name: t\ntrigger: { schedule: { every: 1500 } }\n${steps}`, 'a').flow.trigger,
    ).toEqual({ kind: 'schedule', everyMs: 1500 })
    const sources = [
      ['{ file: events.jsonl }', { kind: 'file', path: 'events.jsonl' }],
      ['{ stdin: true }', { kind: 'stdin' }],
      ['{ nats: { subject: orders.created } }', { kind: 'nats', subject: 'orders.created' }],
      [
        "{ nats: { subject: 'orders.>', url: 'nats://10.0.0.1:4222' } }",
        { kind: 'nats', subject: 'orders.>', url: 'nats://10.0.0.1:4222' },
      ],
    ] as const
    for (const [yaml, source] of sources) {
      const flow = parseFlow(`name: e\ntrigger: { events: ${yaml} }\n${steps}`, 'e.yaml').flow
      expect(flow.trigger).toEqual({ kind: 'events', source })
    }
  })

  it('keeps no scriptLine for a folded multi-line script, whose lines do not map', () => {
    const flow = parseFlow(
      'name: f\ntrigger: { schedule: { every: 1s } }\nsteps:\n  - name: s\n    script: >\n      return\n      event\n',
      'f.yaml',
    ).flow
    expect(flow.steps[0]?.scriptLine).toBeUndefined()
    expect(flow.steps[0]?.line).toBe(4)
  })
})

describe('invalid flows', () => {
  it('names file, line, column and field of each problem, all at once', () => {
    const text = `name: bad name
trigger:
  http: { method: FETCH, path: orders }
stpes: 1
steps:
  - name: a
    script: return event
  - name: b
    script: ""
    cache:
      key: '{{data.id}}'
      ttl: soon
  - script: 3
`
    const issues = issuesOf(text)
    expect(issues.map(where)).toEqual([
      '1:7 name',
      '3:19 trigger.http.method',
      '3:32 trigger.http.path',
      '4:1 stpes',
      '9:13 steps[1].script',
      '11:12 steps[1].cache.key',
      '12:12 steps[1].cache.ttl',
      '13:5 steps[2].name',
      '13:13 steps[2].script',
    ])
    const byPath = new Map(issues.map((issue) => [issue.path, issue.message]))
    expect(byPath.get('name')).toMatch(/letters, digits/)
    expect(byPath.get('trigger.http.method')).toBe('must be one of GET, POST, PUT, PATCH, DELETE')
    expect(byPath.get('stpes')).toMatch(/^is not a field here \(known: name, tenant/)
    expect(byPath.get('steps[1].cache.ttl')).toMatch(/^must be a duration like '5m'.*got 'soon'$/)
    expect(byPath.get('steps[1].cache.key')).toMatch(/not a path into the event/)
    expect(byPath.get('steps[2].name')).toBe('is required')
    expect(byPath.get('steps[2].script')).toMatch(/got number 3$/)
  })

  it('formats the message as file:line:col field: message, one line per problem', () => {
    try {
      parseFlow(
        'name: x\ntrigger: { schedule: { every: 1s } }\nsteps:\n  - name: s\n    script: return event\n    cache: { ttl: -5 }\n',
        'flows/orders.yaml',
      )
      expect.fail('expected a FlowValidationError')
    } catch (error) {
      expect((error as Error).message).toBe(
        "invalid flow file: flows/orders.yaml:6:19 steps[0].cache.ttl: must be a duration like '5m' (milliseconds, or a string with units ms, s, m, h, d, w); got number -5",
      )
    }
  })

  it('refuses zero or several triggers, and an events trigger with zero or several sources', () => {
    const steps = 'steps:\n  - name: s\n    script: return event\n'
    expect(
      issuesOf(
        `name: x\ntrigger:\n  http: { method: GET, path: / }\n  schedule: { every: 1m }\n${steps}`,
      ).map((issue) => `${where(issue)}: ${issue.message}`),
    ).toEqual(['3:3 trigger: must have exactly one of http, schedule, events; got several'])
    expect(issuesOf(`name: x\ntrigger: {}\n${steps}`)[0]?.message).toMatch(/got none$/)
    expect(issuesOf(`name: x\ntrigger: { events: {} }\n${steps}`)[0]).toMatchObject({
      path: 'trigger.events',
      message: 'must have exactly one of file, stdin, nats; got none',
    })
    expect(
      issuesOf(`name: x\ntrigger: { events: { stdin: true, file: a.jsonl } }\n${steps}`)[0]
        ?.message,
    ).toMatch(/got several$/)
    expect(issuesOf(`name: x\ntrigger: { events: { stdin: false } }\n${steps}`)[0]).toMatchObject({
      path: 'trigger.events.stdin',
      message: 'must be true; got boolean false',
    })
  })

  it('refuses require_leader_election on an http flow, saying why', () => {
    const issues = issuesOf(
      'name: x\ntrigger: { http: { method: GET, path: /x } }\nrequire_leader_election: true\nsteps:\n  - name: s\n    script: return event\n',
    )
    expect(issues).toHaveLength(1)
    expect(where(issues[0]!)).toBe('3:26 require_leader_election')
    expect(issues[0]?.message).toMatch(/every replica serves HTTP/)
  })

  it('refuses duplicate step names, missing fields and an empty step list', () => {
    const duplicate = issuesOf(
      'name: x\ntrigger: { schedule: { every: 1s } }\nsteps:\n  - name: a\n    script: return event\n  - name: a\n    script: return event\n',
    )
    expect(duplicate.map(where)).toEqual(['6:11 steps[1].name'])
    expect(duplicate[0]?.message).toMatch(/already the name of steps\[0\]/)
    const missing = issuesOf('tenant: acme\n')
    expect(missing.map((issue) => `${where(issue)}: ${issue.message}`)).toEqual([
      '1:1 name: is required',
      '1:1 trigger: is required',
      '1:1 steps: is required',
    ])
    expect(issuesOf('name: x\ntrigger: { schedule: { every: 1s } }\nsteps: []\n')[0]).toMatchObject(
      {
        path: 'steps',
        line: 3,
        message: 'must have at least one step',
      },
    )
    expect(issuesOf('')[0]).toMatchObject({ path: '', line: 1, column: 1 })
    expect(issuesOf('- a\n- b\n')[0]?.message).toMatch(/^must be a mapping .* got a list$/)
  })

  it('reports YAML syntax errors with their position', () => {
    const issues = issuesOf('name: x\nsteps: [\n  - a\n')
    expect(issues.length).toBeGreaterThan(0)
    expect(issues[0]).toMatchObject({ file: 'flows/bad.yaml', line: 3, column: 3, path: '' })
    expect(issues[0]?.message).toMatch(/^YAML syntax error: /)
    const duplicateKey = issuesOf('name: x\nname: y\n')
    expect(duplicateKey[0]).toMatchObject({ line: 2, column: 1 })
    expect(duplicateKey[0]?.message).toMatch(/unique/)
  })
})

describe('loadFlowFile and loadFlowsDir', () => {
  it('loads a file with its absolute path, and reports an unreadable one', async () => {
    const file = join(dir, 'single.yaml')
    await writeFile(file, ORDERS)
    const flow = await loadFlowFile(file)
    expect(flow.file).toBe(file)
    expect(flow.name).toBe('orders')
    const missing = join(dir, 'missing.yaml')
    await expect(loadFlowFile(missing)).rejects.toMatchObject({
      code: 'E_FLOW_INVALID',
      issues: [{ file: missing, line: 1, column: 1, path: '' }],
    })
  })

  it('returns the good flows and one error per bad file, duplicates naming both files', async () => {
    const flows = join(dir, 'flows')
    await rm(flows, { recursive: true, force: true })
    await import('node:fs/promises').then((fs) => fs.mkdir(flows))
    await writeFile(join(flows, 'a-orders.yaml'), ORDERS)
    await writeFile(join(flows, 'b-broken.yml'), 'name: broken\ntrigger: {}\nsteps: []\n')
    await writeFile(join(flows, 'c-again.yaml'), ORDERS.replace('tenant: acme', 'tenant: other'))
    await writeFile(
      join(flows, 'd-tick.yaml'),
      'name: tick\ntrigger: { schedule: { every: 1m } }\nsteps:\n  - name: s\n    script: return event\n',
    )
    await writeFile(join(flows, 'notes.txt'), 'not a flow')
    const { flows: loaded, errors } = await loadFlowsDir(flows)
    expect(loaded.map((flow) => flow.name)).toEqual(['orders', 'tick'])
    expect(loaded[0]?.file).toBe(join(flows, 'a-orders.yaml'))
    expect(errors.map((error) => error.file)).toEqual([
      join(flows, 'b-broken.yml'),
      join(flows, 'c-again.yaml'),
    ])
    expect(errors[0]?.issues.map((issue) => issue.path)).toEqual(['trigger', 'steps'])
    expect(errors[1]?.issues).toEqual([
      {
        file: join(flows, 'c-again.yaml'),
        line: 1,
        column: 7,
        path: 'name',
        message: `flow 'orders' is already defined in ${join(flows, 'a-orders.yaml')}:1:7; flow names must be unique, rename one of them`,
      },
    ])
    await expect(loadFlowsDir(join(dir, 'nowhere'))).rejects.toBeInstanceOf(FlowValidationError)
  })
})

describe('FlowDefinitions: the definition cache', () => {
  it('parses a revision once: then memory hits, then cache-file hits in a new process', async () => {
    const file = join(dir, 'cached.yaml')
    const cacheDir = join(dir, 'definitions-1')
    await writeFile(file, ORDERS)
    const definitions = new FlowDefinitions({ dir: cacheDir })
    const first = await definitions.load(file)
    expect(first).toEqual(parseFlow(ORDERS, file, file).flow)
    expect(definitions.stats()).toMatchObject({ parses: 1, memoryHits: 0, diskHits: 0, written: 1 })
    expect(await readdir(cacheDir)).toEqual([`${first.revision}.json`])
    expect(await definitions.load(file)).toEqual(first)
    expect(definitions.stats()).toMatchObject({ parses: 1, memoryHits: 1, diskHits: 0 })

    // A fresh cache (another process) over the same folder reads the cache file, never the YAML.
    const restarted = new FlowDefinitions({ dir: cacheDir })
    expect(await restarted.load(file)).toEqual(first)
    expect(await restarted.load(file)).toEqual(first)
    expect(restarted.stats()).toMatchObject({ parses: 0, diskHits: 1, memoryHits: 1, written: 0 })
  })

  it('gives a changed file a new revision, parsed once', async () => {
    const file = join(dir, 'changing.yaml')
    const definitions = new FlowDefinitions({ dir: join(dir, 'definitions-2') })
    await writeFile(file, ORDERS)
    const before = await definitions.load(file)
    await writeFile(file, ORDERS.replace('tenant: acme', 'tenant: beta'))
    const after = await definitions.load(file)
    expect(after.revision).not.toBe(before.revision)
    expect(after.tenant).toBe('beta')
    await definitions.load(file)
    expect(definitions.stats()).toMatchObject({ parses: 2, memoryHits: 1, written: 2 })
    // Back to the first content: its revision is still cached.
    await writeFile(file, ORDERS)
    expect(await definitions.load(file)).toEqual(before)
    expect(definitions.stats().parses).toBe(2)
  })

  it('ignores and rewrites a corrupt cache file', async () => {
    const file = join(dir, 'corrupt.yaml')
    const cacheDir = join(dir, 'definitions-3')
    await writeFile(file, ORDERS)
    const good = await new FlowDefinitions({ dir: cacheDir }).load(file)
    const cacheFile = join(cacheDir, `${good.revision}.json`)
    const stored = await readFile(cacheFile, 'utf8')
    const corruptions = [
      stored.slice(0, stored.length / 2),
      '',
      JSON.stringify({ ...JSON.parse(stored), revision: 'f'.repeat(64) }),
      JSON.stringify({ ...JSON.parse(stored), format: 0 }),
      stored.replace('"steps":[', '"steps":[1,'),
    ]
    for (const corruption of corruptions) {
      await writeFile(cacheFile, corruption)
      const definitions = new FlowDefinitions({ dir: cacheDir })
      expect(await definitions.load(file)).toEqual(good)
      expect(definitions.stats()).toMatchObject({ corrupt: 1, parses: 1, diskHits: 0, written: 1 })
      expect(await readFile(cacheFile, 'utf8')).toBe(stored)
    }
  })

  it('does not cache invalid files, keeps memory only with dir: null, and loads folders', async () => {
    const bad = join(dir, 'invalid.yaml')
    await writeFile(bad, 'name: x\n')
    const definitions = new FlowDefinitions({ dir: null })
    await expect(definitions.load(bad)).rejects.toBeInstanceOf(FlowValidationError)
    await expect(definitions.load(bad)).rejects.toBeInstanceOf(FlowValidationError)
    expect(definitions.stats()).toMatchObject({ parses: 2, written: 0, inMemory: 0 })

    const flows = join(dir, 'flows-cached')
    await import('node:fs/promises').then((fs) => fs.mkdir(flows))
    await writeFile(join(flows, 'orders.yaml'), ORDERS)
    await writeFile(join(flows, 'bad.yaml'), 'name: x\n')
    const first = await definitions.loadDir(flows)
    const second = await definitions.loadDir(flows)
    expect(second.flows).toEqual(first.flows)
    expect(first.flows.map((flow) => flow.name)).toEqual(['orders'])
    expect(second.errors).toHaveLength(1)
    expect(definitions.stats()).toMatchObject({ memoryHits: 1 })
  })

  it('checks its options', () => {
    expect(() => new FlowDefinitions({ maxInMemory: 0 })).toThrow(/maxInMemory/)
    expect(() => new FlowDefinitions({ dir: '' })).toThrow(/dir/)
  })
})
