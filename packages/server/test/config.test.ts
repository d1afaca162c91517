import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  ConfigError,
  createCacheFromConfig,
  isLoopbackHost,
  loadConfig,
  storeOverrides,
} from '../src/config/index.js'

let dir: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-config-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Writes `text` as a config file in a fresh folder and returns the folder. */
async function configDir(name: string, text: string): Promise<string> {
  const folder = join(dir, name)
  await import('node:fs/promises').then(({ mkdir }) => mkdir(folder, { recursive: true }))
  await writeFile(join(folder, 'flowcache.yaml'), text)
  return folder
}

async function configError(promise: Promise<unknown>): Promise<ConfigError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(ConfigError)
  return error as ConfigError
}

describe('loadConfig', () => {
  it('fills in the defaults without a file', async () => {
    const config = await loadConfig({ env: {}, cwd: dir, exampleFlowsDir: null })
    expect(config.file).toBeUndefined()
    expect(config.cache).toEqual({
      enabled: true,
      type: 'sqlite',
      path: join(dir, '.flowcache', 'cache.db'),
      fallback: 'memory',
    })
    expect(config.server).toEqual({ host: '127.0.0.1', port: 7700, bodyLimit: 1024 * 1024 })
    expect(config.flows).toEqual({ tenant: 'default' })
  })

  it('uses the example flows when no folder is configured and they exist', async () => {
    const config = await loadConfig({ env: {}, cwd: dir, exampleFlowsDir: dir })
    expect(config.flows).toEqual({ tenant: 'default', dir, dirSource: 'examples' })
  })

  it('accepts a flowgen cache block as-is', async () => {
    const cwd = await configDir(
      'flowgen',
      [
        'cache:',
        '  enabled: true',
        '  type: nats',
        '  credentials_path: /etc/nats/credentials.json',
        '  url: localhost:4222',
        '  db_name: flowgen_cache',
        '  history: 10',
        '  tombstone_ttl: "1h"',
        '',
      ].join('\n'),
    )
    const config = await loadConfig({ env: {}, cwd, exampleFlowsDir: null })
    expect(config.file).toBe(join(cwd, 'flowcache.yaml'))
    expect(config.cache).toMatchObject({
      enabled: true,
      type: 'nats',
      url: 'nats://localhost:4222',
      credentialsPath: '/etc/nats/credentials.json',
      dbName: 'flowgen_cache',
      history: 10,
      tombstoneTtlMs: 3_600_000,
    })
  })

  it('reads flowcache fields, resolving relative paths against the file folder', async () => {
    const cwd = await configDir(
      'full',
      [
        'cache:',
        '  type: sqlite',
        '  path: data/cache.db',
        '  max_entries: 1000',
        '  max_memory_mb: 64',
        '  prefix: billing',
        '  fallback: fail',
        'server:',
        '  host: 0.0.0.0',
        '  port: 8080',
        '  token_file: secret.txt',
        '  body_limit: 256KiB',
        'flows:',
        '  dir: flows',
        '  tenant: acme',
        '',
      ].join('\n'),
    )
    await writeFile(join(cwd, 'secret.txt'), 'a-token-of-enough-length\n')
    const config = await loadConfig({ env: {}, cwd: dir, file: join(cwd, 'flowcache.yaml') })
    expect(config.cache).toMatchObject({
      path: join(cwd, 'data', 'cache.db'),
      maxEntries: 1000,
      maxMemoryMb: 64,
      prefix: 'billing',
      fallback: 'fail',
    })
    expect(config.server).toEqual({
      host: '0.0.0.0',
      port: 8080,
      token: 'a-token-of-enough-length',
      bodyLimit: 256 * 1024,
    })
    expect(config.flows).toEqual({ dir: join(cwd, 'flows'), dirSource: 'config', tenant: 'acme' })
  })

  it('names the file, line, column and field of every problem', async () => {
    const cwd = await configDir(
      'bad',
      [
        'cache:',
        '  type: mysql',
        '  history: 100',
        '  colour: blue',
        'server:',
        '  port: "x"',
        '  body_limit: 1',
        'flows:',
        '  tenant: "no spaces"',
        'extra: 1',
        '',
      ].join('\n'),
    )
    const error = await configError(loadConfig({ env: {}, cwd }))
    const lines = error.message
      .split('\n')
      .slice(1)
      .map((line) => line.trim())
    expect(lines).toEqual(
      expect.arrayContaining([
        "flowcache.yaml:2:3 cache.type: must be one of memory, sqlite, redis, nats; got 'mysql'",
        'flowcache.yaml:3:3 cache.history: must be an integer from 0 to 64; got number 100',
        expect.stringMatching(
          /^flowcache\.yaml:4:3 cache\.colour: is not a field here \(known: enabled, type, url/,
        ),
        "flowcache.yaml:6:3 server.port: must be an integer from 0 to 65535; got 'x'",
        expect.stringMatching(
          /^flowcache\.yaml:7:3 server\.body_limit: must be a size from 1KiB to 1GiB/,
        ),
        expect.stringMatching(/^flowcache\.yaml:9:3 flows\.tenant: must be 1-100 letters/),
        expect.stringMatching(
          /^flowcache\.yaml:10:1 extra: is not a field here \(known: cache, server, flows, quotas\)/,
        ),
      ]),
    )
    expect(error.issues).toHaveLength(7)
    expect(error.code).toBe('E_CONFIG')
  })

  it('reports YAML syntax errors with their position', async () => {
    const cwd = await configDir('syntax', 'cache:\n  type: [sqlite\nserver: {}\n')
    const error = await configError(loadConfig({ env: {}, cwd }))
    expect(error.issues[0]?.source).toMatch(/^flowcache\.yaml:\d+:\d+$/)
    expect(error.message).toContain('is not valid YAML')
  })

  it('refuses options that do not fit the store', async () => {
    const cwd = await configDir(
      'mismatch',
      'cache:\n  type: redis\n  max_entries: 10\n  url: http://x\n',
    )
    const error = await configError(loadConfig({ env: {}, cwd }))
    expect(error.issues.map((issue) => `${issue.source} ${issue.path}`)).toEqual([
      'flowcache.yaml:4:3 cache.url',
      'flowcache.yaml:3:3 cache.max_entries',
    ])
    const l1 = await configDir('l1-sqlite', 'cache:\n  type: sqlite\n  l1: true\n')
    expect((await configError(loadConfig({ env: {}, cwd: l1 }))).message).toContain(
      'cache.l1: needs a redis or nats store',
    )
  })

  it('lets environment variables override the file, and options override both', async () => {
    const cwd = await configDir('env', 'cache:\n  type: sqlite\nserver:\n  port: 8080\n')
    const config = await loadConfig({
      cwd,
      env: {
        FLOWCACHE_CACHE_TYPE: 'redis',
        FLOWCACHE_CACHE_URL: 'redis://127.0.0.1:6379/2',
        FLOWCACHE_PORT: '9000',
        FLOWCACHE_HOST: '127.0.0.2',
        FLOWCACHE_FLOWS_DIR: 'my-flows',
        FLOWCACHE_TENANT: 'acme',
        FLOWCACHE_CACHE_ENABLED: 'yes',
      },
      overrides: [{ path: ['server', 'port'], value: '9100', source: '--port' }],
    })
    expect(config.cache).toMatchObject({ type: 'redis', url: 'redis://127.0.0.1:6379/2' })
    expect(config.server).toMatchObject({ host: '127.0.0.2', port: 9100 })
    expect(config.flows).toMatchObject({ dir: join(cwd, 'my-flows'), tenant: 'acme' })
  })

  it('names the environment variable or option of a bad value', async () => {
    const error = await configError(
      loadConfig({
        cwd: dir,
        env: { FLOWCACHE_PORT: 'eighty', FLOWCACHE_CACHE_TYPE: 'disk' },
        overrides: storeOverrides('sqlite:'),
      }),
    )
    // --store sets cache.type after the environment, so only the port is wrong.
    expect(error.issues).toEqual([
      {
        source: 'FLOWCACHE_PORT',
        path: 'server.port',
        message: "must be an integer from 0 to 65535; got 'eighty'",
      },
    ])
    expect(() => storeOverrides('mysql://x')).toThrow(ConfigError)
  })

  it('reads the user-cache limit and per-namespace quotas, and FLOWCACHE_USER_CACHE_LIMIT_MB overrides the file', async () => {
    const cwd = await configDir(
      'quotas',
      [
        'cache:',
        '  type: memory',
        '  user_cache_limit_mb: 30',
        'quotas:',
        '  "tenant:acme":',
        '    max_memory_mb: 100',
        '  reports:',
        '    max_entries: 5000',
        '    max_memory_mb: 8',
        '',
      ].join('\n'),
    )
    const config = await loadConfig({ env: {}, cwd, exampleFlowsDir: null })
    expect(config.cache.userCacheLimitMb).toBe(30)
    expect(config.cache.quotas).toEqual({
      'tenant:acme': { maxMemoryMb: 100 },
      reports: { maxEntries: 5000, maxMemoryMb: 8 },
    })
    const fromEnv = await loadConfig({
      env: { FLOWCACHE_USER_CACHE_LIMIT_MB: '12' },
      cwd,
      exampleFlowsDir: null,
    })
    expect(fromEnv.cache.userCacheLimitMb).toBe(12)
    const envOnly = await loadConfig({
      env: { FLOWCACHE_USER_CACHE_LIMIT_MB: '7', FLOWCACHE_CACHE_TYPE: 'memory' },
      cwd: dir,
      exampleFlowsDir: null,
    })
    expect(envOnly.cache.userCacheLimitMb).toBe(7)
    expect(envOnly.cache.quotas).toBeUndefined()
  })

  it('names the field of a bad quota, in the file and in the environment', async () => {
    const cwd = await configDir(
      'bad-quotas',
      [
        'cache:',
        '  user_cache_limit_mb: 0',
        'quotas:',
        '  acme:',
        '    max_memory_mb: "lots"',
        '  empty: {}',
        '  other:',
        '    max_bytes: 5',
        '',
      ].join('\n'),
    )
    const error = await configError(loadConfig({ env: {}, cwd }))
    const lines = error.message
      .split('\n')
      .slice(1)
      .map((line) => line.trim())
    expect(lines).toEqual(
      expect.arrayContaining([
        'flowcache.yaml:2:3 cache.user_cache_limit_mb: must be an integer from 1 to 1000000; got number 0',
        "flowcache.yaml:5:5 quotas.acme.max_memory_mb: must be an integer from 1 to 1000000; got 'lots'",
        'flowcache.yaml:6:3 quotas.empty: must give max_memory_mb, max_entries or both',
        expect.stringMatching(
          /^flowcache\.yaml:8:5 quotas\.other\.max_bytes: is not a field here \(known: max_memory_mb, max_entries\)/,
        ),
      ]),
    )
    const fromEnv = await configError(
      loadConfig({ env: { FLOWCACHE_USER_CACHE_LIMIT_MB: '30MB' }, cwd: dir }),
    )
    expect(fromEnv.issues).toEqual([
      {
        source: 'FLOWCACHE_USER_CACHE_LIMIT_MB',
        path: 'cache.user_cache_limit_mb',
        message: "must be an integer from 1 to 1000000; got '30MB'",
      },
    ])
    const notMapping = await configDir('quotas-list', 'quotas:\n  - acme\n')
    expect((await configError(loadConfig({ env: {}, cwd: notMapping }))).message).toMatch(
      /quotas: must be a mapping of namespace name/,
    )
  })

  it('keeps the cache in memory when flowgen says enabled: false', async () => {
    const cwd = await configDir('disabled', 'cache:\n  enabled: false\n  type: nats\n')
    const config = await loadConfig({ env: {}, cwd, exampleFlowsDir: null })
    expect(config.cache.type).toBe('memory')
  })

  it('refuses to bind beyond loopback without a token, saying how to set one', async () => {
    const error = await configError(loadConfig({ cwd: dir, env: { FLOWCACHE_HOST: '0.0.0.0' } }))
    expect(error.issues).toHaveLength(1)
    expect(error.issues[0]?.source).toBe('FLOWCACHE_HOST')
    expect(error.message).toContain('set FLOWCACHE_TOKEN')
    const short = await configError(
      loadConfig({ cwd: dir, env: { FLOWCACHE_HOST: '0.0.0.0', FLOWCACHE_TOKEN: 'short' } }),
    )
    expect(short.message).toContain('server.token: must be at least 16 characters')
    const ok = await loadConfig({
      cwd: dir,
      env: { FLOWCACHE_HOST: '0.0.0.0', FLOWCACHE_TOKEN: '0123456789abcdef' },
    })
    expect(ok.server.token).toBe('0123456789abcdef')
  })

  it('knows loopback addresses', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) {
      expect(isLoopbackHost(host)).toBe(true)
    }
    for (const host of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', 'example.com']) {
      expect(isLoopbackHost(host)).toBe(false)
    }
  })

  it('fails when an asked-for file is missing', async () => {
    const error = await configError(
      loadConfig({ cwd: dir, env: { FLOWCACHE_CONFIG: 'nope.yaml' } }),
    )
    expect(error.message).toContain('cannot read the configuration file nope.yaml')
  })
})

