/**
 * Connections: a flow lists the entries of the host's connections file its scripts may read
 * (`connections: [crm]`) and sees exactly those as `ctx.connections`. The dir host loads the file
 * as a refreshing resource: reloaded on a cadence, the last good copy served while it is broken,
 * loaded fresh for debug runs, dropped by `clearResources()`.
 */
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  createCache,
  InvalidArgumentError,
  ManualClock,
  silentLogger,
  type Cache,
  type Logger,
} from '../src/flowcache.js'
import {
  ConnectionMissingError,
  FlowDefinitions,
  FlowRunner,
  FlowValidationError,
  parseFlow,
  type FlowDefinition,
} from '../src/flows/index.js'
import { createFlowHostFromDir, type DirFlowHost } from '../src/host/index.js'
import {
  createRefreshingResource,
  ManualScheduler,
  ResourceLoadError,
  ResourceParseError,
} from '../src/resources/index.js'
import { RecordingRunner, waitUntil } from './helpers/host.js'
import { rejectionOf } from './helpers/sandbox.js'

/** A logger that keeps its lines. */
function recordingLogger(): Logger & { lines: { level: string; message: string }[] } {
  const lines: { level: string; message: string }[] = []
  return {
    lines,
    info: (message) => lines.push({ level: 'info', message }),
    warn: (message) => lines.push({ level: 'warn', message }),
    error: (message) => lines.push({ level: 'error', message }),
  }
}

/** The script of the test flows: answers with what it sees as `ctx.connections`. */
const READ_CONNECTIONS = `await ctx.cache.set('ran', true)
      const seen = ctx.connections
      return { data: {
        connections: seen,
        names: Object.keys(seen).sort(),
        frozen: Object.isFrozen(seen) && Object.values(seen).every((value) => Object.isFrozen(value)),
      } }`

/** A flow file: an HTTP flow at `/<name>` declaring `connections` (left out when undefined). */
function flowFile(name: string, tenant: string, connections: string[] | undefined): string {
  return `name: ${name}
tenant: ${tenant}
${connections === undefined ? '' : `connections: [${connections.join(', ')}]\n`}trigger:
  http: { method: POST, path: /${name} }
steps:
  - name: read
    script: |
      ${READ_CONNECTIONS}
`
}

let dir: string
let connectionsPath: string
let cache: Cache
let host: DirFlowHost | undefined

/** Replaces the connections file in one step, so a reload never reads half of it. */
async function writeConnections(text: string): Promise<void> {
  const temporary = `${connectionsPath}.tmp`
  await writeFile(temporary, text)
  await rename(temporary, connectionsPath)
}

/** What the flow at `/<name>` saw as `ctx.connections`. */
async function seenBy(
  name: string,
  debug = false,
): Promise<{ connections: Record<string, unknown>; names: string[]; frozen: boolean }> {
  if (host === undefined) throw new Error('no host')
  const answer = await host.dispatch('POST', `/${name}`, {}, { debug })
  if (answer.kind !== 'ok') throw new Error(`/${name} answered ${answer.kind}`)
  return (answer.result.output as { data: never }).data
}

/** Whether the flow at `/<name>` ran a step (its script sets `ran` first). */
async function ran(name: string, tenant = 'acme'): Promise<boolean> {
  return (await cache.namespace(`tenant:${tenant}`).namespace(`flow:${name}`).get('ran')) === true
}

const CRM_V1 = `crm:
  url: https://crm.example.com
  apiKey: k-1
billing:
  url: https://billing.example.com
warehouse:
  dsn: postgres://wh
`

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fc-connections-'))
  connectionsPath = join(dir, 'connections.yaml')
  await writeFile(join(dir, 'crm.yaml'), flowFile('crm', 'acme', ['crm']))
  await writeFile(join(dir, 'none.yaml'), flowFile('none', 'acme', undefined))
  await writeConnections(CRM_V1)
  cache = createCache({ logger: silentLogger })
})

afterEach(async () => {
  await host?.stop()
  host = undefined
  await cache.close()
  await rm(dir, { recursive: true, force: true })
})

/** A dir host on `dir` with the connections file. */
function startHost(options: { refreshEvery?: string; logger?: Logger } = {}): Promise<DirFlowHost> {
  const created = createFlowHostFromDir({
    cache,
    dir,
    definitionsCache: { dir: null },
    logger: options.logger ?? silentLogger,
    connectionsFile: connectionsPath,
    connectionsRefreshEvery: options.refreshEvery ?? '1h',
  })
  host = created
  return created.start().then(() => created)
}

