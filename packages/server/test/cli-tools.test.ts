import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisUrl } from '../../flowcache/test/helpers/services.js'
import { redisStore } from '../../flowcache/src/stores/redis/index.js'
import { createCache } from '../src/flowcache.js'
import { cli } from './helpers/cli.js'

let dir: string
const space = `cli-tools-${randomBytes(4).toString('hex')}`

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-cli-tools-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
  const cache = createCache({ store: redisStore({ url: redisUrl() }) })
  await cache.namespace(space).clear()
  await cache.close()
})

describe('flowcache warm', { timeout: 120_000 }, () => {
  it('writes good lines in batches, reports bad ones by line number and exits 1', async () => {
    const store = `sqlite:${join(dir, 'warm.db')}`
    const lines = Array.from({ length: 25 }, (_, i) =>
      JSON.stringify({ key: `p:${i}`, value: { i }, ...(i % 2 === 0 ? { ttl: '1h' } : {}) }),
    )
    lines.splice(3, 0, '{not json')
    lines.splice(7, 0, '', JSON.stringify({ key: 'no-value' }))
    lines.push(JSON.stringify({ key: 'k'.repeat(2000), value: 1 }))
    lines.push(JSON.stringify({ key: 'bad-ttl', value: 1, ttl: 'soon' }))
    const file = join(dir, 'entries.jsonl')
    await writeFile(file, `${lines.join('\n')}\n`)
    const at = ['--store', store, '--namespace', 'catalog']

    const human = await cli(['warm', file, ...at, '--batch-size', '10'])
    expect(human.code).toBe(1)
    expect(human.stdout).toMatch(/^warmed 25 of 29 entries into catalog in [\d.]+ m?s; 4 failed\n$/)
    expect(human.stderr).toMatch(/^line 4: E_WARM_LINE: not valid JSON/m)
    expect(human.stderr).toMatch(/^line 9: E_WARM_LINE: has no "value"/m)
    expect(human.stderr).toMatch(/^line 29: E_KEY_TOO_LONG: /m)
    expect(human.stderr).toMatch(/^line 30: E_WARM_LINE: "ttl" is not a valid duration/m)
    // Not a terminal: plain progress lines, ending at 100%.
    expect(human.stderr).toMatch(/^warm: 29\/29 lines \(100%\)$/m)
    const keys = JSON.parse((await cli(['keys', ...at, '--json'])).stdout).keys as string[]
    expect(keys).toHaveLength(25)
    expect(JSON.parse((await cli(['get', 'p:24', ...at])).stdout)).toEqual({ i: 24 })
    expect((await cli(['ttl', 'p:1', ...at])).stdout).toBe('never expires\n')

    const machine = await cli(['warm', '-', ...at, '--json'], {
      stdin: `${lines.join('\n')}\n`,
    })
    expect(machine.code).toBe(1)
    expect(machine.stderr).toBe('')
    const report = JSON.parse(machine.stdout)
    expect(report).toMatchObject({ total: 29, written: 25, failed: 4, stopped: false })
    expect(report.failures.map((f: { line: number }) => f.line)).toEqual([4, 9, 29, 30])

    const clean = await cli(['warm', '-', ...at, '--no-progress'], {
      stdin: '{"key":"x","value":[1]}\n',
    })
    expect(clean).toMatchObject({ code: 0, stderr: '' })
    expect(clean.stdout).toMatch(/^warmed 1 of 1 entries/)
  })

  it('exits 2 for an unreadable file or a bad --batch-size', async () => {
    const missing = await cli(['warm', join(dir, 'nope.jsonl')])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/^error E_USAGE: cannot read /)
    const batch = await cli(['warm', '-', '--batch-size', '5000'], {
      stdin: '{"key":"a","value":1}',
    })
    expect(batch.code).toBe(2)
    expect(batch.stderr).toMatch(/--batch-size must be a whole number from 1 to 1000/)
  })

  it('warms Redis', async () => {
    const at = ['--store', redisUrl(), '--namespace', space]
    const input = Array.from({ length: 50 }, (_, i) => JSON.stringify({ key: `w:${i}`, value: i }))
    const warm = await cli(['warm', '-', ...at, '--json'], { stdin: input.join('\n') })
    expect(warm.code).toBe(0)
    expect(JSON.parse(warm.stdout)).toMatchObject({ total: 50, written: 50, failed: 0 })
    expect(JSON.parse((await cli(['get', 'w:49', ...at])).stdout)).toBe(49)
  })
})

