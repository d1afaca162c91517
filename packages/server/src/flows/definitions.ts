/**
 * The definition cache: parsed flow definitions by revision. A flow at a given revision never
 * changes (its revision is the sha256 of its file), so a definition, once parsed, is kept for
 * good: first in memory, then as a JSON file in a cache folder. Loading a file hashes its
 * content and looks the revision up in memory, then on disk, and parses the YAML only when
 * neither has it. A changed file has a new revision and is parsed once; a cache file that is
 * corrupt is ignored and rewritten.
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { z } from 'zod'
import { InvalidArgumentError, silentLogger, type Logger } from '../flowcache.js'
import {
  loadFlowsDir,
  parseFlow,
  readFlowFile,
  revisionOf,
  type LoadedFlows,
  type ParsedFlow,
} from './loader.js'
import type { FlowDefinition } from './types.js'

/** Version of the cache files' layout; files of another version are parsed again. */
const FORMAT = 1

/** Options of {@link FlowDefinitions}. */
export interface FlowDefinitionsOptions {
  /**
   * Folder of the cache files (`<revision>.json`), created when missing; `null` keeps the
   * definitions in memory only. @default '.flowcache/definitions' under the current directory
   */
  dir?: string | null
  /** Most definitions kept in memory; the least recently used go first. @default 1000 */
  maxInMemory?: number
  /** Where failures to write a cache file are reported (they never fail a load). @default silentLogger */
  logger?: Logger
}

/** Counters of a {@link FlowDefinitions}. */
export interface FlowDefinitionsStats {
  /** Loads answered from memory. */
  memoryHits: number
  /** Loads answered from a cache file. */
  diskHits: number
  /** Loads that parsed the YAML (a new revision, or a missing or corrupt cache file). */
  parses: number
  /** Cache files found corrupt (unreadable JSON, wrong layout or revision) and rewritten. */
  corrupt: number
  /** Cache files written. */
  written: number
  /** Cache files that could not be written. */
  writeErrors: number
  /** Definitions in memory now. */
  inMemory: number
}

/** What is kept per revision: the definition without its file path, and where its name is. */
interface Entry {
  flow: Omit<FlowDefinition, 'file'>
  namePosition: { line: number; column: number }
}

const position = z.strictObject({ line: z.number().int(), column: z.number().int() })

const storedSchema = z.strictObject({
  format: z.literal(FORMAT),
  revision: z.string(),
  namePosition: position,
  flow: z.strictObject({
    name: z.string(),
    tenant: z.string(),
    revision: z.string(),
    trigger: z.union([
      z.strictObject({
        kind: z.literal('http'),
        method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']),
        path: z.string(),
      }),
      z.strictObject({ kind: z.literal('schedule'), everyMs: z.number() }),
      z.strictObject({
        kind: z.literal('events'),
        source: z.union([
          z.strictObject({ kind: z.literal('file'), path: z.string() }),
          z.strictObject({ kind: z.literal('stdin') }),
          z.strictObject({
            kind: z.literal('nats'),
            subject: z.string(),
            url: z.string().optional(),
          }),
        ]),
      }),
    ]),
    requireLeaderElection: z.boolean(),
    connections: z.array(z.string()).optional(),
    steps: z
      .array(
        z.strictObject({
          name: z.string(),
          script: z.string(),
          cache: z.strictObject({ key: z.string().optional(), ttlMs: z.number() }).optional(),
          line: z.number().int(),
          scriptLine: z.number().int().optional(),
        }),
      )
      .min(1),
  }),
})

/**
 * Parsed flow definitions by revision, in memory and in a cache folder; see the module comment.
 * `load(file)` is a drop-in for `loadFlowFile`, `loadDir(dir)` for `loadFlowsDir`.
 */