describe('ctx.connections', () => {
  it('holds the declared connection, frozen, and nothing the flow did not declare', async () => {
    await startHost()
    const seen = await seenBy('crm')
    expect(seen.connections).toEqual({ crm: { url: 'https://crm.example.com', apiKey: 'k-1' } })
    expect(seen.names).toEqual(['crm'])
    expect(seen.frozen).toBe(true)
  })

  it('is empty for a flow that declares no connections', async () => {
    await startHost()
    const seen = await seenBy('none')
    expect(seen.connections).toEqual({})
    expect(seen.frozen).toBe(true)
  })

  it('a declared name missing from the file fails the run with E_CONNECTION_MISSING before any step', async () => {
    await writeFile(join(dir, 'ledger.yaml'), flowFile('ledger', 'acme', ['crm', 'ledger']))
    await startHost()
    const error = await rejectionOf(seenBy('ledger'))
    expect(error).toBeInstanceOf(ConnectionMissingError)
    const missing = error as ConnectionMissingError
    expect(missing.code).toBe('E_CONNECTION_MISSING')
    expect(missing.flow).toBe('ledger')
    expect(missing.connection).toBe('ledger')
    expect(missing.file).toBe(connectionsPath)
    expect(missing.flowFile).toBe(join(dir, 'ledger.yaml'))
    expect(missing.message).toContain(`'ledger'`)
    expect(missing.message).toContain(connectionsPath)
    expect(await ran('ledger')).toBe(false)
    const recent = host?.status().flows.find((flow) => flow.name === 'ledger')?.recent
    expect(recent?.[0]?.error?.code).toBe('E_CONNECTION_MISSING')
  })

  it("another tenant's flow sees only the entries it declared", async () => {
    await writeFile(join(dir, 'invoices.yaml'), flowFile('invoices', 'beta', ['billing']))
    // A name of another entry that only looks like a property of every object.
    await writeFile(join(dir, 'sneaky.yaml'), flowFile('sneaky', 'beta', ['constructor']))
    await startHost()
    const beta = await seenBy('invoices')
    expect(beta.connections).toEqual({ billing: { url: 'https://billing.example.com' } })
    expect(beta.names).toEqual(['billing'])
    const acme = await seenBy('crm')
    expect(acme.names).toEqual(['crm'])
    const error = await rejectionOf(seenBy('sneaky'))
    expect(error).toBeInstanceOf(ConnectionMissingError)
    expect(await ran('sneaky', 'beta')).toBe(false)
  })
})

