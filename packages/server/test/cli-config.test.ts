/**
 * The data commands read the cache settings of `flowcache.yaml` (`--config`, `FLOWCACHE_CONFIG`
 * or `./flowcache.yaml`), with `--store` over the file's store; `flowcache run --connections`
 * hands a connections file to the flow's scripts.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisUrl } from '../../flowcache/test/helpers/services.js'
import { redisStore } from '../../flowcache/src/stores/redis/index.js'
import { sqliteStore } from '../../flowcache/src/stores/sqlite/index.js'
import { createCache } from '../src/flowcache.js'
import { cli as runCli, type CliOutcome } from './helpers/cli.js'

/** Runs `flowcache <args>` in `cwd` through the installed binary's wrapper. */
function cli(
  args: readonly string[],
  options: { cwd: string; env?: Record<string, string> },
): Promise<CliOutcome> {
  return runCli(args, { ...options, wrapper: true })
}

const run = randomBytes(4).toString('hex')
const redisPrefix = `clicfg${run}`
let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-cli-config-'))
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
  const cache = createCache({ store: redisStore({ url: redisUrl() }), prefix: redisPrefix })
  await cache.clear()
  await cache.close()
})

describe('data commands with flowcache.yaml', { timeout: 120_000 }, () => {
  it('--config names the store, its path (relative to the file) and its prefix', async () => {
    const project = join(dir, 'explicit')
    await mkdir(join(project, 'conf'), { recursive: true })
    const config = join(project, 'conf', 'cache.yaml')
    await writeFile(config, 'cache:\n  type: sqlite\n  path: data/cache.db\n  prefix: cfg\n')
    const set = await cli(['set', 'order:1', '{"total":12}', '--config', config], { cwd: dir })
    expect(set).toMatchObject({ code: 0, stderr: '' })

    // The file's store: sqlite at conf/data/cache.db, with the prefix cfg.
    const db = join(project, 'conf', 'data', 'cache.db')
    const get = await cli(['get', 'order:1', '--config', config], { cwd: dir })
    expect(get.code).toBe(0)
    expect(JSON.parse(get.stdout)).toEqual({ total: 12 })
    // The same database file opened without the file's prefix does not see the entry.
    expect((await cli(['get', 'order:1', '--store', `sqlite:${db}`], { cwd: dir })).code).toBe(3)
    const keys = await cli(['keys', '--config', config, '--json'], { cwd: dir })
    expect(JSON.parse(keys.stdout)).toEqual({ keys: ['order:1'], truncated: false })

    // --store replaces the file's store: memory has nothing.
    const overridden = await cli(['get', 'order:1', '--config', config, '--store', 'memory'], {
      cwd: dir,
    })
    expect(overridden.code).toBe(3)

    const stats = await cli(['stats', '--config', config, '--json'], { cwd: dir })
    expect(stats.code).toBe(0)
    expect(JSON.parse(stats.stdout)).toMatchObject({ store: 'sqlite', config })
  })

  it('reading commands put no quota on the namespace they read; writing ones do', async () => {
    const project = join(dir, 'quota')
    await mkdir(project, { recursive: true })
    const config = join(project, 'flowcache.yaml')
    await writeFile(config, 'cache:\n  type: sqlite\n  path: q.db\n  user_cache_limit_mb: 1\n')
    // Another application on the same file, without quotas, fills "billing" past 1 MiB.
    const other = createCache({ store: sqliteStore({ path: join(project, 'q.db') }) })
    const billing = other.namespace('billing')
    const value = 'x'.repeat(40_000)
    for (let i = 0; i < 40; i++) await billing.set(`k${i}`, value)
    const at = ['--namespace', 'billing', '--config', config]
    try {
      expect((await cli(['get', 'k0', ...at], { cwd: project })).code).toBe(0)
      expect((await cli(['ttl', 'k1', ...at], { cwd: project })).code).toBe(0)
      const listed = await cli(['keys', ...at, '--json'], { cwd: project })
      expect(JSON.parse(listed.stdout).keys).toHaveLength(40)
      expect((await cli(['stats', ...at], { cwd: project })).code).toBe(0)
      expect(await billing.listKeys()).toHaveLength(40)

      // A write applies the allocation: the least recently used entries go.
      expect((await cli(['set', 'new', '"v"', ...at], { cwd: project })).code).toBe(0)
      const left = await billing.listKeys()
      expect(left.length).toBeLessThan(40)
      expect(left).toContain('new')
    } finally {
      await other.close()
    }
  })

  it('finds ./flowcache.yaml like serve, and FLOWCACHE_CONFIG', async () => {
    const project = join(dir, 'implicit')
    await mkdir(project, { recursive: true })
    await writeFile(join(project, 'flowcache.yaml'), 'cache:\n  type: sqlite\n  path: found.db\n')
    const at = ['--namespace', 'tenant:acme/flow:orders']
    expect((await cli(['set', 'k', '"v"', '--ttl', '1h', ...at], { cwd: project })).code).toBe(0)
    const ttl = await cli(['ttl', 'k', ...at, '--json'], { cwd: project })
    expect(JSON.parse(ttl.stdout).ttlMs).toBeGreaterThan(3_000_000)
    // The same entry through an explicit --store on the file the config names.
    const direct = await cli(
      ['get', 'k', ...at, '--store', `sqlite:${join(project, 'found.db')}`],
      {
        cwd: dir,
      },
    )
    expect(direct).toMatchObject({ code: 0, stdout: '"v"\n' })
    const readable = await cli(['stats'], { cwd: project })
    expect(readable.stdout).toContain(`config     ${join(project, 'flowcache.yaml')}`)

    // Elsewhere, FLOWCACHE_CONFIG points at it.
    const viaEnv = await cli(['get', 'k', ...at], {
      cwd: dir,
      env: { FLOWCACHE_CONFIG: join(project, 'flowcache.yaml') },
    })
    expect(viaEnv).toMatchObject({ code: 0, stdout: '"v"\n' })
    // Without a file, the default stays memory.
    expect((await cli(['get', 'k', ...at], { cwd: dir })).code).toBe(3)
  })

  it('uses a Redis store and its prefix from the file', async () => {
    const config = join(dir, 'redis.yaml')
    await writeFile(
      config,
      `cache:\n  type: redis\n  url: ${redisUrl()}\n  prefix: ${redisPrefix}\n`,
    )
    const set = await cli(['set', 'shared', '[1,2]', '--config', config], { cwd: dir })
    expect(set).toMatchObject({ code: 0, stderr: '' })
    const cache = createCache({ store: redisStore({ url: redisUrl() }), prefix: redisPrefix })
    try {
      expect(await cache.get('shared')).toEqual([1, 2])
    } finally {
      await cache.close()
    }
    const del = await cli(['del', 'shared', '--config', config, '--json'], { cwd: dir })
    expect(del.code).toBe(0)
    expect((await cli(['get', 'shared', '--config', config], { cwd: dir })).code).toBe(3)
  })

  it('never falls back to memory, whatever the file says', async () => {
    const config = join(dir, 'down.yaml')
    await writeFile(
      config,
      'cache:\n  type: redis\n  url: redis://127.0.0.1:1\n  fallback: memory\n',
    )
    const set = await cli(['set', 'k', '1', '--config', config, '--json'], { cwd: dir })
    expect(set.code).toBe(1)
    expect(JSON.parse(set.stdout)).toMatchObject({ error: { code: 'E_STORE_UNAVAILABLE' } })
  })

  it('exits 2 with E_CONFIG for an invalid or missing file, naming the field', async () => {
    const config = join(dir, 'bad.yaml')
    await writeFile(config, 'cache:\n  type: mysql\n')
    const bad = await cli(['get', 'k', '--config', config], { cwd: dir })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toMatch(
      /^error E_CONFIG: invalid configuration: .*bad\.yaml:2:3 cache\.type/,
    )
    const missing = await cli(['keys', '--config', join(dir, 'nope.yaml'), '--json'], { cwd: dir })
    expect(missing.code).toBe(2)
    expect(JSON.parse(missing.stdout).error.message).toContain('nope.yaml')
  })
})

