import { fork } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'

const here = dirname(fileURLToPath(import.meta.url))
const fixture = join(here, 'fixtures/write-behind-process.ts')
const repoRoot = join(here, '../../..')
const dir = mkdtempSync(join(tmpdir(), 'flowcache-write-behind-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Runs the fixture in `mode`; resolves with its exit code and the keys its target wrote. */
async function run(
  mode: string,
  onReady?: (pid: number) => void,
): Promise<{ code: number | null; keys: string[]; stderr: string }> {
  const file = join(dir, `${mode}.jsonl`)
  const child = fork(fixture, [mode, file], {
    cwd: repoRoot,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  child.on('message', (message: { type?: string }) => {
    if (message.type === 'ready' && child.pid !== undefined) onReady?.(child.pid)
  })
  // A liveness bound only: a process kept alive by a 1 h timer would hit it.
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${mode}: the process did not exit within 25 s; stderr: ${stderr}`))
    }, 25_000)
    child.once('exit', (exitCode) => {
      clearTimeout(timer)
      resolve(exitCode)
    })
  })
  const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []
  return { code, keys: lines.map((line) => (JSON.parse(line) as { key: string }).key), stderr }
}

describe('write-behind in a real process', () => {
  it('queued writes keep the process alive until they are written, then it exits', async () => {
    const { code, keys, stderr } = await run('no-close')
    expect(code, stderr).toBe(0)
    expect(keys.sort()).toEqual(['k0', 'k1', 'k2'])
  })

  it('once flushed, a long flushEvery does not keep the process alive', async () => {
    const { code, keys, stderr } = await run('flushed')
    expect(code, stderr).toBe(0)
    expect(keys.sort()).toEqual(['k0', 'k1', 'k2'])
  })

  it('SIGTERM handled with cache.close(): every acknowledged write reaches the target', async () => {
    const { code, keys, stderr } = await run('sigterm', (pid) => process.kill(pid, 'SIGTERM'))
    expect(code, stderr).toBe(0)
    expect(new Set(keys).size).toBe(1000)
  })
})