describe('the connections file as a refreshing resource', () => {
  it('a changed file is seen after the next refresh', async () => {
    await startHost({ refreshEvery: '50ms' })
    expect((await seenBy('crm')).connections).toMatchObject({ crm: { apiKey: 'k-1' } })
    await writeConnections(CRM_V1.replace('k-1', 'k-2'))
    // Polled through real runs (each reads the held copy), within a generous liveness bound.
    let apiKey: unknown
    const started = performance.now()
    while (apiKey !== 'k-2' && performance.now() - started < 10_000) {
      apiKey = ((await seenBy('crm')).connections.crm as { apiKey: string }).apiKey
      if (apiKey !== 'k-2') await sleep(10)
    }
    expect(apiKey).toBe('k-2')
    expect(host?.status().resources.connections?.loads).toBeGreaterThanOrEqual(2)
  })

  it('a broken file keeps the last good connections, counts and logs the failure', async () => {
    const logger = recordingLogger()
    await startHost({ refreshEvery: '50ms', logger })
    await writeConnections('crm: [unclosed\n')
    await waitUntil(
      () => (host?.status().resources.connections?.failures ?? 0) >= 1,
      'a failed reload',
    )
    const seen = await seenBy('crm')
    expect(seen.connections).toEqual({ crm: { url: 'https://crm.example.com', apiKey: 'k-1' } })
    const stats = host?.status().resources.connections
    expect(stats).toMatchObject({
      name: connectionsPath,
      hasValue: true,
      stale: true,
      running: true,
    })
    expect(stats?.lastError).toContain(connectionsPath)
    const warning = logger.lines.find((line) =>
      line.message.includes('serving the last good value'),
    )
    expect(warning?.level).toBe('warn')

    // A document that parses but is not a mapping is refused the same way.
    await writeConnections('- crm\n- billing\n')
    await waitUntil(
      () => host?.status().resources.connections?.lastError?.includes('must be a mapping') === true,
      'a refused document',
    )
    expect(host?.status().resources.connections?.stale).toBe(true)
    expect((await seenBy('crm')).connections).toMatchObject({ crm: { apiKey: 'k-1' } })
  })

  it('a debug run sees a change at once; normal runs keep the held copy until the refresh', async () => {
    await startHost({ refreshEvery: '1h' })
    expect((await seenBy('crm')).connections).toMatchObject({ crm: { apiKey: 'k-1' } })
    await writeConnections(CRM_V1.replace('k-1', 'k-debug'))
    expect((await seenBy('crm', true)).connections).toMatchObject({ crm: { apiKey: 'k-debug' } })
    expect((await seenBy('crm')).connections).toMatchObject({ crm: { apiKey: 'k-1' } })
    expect(host?.status().resources.connections).toMatchObject({ loads: 1, debugLoads: 1 })
  })

  it('a debug run with a broken file fails with E_RESOURCE_LOAD; normal runs keep working', async () => {
    await startHost({ refreshEvery: '1h' })
    await writeConnections('crm: [unclosed\n')
    const error = await rejectionOf(seenBy('crm', true))
    expect(error).toBeInstanceOf(ResourceLoadError)
    expect(error.cause).toBeInstanceOf(ResourceParseError)
    expect((await seenBy('crm')).connections).toMatchObject({ crm: { apiKey: 'k-1' } })
  })

  it('clearResources() drops the held copy: the next run loads the file again', async () => {
    await startHost({ refreshEvery: '1h' })
    expect((await seenBy('crm')).connections).toMatchObject({ crm: { apiKey: 'k-1' } })
    await writeConnections(CRM_V1.replace('k-1', 'k-cleared'))
    expect((await seenBy('crm')).connections).toMatchObject({ crm: { apiKey: 'k-1' } })
    host?.clearResources()
    expect(host?.status().resources.connections?.hasValue).toBe(false)
    expect((await seenBy('crm')).connections).toMatchObject({ crm: { apiKey: 'k-cleared' } })
    expect(host?.status().resources.connections).toMatchObject({ hasValue: true, loads: 2 })
  })

  it('a missing file makes start() reject with E_RESOURCE_LOAD naming it, and leaves nothing running', async () => {
    await rm(connectionsPath)
    host = createFlowHostFromDir({
      cache,
      dir,
      definitionsCache: { dir: null },
      logger: silentLogger,
      connectionsFile: connectionsPath,
    })
    const error = await rejectionOf(host.start())
    expect(error).toBeInstanceOf(ResourceLoadError)
    expect(error.message).toContain(`${connectionsPath}: the file does not exist`)
    expect(host.status().resources.connections).toMatchObject({ running: false, hasValue: false })
    expect(host.status().resources.connections?.nextLoadAt).toBeNull()
  })

  it('stop() stops the reloads; status() has no resources without a connections file', async () => {
    const started = await startHost({ refreshEvery: '50ms' })
    expect(started.status().resources.connections?.running).toBe(true)
    await started.stop()
    expect(started.status().resources.connections).toMatchObject({
      running: false,
      nextLoadAt: null,
    })

    host = createFlowHostFromDir({
      cache,
      dir,
      definitionsCache: { dir: null },
      logger: silentLogger,
    })
    await host.start()
    expect(host.status().resources).toEqual({})
    expect((await seenBy('none')).connections).toEqual({})
    const error = await rejectionOf(seenBy('crm'))
    expect(error).toBeInstanceOf(ConnectionMissingError)
    expect((error as ConnectionMissingError).file).toBeUndefined()
    expect(error.message).toContain('the host has no connections file')
  })

  it('refuses bad options before any I/O', () => {
    const base = { cache, dir, logger: silentLogger }
    expect(() => createFlowHostFromDir({ ...base, connectionsFile: '' })).toThrow(
      InvalidArgumentError,
    )
    expect(() =>
      createFlowHostFromDir({
        ...base,
        connectionsFile: connectionsPath,
        runner: new RecordingRunner(),
      }),
    ).toThrow(/connectionsFile .*runner/)
    expect(() => createFlowHostFromDir({ ...base, connectionsRefreshEvery: '1m' })).toThrow(
      /connectionsRefreshEvery has no effect without connectionsFile/,
    )
    expect(() =>
      createFlowHostFromDir({
        ...base,
        connectionsFile: connectionsPath,
        connectionsRefreshEvery: 'soon',
      }),
    ).toThrow(InvalidArgumentError)
  })
})

