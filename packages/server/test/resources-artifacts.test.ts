/**
 * The artifact cache: fetch once, content checks, digests, name checks, disk bound, and two
 * processes sharing one directory.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { InvalidArgumentError, ManualClock, silentLogger } from '../src/flowcache.js'
import {
  ArtifactDigestError,
  ArtifactFetchError,
  createArtifactCache,
  type ArtifactCacheOptions,
  type ArtifactFetcher,
} from '../src/resources/index.js'

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
const worker = fileURLToPath(new URL('./fixtures/resources-artifact-worker.ts', import.meta.url))

let dir: string

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-artifacts-'))
})

afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

function sha256(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** A fetch function that returns `content` and counts its calls. */
function counting(content: Uint8Array | string = 'bundle v1'): ArtifactFetcher & { calls: number } {
  const fetcher = Object.assign(
    async () => {
      fetcher.calls++
      await new Promise((resolve) => setImmediate(resolve))
      return content
    },
    { calls: 0 },
  )
  return fetcher
}

function cacheIn(options: Partial<ArtifactCacheOptions> = {}) {
  return createArtifactCache({ dir: join(dir, 'cache'), logger: silentLogger, ...options })
}

/** The entries under the cache's temporary directory (empty when nothing was left behind). */
async function leftovers(): Promise<string[]> {
  try {
    return await readdir(join(dir, 'cache', '.tmp'))
  } catch {
    return []
  }
}

describe('ArtifactCache.get', () => {
  it('fetches once for 100 concurrent gets and serves later gets from disk', async () => {
    const cache = cacheIn()
    const fetch = counting('export default 42')
    const infos = await Promise.all(
      Array.from({ length: 100 }, () => cache.get('lib-orders', '1.4.0', fetch)),
    )
    expect(fetch.calls).toBe(1)
    expect(new Set(infos.map((info) => info.path)).size).toBe(1)
    const [first] = infos
    expect(first?.sha256).toBe(sha256('export default 42'))
    expect(first?.size).toBe(17)
    expect(await readFile(first?.path ?? '', 'utf8')).toBe('export default 42')

    const again = await cache.get('lib-orders', '1.4.0', fetch)
    expect(fetch.calls).toBe(1)
    expect(again.path).toBe(first?.path)
    expect(cache.stats()).toMatchObject({ fetches: 1, hits: 1, bytesFetched: 17, inFlight: 0 })

    // A new cache over the same directory (a restarted host) finds it too: it never expires.
    const restarted = cacheIn()
    await restarted.get('lib-orders', '1.4.0', fetch)
    expect(fetch.calls).toBe(1)
    expect(await leftovers()).toEqual([])
  })

  it('keeps versions apart and accepts streamed content', async () => {
    const cache = cacheIn()
    const v1 = await cache.get('pkg', '1.0.0', counting('one'))
    const v2 = await cache.get('pkg', '2.0.0', async function* () {
      yield 'tw'
      yield Buffer.from('o!')
    })
    expect(v1.path).not.toBe(v2.path)
    expect(await readFile(v1.path, 'utf8')).toBe('one')
    expect(await readFile(v2.path, 'utf8')).toBe('two!')
    expect(v2.sha256).toBe(sha256('two!'))
  })

  it('accepts scoped names and keeps them apart from look-alike name/version pairs', async () => {
    const cache = cacheIn()
    const scoped = await cache.get('@acme/orders', 'pkg', counting('scoped'))
    const plain = await cache.get('@acme', 'orders', counting('plain'))
    expect(await readFile(scoped.path, 'utf8')).toBe('scoped')
    expect(await readFile(plain.path, 'utf8')).toBe('plain')
    expect((await cache.list()).map((info) => `${info.name}@${info.version}`)).toEqual([
      '@acme@orders',
      '@acme/orders@pkg',
    ])
  })

  it('detects a corrupted file, deletes it and fetches again', async () => {
    const logged: string[] = []
    const cache = cacheIn({
      logger: { ...silentLogger, warn: (message) => logged.push(message) },
    })
    const fetch = counting('the real bundle')
    const { path } = await cache.get('bundle', '3', fetch)

    await writeFile(path, 'the fake bundle') // same size, other bytes
    expect(await cache.has('bundle', '3')).toBe(false)
    const repaired = await cache.get('bundle', '3', fetch)
    expect(fetch.calls).toBe(2)
    expect(await readFile(repaired.path, 'utf8')).toBe('the real bundle')
    expect(cache.stats().corruptions).toBe(1)
    expect(logged).toEqual(['flowcache artifacts: stored copy is damaged; fetching again'])
    expect(await cache.has('bundle', '3')).toBe(true)
  })

  it('detects a truncated file and unreadable metadata', async () => {
    const cache = cacheIn()
    const fetch = counting('0123456789')
    const { path } = await cache.get('bundle', '1', fetch)

    await truncate(path, 4)
    expect(await readFile((await cache.get('bundle', '1', fetch)).path, 'utf8')).toBe('0123456789')
    expect(fetch.calls).toBe(2)

    await writeFile(join(path, '..', 'meta.json'), '{"name": "bun')
    expect(await readFile((await cache.get('bundle', '1', fetch)).path, 'utf8')).toBe('0123456789')
    expect(fetch.calls).toBe(3)

    await rm(path)
    expect(await readFile((await cache.get('bundle', '1', fetch)).path, 'utf8')).toBe('0123456789')
    expect(fetch.calls).toBe(4)
    expect(cache.stats().corruptions).toBe(3)
  })

  it('read returns the checked bytes', async () => {
    const cache = cacheIn()
    const fetch = counting(new Uint8Array([1, 2, 3, 250]))
    const { bytes, size, sha256: digest } = await cache.read('bin', '0.1.0', fetch)
    expect([...bytes]).toEqual([1, 2, 3, 250])
    expect(size).toBe(4)
    expect(digest).toBe(sha256(bytes))
  })
})

