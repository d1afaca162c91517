/**
 * Crash durability of the sqlite store: a child process writes 10 000 keys with durability
 * 'durable' and reports each acknowledged write; the test SIGKILLs it midway, reopens the file
 * and requires every acknowledged write to be there with its exact value.
 *
 * A SIGKILL keeps the OS page cache, so this proves that an acknowledged write is committed (not
 * buffered in the process); surviving power loss additionally rests on SQLite's fsync, which a
 * test cannot cut the power to.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'

import { sqliteStore } from '../../src/stores/sqlite/index.js'
import { crashKey, crashValue } from '../fixtures/sqlite-writer-data.js'

const WRITES = 10_000
/** Kill once at least this many writes are acknowledged, well before the child could finish. */
const KILL_AFTER = 3000
const fixture = fileURLToPath(new URL('../fixtures/sqlite-writer.ts', import.meta.url))
const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url))

const root = mkdtempSync(join(tmpdir(), 'flowcache-sqlite-crash-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

interface ChildRun {
  acked: number[]
  signal: NodeJS.Signals | null
  code: number | null
  stderr: string
  done: boolean
}

/** Runs the writer and SIGKILLs it (by its PID) once `killAfter` writes are acknowledged. */
function runWriter(path: string, killAfter: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    // The same tsx loader that runs this repository's TypeScript, from the repository root.
    const child = spawn(process.execPath, ['--import', 'tsx', fixture, path, String(WRITES)], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const acked: number[] = []
    let pending = ''
    let stderr = ''
    let done = false
    let killed = false
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      pending += chunk
      const lines = pending.split('\n')
      // The last piece has no newline yet: a write the child had not finished reporting.
      pending = lines.pop() ?? ''
      for (const line of lines) {
        if (line === 'done') done = true
        else acked.push(Number(line))
      }
      if (!killed && acked.length >= killAfter && child.pid !== undefined) {
        killed = true
        process.kill(child.pid, 'SIGKILL')
      }
    })
    child.stderr.on('data', (chunk: string) => (stderr += chunk))
    child.on('error', reject)
    // 'close' comes after the pipes are drained, so acknowledgements sent just before the kill count.
    child.on('close', (code, signal) => resolve({ acked, signal, code, stderr, done }))
  })
}

describe('sqlite store: kill -9 during durable writes', () => {
  it(`loses no acknowledged write when SIGKILLed during ${WRITES} writes`, async () => {
    const path = join(root, 'crash', 'cache.db')
    const run = await runWriter(path, KILL_AFTER)
    expect(run.stderr).toBe('')
    expect(run.done, 'the writer finished before it could be killed').toBe(false)
    expect(run.signal).toBe('SIGKILL')
    const acked = run.acked
    expect(acked.length).toBeGreaterThanOrEqual(KILL_AFTER)
    // Acknowledged in order, none skipped: the child writes sequentially.
    expect(acked).toEqual(Array.from({ length: acked.length }, (_, i) => i))

    // The file as the killed process left it (WAL not checkpointed) must be intact.
    const raw = new Database(path)
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok')
    raw.close()

    const store = sqliteStore({ path, sweepIntervalMs: 0, maxEntries: WRITES })
    try {
      let lost = 0
      for (let i = 0; i < acked.length; i += 500) {
        const keys = acked.slice(i, i + 500)
        const entries = await store.getMany(keys.map(crashKey))
        entries.forEach((entry, j) => {
          const index = keys[j] as number
          if (entry === undefined || !Buffer.from(entry.value).equals(crashValue(index))) lost++
        })
      }
      // At most the one write in flight at the kill may be committed without its acknowledgement,
      // and whatever is there must be exactly what was written.
      const extra = await store.getMany(
        Array.from({ length: 2 }, (_, i) => crashKey(acked.length + i)),
      )
      const inFlight = extra[0]
      if (inFlight !== undefined) {
        expect(Buffer.from(inFlight.value).equals(crashValue(acked.length))).toBe(true)
      }
      expect(extra[1]).toBeUndefined()
      console.log(
        `[sqlite kill -9] durable: acknowledged ${acked.length} of ${WRITES}, lost ${lost}` +
          `, committed but unacknowledged ${inFlight === undefined ? 0 : 1}`,
      )
      expect(lost).toBe(0)
      expect(store.stats().entries).toBe(acked.length + (inFlight === undefined ? 0 : 1))
    } finally {
      await store.close()
    }
  }, 120_000)
})
