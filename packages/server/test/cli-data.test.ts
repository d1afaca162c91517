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
const tenant = `tenant:cli${randomBytes(4).toString('hex')}`

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-cli-data-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
  const cache = createCache({ store: redisStore({ url: redisUrl() }) })
  await cache.namespace(tenant).clear()
  await cache.close()
})

describe('flowcache get, set, del, keys, ttl, stats', { timeout: 120_000 }, () => {
  it('sets, gets, lists, times and deletes keys in a SQLite store and a namespace', async () => {
    const store = `sqlite:${join(dir, 'data.db')}`
    const at = ['--store', store, '--namespace', `${tenant}/flow:orders`]
    const set = await cli(['set', 'order:1', '{"total":10,"items":["a"]}', '--ttl', '1h', ...at])
    expect(set.stderr).toBe('')
    expect(set.code).toBe(0)
    expect(set.stdout).toBe('ok (expires in 3600000 ms)\n')
    const valueFile = join(dir, 'value.json')
    await writeFile(valueFile, '"from a file"')
    expect((await cli(['set', 'order:2', `@${valueFile}`, ...at])).code).toBe(0)
    expect((await cli(['set', 'other', '-', ...at, '--json'], { stdin: 'null' })).stdout).toBe(
      '{\n  "key": "other",\n  "ttlMs": null\n}\n',
    )

    const get = await cli(['get', 'order:1', ...at])
    expect(get.code).toBe(0)
    expect(JSON.parse(get.stdout)).toEqual({ total: 10, items: ['a'] })
    const getJson = await cli(['get', 'order:2', ...at, '--json'])
    expect(JSON.parse(getJson.stdout)).toEqual({ key: 'order:2', hit: true, value: 'from a file' })
    const nullHit = await cli(['get', 'other', ...at])
    expect(nullHit).toMatchObject({ code: 0, stdout: 'null\n' })

    const miss = await cli(['get', 'order:9', ...at])
    expect(miss).toMatchObject({ code: 3, stdout: '' })
    expect(miss.stderr).toBe("miss: no entry for 'order:9'\n")
    const missJson = await cli(['get', 'order:9', ...at, '--json'])
    expect(missJson.code).toBe(3)
    expect(JSON.parse(missJson.stdout)).toEqual({ key: 'order:9', hit: false })
    // The namespace matters: the root has no order:1.
    expect((await cli(['get', 'order:1', '--store', store])).code).toBe(3)

    const keys = await cli(['keys', ...at])
    expect(keys).toMatchObject({ code: 0, stdout: 'order:1\norder:2\nother\n' })
    const prefixed = await cli(['keys', 'order:', '--limit', '1', ...at, '--json'])
    expect(JSON.parse(prefixed.stdout)).toEqual({ keys: ['order:1'], truncated: true })
    const all = await cli(['keys', 'order:', '--limit', '2', ...at, '--json'])
    expect(JSON.parse(all.stdout)).toEqual({ keys: ['order:1', 'order:2'], truncated: false })

    const ttl = await cli(['ttl', 'order:1', ...at, '--json'])
    const ttlMs = JSON.parse(ttl.stdout).ttlMs as number
    expect(ttlMs).toBeGreaterThan(3_000_000)
    expect(ttlMs).toBeLessThanOrEqual(3_600_000)
    expect((await cli(['ttl', 'order:2', ...at])).stdout).toBe('never expires\n')
    expect((await cli(['ttl', 'nope', ...at])).code).toBe(3)

    const stats = await cli(['stats', '--store', store, '--json'])
    expect(stats.code).toBe(0)
    const document = JSON.parse(stats.stdout)
    expect(document).toMatchObject({
      store: 'sqlite',
      health: { status: 'ok', store: 'sqlite' },
      capabilities: { persistent: true },
    })
    expect(document.stats.entries).toBeGreaterThanOrEqual(3)
    const readable = await cli(['stats', '--store', store])
    expect(readable.stdout).toMatch(/^store {6}sqlite\n/)
    expect(readable.stdout).toMatch(/\nentries +\d+\n/)

    const del = await cli(['del', 'order:1', 'order:9', ...at])
    expect(del).toMatchObject({ code: 0, stdout: 'deleted 1 of 2 keys\n' })
    expect(JSON.parse((await cli(['del', 'order:2', ...at, '--json'])).stdout)).toEqual({
      deleted: 1,
    })
    expect((await cli(['keys', ...at])).stdout).toBe('other\n')
  })

  it('exits 2 with error E_CODE for bad usage, 1 for an unreachable store', async () => {
    const store = `sqlite:${join(dir, 'usage.db')}`
    const badJson = await cli(['set', 'k', '{oops', '--store', store])
    expect(badJson.code).toBe(2)
    expect(badJson.stderr).toMatch(/^error E_USAGE: <value>: the <value> text is not valid JSON/)
    const badTtl = await cli(['set', 'k', '1', '--ttl', 'soon', '--store', store, '--json'])
    expect(badTtl.code).toBe(2)
    expect(JSON.parse(badTtl.stdout).error.code).toBe('E_INVALID_ARGUMENT')
    expect(badTtl.stderr).toMatch(/^error E_INVALID_ARGUMENT: --ttl is not a valid duration/)
    const longKey = await cli(['get', 'k'.repeat(2000), '--store', store])
    expect(longKey.code).toBe(2)
    expect(longKey.stderr).toMatch(/^error E_KEY_TOO_LONG: /)
    const badNamespace = await cli(['keys', '--namespace', 'a//b', '--store', store])
    expect(badNamespace.code).toBe(2)
    expect(badNamespace.stderr).toMatch(/^error E_USAGE: --namespace a\/\/b has an empty name/)
    const badLimit = await cli(['keys', '--limit', '0', '--store', store])
    expect(badLimit.code).toBe(2)
    const badStore = await cli(['get', 'k', '--store', 'mongo://x'])
    expect(badStore.code).toBe(2)
    expect(badStore.stderr).toMatch(/^error E_USAGE: --store mongo:\/\/x is not a store/)
    const missingArg = await cli(['set', 'k'])
    expect(missingArg.code).toBe(2)
    expect(missingArg.stderr).toMatch(/missing required argument/)
    const down = await cli(['get', 'k', '--store', 'redis://127.0.0.1:1', '--json'])
    expect(down.code).toBe(1)
    expect(JSON.parse(down.stdout).error.code).toBe('E_STORE_UNAVAILABLE')
    expect(down.stderr).toMatch(/^error E_STORE_UNAVAILABLE: /)
  })

  it('works on Redis', async () => {
    const at = ['--store', redisUrl(), '--namespace', tenant]
    expect((await cli(['set', 'r', '{"a":1}', '--ttl', '60000', ...at])).code).toBe(0)
    const get = await cli(['get', 'r', ...at, '--json'])
    expect(get.stderr).toBe('')
    expect(JSON.parse(get.stdout)).toEqual({ key: 'r', hit: true, value: { a: 1 } })
    expect(JSON.parse((await cli(['keys', ...at, '--json'])).stdout).keys).toEqual(['r'])
    const ttl = JSON.parse((await cli(['ttl', 'r', ...at, '--json'])).stdout)
    expect(ttl.ttlMs).toBeGreaterThan(0)
    expect(ttl.ttlMs).toBeLessThanOrEqual(60_000)
    const stats = await cli(['stats', ...at])
    expect(stats.code).toBe(0)
    expect(stats.stdout).toMatch(/keeps no counters of its own/)
    expect((await cli(['del', 'r', ...at])).stdout).toBe('deleted 1 of 1 key\n')
    expect((await cli(['get', 'r', ...at])).code).toBe(3)
  })

  it('has --help with examples and exit codes on every command', async () => {
    for (const command of [
      'get',
      'set',
      'del',
      'keys',
      'ttl',
      'stats',
      'warm',
      'bench',
      'doctor',
    ]) {
      const help = await cli([command, '--help'])
      expect(help.code, command).toBe(0)
      expect(help.stdout, command).toMatch(new RegExp(`^Usage: flowcache ${command} `))
      expect(help.stdout, command).toMatch(/\nExit codes: 0 /)
      expect(help.stdout, command).toMatch(/\nExamples:\n {2}flowcache /)
    }
  })
})