describe('expected digests', () => {
  it('stores content with the expected digest (in any case)', async () => {
    const cache = cacheIn()
    const info = await cache.get('pkg', '1', counting('pinned'), {
      sha256: sha256('pinned').toUpperCase(),
    })
    expect(info.sha256).toBe(sha256('pinned'))
  })

  it('refuses fetched content with another digest with a typed error and stores nothing', async () => {
    const cache = cacheIn()
    const expected = sha256('what we pinned')
    const error = await cache
      .get('pkg', '1', counting('what the mirror sent'), { sha256: expected })
      .then(
        () => undefined,
        (rejection: unknown) => rejection,
      )
    expect(error).toBeInstanceOf(ArtifactDigestError)
    const digestError = error as ArtifactDigestError
    expect(digestError.code).toBe('E_ARTIFACT_DIGEST')
    expect(digestError.expected).toBe(expected)
    expect(digestError.actual).toBe(sha256('what the mirror sent'))
    expect(digestError.message).toContain('pkg@1')
    expect(await cache.has('pkg', '1')).toBe(false)
    expect(await cache.list()).toEqual([])
    expect(await leftovers()).toEqual([])
    expect(cache.stats()).toMatchObject({ digestMismatches: 1, fetchFailures: 1 })
  })

  it('refetches a stored copy whose digest is not the expected one', async () => {
    const cache = cacheIn()
    await cache.get('pkg', '1', counting('old build'))
    const fetch = counting('new build')
    const info = await cache.get('pkg', '1', fetch, { sha256: sha256('new build') })
    expect(fetch.calls).toBe(1)
    expect(await readFile(info.path, 'utf8')).toBe('new build')
  })

  it('refuses a malformed digest before any I/O', async () => {
    const cache = cacheIn()
    const fetch = counting()
    await expect(cache.get('pkg', '1', fetch, { sha256: 'abc' })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    )
    expect(fetch.calls).toBe(0)
    expect(existsSync(join(dir, 'cache'))).toBe(false)
  })
})