describe('flowcache bench', { timeout: 120_000 }, () => {
  it('measures get and set at 1 and 32 in flight, checks reads and cleans up (SQLite)', async () => {
    const store = `sqlite:${join(dir, 'bench.db')}`
    const run = await cli(['bench', '--store', store, '--seconds', '1', '--keys', '64', '--json'])
    expect(run.stderr).toBe('')
    expect(run.code).toBe(0)
    const report = JSON.parse(run.stdout)
    expect(report).toMatchObject({ store: 'sqlite', keys: 64, seconds: 1, cleanedUp: 64 })
    expect(
      report.runs.map((r: { op: string; concurrency: number }) => `${r.op}@${r.concurrency}`),
    ).toEqual(['set@1', 'get@1', 'set@32', 'get@32'])
    for (const r of report.runs) {
      expect(r.ops).toBeGreaterThan(0)
      expect(r.errors).toBe(0)
      expect(r.p99Ms).toBeGreaterThanOrEqual(r.p50Ms)
    }
    expect(report.readYourWrites.mismatches).toBe(0)
    expect(report.readYourWrites.checked).toBeGreaterThanOrEqual(64)
    expect(JSON.parse((await cli(['keys', '--store', store, '--json'])).stdout).keys).toEqual([])
  })

  it('prints a readable table on Redis and leaves no keys behind', async () => {
    const at = ['--store', redisUrl(), '--namespace', space]
    const run = await cli(['bench', ...at, '--seconds', '1', '--keys', '100'])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(
      /^flowcache bench on redis: 100 keys, 256-byte values, 1 s per run\n/,
    )
    expect(run.stdout).toMatch(/\nset +1 +[\d,]+ +[\d.]+ m?s +[\d.]+ m?s +0\n/)
    expect(run.stdout).toMatch(/\nget +32 +[\d,]+ /)
    expect(run.stdout).toMatch(/\nread-your-writes: \d+ reads checked, 0 mismatches\n/)
    expect(run.stdout).toMatch(/\ncleaned up: 100 entries\n/)
    const cache = createCache({ store: redisStore({ url: redisUrl() }) })
    try {
      const left = await cache.namespace(space).listKeys('', { limit: 1000 })
      expect(left.filter((key) => key.startsWith('bench-'))).toEqual([])
    } finally {
      await cache.close()
    }
    const bad = await cli(['bench', '--seconds', '0'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(/--seconds must be a number from 0.1 to 300/)
  })
})

describe('flowcache doctor', { timeout: 120_000 }, () => {
  it('passes on a reachable Redis, with the probe and the expire-events check', async () => {
    const run = await cli(['doctor', '--store', redisUrl(), '--json'])
    expect(run.code).toBe(0)
    const report = JSON.parse(run.stdout)
    expect(report.ok).toBe(true)
    const byName = Object.fromEntries(
      report.checks.map((c: { name: string; status: string }) => [c.name, c.status]),
    )
    expect(byName).toMatchObject({
      node: 'pass',
      'sandbox flag': 'pass',
      'redis server': 'pass',
      'store probe': 'pass',
    })
    expect(['pass', 'warn']).toContain(byName['expire events'])
    expect(['pass', 'warn']).toContain(byName['round trip'])
    const human = await cli(['doctor', '--store', redisUrl()])
    expect(human.code).toBe(0)
    expect(human.stdout).toMatch(/\nPASS {2}redis server +Redis \d+\.\d+/)
    expect(human.stdout).toMatch(/\n0 failures, \d warnings?\n$/)
  })

  it('fails on an unreachable Redis and says what to fix', async () => {
    const run = await cli(['doctor', '--store', 'redis://127.0.0.1:1'])
    expect(run.code).toBe(1)
    expect(run.stdout).toMatch(
      /\nFAIL {2}redis server +cannot connect to Redis at 127\.0\.0\.1:1: /,
    )
    expect(run.stdout).toMatch(/\n +fix: start Redis/)
    expect(run.stdout).toMatch(/\n1 failure, /)
    const json = JSON.parse(
      (await cli(['doctor', '--store', 'redis://127.0.0.1:1', '--json'])).stdout,
    )
    expect(json.ok).toBe(false)
    expect(json.checks).toContainEqual(
      expect.objectContaining({ name: 'redis server', status: 'fail', fix: expect.any(String) }),
    )
  })

  it('checks a SQLite file and a bad --store', async () => {
    const ok = await cli(['doctor', '--store', `sqlite:${join(dir, 'sub', 'doctor.db')}`, '--json'])
    expect(ok.code).toBe(0)
    expect(JSON.parse(ok.stdout).checks).toContainEqual(
      expect.objectContaining({ name: 'sqlite file', status: 'pass' }),
    )
    const bad = await cli(['doctor', '--store', 'mongo://x'])
    expect(bad.code).toBe(1)
    expect(bad.stdout).toMatch(/\nFAIL {2}store +--store mongo:\/\/x is not a store/)
  })
})
