import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { deleteRedisKeys, redisUrl } from '../../flowcache/test/helpers/services.js'
import { sqliteStore } from '../../flowcache/src/stores/sqlite/index.js'
import { createCache } from '../src/flowcache.js'
import { childrenOf, killTree, signalIfRunning } from './helpers/processes.js'

/** The `flowcache` binary: it starts Node with the sandbox flag and tsx, forwarding signals. */
const entry = fileURLToPath(new URL('../bin/flowcache.js', import.meta.url))
const prefix = `srv${randomBytes(4).toString('hex')}`
let dir: string
/** Every `flowcache` wrapper started and not yet exited; `afterAll` kills them and their children. */
const children = new Set<ChildProcess>()
/** The server processes the wrappers started, killed by `afterAll` too if they outlive them. */
const servers = new Set<number>()

/** Starts `flowcache <args>` through the binary's wrapper in `dir`, tracked for the cleanup. */
function start(
  args: string[],
  env: Record<string, string | undefined>,
): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, [entry, ...args], { cwd: dir, stdio: 'pipe', env })
  children.add(child)
  child.on('exit', () => children.delete(child))
  return child
}

/** A `flowcache serve` child process, with its printed URL. */
interface Served {
  child: ChildProcess
  url: string
  output: () => string
  exited: Promise<number | null>
}