describe('names and versions', () => {
  const badNames = [
    '',
    '..',
    '.',
    '../etc',
    '../../x',
    'a/../../b',
    'a/./b',
    '/etc/passwd',
    'a//b',
    'a/',
    '.hidden',
    'a\\..\\b',
    'C:evil',
    'a\0b',
    'a b',
    'x'.repeat(215),
  ]
  const badVersions = ['', '..', '.', '../1', '1/2', '1\\2', '.1', 'v 1', '1\n', 'x'.repeat(129)]

  it.each(badNames)('refuses the name %j before any I/O', async (name) => {
    const cache = cacheIn()
    const fetch = counting()
    await expect(cache.get(name, '1.0.0', fetch)).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(cache.has(name, '1.0.0')).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(cache.delete(name, '1.0.0')).rejects.toBeInstanceOf(InvalidArgumentError)
    expect(fetch.calls).toBe(0)
    expect(existsSync(join(dir, 'cache'))).toBe(false)
  })

  it.each(badVersions)('refuses the version %j before any I/O', async (version) => {
    const cache = cacheIn()
    const fetch = counting()
    await expect(cache.get('pkg', version, fetch)).rejects.toBeInstanceOf(InvalidArgumentError)
    expect(fetch.calls).toBe(0)
    expect(existsSync(join(dir, 'cache'))).toBe(false)
  })

  it('names the rule in the message', async () => {
    const cache = cacheIn()
    await expect(cache.get('../etc', '1', counting())).rejects.toThrow(
      /artifact name must be segments of letters, digits/,
    )
  })

  it('writes only inside its directory for odd but valid names', async () => {
    const cache = cacheIn()
    const info = await cache.get('@scope/a..b', '1.0.0+build-7', counting('ok'))
    expect(info.path.startsWith(join(dir, 'cache') + '/')).toBe(true)
    expect(await readdir(dir)).toEqual(['cache'])
  })
})

describe('failures, delete, list and the disk bound', () => {
  it('a failing fetch is a typed error with the cause, leaves nothing and is retried next time', async () => {
    const cache = cacheIn()
    const cause = new Error('registry answered 503')
    const error = await cache
      .get('pkg', '1', () => Promise.reject(cause))
      .then(
        () => undefined,
        (rejection: unknown) => rejection,
      )
    expect(error).toBeInstanceOf(ArtifactFetchError)
    expect((error as ArtifactFetchError).cause).toBe(cause)
    expect((error as Error).message).toContain('registry answered 503')
    expect(await leftovers()).toEqual([])

    const fetch = counting('ok now')
    expect(await readFile((await cache.get('pkg', '1', fetch)).path, 'utf8')).toBe('ok now')
    expect(cache.stats()).toMatchObject({ fetches: 2, fetchFailures: 1 })
  })

  it('a fetch that returns something other than bytes is refused', async () => {
    const cache = cacheIn()
    const fetch = (() => 42) as unknown as ArtifactFetcher
    await expect(cache.get('pkg', '1', fetch)).rejects.toThrow(/returned number/)
    expect(await cache.has('pkg', '1')).toBe(false)
  })

  it('a stream that fails half-way leaves no partial artifact', async () => {
    const cache = cacheIn()
    const fetch: ArtifactFetcher = async function* () {
      yield 'first half'
      throw new Error('connection reset')
    }
    await expect(cache.get('pkg', '1', fetch)).rejects.toBeInstanceOf(ArtifactFetchError)
    expect(await cache.has('pkg', '1')).toBe(false)
    expect(await cache.list()).toEqual([])
    expect(await leftovers()).toEqual([])
  })

  it('delete, has and list', async () => {
    const clock = new ManualClock(1_000)
    const cache = cacheIn({ clock })
    await cache.get('b', '1', counting('bb'))
    clock.advance(5)
    await cache.get('a', '2', counting('a'))
    const listed = await cache.list()
    expect(
      listed.map(({ name, version, size, fetchedAt }) => ({ name, version, size, fetchedAt })),
    ).toEqual([
      { name: 'a', version: '2', size: 1, fetchedAt: 1_005 },
      { name: 'b', version: '1', size: 2, fetchedAt: 1_000 },
    ])
    expect(await cache.has('a', '2')).toBe(true)
    expect(await cache.delete('a', '2')).toBe(true)
    expect(await cache.delete('a', '2')).toBe(false)
    expect(await cache.has('a', '2')).toBe(false)
    expect((await cache.list()).map((info) => info.name)).toEqual(['b'])
    expect(await leftovers()).toEqual([])
  })

  it('maxBytes evicts the least recently used artifacts, never the one just fetched', async () => {
    const clock = new ManualClock(1_000)
    const cache = cacheIn({ clock, maxBytes: 250 })
    const hundred = (char: string) => counting(char.repeat(100))
    await cache.get('a', '1', hundred('a'))
    clock.advance(1)
    await cache.get('b', '1', hundred('b'))
    clock.advance(1)
    await cache.get('a', '1', hundred('a')) // a is now used more recently than b
    clock.advance(1)
    await cache.get('c', '1', hundred('c'))
    expect((await cache.list()).map((info) => info.name)).toEqual(['a', 'c'])
    expect(cache.stats().evictions).toBe(1)

    clock.advance(1)
    const big = await cache.get('d', '1', counting('d'.repeat(400)))
    expect((await cache.list()).map((info) => info.name)).toEqual(['d'])
    expect((await stat(big.path)).size).toBe(400)
  })

  it('refuses bad options when created', () => {
    expect(() => createArtifactCache({ dir: '' })).toThrow(InvalidArgumentError)
    expect(() => createArtifactCache({ dir, maxBytes: 0 })).toThrow(InvalidArgumentError)
    expect(() => createArtifactCache({ dir, maxBytes: 1.5 })).toThrow(InvalidArgumentError)
  })
})

