/**
 * createFlowHostFromDir: flows loaded from a folder through the definition cache, invalid files
 * reported once with file:line:col without stopping the valid ones, new files routable, the
 * created runner closed by stop().
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  ClosedError,
  createCache,
  InvalidArgumentError,
  silentLogger,
  type Cache,
  type Logger,
} from '../src/flowcache.js'
import { FlowDefinitions } from '../src/flows/index.js'
import { createFlowHostFromDir, type DirFlowHost } from '../src/host/index.js'
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

function httpFlow(name: string, path: string, script = 'return { data: { flow: ctx.flow.name } }') {
  return `name: ${name}
tenant: acme
trigger:
  http: { method: POST, path: ${path} }
steps:
  - name: answer
    script: |
      ${script}
`
}

let dir: string
let cacheDir: string
let cache: Cache
let host: DirFlowHost | undefined

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fc-from-dir-'))
  cacheDir = await mkdtemp(join(tmpdir(), 'fc-from-dir-defs-'))
  cache = createCache({ logger: silentLogger })
})

afterEach(async () => {
  await host?.stop()
  host = undefined
  await cache.close()
  await rm(dir, { recursive: true, force: true })
  await rm(cacheDir, { recursive: true, force: true })
})

describe('createFlowHostFromDir', () => {
  it('runs the valid flows of the folder and reports each invalid file with file:line:col', async () => {
    await writeFile(join(dir, 'a-orders.yaml'), httpFlow('orders', '/orders/:id'))
    await writeFile(
      join(dir, 'b-broken.yaml'),
      'name: broken\ntrigger:\n  http: { method: FETCH, path: /broken }\nsteps: []\n',
    )
    const logger = recordingLogger()
    host = createFlowHostFromDir({
      cache,
      dir,
      definitionsCache: { dir: cacheDir },
      logger,
      routeRefreshEvery: '20ms',
    })
    await host.start()

    const answer = await host.dispatch('POST', '/orders/7', { total: 3 })
    expect(answer.kind).toBe('ok')
    expect(answer.kind === 'ok' && answer.result.output).toEqual({ data: { flow: 'orders' } })
    expect(host.status().flows.map((flow) => flow.name)).toEqual(['orders'])

    const errors = logger.lines.filter((line) => line.level === 'error')
    expect(errors).toHaveLength(1)
    expect(errors[0]?.message).toContain(`${join(dir, 'b-broken.yaml')}:3:19 trigger.http.method:`)
    expect(errors[0]?.message).toContain(`${join(dir, 'b-broken.yaml')}:4:8 steps:`)
    expect(host.invalidFiles.map((error) => error.file)).toEqual([join(dir, 'b-broken.yaml')])

    // Refreshes re-read the folder but report an unchanged problem only once.
    await waitUntil(() => host!.status().routes.refreshes.done >= 3, 'three refreshes')
    expect(logger.lines.filter((line) => line.level === 'error')).toHaveLength(1)

    // Fixed, the file loads at the next refresh and is no longer listed as invalid.
    await writeFile(join(dir, 'b-broken.yaml'), httpFlow('broken', '/broken'))
    await waitUntil(() => host!.invalidFiles.length === 0, 'the fixed file')
    expect((await host.dispatch('POST', '/broken')).kind).toBe('ok')
  })

  it('a file added while the host runs is routable: at once through the unknown-route reload, and by the periodic refresh', async () => {
    await writeFile(join(dir, 'orders.yaml'), httpFlow('orders', '/orders'))
    host = createFlowHostFromDir({
      cache,
      dir,
      definitionsCache: { dir: null },
      logger: silentLogger,
      routeRefreshEvery: '50ms',
    })
    await host.start()
    expect((await host.dispatch('POST', '/invoices')).kind).toBe('not-found')

    await writeFile(join(dir, 'invoices.yaml'), httpFlow('invoices', '/invoices'))
    const answer = await host.dispatch('POST', '/invoices')
    expect(answer.kind === 'ok' && answer.flow).toBe('invoices')

    await writeFile(join(dir, 'refunds.yaml'), httpFlow('refunds', '/refunds'))
    await waitUntil(() => host!.status().routes.size === 3, 'the refreshed route table')
    expect(host.status().flows.map((flow) => flow.name)).toEqual(['invoices', 'orders', 'refunds'])
  })

  it('loads through the definition cache: a second host finds the parsed definitions on disk', async () => {
    await writeFile(join(dir, 'orders.yaml'), httpFlow('orders', '/orders'))
    const first = new FlowDefinitions({ dir: cacheDir })
    host = createFlowHostFromDir({ cache, dir, definitionsCache: first, logger: silentLogger })
    expect(host.definitions).toBe(first)
    await host.start()
    expect(first.stats()).toMatchObject({ parses: 1, written: 1 })
    await host.stop()

    const second = new FlowDefinitions({ dir: cacheDir })
    host = createFlowHostFromDir({ cache, dir, definitionsCache: second, logger: silentLogger })
    await host.start()
    expect(second.stats()).toMatchObject({ parses: 0, diskHits: 1 })
    expect((await host.dispatch('POST', '/orders')).kind).toBe('ok')
  })

  it('stop() closes the runner it created, not one it was given', async () => {
    await writeFile(join(dir, 'orders.yaml'), httpFlow('orders', '/orders'))
    host = createFlowHostFromDir({
      cache,
      dir,
      definitionsCache: { dir: null },
      logger: silentLogger,
    })
    await host.start()
    await host.dispatch('POST', '/orders')
    const created = host.runner
    await host.stop()
    const error = await rejectionOf(
      created.run(
        {
          name: 'orders',
          tenant: 'acme',
          file: join(dir, 'orders.yaml'),
          revision: 'r',
          trigger: { kind: 'http', method: 'POST', path: '/orders' },
          requireLeaderElection: false,
          steps: [{ name: 'answer', script: 'return event', line: 6 }],
        },
        { data: null },
      ),
    )
    expect(error).toBeInstanceOf(ClosedError)

    const given = new RecordingRunner()
    host = createFlowHostFromDir({
      cache,
      dir,
      runner: given,
      definitionsCache: { dir: null },
      logger: silentLogger,
    })
    await host.start()
    await host.dispatch('POST', '/orders', { id: 1 })
    await host.stop()
    expect(given.of('orders')).toHaveLength(1)
    expect(host.runner).toBe(given)
  })

  it('checks its options before any I/O', () => {
    expect(() =>
      createFlowHostFromDir({ cache, dir: '', definitionsCache: { dir: null } }),
    ).toThrow(InvalidArgumentError)
    expect(() =>
      createFlowHostFromDir({
        cache,
        dir,
        definitionsCache: { dir: null },
        routeRefreshEvery: 'soon',
      }),
    ).toThrow(/routeRefreshEvery/)
    expect(() =>
      createFlowHostFromDir({ cache: {} as Cache, dir, definitionsCache: { dir: null } }),
    ).toThrow(/cache/)
  })

  it('start() rejects when the folder cannot be read', async () => {
    host = createFlowHostFromDir({
      cache,
      dir: join(dir, 'missing'),
      definitionsCache: { dir: null },
      logger: silentLogger,
    })
    const error = await rejectionOf(host.start())
    expect(error.code).toBe('E_FLOW_INVALID')
    expect(error.message).toContain('is not a readable folder of flow files')
    expect(host.status().state).toBe('stopped')
  })
})