/** Starts `flowcache serve <args>` in `dir` and waits for its URL. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<Served> {
  const child = start(['serve', '--port', '0', ...args], {
    ...process.env,
    FLOWCACHE_CACHE_PREFIX: prefix,
    ...env,
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve))
  const started = performance.now()
  for (;;) {
    const match = /listening on (http:\/\/\S+)/.exec(stdout)
    if (match?.[1] !== undefined) {
      if (child.pid !== undefined) for (const pid of childrenOf(child.pid)) servers.add(pid)
      return { child, url: match[1], output: () => stdout + stderr, exited }
    }
    if (child.exitCode !== null || performance.now() - started > 30_000) {
      throw new Error(`flowcache serve did not start:\n${stdout}\n${stderr}`)
    }
    await sleep(50)
  }
}

async function api(url: string, init?: RequestInit): Promise<{ status: number; body: unknown }> {
  const response = await fetch(url, init)
  return { status: response.status, body: await response.json() }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-serve-'))
  await mkdir(join(dir, 'flows'))
  await mkdir(join(dir, 'none'))
  await writeFile(
    join(dir, 'flows', 'tick.yaml'),
    `name: tick
tenant: ${prefix}
require_leader_election: true
trigger:
  schedule: { every: 200ms }
steps:
  - name: count
    script: |
      await ctx.cache.increment('ticks')
      return event
`,
  )
})

afterAll(async () => {
  // The wrapper and the server process it started: a test that failed halfway leaves both.
  for (const child of children) if (child.pid !== undefined) killTree(child.pid)
  for (const pid of servers) signalIfRunning(pid)
  await deleteRedisKeys(`${prefix}*`)
  await rm(dir, { recursive: true, force: true })
})

describe('flowcache serve', { timeout: 120_000 }, () => {
  it('forms a cluster on one Redis: shared values, a leader-elected flow on exactly one', async () => {
    const store = ['--store', redisUrl(), '--flows', join(dir, 'flows')]
    const [a, b] = await Promise.all([serve(store), serve(store)])
    if (a === undefined || b === undefined) throw new Error('unreachable')
    const key = '/v1/ns/tenant%3Ashared/keys/greeting'
    const put = await api(`${a.url}${key}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ value: { hello: 'world' }, ttl: '5m' }),
    })
    expect(put.status).toBe(200)
    expect(await api(`${b.url}${key}`)).toEqual({
      status: 200,
      body: { key: 'greeting', value: { hello: 'world' } },
    })

    const runsOf = async (served: Served): Promise<number> => {
      const answer = await api(`${served.url}/v1/flows/tick/runs`)
      return (answer.body as { runs: { total: number } }).runs.total
    }
    const started = performance.now()
    while ((await runsOf(a)) + (await runsOf(b)) < 5) {
      if (performance.now() - started > 60_000) throw new Error('the scheduled flow never ran')
      await sleep(100)
    }
    const totals = [await runsOf(a), await runsOf(b)]
    expect(totals.filter((total) => total > 0)).toHaveLength(1)
    const leaders = await Promise.all(
      [a, b].map(async (served) => {
        const answer = await api(`${served.url}/v1/leaders`)
        return (answer.body as { leaders: { isLeader: boolean }[] }).leaders[0]?.isLeader
      }),
    )
    expect(leaders.filter((isLeader) => isLeader === true)).toHaveLength(1)

    a.child.kill('SIGTERM')
    b.child.kill('SIGTERM')
    expect(await a.exited).toBe(0)
    expect(await b.exited).toBe(0)
    expect(a.output()).toContain('flowcache serve: stopped')
  })

  it('with no options: SQLite under ./.flowcache, the example flows, and the console at its printed URL', async () => {
    const served = await serve(['--port', '0'])
    const output = served.output()
    expect(output).toContain(`store:  sqlite ${join(dir, '.flowcache', 'cache.db')}`)
    expect(output).toContain('(the example flows)')
    const consoleUrl = /console: (http:\/\/\S+)/.exec(output)?.[1]
    expect(consoleUrl).toBe(`${served.url}/console/`)
    const page = await fetch(consoleUrl ?? '')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    expect(await page.text()).toContain('<title>flowcache console</title>')
    const root = await fetch(served.url, { redirect: 'manual' })
    expect(root.status).toBe(302)
    const flows = await api(`${served.url}/v1/flows`)
    expect(flows.status).toBe(200)
    expect(JSON.stringify(flows.body)).toContain('payment-webhook')
    served.child.kill('SIGTERM')
    expect(await served.exited).toBe(0)
  })

  it('finishes requests in flight and keeps every acknowledged write on SIGTERM', async () => {
    const path = join(dir, 'graceful.db')
    const served = await serve(['--store', `sqlite:${path}`, '--flows', join(dir, 'none')])
    expect(served.output()).toContain(`store:  sqlite ${path}`)
    // 8 writers, each with one PUT always in flight, until the server stops answering; SIGTERM
    // once 20 writes are acknowledged, so the shutdown meets requests in flight.
    const acknowledged: string[] = []
    let next = 0
    let twenty: () => void = () => {}
    const twentyDone = new Promise<void>((resolve) => (twenty = resolve))
    const writer = async (): Promise<void> => {
      for (;;) {
        const i = next++
        try {
          const response = await fetch(`${served.url}/v1/ns/jobs/keys/k${i}`, {
            method: 'PUT',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ value: i }),
          })
          if (response.status !== 200) return
          acknowledged.push(`k${i}`)
          if (acknowledged.length === 20) twenty()
        } catch {
          // Refused after shutdown began: not acknowledged.
          return
        }
      }
    }
    const writes = Array.from({ length: 8 }, () => writer())
    await Promise.race([twentyDone, sleep(20_000)])
    served.child.kill('SIGTERM')
    await Promise.all(writes)
    expect(await served.exited).toBe(0)
    expect(acknowledged.length).toBeGreaterThanOrEqual(20)
    const cache = createCache({ store: sqliteStore({ path }), prefix })
    const jobs = cache.namespace('jobs')
    for (const key of acknowledged) expect(await jobs.get(key), key).toBe(Number(key.slice(1)))
    await cache.close()
  })

  it('refuses a non-loopback host without a token and prints how to set one', async () => {
    const child = start(['serve', '--host', '0.0.0.0', '--port', '0'], {
      ...process.env,
      FLOWCACHE_TOKEN: '',
    })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(code).toBe(2)
    expect(stderr).toContain('--host server.host: 0.0.0.0 is reachable from other machines')
    expect(stderr).toContain('FLOWCACHE_TOKEN')
  })
})