/** A forked worker process of the cross-process test. */
interface WorkerResult {
  ok: boolean
  error?: string
  info?: { path: string; sha256: string; size: number }
  readSize?: number
  readSha256?: string
}

function startWorker(config: object): {
  child: ChildProcess
  ready: Promise<void>
  done: Promise<WorkerResult>
} {
  const child = fork(worker, [JSON.stringify(config)], {
    cwd: repoRoot,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  })
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const ready = new Promise<void>((resolve, reject) => {
    child.on('message', (message) => {
      if (message === 'ready') resolve()
    })
    child.on('exit', (code) => reject(new Error(`worker exited (${code}) before ready: ${stderr}`)))
  })
  const done = new Promise<WorkerResult>((resolve, reject) => {
    child.on('message', (message) => {
      if (message !== 'ready') resolve(message as WorkerResult)
    })
    child.on('exit', (code) =>
      reject(new Error(`worker exited (${code}) without a result: ${stderr}`)),
    )
  })
  return { child, ready, done }
}

describe('two processes sharing the directory', () => {
  it('both get the complete file, fetch at most twice, and never expose a partial file', async () => {
    const chunks = 64
    const chunkBytes = 16 * 1024
    const expected = Buffer.concat(
      Array.from({ length: chunks }, (_, index) => Buffer.alloc(chunkBytes, index % 256)),
    )
    const cacheDir = join(dir, 'shared')
    const fetchLog = join(dir, 'fetches.log')
    const config = { dir: cacheDir, name: 'bundle', version: '9.9.9', fetchLog, chunks, chunkBytes }
    const workers = [startWorker(config), startWorker(config)]
    try {
      await Promise.all(workers.map((w) => w.ready))
      // The path the artifact lands at, from a cache in this process over the same directory.
      const finalPath = join(cacheDir, 'bundle', '9.9.9', 'data')
      for (const w of workers) w.child.send('go')

      // Watch the final path while the workers fetch: whenever it exists it must be complete.
      let settled = false
      const results = Promise.all(workers.map((w) => w.done)).finally(() => {
        settled = true
      })
      while (!settled) {
        let bytes: Buffer | undefined
        try {
          bytes = await readFile(finalPath)
        } catch {
          bytes = undefined
        }
        if (bytes !== undefined) {
          expect(bytes.length).toBe(expected.length)
          expect(bytes.equals(expected)).toBe(true)
        }
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
      const done = await results
      for (const result of done) {
        expect(result.error).toBeUndefined()
        expect(result.ok).toBe(true)
        expect(result.info?.size).toBe(expected.length)
        expect(result.info?.sha256).toBe(sha256(expected))
        expect(result.readSize).toBe(expected.length)
        expect(result.readSha256).toBe(sha256(expected))
        expect(result.info?.path).toBe(finalPath)
      }
      const fetches = (await readFile(fetchLog, 'utf8')).trim().split('\n')
      expect(fetches.length).toBeGreaterThanOrEqual(1)
      expect(fetches.length).toBeLessThanOrEqual(2)

      // What the workers left is one intact artifact and no temporary files.
      const cache = createArtifactCache({ dir: cacheDir, logger: silentLogger })
      expect(await cache.has('bundle', '9.9.9')).toBe(true)
      expect(await readdir(join(cacheDir, '.tmp'))).toEqual([])
    } finally {
      for (const w of workers) w.child.kill()
    }
  }, 60_000)
})