describe('createCacheFromConfig', () => {
  it('opens the configured SQLite file and memory stores', async () => {
    const path = join(dir, 'store', 'cache.db')
    const config = await loadConfig({
      cwd: dir,
      env: { FLOWCACHE_CACHE_PATH: path, FLOWCACHE_CACHE_PREFIX: 'cfgtest' },
      exampleFlowsDir: null,
    })
    const cache = await createCacheFromConfig(config)
    await cache.ready()
    expect(cache.store.name).toBe('sqlite')
    await cache.set('k', { v: 1 })
    await cache.close()
    const again = await createCacheFromConfig(config)
    expect(await again.get('k')).toEqual({ v: 1 })
    await again.close()
    const memory = await createCacheFromConfig(
      await loadConfig({ cwd: dir, env: { FLOWCACHE_CACHE_TYPE: 'memory' } }),
    )
    expect(memory.store.name).toBe('memory')
    await memory.close()
  })

  it('gives every top-level namespace the user-cache limit, and a configured namespace its own quota', async () => {
    const cwd = await configDir(
      'quota-cache',
      [
        'cache:',
        '  type: memory',
        '  user_cache_limit_mb: 1',
        'quotas:',
        '  big:',
        '    max_memory_mb: 4',
        '  few:',
        '    max_entries: 3',
        '',
      ].join('\n'),
    )
    const cache = await createCacheFromConfig(
      await loadConfig({ env: {}, cwd, exampleFlowsDir: null }),
    )
    const MIB = 1024 * 1024
    expect((await cache.namespace('tenant:x').namespaceStats()).quota).toEqual({ maxBytes: MIB })
    expect((await cache.namespace('big').namespaceStats()).quota).toEqual({ maxBytes: 4 * MIB })
    // A field the override does not give keeps the default's.
    expect((await cache.namespace('few').namespaceStats()).quota).toEqual({
      maxBytes: MIB,
      maxEntries: 3,
    })
    const tenant = cache.namespace('tenant:y')
    const value = 'v'.repeat(100 * 1024)
    for (let i = 0; i < 20; i++) await tenant.set(`k${i}`, value)
    const usage = await tenant.namespaceStats()
    expect(usage.bytes).toBeLessThanOrEqual(MIB)
    expect(usage.evictions).toBeGreaterThan(0)
    await cache.close()
  })

  it('reports an unreadable NATS credentials file', async () => {
    const config = await loadConfig({
      cwd: dir,
      env: { FLOWCACHE_CACHE_TYPE: 'nats', FLOWCACHE_NATS_CREDENTIALS: join(dir, 'missing.creds') },
    })
    await expect(createCacheFromConfig(config)).rejects.toThrow(
      /cache\.credentials_path: cannot read the NATS credentials file/,
    )
  })
})
