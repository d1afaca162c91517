/**
 * The artifact cache: immutable files (script bundles, packages) by name and version, kept on the
 * filesystem, fetched once and never expired. Every read checks the content against the sha256
 * recorded when it was written; a damaged copy is thrown away and fetched again.
 *
 * On disk, an artifact is a directory `<dir>/<name>/<version>/` (both URI-encoded) holding `data`
 * (the bytes) and `meta.json` (digest, size, fetch time). It is written in full under
 * `<dir>/.tmp/` and renamed into place in one step, so a reader (in this process or another one
 * sharing the directory) sees the whole artifact or none of it; when two writers race, the first
 * rename wins and the other discards its copy.
 */
import { createHash, randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import {
  InvalidArgumentError,
  stderrLogger,
  systemClock,
  type Clock,
  type Logger,
} from '../flowcache.js'
import { ArtifactDigestError, ArtifactFetchError } from './errors.js'

/** What a fetch function may return: the artifact's bytes, whole or as a stream of chunks. */
export type ArtifactSource = Uint8Array | string | AsyncIterable<Uint8Array | string>

/** Which artifact a fetch function is asked for. */
export interface ArtifactRequest {
  /** The artifact's name, as given to `get`. */
  name: string
  /** The artifact's version, as given to `get`. */
  version: string
}

/**
 * Fetches an artifact's bytes from its origin (a registry, an object store, a build). Called at
 * most once per (name, version) at a time in a process, and only when no intact copy is on disk.
 */
export type ArtifactFetcher = (request: ArtifactRequest) => ArtifactSource | Promise<ArtifactSource>

/** An artifact that is on disk, as `get`, `list` and `read` describe it. */
export interface ArtifactInfo {
  /** The artifact's name. */
  name: string
  /** The artifact's version. */
  version: string
  /** Absolute path of the file holding the artifact's bytes. Treat it as read-only. */
  path: string
  /** sha256 of the bytes, lowercase hex, recorded when the artifact was written. */
  sha256: string
  /** Size of the artifact in bytes. */
  size: number
  /** When the artifact was fetched (ms since the epoch, from the cache's clock). */
  fetchedAt: number
}

/** Options of {@link ArtifactCache.get} and {@link ArtifactCache.read}. */
export interface ArtifactGetOptions {
  /**
   * The sha256 the artifact must have (64 hex digits, any case). A fetched artifact with another
   * digest is refused with an {@link ArtifactDigestError} and not stored; a stored copy with
   * another digest is thrown away and fetched again. @default no expectation
   */
  sha256?: string
}

/** Options of {@link createArtifactCache}. */
export interface ArtifactCacheOptions {
  /** Directory of the cache; created when missing. Processes may share it. */
  dir: string
  /**
   * Bound on the bytes of all artifacts in the directory. After each fetch, the least recently
   * used artifacts (by this process's use, then by fetch time) are deleted until the total fits;
   * the artifact just fetched is never deleted, so one artifact larger than the bound still works.
   * Another process may delete a file this process handed out, so with a bound, use a path right
   * after `get` (or use `read`). @default no bound
   */
  maxBytes?: number
  /** Receives a warning when a damaged or mismatching copy is thrown away. @default stderrLogger */
  logger?: Logger
  /** Time source of `fetchedAt` and of least-recently-used order. @default systemClock */
  clock?: Clock
}

/** Counters of an artifact cache, for this process since it was created. */
export interface ArtifactCacheStats {
  /** `get`s answered by an intact copy on disk. */
  hits: number
  /** Calls of a fetch function (each one a miss, a refetch after damage, or a lost race). */
  fetches: number
  /** Fetches that threw, returned no bytes, or had the wrong digest. */
  fetchFailures: number
  /** Copies found damaged (digest or size mismatch, unreadable metadata) and thrown away. */
  corruptions: number
  /** Fetched or stored artifacts whose digest differed from the caller's expected `sha256`. */
  digestMismatches: number
  /** Artifacts deleted to respect `maxBytes`. */
  evictions: number
  /** Bytes fetched and written. */
  bytesFetched: number
  /** Fetches running now. */
  inFlight: number
}

/** The artifact cache; see {@link createArtifactCache}. */
export interface ArtifactCache {
  /** The cache's directory (absolute). */
  readonly dir: string
  /**
   * The artifact `name`@`version` on disk, fetched with `fetch` when there is no intact copy.
   * The copy's content is checked against its recorded sha256 on every call. Concurrent calls
   * for the same artifact in a process share one fetch. Rejects with an `InvalidArgumentError`
   * for a bad name, version or digest (before any I/O), an {@link ArtifactFetchError} when the
   * fetch fails and an {@link ArtifactDigestError} when the content has the wrong digest.
   */
  get(
    name: string,
    version: string,
    fetch: ArtifactFetcher,
    options?: ArtifactGetOptions,
  ): Promise<ArtifactInfo>
  /**
   * Like {@link ArtifactCache.get}, and returns the bytes too. The bytes returned are the ones
   * checked against the digest, so they stay right even if the file is changed afterwards.
   */
  read(
    name: string,
    version: string,
    fetch: ArtifactFetcher,
    options?: ArtifactGetOptions,
  ): Promise<ArtifactInfo & { bytes: Buffer }>
  /** Whether an intact copy of the artifact is on disk (its content is checked). Never fetches. */
  has(name: string, version: string): Promise<boolean>
  /** Deletes the artifact from disk; `true` when there was one. The next `get` fetches again. */
  delete(name: string, version: string): Promise<boolean>
  /**
   * Every artifact on disk, from its recorded metadata (content not checked), sorted by name and
   * version. The sum of `size` is the cache's disk use.
   */
  list(): Promise<ArtifactInfo[]>
  /** This process's counters. */
  stats(): ArtifactCacheStats
}

const DATA_FILE = 'data'
const META_FILE = 'meta.json'
const TEMP_DIR = '.tmp'
/** Temporary directories older than this are left by a crashed writer and are removed. */
const STALE_TEMP_MS = 60 * 60 * 1000
const SEGMENT = /^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]*$/
const VERSION = /^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$/
const SHA256 = /^[0-9a-f]{64}$/
/** Attempts of one `get` when other processes keep replacing or deleting the same artifact. */
const MAX_ATTEMPTS = 3

