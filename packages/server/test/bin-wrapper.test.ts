import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cli } from './helpers/cli.js'
import { childrenOf, hasProc, isRunning, killTree, signalIfRunning } from './helpers/processes.js'

/** The `flowcache` binary: a wrapper starting the CLI in a second Node process. */
const wrapper = fileURLToPath(new URL('../bin/flowcache.js', import.meta.url))
let dir: string
/** Everything a test started, ended after each test whether it passed or not. */
const started: { wrappers: ChildProcess[]; pids: number[] } = { wrappers: [], pids: [] }

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-bin-'))
  await mkdir(join(dir, 'none'))
})

afterEach(() => {
  for (const child of started.wrappers) if (child.pid !== undefined) killTree(child.pid)
  for (const pid of started.pids) signalIfRunning(pid)
  started.wrappers = []
  started.pids = []
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Waits until `done()` holds, checking every 50 ms for at most `ms`; returns whether it did. */
async function waitFor(done: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms
  while (!done()) {
    if (performance.now() > deadline) return false
    await sleep(50)
  }
  return true
}

describe('bin/flowcache.js, the binary wrapper', { timeout: 60_000 }, () => {
  it.skipIf(!hasProc)(
    'stops the inner `flowcache serve` gracefully when the wrapper is killed with SIGKILL',
    async () => {
      const child = spawn(
        process.execPath,
        [wrapper, 'serve', '--port', '0', '--store', 'memory', '--flows', join(dir, 'none')],
        { cwd: dir, stdio: 'pipe' },
      )
      started.wrappers.push(child)
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      // 'close': the wrapper exited and every process writing to its pipes (the inner one) too.
      const closed = new Promise<void>((resolve) => child.on('close', () => resolve()))
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.on('exit', (_code, signal) => resolve(signal)),
      )
      const listening = () => /listening on (http:\/\/\S+)/.exec(output)?.[1]
      if (!(await waitFor(() => listening() !== undefined || child.exitCode !== null, 30_000))) {
        throw new Error(`flowcache serve did not start:\n${output}`)
      }
      const url = listening()
      if (url === undefined) throw new Error(`flowcache serve did not start:\n${output}`)
      const pid = child.pid
      if (pid === undefined) throw new Error('the wrapper has no pid')
      const inner = childrenOf(pid)
      started.pids.push(...inner)
      expect(inner).toHaveLength(1)
      const [server = 0] = inner
      expect((await fetch(`${url}/healthz`)).status).toBe(200)

      child.kill('SIGKILL')
      expect(await exited).toBe('SIGKILL')
      // A liveness wait, not a timing check: the inner process must end by itself.
      expect(await waitFor(() => !isRunning(server), 10_000)).toBe(true)
      await closed
      await expect(fetch(`${url}/healthz`)).rejects.toThrow()
      // It stopped the way SIGTERM stops it, not abruptly.
      expect(output).toContain('flowcache serve: shutting down (signal)')
      expect(output).toContain('flowcache serve: stopped')
    },
  )

  it('passes standard input, output and exit codes of a short command through', async () => {
    const store = ['--store', `sqlite:${join(dir, 'data.db')}`]
    const set = await cli(['set', 'greeting', '-', ...store, '--json'], {
      cwd: dir,
      stdin: '"hello"',
      wrapper: true,
    })
    expect(set).toEqual({
      code: 0,
      stdout: '{\n  "key": "greeting",\n  "ttlMs": null\n}\n',
      stderr: '',
    })
    expect(await cli(['get', 'greeting', ...store], { cwd: dir, wrapper: true })).toEqual({
      code: 0,
      stdout: '"hello"\n',
      stderr: '',
    })
    const miss = await cli(['get', 'nothing', ...store], { cwd: dir, wrapper: true })
    expect(miss.code).toBe(3)
  })
})