describe('FlowRunner with a connections resource', () => {
  /** A flow declaring `connections`, as if loaded from `flows/<name>.yaml`. */
  function flowOf(name: string, connections: string): FlowDefinition {
    const text = `name: ${name}\n${connections}trigger: { http: { method: POST, path: /${name} } }\nsteps:\n  - name: read\n    script: |\n      return { data: ctx.connections }\n`
    return parseFlow(text, `flows/${name}.yaml`).flow
  }

  it('hands each run a copy: what the resource holds never reaches the script by reference', async () => {
    const clock = new ManualClock()
    const held = { crm: { url: 'https://crm.example.com', tags: ['a'] }, other: { secret: 's' } }
    let loads = 0
    const connections = createRefreshingResource({
      name: 'connections',
      load: () => {
        loads++
        return held
      },
      clock,
      scheduler: new ManualScheduler(clock),
    })
    const runner = new FlowRunner({ cache, connections })
    try {
      const flow = flowOf('copy', 'connections: [crm]\n')
      const first = await runner.run(flow, { data: null })
      expect(first.output).toEqual({
        data: { crm: { url: 'https://crm.example.com', tags: ['a'] } },
      })
      const mutate = parseFlow(
        `name: mutate\nconnections: [crm]\ntrigger: { http: { method: POST, path: /m } }\nsteps:\n  - name: try\n    script: |\n      'use strict'\n      const attempts = []\n      for (const change of [() => { ctx.connections.crm.url = 'x' }, () => { ctx.connections.crm.tags.push('b') }, () => { ctx.connections.other = {} }]) {\n        try { change(); attempts.push('changed') } catch (e) { attempts.push(e.name) }\n      }\n      return { data: attempts }\n`,
        'flows/mutate.yaml',
      ).flow
      expect((await runner.run(mutate, { data: null })).output).toEqual({
        data: ['TypeError', 'TypeError', 'TypeError'],
      })
      expect(held).toEqual({
        crm: { url: 'https://crm.example.com', tags: ['a'] },
        other: { secret: 's' },
      })
      expect(Object.isFrozen(held.crm)).toBe(false)
      expect(loads).toBe(1)
      // A flow that declares nothing does not touch the resource.
      await runner.run(flowOf('plain', ''), { data: null })
      expect(connections.stats().loads + connections.stats().debugLoads).toBe(1)
    } finally {
      await runner.close()
    }
  })
})

describe('the connections field of a flow file', () => {
  it('is parsed into the definition, and left out when absent or empty', () => {
    const text = (connections: string) =>
      `name: f\n${connections}trigger: { http: { method: POST, path: /f } }\nsteps:\n  - name: s\n    script: return event\n`
    expect(parseFlow(text('connections: [crm, billing]\n'), 'f.yaml').flow.connections).toEqual([
      'crm',
      'billing',
    ])
    expect(parseFlow(text(''), 'f.yaml').flow).not.toHaveProperty('connections')
    expect(parseFlow(text('connections: []\n'), 'f.yaml').flow).not.toHaveProperty('connections')
  })

  it('survives the definition cache: a definition read back from disk keeps its connections', async () => {
    const cacheDir = join(dir, 'definitions')
    const file = join(dir, 'crm.yaml')
    expect((await new FlowDefinitions({ dir: cacheDir }).load(file)).connections).toEqual(['crm'])
    const second = new FlowDefinitions({ dir: cacheDir })
    expect((await second.load(file)).connections).toEqual(['crm'])
    expect(second.stats()).toMatchObject({ diskHits: 1, parses: 0, corrupt: 0 })
  })

  it('reports bad and repeated names with their line and column', () => {
    const text = `name: f\nconnections: [crm, ../etc, crm]\ntrigger: { http: { method: POST, path: /f } }\nsteps:\n  - name: s\n    script: return event\n`
    let error: unknown
    try {
      parseFlow(text, 'f.yaml')
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(FlowValidationError)
    const issues = (error as FlowValidationError).issues.map((issue) => ({
      at: `${issue.line}:${issue.column}`,
      path: issue.path,
      message: issue.message,
    }))
    expect(issues).toEqual([
      {
        at: '2:20',
        path: 'connections[1]',
        message: expect.stringContaining('must be 1-100 letters'),
      },
      {
        at: '2:28',
        path: 'connections[2]',
        message: "'crm' is already connections[0]; list each connection once",
      },
    ])
    expect(() => parseFlow(text.replace('[crm, ../etc, crm]', 'crm'), 'f.yaml')).toThrow(
      /connections: must be a list of connection names/,
    )
  })
})