/**
 * Checks an artifact name: 1 to 214 characters, one or more `/`-separated segments of letters,
 * digits and `. _ @ + -`, no segment starting with a dot (so never `.` or `..`).
 */
function checkName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 214) {
    throw InvalidArgumentError.format(
      'artifact name',
      `must be a string of 1 to 214 characters; got ${typeof name === 'string' ? `${name.length} characters` : typeof name}`,
    )
  }
  for (const segment of name.split('/')) {
    if (!SEGMENT.test(segment)) {
      throw InvalidArgumentError.format(
        'artifact name',
        `must be segments of letters, digits and . _ @ + - separated by "/", none empty or starting with "."; got ${JSON.stringify(name)}`,
      )
    }
  }
  return name
}

/** Checks a version: 1 to 128 letters, digits and `. _ + -`, not starting with a dot. */
function checkVersion(version: unknown): string {
  if (typeof version !== 'string' || version.length > 128 || !VERSION.test(version)) {
    throw InvalidArgumentError.format(
      'artifact version',
      `must be 1 to 128 letters, digits and . _ + -, not starting with "."; got ${typeof version === 'string' ? JSON.stringify(version) : typeof version}`,
    )
  }
  return version
}

/** Checks an expected digest and returns it in lowercase, or `undefined` when none was given. */
function checkDigest(sha256: unknown): string | undefined {
  if (sha256 === undefined) return undefined
  const digest = typeof sha256 === 'string' ? sha256.toLowerCase() : ''
  if (!SHA256.test(digest)) {
    throw InvalidArgumentError.format(
      'options.sha256',
      `must be a sha256 digest as 64 hex digits; got ${typeof sha256 === 'string' ? JSON.stringify(sha256) : typeof sha256}`,
    )
  }
  return digest
}

/** The recorded metadata of an artifact (`meta.json`). */
interface ArtifactMeta {
  name: string
  version: string
  sha256: string
  size: number
  fetchedAt: number
  /** Random id of this copy, so that a process throws away only the copy it found damaged. */
  id: string
}

