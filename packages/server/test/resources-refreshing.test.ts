/**
 * Refreshing resources and file resources: background reloads on a manual clock, stale-if-error
 * with backoff, debug bypass, clear and refresh, and parse errors that name the file and line.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { InvalidArgumentError, ManualClock, silentLogger, type Logger } from '../src/flowcache.js'
import {
  createRefreshingResource,
  fileResource,
  ManualScheduler,
  ResourceLoadError,
  ResourceParseError,
  type LoadContext,
  type RefreshingResource,
  type RefreshingResourceOptions,
} from '../src/resources/index.js'

const MINUTE = 60_000

/** Lets pending promise callbacks run (the loaders here settle within a few microtasks). */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** A logger that records warnings and infos. */
function recordingLogger(): Logger & { warnings: string[]; infos: string[] } {
  const warnings: string[] = []
  const infos: string[] = []
  return {
    ...silentLogger,
    warnings,
    infos,
    warn: (message) => warnings.push(message),
    info: (message) => infos.push(message),
  }
}

/**
 * A loader whose answers the test sets: it returns `value` (a fresh copy each call) or throws
 * `failWith`, and records the reason of each call.
 */
function controlledLoader() {
  const state = {
    version: 1,
    failWith: undefined as Error | undefined,
    reasons: [] as string[],
    load: (context: LoadContext) => {
      state.reasons.push(context.reason)
      if (state.failWith !== undefined) return Promise.reject(state.failWith)
      return Promise.resolve({ version: state.version })
    },
  }
  return state
}

function setup(options: Partial<RefreshingResourceOptions<{ version: number }>> = {}) {
  const clock = new ManualClock()
  const scheduler = new ManualScheduler(clock)
  const loader = controlledLoader()
  const logger = recordingLogger()
  const resource = createRefreshingResource({
    name: 'connections',
    load: loader.load,
    refreshEvery: '5m',
    retryDelay: '10s',
    clock,
    scheduler,
    logger,
    ...options,
  })
  return { clock, scheduler, loader, logger, resource }
}

let running: RefreshingResource<unknown>[] = []
afterEach(() => {
  for (const resource of running) resource.stop()
  running = []
})