export class FlowDefinitions {
  readonly #dir: string | null
  readonly #maxInMemory: number
  readonly #logger: Logger
  readonly #memory = new Map<string, Entry>()
  readonly #stats = {
    memoryHits: 0,
    diskHits: 0,
    parses: 0,
    corrupt: 0,
    written: 0,
    writeErrors: 0,
  }

  constructor(options: FlowDefinitionsOptions = {}) {
    const dir = options.dir === undefined ? '.flowcache/definitions' : options.dir
    if (dir !== null && (typeof dir !== 'string' || dir === '')) {
      throw InvalidArgumentError.format('dir', 'must be a folder path, or null for memory only')
    }
    const maxInMemory = options.maxInMemory ?? 1000
    if (!Number.isSafeInteger(maxInMemory) || maxInMemory < 1) {
      throw InvalidArgumentError.format(
        'maxInMemory',
        `must be a positive integer; got ${String(maxInMemory)}`,
      )
    }
    this.#dir = dir === null ? null : resolve(dir)
    this.#maxInMemory = maxInMemory
    this.#logger = options.logger ?? silentLogger
  }

  /** The cache folder (absolute), or `null` when definitions are kept in memory only. */
  get dir(): string | null {
    return this.#dir
  }

  /**
   * Loads a flow file through the cache: hashes its content, then answers from memory, from
   * the cache folder, or by parsing it (and storing the result in both). Throws
   * `FlowValidationError` for an invalid file (invalid files are not cached).
   */
  async load(file: string): Promise<FlowDefinition> {
    return (await this.loadParsed(file)).flow
  }

  /** {@link load}, with where the flow's name is written (for duplicate-name errors). */
  async loadParsed(file: string): Promise<ParsedFlow> {
    const text = await readFlowFile(file)
    const revision = revisionOf(text)
    const absolute = resolve(file)
    const entry =
      this.#fromMemory(revision) ??
      (await this.#fromDisk(revision)) ??
      (await this.#parse(text, file, absolute, revision))
    return { flow: { ...entry.flow, file: absolute }, namePosition: entry.namePosition }
  }

  /** `loadFlowsDir(dir)` with every file loaded through this cache. */
  loadDir(dir: string): Promise<LoadedFlows> {
    return loadFlowsDir(dir, { load: (file) => this.loadParsed(file) })
  }

  /** Counters since the cache was created. */
  stats(): FlowDefinitionsStats {
    return { ...this.#stats, inMemory: this.#memory.size }
  }

  /** Forgets the definitions kept in memory (the cache files stay). */
  clearMemory(): void {
    this.#memory.clear()
  }

  #fromMemory(revision: string): Entry | undefined {
    const entry = this.#memory.get(revision)
    if (entry === undefined) return undefined
    this.#memory.delete(revision)
    this.#memory.set(revision, entry)
    this.#stats.memoryHits++
    return entry
  }

  #remember(revision: string, entry: Entry): void {
    this.#memory.set(revision, entry)
    while (this.#memory.size > this.#maxInMemory) {
      const oldest = this.#memory.keys().next()
      if (oldest.done === true) break
      this.#memory.delete(oldest.value)
    }
  }

  #pathOf(revision: string): string | undefined {
    return this.#dir === null ? undefined : join(this.#dir, `${revision}.json`)
  }

  async #fromDisk(revision: string): Promise<Entry | undefined> {
    const path = this.#pathOf(revision)
    if (path === undefined) return undefined
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch {
      return undefined
    }
    let stored: z.output<typeof storedSchema>
    try {
      stored = storedSchema.parse(JSON.parse(text))
    } catch {
      this.#stats.corrupt++
      return undefined
    }
    if (stored.revision !== revision || stored.flow.revision !== revision) {
      this.#stats.corrupt++
      return undefined
    }
    const entry: Entry = { flow: stored.flow, namePosition: stored.namePosition }
    this.#remember(revision, entry)
    this.#stats.diskHits++
    return entry
  }

  async #parse(text: string, file: string, absolute: string, revision: string): Promise<Entry> {
    this.#stats.parses++
    const parsed = parseFlow(text, file, absolute)
    const { file: _file, ...flow } = parsed.flow
    const entry: Entry = { flow, namePosition: parsed.namePosition }
    this.#remember(revision, entry)
    await this.#write(revision, entry)
    return entry
  }

  /** Writes the cache file through a temporary file and a rename: readers never see half. */
  async #write(revision: string, entry: Entry): Promise<void> {
    const path = this.#pathOf(revision)
    if (path === undefined || this.#dir === null) return
    const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
    try {
      await mkdir(this.#dir, { recursive: true })
      const stored = {
        format: FORMAT,
        revision,
        namePosition: entry.namePosition,
        flow: entry.flow,
      }
      await writeFile(temporary, JSON.stringify(stored), { mode: 0o600 })
      await rename(temporary, path)
      this.#stats.written++
    } catch (error) {
      this.#stats.writeErrors++
      await unlink(temporary).catch(() => undefined)
      this.#logger.warn('could not write a flow definition cache file', {
        path,
        error: (error as Error).message,
      })
    }
  }
}