/** Parses `meta.json`; `undefined` when it is not what this cache writes. */
function parseMeta(text: string): ArtifactMeta | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const meta = value as Record<string, unknown>
  if (
    typeof meta['name'] !== 'string' ||
    typeof meta['version'] !== 'string' ||
    typeof meta['sha256'] !== 'string' ||
    !SHA256.test(meta['sha256']) ||
    typeof meta['size'] !== 'number' ||
    typeof meta['fetchedAt'] !== 'number' ||
    typeof meta['id'] !== 'string'
  ) {
    return undefined
  }
  return {
    name: meta['name'],
    version: meta['version'],
    sha256: meta['sha256'],
    size: meta['size'],
    fetchedAt: meta['fetchedAt'],
    id: meta['id'],
  }
}

/** The error code of a filesystem error, if it has one. */
function errorCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = error.code
    return typeof code === 'string' ? code : undefined
  }
  return undefined
}

/** The sha256 and size of a file, read as a stream. */
async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk)
    size += chunk.length
  }
  return { sha256: hash.digest('hex'), size }
}

/** What a check of the copy on disk found. */
type Found =
  | { state: 'intact'; meta: ArtifactMeta }
  | { state: 'missing' }
  | { state: 'damaged'; id: string | undefined; reason: string }

/** The message of an error, for logs and wrapped errors. */
function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