describe('RefreshingResource', () => {
  it('loads at start, serves the held value, and reloads every refreshEvery', async () => {
    const { clock, scheduler, loader, resource } = setup()
    running.push(resource)
    expect(loader.reasons).toEqual([]) // nothing happens before start
    expect(await resource.start()).toEqual({ version: 1 })
    expect(resource.stats()).toMatchObject({
      loads: 1,
      hasValue: true,
      running: true,
      lastLoadedAt: clock.now(),
      nextLoadAt: clock.now() + 5 * MINUTE,
    })

    loader.version = 2
    expect(await resource.get()).toEqual({ version: 1 }) // cached: no load
    expect(loader.reasons).toEqual(['start'])

    scheduler.advance(5 * MINUTE - 1)
    await flush()
    expect(loader.reasons).toEqual(['start'])
    scheduler.advance(1)
    await flush()
    expect(loader.reasons).toEqual(['start', 'scheduled'])
    expect(await resource.get()).toEqual({ version: 2 })
    expect(resource.stats()).toMatchObject({ loads: 2, ageMs: 0 })

    clock.advance(MINUTE)
    expect(resource.stats().ageMs).toBe(MINUTE)
    scheduler.advance(4 * MINUTE)
    await flush()
    expect(loader.reasons).toEqual(['start', 'scheduled', 'scheduled'])
  })

  it('keeps the last good value when reloads fail, logs, counts and retries with backoff', async () => {
    const { clock, scheduler, loader, logger, resource } = setup({ maxRetryDelay: '30s' })
    running.push(resource)
    await resource.start()
    const loadedAt = clock.now()

    loader.failWith = new Error('connections store unreachable')
    loader.version = 2
    scheduler.advance(5 * MINUTE)
    await flush()
    expect(await resource.get()).toEqual({ version: 1 })
    expect(resource.stats()).toMatchObject({
      loads: 1,
      failures: 1,
      consecutiveFailures: 1,
      stale: true,
      hasValue: true,
      lastLoadedAt: loadedAt,
      lastFailedAt: clock.now(),
      lastError: 'connections store unreachable',
      nextLoadAt: clock.now() + 10_000,
    })
    expect(logger.warnings).toEqual([
      'flowcache resource: reload failed; serving the last good value',
    ])

    // Backoff: 10 s, then 20 s, then capped at maxRetryDelay (30 s).
    scheduler.advance(10_000)
    await flush()
    expect(resource.stats()).toMatchObject({ failures: 2, nextLoadAt: clock.now() + 20_000 })
    scheduler.advance(20_000)
    await flush()
    expect(resource.stats()).toMatchObject({ failures: 3, nextLoadAt: clock.now() + 30_000 })
    scheduler.advance(30_000)
    await flush()
    expect(resource.stats()).toMatchObject({ failures: 4, nextLoadAt: clock.now() + 30_000 })
    expect(loader.reasons.slice(1)).toEqual(['scheduled', 'retry', 'retry', 'retry'])
    expect(await resource.get()).toEqual({ version: 1 })

    // The source comes back: the next retry loads, and the normal cadence resumes.
    loader.failWith = undefined
    scheduler.advance(30_000)
    await flush()
    expect(await resource.get()).toEqual({ version: 2 })
    expect(resource.stats()).toMatchObject({
      loads: 2,
      failures: 4,
      consecutiveFailures: 0,
      stale: false,
      nextLoadAt: clock.now() + 5 * MINUTE,
    })
    expect(logger.infos).toEqual(['flowcache resource: loaded again after failures'])
  })

  it('bypasses the held value for debug gets and does not keep what they load', async () => {
    const { loader, resource } = setup()
    running.push(resource)
    await resource.start()
    loader.version = 7
    expect(await resource.get({ debug: true })).toEqual({ version: 7 })
    expect(await resource.get({ debug: true })).toEqual({ version: 7 })
    expect(await resource.get()).toEqual({ version: 1 })
    expect(loader.reasons).toEqual(['start', 'debug', 'debug'])
    expect(resource.stats()).toMatchObject({ loads: 1, debugLoads: 2 })

    // A failing debug load is the caller's error; the held value is untouched.
    loader.failWith = new Error('bad credentials')
    const error = await resource.get({ debug: true }).then(
      () => undefined,
      (rejection: unknown) => rejection,
    )
    expect(error).toBeInstanceOf(ResourceLoadError)
    expect((error as ResourceLoadError).code).toBe('E_RESOURCE_LOAD')
    expect((error as ResourceLoadError).resource).toBe('connections')
    expect((error as Error).message).toBe(
      'resource "connections" could not be loaded: bad credentials',
    )
    expect(await resource.get()).toEqual({ version: 1 })
    expect(resource.stats()).toMatchObject({ failures: 0, debugLoads: 3, stale: false })
  })

  it('clear drops the held value: the next get loads fresh', async () => {
    const { loader, resource } = setup()
    await resource.get()
    loader.version = 2
    resource.clear()
    expect(resource.peek()).toBeUndefined()
    expect(resource.stats().hasValue).toBe(false)
    expect(await resource.get()).toEqual({ version: 2 })
    expect(loader.reasons).toEqual(['get', 'get'])
  })

  it('clear during a load does not keep that load', async () => {
    const clock = new ManualClock()
    let release: (value: string) => void = () => undefined
    const loads: string[] = []
    const resource = createRefreshingResource<string>({
      name: 'secrets',
      clock,
      scheduler: new ManualScheduler(clock),
      logger: silentLogger,
      load: () => {
        loads.push('load')
        if (loads.length === 1) return new Promise<string>((resolve) => (release = resolve))
        return 'after clear'
      },
    })
    const first = resource.get()
    resource.clear()
    expect(await resource.get()).toBe('after clear')
    release('before clear')
    expect(await first).toBe('before clear')
    expect(resource.peek()).toBe('after clear')
    expect(loads).toHaveLength(2)
  })

  it('shares one load among concurrent gets', async () => {
    const { loader, resource } = setup()
    const values = await Promise.all(Array.from({ length: 50 }, () => resource.get()))
    expect(values.every((value) => value.version === 1)).toBe(true)
    expect(loader.reasons).toEqual(['get'])
  })

  it('refresh reloads now; a failed refresh rejects and keeps the value', async () => {
    const { loader, resource } = setup()
    await resource.get()
    loader.version = 2
    expect(await resource.refresh()).toEqual({ version: 2 })
    expect(await resource.get()).toEqual({ version: 2 })

    loader.failWith = new Error('timeout')
    await expect(resource.refresh()).rejects.toBeInstanceOf(ResourceLoadError)
    expect(await resource.get()).toEqual({ version: 2 })
    expect(resource.stats()).toMatchObject({ loads: 2, failures: 1, stale: true })
  })

  it('a failed first load rejects, and background retries recover', async () => {
    const { scheduler, loader, resource } = setup()
    running.push(resource)
    loader.failWith = new Error('file server down')
    await expect(resource.start()).rejects.toThrow(
      'resource "connections" could not be loaded: file server down',
    )
    await expect(resource.get()).rejects.toBeInstanceOf(ResourceLoadError)
    expect(resource.stats()).toMatchObject({ hasValue: false, stale: false, failures: 2 })

    loader.failWith = undefined
    scheduler.advance(5 * MINUTE)
    await flush()
    expect(resource.peek()).toEqual({ version: 1 })
  })

  it('stop ends background reloads and aborts the running load', async () => {
    const { scheduler, loader, resource } = setup()
    await resource.start()
    expect(scheduler.pending).toBe(1)
    resource.stop()
    expect(scheduler.pending).toBe(0)
    expect(resource.stats()).toMatchObject({ running: false, nextLoadAt: null })
    scheduler.advance(60 * MINUTE)
    await flush()
    expect(loader.reasons).toEqual(['start'])
    expect(await resource.get()).toEqual({ version: 1 }) // still serves what it holds

    let signal: AbortSignal | undefined
    const slow = createRefreshingResource({
      name: 'slow',
      logger: silentLogger,
      load: (context) => {
        signal = context.signal
        return new Promise<number>((resolve) => setImmediate(() => resolve(1)))
      },
    })
    const started = slow.start()
    slow.stop()
    expect(signal?.aborted).toBe(true)
    expect(await started).toBe(1)
  })

  it('refuses bad options when created', () => {
    const load = () => 1
    expect(() => createRefreshingResource({ name: '', load })).toThrow(InvalidArgumentError)
    expect(() => createRefreshingResource({ name: 'x', load, refreshEvery: 0 })).toThrow(
      /refreshEvery/,
    )
    expect(() => createRefreshingResource({ name: 'x', load, retryDelay: 'soon' })).toThrow(
      /retryDelay/,
    )
    expect(() =>
      createRefreshingResource({ name: 'x', load: 'nope' as unknown as () => number }),
    ).toThrow(/load must be a function/)
  })
})