describe('flowcache doctor next to a flowcache.yaml', { timeout: 60_000 }, () => {
  it('checks --store alone and does not read the file', async () => {
    const project = join(dir, 'doctor')
    await mkdir(project, { recursive: true })
    await writeFile(join(project, 'flowcache.yaml'), 'cache:\n  type: mysql\n')
    const result = await cli(['doctor', '--store', `sqlite:${join(project, 'd.db')}`, '--json'], {
      cwd: project,
    })
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout).checks).toContainEqual(
      expect.objectContaining({ name: 'store probe', status: 'pass' }),
    )
  })
})

describe('flowcache run --connections', { timeout: 90_000 }, () => {
  let flowFile: string
  beforeAll(async () => {
    flowFile = join(dir, 'crm.yaml')
    await writeFile(
      flowFile,
      `name: crm
tenant: t${run}
connections: [crm]
trigger:
  http: { method: POST, path: /crm }
steps:
  - name: call
    script: |
      return { data: { url: ctx.connections.crm.url, names: Object.keys(ctx.connections) } }
`,
    )
  })

  it('gives the flow the entries it declares', async () => {
    const connections = join(dir, 'connections.yaml')
    await writeFile(
      connections,
      'crm:\n  url: https://crm.example.com\nbilling:\n  url: https://billing.example.com\n',
    )
    const result = await cli(['run', flowFile, '--connections', connections, '--json'], {
      cwd: dir,
    })
    expect(result.stderr).toBe('')
    expect(result.code).toBe(0)
    expect(JSON.parse(result.stdout).output).toEqual({
      data: { url: 'https://crm.example.com', names: ['crm'] },
    })
  })

  it('fails without the file (exit 1) and for a broken one (exit 2)', async () => {
    const without = await cli(['run', flowFile, '--json'], { cwd: dir })
    expect(without.code).toBe(1)
    expect(JSON.parse(without.stdout).error.code).toBe('E_CONNECTION_MISSING')

    const broken = join(dir, 'broken.yaml')
    await writeFile(broken, '- just\n- a list\n')
    const bad = await cli(['run', flowFile, '--connections', broken], { cwd: dir })
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('broken.yaml')
    expect(bad.stderr).toContain('must be a mapping of connection names')

    const missing = await cli(['run', flowFile, '--connections', join(dir, 'none.yaml')], {
      cwd: dir,
    })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain('none.yaml')
  })
})