class DirectoryArtifactCache implements ArtifactCache {
  readonly dir: string
  readonly #maxBytes: number | undefined
  readonly #logger: Logger
  readonly #clock: Clock
  readonly #flights = new Map<string, Promise<ArtifactInfo>>()
  readonly #lastUsed = new Map<string, number>()
  #ready: Promise<void> | undefined
  readonly #stats: ArtifactCacheStats = {
    hits: 0,
    fetches: 0,
    fetchFailures: 0,
    corruptions: 0,
    digestMismatches: 0,
    evictions: 0,
    bytesFetched: 0,
    inFlight: 0,
  }

  constructor(options: ArtifactCacheOptions) {
    if (typeof options.dir !== 'string' || options.dir === '') {
      throw InvalidArgumentError.format('dir', 'must be a non-empty directory path')
    }
    if (
      options.maxBytes !== undefined &&
      (!Number.isSafeInteger(options.maxBytes) || options.maxBytes <= 0)
    ) {
      throw InvalidArgumentError.format(
        'maxBytes',
        `must be a positive integer number of bytes; got ${String(options.maxBytes)}`,
      )
    }
    this.dir = resolve(options.dir)
    this.#maxBytes = options.maxBytes
    this.#logger = options.logger ?? stderrLogger
    this.#clock = options.clock ?? systemClock
  }

  async get(
    name: string,
    version: string,
    fetch: ArtifactFetcher,
    options: ArtifactGetOptions = {},
  ): Promise<ArtifactInfo> {
    checkName(name)
    checkVersion(version)
    const expected = checkDigest(options.sha256)
    if (typeof fetch !== 'function') {
      throw InvalidArgumentError.format('fetch', `must be a function; got ${typeof fetch}`)
    }
    const key = `${name}\0${version}\0${expected ?? ''}`
    let flight = this.#flights.get(key)
    if (flight === undefined) {
      flight = this.#resolve(name, version, fetch, expected).finally(() => {
        this.#flights.delete(key)
      })
      this.#flights.set(key, flight)
    }
    const info = await flight
    this.#lastUsed.set(this.#entryKey(name, version), this.#clock.now())
    return { ...info }
  }

  async read(
    name: string,
    version: string,
    fetch: ArtifactFetcher,
    options: ArtifactGetOptions = {},
  ): Promise<ArtifactInfo & { bytes: Buffer }> {
    for (let attempt = 1; ; attempt++) {
      const info = await this.get(name, version, fetch, options)
      try {
        const bytes = await readFile(info.path)
        const sha256 = createHash('sha256').update(bytes).digest('hex')
        if (sha256 === info.sha256 && bytes.length === info.size) return { ...info, bytes }
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') throw error
      }
      // Changed or deleted since `get` checked it: the next `get` sees that and repairs it.
      if (attempt >= MAX_ATTEMPTS) {
        throw new ArtifactFetchError(
          `artifact ${name}@${version} kept changing on disk while it was read; check that nothing else writes into ${this.dir}`,
        )
      }
    }
  }

  async has(name: string, version: string): Promise<boolean> {
    checkName(name)
    checkVersion(version)
    return (await this.#check(name, version)).state === 'intact'
  }

  async delete(name: string, version: string): Promise<boolean> {
    checkName(name)
    checkVersion(version)
    this.#lastUsed.delete(this.#entryKey(name, version))
    return this.#remove(name, version)
  }

  async list(): Promise<ArtifactInfo[]> {
    const infos: ArtifactInfo[] = []
    let names: string[]
    try {
      names = await readdir(this.dir)
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return infos
      throw error
    }
    for (const nameDir of names) {
      if (nameDir === TEMP_DIR) continue
      let versions: string[]
      try {
        versions = await readdir(join(this.dir, nameDir))
      } catch {
        continue
      }
      for (const versionDir of versions) {
        const entryDir = join(this.dir, nameDir, versionDir)
        let meta: ArtifactMeta | undefined
        try {
          meta = parseMeta(await readFile(join(entryDir, META_FILE), 'utf8'))
        } catch {
          meta = undefined
        }
        if (meta === undefined) continue
        infos.push(this.#info(meta))
      }
    }
    return infos.sort((a, b) =>
      a.name === b.name ? (a.version < b.version ? -1 : 1) : a.name < b.name ? -1 : 1,
    )
  }

  stats(): ArtifactCacheStats {
    return { ...this.#stats }
  }

  /** One `get`'s work: use the copy on disk when intact, else fetch and store. */
  async #resolve(
    name: string,
    version: string,
    fetch: ArtifactFetcher,
    expected: string | undefined,
  ): Promise<ArtifactInfo> {
    await this.#prepare()
    for (let attempt = 1; ; attempt++) {
      const found = await this.#check(name, version)
      if (found.state === 'intact') {
        if (expected === undefined || found.meta.sha256 === expected) {
          this.#stats.hits++
          return this.#info(found.meta)
        }
        this.#stats.digestMismatches++
        this.#logger.warn('flowcache artifacts: stored copy has another digest; fetching again', {
          name,
          version,
          expected,
          stored: found.meta.sha256,
        })
        await this.#remove(name, version, { id: found.meta.id })
      } else if (found.state === 'damaged') {
        this.#stats.corruptions++
        this.#logger.warn('flowcache artifacts: stored copy is damaged; fetching again', {
          name,
          version,
          reason: found.reason,
        })
        await this.#remove(name, version, { id: found.id })
      }
      const stored = await this.#fetchAndStore(name, version, fetch, expected)
      if (stored !== undefined) {
        await this.#enforceLimit(name, version)
        return stored
      }
      // Another process stored the artifact first: loop to check and use its copy.
      if (attempt >= MAX_ATTEMPTS) {
        throw new ArtifactFetchError(
          `artifact ${name}@${version} was replaced on disk by another process ${MAX_ATTEMPTS} times in a row; check that the processes sharing ${this.dir} fetch the same content`,
        )
      }
    }
  }

  /** Creates the directories and removes temporary files a crashed writer left, once. */
  #prepare(): Promise<void> {
    this.#ready ??= (async () => {
      const temp = join(this.dir, TEMP_DIR)
      await mkdir(temp, { recursive: true })
      const now = Date.now()
      for (const entry of await readdir(temp)) {
        const path = join(temp, entry)
        try {
          if (now - (await stat(path)).mtimeMs > STALE_TEMP_MS) {
            await rm(path, { recursive: true, force: true })
          }
        } catch {
          // Removed by another process meanwhile.
        }
      }
    })().catch((error: unknown) => {
      this.#ready = undefined
      throw error
    })
    return this.#ready
  }

  /** Checks the copy on disk: metadata readable, size and sha256 of the bytes as recorded. */
  async #check(name: string, version: string): Promise<Found> {
    const entryDir = this.#entryDir(name, version)
    let text: string
    try {
      text = await readFile(join(entryDir, META_FILE), 'utf8')
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error
      try {
        await stat(entryDir)
      } catch (statError) {
        if (errorCode(statError) === 'ENOENT') return { state: 'missing' }
        throw statError
      }
      return { state: 'damaged', id: undefined, reason: 'meta.json is missing' }
    }
    const meta = parseMeta(text)
    if (meta === undefined || meta.name !== name || meta.version !== version) {
      return { state: 'damaged', id: meta?.id, reason: 'meta.json is unreadable' }
    }
    let actual: { sha256: string; size: number }
    try {
      actual = await hashFile(join(entryDir, DATA_FILE))
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error
      return { state: 'damaged', id: meta.id, reason: 'the data file is missing' }
    }
    if (actual.size !== meta.size) {
      return {
        state: 'damaged',
        id: meta.id,
        reason: `size is ${actual.size} bytes, ${meta.size} recorded`,
      }
    }
    if (actual.sha256 !== meta.sha256) {
      return { state: 'damaged', id: meta.id, reason: 'sha256 differs from the recorded one' }
    }
    return { state: 'intact', meta }
  }

  /**
   * Fetches the artifact into a temporary directory and renames it into place. Returns the
   * stored artifact, or `undefined` when another process stored it first.
   */
  async #fetchAndStore(
    name: string,
    version: string,
    fetch: ArtifactFetcher,
    expected: string | undefined,
  ): Promise<ArtifactInfo | undefined> {
    const temp = join(this.dir, TEMP_DIR, randomUUID())
    this.#stats.fetches++
    this.#stats.inFlight++
    try {
      await mkdir(temp)
      let written: { sha256: string; size: number }
      try {
        const source = await fetch({ name, version })
        written = await this.#write(join(temp, DATA_FILE), source, name, version)
      } catch (error) {
        this.#stats.fetchFailures++
        if (error instanceof ArtifactFetchError) throw error
        throw new ArtifactFetchError(
          `fetching artifact ${name}@${version} failed: ${messageOf(error)}`,
          { cause: error },
        )
      }
      if (expected !== undefined && written.sha256 !== expected) {
        this.#stats.fetchFailures++
        this.#stats.digestMismatches++
        throw new ArtifactDigestError(
          `artifact ${name}@${version} has sha256 ${written.sha256}, not the expected ${expected}; it was not stored. Check the digest pinned for it or the source it is fetched from`,
          expected,
          written.sha256,
        )
      }
      const meta: ArtifactMeta = {
        name,
        version,
        sha256: written.sha256,
        size: written.size,
        fetchedAt: this.#clock.now(),
        id: randomUUID(),
      }
      await this.#writeFile(join(temp, META_FILE), JSON.stringify(meta))
      this.#stats.bytesFetched += written.size
      const entryDir = this.#entryDir(name, version)
      await mkdir(join(entryDir, '..'), { recursive: true })
      try {
        await rename(temp, entryDir)
      } catch (error) {
        const code = errorCode(error)
        if (code === 'ENOTEMPTY' || code === 'EEXIST') return undefined
        throw error
      }
      return this.#info(meta)
    } finally {
      this.#stats.inFlight--
      await rm(temp, { recursive: true, force: true })
    }
  }

  /** Writes the fetched bytes to `path`, hashing them on the way, and flushes them to disk. */
  async #write(
    path: string,
    source: ArtifactSource,
    name: string,
    version: string,
  ): Promise<{ sha256: string; size: number }> {
    const hash = createHash('sha256')
    let size = 0
    const handle = await open(path, 'wx')
    try {
      const put = async (chunk: unknown): Promise<void> => {
        let bytes: Uint8Array
        if (typeof chunk === 'string') bytes = Buffer.from(chunk, 'utf8')
        else if (chunk instanceof Uint8Array) bytes = chunk
        else {
          throw new ArtifactFetchError(
            `fetching artifact ${name}@${version} returned ${chunk === null ? 'null' : typeof chunk}; return a Uint8Array, a string or an async iterable of them`,
          )
        }
        hash.update(bytes)
        size += bytes.length
        let offset = 0
        while (offset < bytes.length) {
          const { bytesWritten } = await handle.write(bytes, offset)
          offset += bytesWritten
        }
      }
      if (typeof source === 'string' || source instanceof Uint8Array) await put(source)
      else if (typeof source === 'object' && source !== null && Symbol.asyncIterator in source) {
        for await (const chunk of source) await put(chunk)
      } else await put(source)
      await handle.sync()
    } finally {
      await handle.close()
    }
    return { sha256: hash.digest('hex'), size }
  }

  /** Writes a small file and flushes it to disk. */
  async #writeFile(path: string, text: string): Promise<void> {
    const handle = await open(path, 'wx')
    try {
      await handle.writeFile(text, 'utf8')
      await handle.sync()
    } finally {
      await handle.close()
    }
  }

  /**
   * Removes the artifact's directory by renaming it out of place first, so no reader sees it
   * half deleted. With `only`, removes only the copy a check found damaged (`only.id`, or a copy
   * without readable metadata when `undefined`): when another process replaced it meanwhile with
   * a copy of its own, that copy is put back (or dropped if yet another one took its place).
   */
  async #remove(
    name: string,
    version: string,
    only?: { id: string | undefined },
  ): Promise<boolean> {
    const entryDir = this.#entryDir(name, version)
    const trash = join(this.dir, TEMP_DIR, `${randomUUID()}.trash`)
    await mkdir(join(this.dir, TEMP_DIR), { recursive: true })
    try {
      await rename(entryDir, trash)
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return false
      throw error
    }
    if (only !== undefined) {
      let current: ArtifactMeta | undefined
      try {
        current = parseMeta(await readFile(join(trash, META_FILE), 'utf8'))
      } catch {
        current = undefined
      }
      if (current !== undefined && current.id !== only.id) {
        try {
          await rename(trash, entryDir)
          return false
        } catch {
          // Yet another copy is in place; drop this one.
        }
      }
    }
    await rm(trash, { recursive: true, force: true })
    return true
  }

  /** Deletes least recently used artifacts until the total size fits `maxBytes`. */
  async #enforceLimit(keepName: string, keepVersion: string): Promise<void> {
    if (this.#maxBytes === undefined) return
    const infos = await this.list()
    let total = infos.reduce((sum, info) => sum + info.size, 0)
    if (total <= this.#maxBytes) return
    const keep = this.#entryKey(keepName, keepVersion)
    const lastUse = (info: ArtifactInfo): number =>
      this.#lastUsed.get(this.#entryKey(info.name, info.version)) ?? info.fetchedAt
    const candidates = infos
      .filter((info) => this.#entryKey(info.name, info.version) !== keep)
      .sort((a, b) => lastUse(a) - lastUse(b))
    for (const info of candidates) {
      if (total <= this.#maxBytes) break
      if (await this.#remove(info.name, info.version)) {
        this.#stats.evictions++
        this.#lastUsed.delete(this.#entryKey(info.name, info.version))
      }
      total -= info.size
    }
  }

  #entryKey(name: string, version: string): string {
    return `${name}\0${version}`
  }

  #entryDir(name: string, version: string): string {
    return join(this.dir, encodeURIComponent(name), encodeURIComponent(version))
  }

  #info(meta: ArtifactMeta): ArtifactInfo {
    return {
      name: meta.name,
      version: meta.version,
      path: join(this.#entryDir(meta.name, meta.version), DATA_FILE),
      sha256: meta.sha256,
      size: meta.size,
      fetchedAt: meta.fetchedAt,
    }
  }
}

/**
 * Creates an artifact cache in `options.dir`. No I/O happens until the first call; the
 * directory is created then.
 *
 * @example
 * const artifacts = createArtifactCache({ dir: '.flowcache/artifacts' })
 * const { path } = await artifacts.get('lib-orders', '1.4.0', async () => download(url))
 */
export function createArtifactCache(options: ArtifactCacheOptions): ArtifactCache {
  return new DirectoryArtifactCache(options)
}