describe('fileResource', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flowcache-resources-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  function manual() {
    const clock = new ManualClock()
    return { clock, scheduler: new ManualScheduler(clock), logger: silentLogger }
  }

  it('reads a YAML file and picks up changes on the next refresh', async () => {
    const path = join(dir, 'connections.yaml')
    await writeFile(path, 'crm:\n  url: https://crm.example\n')
    const time = manual()
    const resource = fileResource(path, undefined, { ...time, refreshEvery: '1m' })
    running.push(resource)
    expect(await resource.start()).toEqual({ crm: { url: 'https://crm.example' } })
    expect(resource.name).toBe(path)

    await writeFile(path, 'crm:\n  url: https://crm2.example\n')
    expect(await resource.get()).toEqual({ crm: { url: 'https://crm.example' } })
    time.scheduler.advance(MINUTE)
    await vi.waitFor(() => expect(resource.stats().loads).toBe(2))
    expect(await resource.get()).toEqual({ crm: { url: 'https://crm2.example' } })
  })

  it('a YAML syntax error is a failure naming the file and line; the last good value stays', async () => {
    const path = join(dir, 'connections.yml')
    await writeFile(path, 'crm:\n  url: a\n')
    const time = manual()
    const resource = fileResource(path, undefined, { ...time, name: 'connections' })
    running.push(resource)
    await resource.start()

    await writeFile(path, 'crm:\n  url: a\n  tags: [one, two\nerp: {}\n')
    time.scheduler.advance(5 * MINUTE)
    await vi.waitFor(() => expect(resource.stats().failures).toBe(1))
    expect(resource.stats().lastError).toMatch(
      new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4:1: invalid YAML: `),
    )
    expect(await resource.get()).toEqual({ crm: { url: 'a' } })

    // The same file without a good value to fall back on: the error says where.
    const fresh = fileResource(path, undefined, { ...manual() })
    const error = await fresh.get().then(
      () => undefined,
      (rejection: unknown) => rejection,
    )
    expect(error).toBeInstanceOf(ResourceLoadError)
    const cause = (error as ResourceLoadError).cause
    expect(cause).toBeInstanceOf(ResourceParseError)
    expect(cause).toMatchObject({ code: 'E_RESOURCE_PARSE', file: path, line: 4, column: 1 })
    expect((error as Error).message).toContain(`${path}:4:1: invalid YAML`)
  })

  it('a JSON syntax error names the file, line and column', async () => {
    const path = join(dir, 'secrets.json')
    await writeFile(path, '{\n  "crm": {\n    "token": "abc",\n  }\n}\n')
    const resource = fileResource(path, undefined, manual())
    const error = await resource.get().then(
      () => undefined,
      (rejection: unknown) => rejection,
    )
    const cause = (error as ResourceLoadError).cause
    expect(cause).toBeInstanceOf(ResourceParseError)
    expect(cause).toMatchObject({ line: 4, column: 3 })
    expect((error as Error).message).toBe(
      `resource "${path}" could not be loaded: ${path}:4:3: invalid JSON: unexpected "}"`,
    )
  })

  it.each([
    ['{"a": 1', 1, 8],
    ['{"a": tru}', 1, 7],
    ['[1,\n2,,3]', 2, 3],
    ['{"a": 1}\n{"b": 2}', 2, 1],
    ['', 1, 1],
    ['{"a": "line\nbreak"}', 1, 12],
  ])('locates the JSON error in %j at %i:%i', async (text, line, column) => {
    const path = join(dir, 'doc.json')
    await writeFile(path, text)
    const error = await fileResource(path, undefined, manual())
      .get()
      .then(
        () => undefined,
        (rejection: unknown) => rejection,
      )
    expect((error as ResourceLoadError).cause).toMatchObject({ line, column })
  })

  it('parses a .json file as JSON only, and format overrides the extension', async () => {
    const path = join(dir, 'conf.json')
    await writeFile(path, 'a: 1\n')
    await expect(fileResource(path, undefined, manual()).get()).rejects.toThrow(/invalid JSON/)
    expect(await fileResource(path, undefined, { ...manual(), format: 'yaml' }).get()).toEqual({
      a: 1,
    })
  })

  it('a missing file is a failure that names it', async () => {
    const path = join(dir, 'nowhere.yaml')
    await expect(fileResource(path, undefined, manual()).get()).rejects.toThrow(
      `${path}: the file does not exist; create it or fix the path`,
    )
  })

  it('parse shapes the value and a refusal is a failure naming the file', async () => {
    const path = join(dir, 'connections.yaml')
    await writeFile(path, 'crm: { url: https://crm.example }\n')
    const parse = (document: unknown): Map<string, string> => {
      if (typeof document !== 'object' || document === null) throw new Error('expected a map')
      const entries = Object.entries(document as Record<string, { url?: unknown }>)
      return new Map(
        entries.map(([name, connection]) => {
          if (typeof connection.url !== 'string') throw new Error(`${name}.url must be a string`)
          return [name, connection.url]
        }),
      )
    }
    const time = manual()
    const resource = fileResource(path, parse, time)
    running.push(resource)
    expect(await resource.start()).toEqual(new Map([['crm', 'https://crm.example']]))

    await writeFile(path, 'crm: { url: 42 }\n')
    await expect(resource.refresh()).rejects.toThrow(
      `${path}: is not a valid resource: crm.url must be a string`,
    )
    expect(await resource.get()).toEqual(new Map([['crm', 'https://crm.example']]))
  })

  it('refuses bad arguments when created', () => {
    expect(() => fileResource('')).toThrow(InvalidArgumentError)
    expect(() => fileResource('a.yaml', 'x' as unknown as () => unknown)).toThrow(/parse/)
    expect(() =>
      fileResource('a.yaml', undefined, { format: 'toml' as unknown as 'json' }),
    ).toThrow(/format must be "json" or "yaml"/)
  })
})
