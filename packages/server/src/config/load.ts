/**
 * {@link loadConfig}: reads `flowcache.yaml`, applies the environment variables and
 * command-line overrides over it, validates the result and fills in every default.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, isAbsolute, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isMap, isNode, isScalar, LineCounter, parseDocument, type Document } from 'yaml'
import type { z } from 'zod'
import { ConfigError, type ConfigIssue } from './errors.js'
import { configSchema, type ConfigInput } from './schema.js'
import type { CacheType, ResolvedConfig } from './types.js'

/** Port of `flowcache serve` when none is configured. */
export const DEFAULT_PORT = 7700

/** Host of `flowcache serve` when none is configured. */
export const DEFAULT_HOST = '127.0.0.1'

/** Largest request body when none is configured: 1 MiB. */
export const DEFAULT_BODY_LIMIT = 1024 * 1024

/** File names looked for in the working directory when no file is given. */
export const CONFIG_FILE_NAMES = ['flowcache.yaml', 'flowcache.yml'] as const

/** The bundled example flows (`examples/flows` of the repository), used when no folder is configured. */
export const EXAMPLE_FLOWS_DIR = fileURLToPath(
  new URL('../../../../examples/flows', import.meta.url),
)

/** What a value from the environment or the command line is turned into before validation. */
type ValueKind = 'string' | 'integer' | 'boolean'

/** One environment variable: the field it sets and how its text is read. */
export interface EnvVariable {
  name: string
  /** Field path in `flowcache.yaml`, e.g. `['server', 'port']`. */
  path: readonly [string, string]
  kind: ValueKind
}

/** Every environment variable {@link loadConfig} reads, besides `FLOWCACHE_CONFIG`. */
export const ENV_VARIABLES: readonly EnvVariable[] = [
  { name: 'FLOWCACHE_CACHE_ENABLED', path: ['cache', 'enabled'], kind: 'boolean' },
  { name: 'FLOWCACHE_CACHE_TYPE', path: ['cache', 'type'], kind: 'string' },
  { name: 'FLOWCACHE_CACHE_URL', path: ['cache', 'url'], kind: 'string' },
  { name: 'FLOWCACHE_CACHE_PATH', path: ['cache', 'path'], kind: 'string' },
  { name: 'FLOWCACHE_CACHE_PREFIX', path: ['cache', 'prefix'], kind: 'string' },
  { name: 'FLOWCACHE_CACHE_FALLBACK', path: ['cache', 'fallback'], kind: 'string' },
  { name: 'FLOWCACHE_CACHE_HISTORY', path: ['cache', 'history'], kind: 'integer' },
  { name: 'FLOWCACHE_CACHE_MAX_ENTRIES', path: ['cache', 'max_entries'], kind: 'integer' },
  { name: 'FLOWCACHE_CACHE_MAX_MEMORY_MB', path: ['cache', 'max_memory_mb'], kind: 'integer' },
  {
    name: 'FLOWCACHE_USER_CACHE_LIMIT_MB',
    path: ['cache', 'user_cache_limit_mb'],
    kind: 'integer',
  },
  { name: 'FLOWCACHE_NATS_CREDENTIALS', path: ['cache', 'credentials_path'], kind: 'string' },
  { name: 'FLOWCACHE_NATS_BUCKET', path: ['cache', 'db_name'], kind: 'string' },
  { name: 'FLOWCACHE_NATS_TOMBSTONE_TTL', path: ['cache', 'tombstone_ttl'], kind: 'string' },
  { name: 'FLOWCACHE_HOST', path: ['server', 'host'], kind: 'string' },
  { name: 'FLOWCACHE_PORT', path: ['server', 'port'], kind: 'integer' },
  { name: 'FLOWCACHE_TOKEN', path: ['server', 'token'], kind: 'string' },
  { name: 'FLOWCACHE_TOKEN_FILE', path: ['server', 'token_file'], kind: 'string' },
  { name: 'FLOWCACHE_BODY_LIMIT', path: ['server', 'body_limit'], kind: 'string' },
  { name: 'FLOWCACHE_FLOWS_DIR', path: ['flows', 'dir'], kind: 'string' },
  { name: 'FLOWCACHE_TENANT', path: ['flows', 'tenant'], kind: 'string' },
]

/** One value set from the command line, over the file and the environment. */
export interface ConfigOverride {
  /** Field path in `flowcache.yaml` spelling, e.g. `['server', 'port']`. */
  path: readonly [string, string]
  /** The value; strings are read like environment variables for integer and boolean fields. */
  value: unknown
  /** What set it, for error messages, e.g. `--port`. */
  source: string
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /**
   * The configuration file. Missing, `FLOWCACHE_CONFIG` is used, else `flowcache.yaml` (or
   * `.yml`) in `cwd` when it exists, else the defaults alone. A file that was asked for (here or
   * in `FLOWCACHE_CONFIG`) must exist.
   */
  file?: string
  /** Environment variables. @default process.env */
  env?: Record<string, string | undefined>
  /** Directory relative paths of the environment and overrides resolve against. @default process.cwd() */
  cwd?: string
  /** Command-line values, applied last. @default none */
  overrides?: readonly ConfigOverride[]
  /**
   * Folder used as `flows.dir` when none is configured and it exists; `null` for none.
   * @default {@link EXAMPLE_FLOWS_DIR}
   */
  exampleFlowsDir?: string | null
}

/** Whether `host` is a loopback address or name (requests can only come from this machine). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  if (bare === 'localhost' || bare === '::1' || bare === '0:0:0:0:0:0:0:1') return true
  if (/^127(\.\d{1,3}){3}$/.test(bare)) return true
  return /^::ffff:127(\.\d{1,3}){3}$/i.test(bare)
}

/** The path (dotted) of a zod issue path. */
function dotted(path: readonly PropertyKey[]): string {
  return path.map(String).join('.')
}

/** Reads an environment or command-line text as the kind of its field. */
function readValue(text: unknown, kind: ValueKind): unknown {
  if (typeof text !== 'string') return text
  const trimmed = text.trim()
  if (kind === 'integer' && /^-?\d+$/.test(trimmed)) return Number(trimmed)
  if (kind === 'boolean' && /^(true|false|1|0|yes|no)$/i.test(trimmed)) {
    return /^(true|1|yes)$/i.test(trimmed)
  }
  return text
}

/** Positions of the fields of the parsed file. */
class Positions {
  constructor(
    private readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  #at(offset: number): string {
    const { line, col } = this.lines.linePos(offset)
    return `${this.file}:${line}:${col}`
  }

  /** `file:line:col` of the key of the field at `path`, else of its nearest parent. */
  of(path: readonly PropertyKey[]): string {
    for (let length = path.length; length > 0; length--) {
      const parent: unknown =
        length === 1 ? this.doc.contents : this.doc.getIn(path.slice(0, length - 1), true)
      const key = path[length - 1]
      if (isMap(parent)) {
        for (const pair of parent.items) {
          if (isScalar(pair.key) && pair.key.value === key && pair.key.range != null) {
            return this.#at(pair.key.range[0])
          }
        }
      }
    }
    const root: unknown = this.doc.contents
    return isNode(root) && root.range != null ? this.#at(root.range[0]) : `${this.file}:1:1`
  }
}

/** The configuration file to read, if any. */
function findFile(
  options: LoadConfigOptions,
  env: Record<string, string | undefined>,
  cwd: string,
) {
  const asked = options.file ?? (env.FLOWCACHE_CONFIG === '' ? undefined : env.FLOWCACHE_CONFIG)
  if (asked !== undefined) {
    return { path: resolve(cwd, asked), shown: asked }
  }
  for (const name of CONFIG_FILE_NAMES) {
    const path = resolve(cwd, name)
    if (existsSync(path)) return { path, shown: name }
  }
  return undefined
}

/**
 * Loads the configuration: the file (see {@link LoadConfigOptions.file}), then the environment
 * variables of {@link ENV_VARIABLES}, then `overrides`; validates it all and fills in the
 * defaults. Relative paths in the file resolve against the file's folder, the others against
 * `cwd`. Throws {@link ConfigError} listing every problem, each with the field and where it was
 * written (`flowcache.yaml:12:3 cache.type: must be one of memory, sqlite, redis, nats; got
 * 'mysql'`), including a server host beyond loopback without a token.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const env = options.env ?? process.env
  const cwd = resolve(options.cwd ?? process.cwd())
  const found = findFile(options, env, cwd)
  let raw: Record<string, unknown> = {}
  let positions: Positions | undefined
  if (found !== undefined) {
    let text: string
    try {
      text = await readFile(found.path, 'utf8')
    } catch (cause) {
      throw new ConfigError(
        [
          {
            source: found.shown,
            path: '',
            message: `cannot read the configuration file ${found.shown}: ${(cause as Error).message}`,
          },
        ],
        { cause },
      )
    }
    const lines = new LineCounter()
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
    if (doc.errors.length > 0) {
      throw new ConfigError(
        doc.errors.map((error) => {
          const { line, col } = lines.linePos(error.pos[0])
          return {
            source: `${found.shown}:${line}:${col}`,
            path: '',
            message: `is not valid YAML: ${error.message.split('\n')[0] ?? error.code}`,
          }
        }),
      )
    }
    positions = new Positions(found.shown, doc, lines)
    const content: unknown = doc.toJS()
    if (content !== null && content !== undefined) {
      if (typeof content !== 'object' || Array.isArray(content)) {
        throw new ConfigError([
          {
            source: `${found.shown}:1:1`,
            path: '',
            message: 'must be a mapping with cache, server, flows and quotas blocks',
          },
        ])
      }
      raw = content as Record<string, unknown>
    }
    for (const block of ['cache', 'server', 'flows', 'quotas']) {
      if (raw[block] === null) delete raw[block]
    }
  }

  const origins = new Map<string, string>()
  const setAt = (path: readonly [string, string], value: unknown, source: string): void => {
    const [block, field] = path
    const current = raw[block]
    const target =
      typeof current === 'object' && current !== null && !Array.isArray(current)
        ? (current as Record<string, unknown>)
        : {}
    target[field] = value
    raw[block] = target
    origins.set(`${block}.${field}`, source)
  }
  for (const variable of ENV_VARIABLES) {
    const text = env[variable.name]
    if (text === undefined || text === '') continue
    setAt(variable.path, readValue(text, variable.kind), variable.name)
  }
  for (const override of options.overrides ?? []) {
    const kind = ENV_VARIABLES.find(
      (variable) => variable.path.join('.') === override.path.join('.'),
    )?.kind
    setAt(override.path, readValue(override.value, kind ?? 'string'), override.source)
  }

  const sourceOf = (path: readonly PropertyKey[]): string => {
    for (let length = path.length; length > 0; length--) {
      const origin = origins.get(dotted(path.slice(0, length)))
      if (origin !== undefined) return origin
    }
    return positions?.of(path) ?? 'configuration'
  }

  const parsed = configSchema.safeParse(raw, { reportInput: true })
  if (!parsed.success) throw new ConfigError(toIssues(parsed.error, sourceOf))
  const input = parsed.data

  const fileDir = found === undefined ? cwd : dirname(found.path)
  const pathOf = (field: string, value: string): string =>
    isAbsolute(value) ? value : resolve(origins.has(field) ? cwd : fileDir, value)
  const config = await resolveConfig(input, pathOf, cwd, sourceOf, options)
  if (found !== undefined) config.file = found.path
  return config
}

/** Turns zod's issues into configuration issues with their sources. */
function toIssues(
  error: z.ZodError,
  sourceOf: (path: readonly PropertyKey[]) => string,
): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const path = [...issue.path, key]
        issues.push({ source: sourceOf(path), path: dotted(path), message: issue.message })
      }
      continue
    }
    // A union (cache.l1) reports its branches' issues; the first names what to write.
    issues.push({ source: sourceOf(issue.path), path: dotted(issue.path), message: issue.message })
  }
  return issues
}

/** Fills in the defaults and checks what depends on several fields. */
async function resolveConfig(
  input: ConfigInput,
  pathOf: (field: string, value: string) => string,
  cwd: string,
  sourceOf: (path: readonly PropertyKey[]) => string,
  options: LoadConfigOptions,
): Promise<ResolvedConfig> {
  const issues: ConfigIssue[] = []
  const cache = input.cache ?? {}
  const server = input.server ?? {}
  const flows = input.flows ?? {}
  const enabled = cache.enabled ?? true
  const type: CacheType = enabled ? (cache.type ?? 'sqlite') : 'memory'
  const resolved: ResolvedConfig = {
    cache: {
      enabled,
      type,
      path:
        cache.path === undefined
          ? resolve(cwd, '.flowcache', 'cache.db')
          : pathOf('cache.path', cache.path),
      fallback: cache.fallback ?? 'memory',
    },
    server: {
      host: server.host ?? DEFAULT_HOST,
      port: server.port ?? DEFAULT_PORT,
      bodyLimit: server.body_limit ?? DEFAULT_BODY_LIMIT,
    },
    flows: { tenant: flows.tenant ?? 'default' },
  }
  const out = resolved.cache
  const distributed = type === 'redis' || type === 'nats'
  if (distributed) {
    let url = cache.url ?? (type === 'redis' ? 'redis://127.0.0.1:6379' : 'nats://127.0.0.1:4222')
    if (type === 'nats' && !/^[a-z]+:\/\//i.test(url)) url = `nats://${url}`
    if (type === 'redis' && !/^rediss?:\/\//i.test(url)) {
      issues.push({
        source: sourceOf(['cache', 'url']),
        path: 'cache.url',
        message: `must be a redis:// or rediss:// URL for the redis store; got '${url}'`,
      })
    }
    out.url = url
  }
  if (type === 'nats') {
    if (cache.credentials_path !== undefined) {
      out.credentialsPath = pathOf('cache.credentials_path', cache.credentials_path)
    }
    if (cache.db_name !== undefined) out.dbName = cache.db_name
    if (cache.tombstone_ttl !== undefined) out.tombstoneTtlMs = cache.tombstone_ttl
    if (cache.history === 0) {
      issues.push({
        source: sourceOf(['cache', 'history']),
        path: 'cache.history',
        message: 'must be from 1 to 64 for the nats store (1 keeps only the current value)',
      })
    }
  }
  if (cache.history !== undefined) out.history = cache.history
  if (cache.user_cache_limit_mb !== undefined) out.userCacheLimitMb = cache.user_cache_limit_mb
  if (input.quotas !== undefined) {
    const quotas: NonNullable<typeof out.quotas> = {}
    for (const [name, quota] of Object.entries(input.quotas)) {
      quotas[name] = {
        ...(quota.max_memory_mb === undefined ? {} : { maxMemoryMb: quota.max_memory_mb }),
        ...(quota.max_entries === undefined ? {} : { maxEntries: quota.max_entries }),
      }
    }
    out.quotas = quotas
  }
  if (cache.prefix !== undefined) out.prefix = cache.prefix
  for (const [field, value] of [
    ['max_entries', cache.max_entries],
    ['max_memory_mb', cache.max_memory_mb],
  ] as const) {
    if (value === undefined) continue
    if (distributed) {
      issues.push({
        source: sourceOf(['cache', field]),
        path: `cache.${field}`,
        message: `applies to the memory and sqlite stores; the ${type} server has its own limits (to bound this process, set cache.l1.${field})`,
      })
    } else if (field === 'max_entries') out.maxEntries = value
    else out.maxMemoryMb = value
  }
  if (cache.l1 !== undefined && cache.l1 !== false) {
    if (!distributed) {
      issues.push({
        source: sourceOf(['cache', 'l1']),
        path: 'cache.l1',
        message: `needs a redis or nats store (an in-process tier over the ${type} store would only duplicate it); remove it or set cache.type`,
      })
    } else {
      const l1 = cache.l1 === true ? {} : cache.l1
      out.l1 = {}
      if (l1.max_entries !== undefined) out.l1.maxEntries = l1.max_entries
      if (l1.max_memory_mb !== undefined) out.l1.maxMemoryMb = l1.max_memory_mb
      if (l1.max_ttl !== undefined) out.l1.maxTtlMs = l1.max_ttl
    }
  }

  let token = server.token
  if (server.token_file !== undefined) {
    const file = pathOf('server.token_file', server.token_file)
    if (token !== undefined) {
      issues.push({
        source: sourceOf(['server', 'token_file']),
        path: 'server.token_file',
        message: `cannot be used with server.token (set at ${sourceOf(['server', 'token'])}); keep one of them`,
      })
    } else {
      try {
        token = (await readFile(file, 'utf8')).trim()
        if (token.length < 16) {
          issues.push({
            source: sourceOf(['server', 'token_file']),
            path: 'server.token_file',
            message: `${file} must hold a token of at least 16 characters; generate one with \`openssl rand -hex 32 > ${file}\``,
          })
        }
      } catch (cause) {
        issues.push({
          source: sourceOf(['server', 'token_file']),
          path: 'server.token_file',
          message: `cannot read ${file}: ${(cause as Error).message}`,
        })
      }
    }
  }
  if (token !== undefined) resolved.server.token = token
  if (!isLoopbackHost(resolved.server.host) && token === undefined) {
    issues.push({
      source: sourceOf(['server', 'host']),
      path: 'server.host',
      message: `${resolved.server.host} is reachable from other machines, so the API needs a token: set FLOWCACHE_TOKEN (or server.token / server.token_file in flowcache.yaml) to a secret of at least 16 characters, e.g. \`export FLOWCACHE_TOKEN=$(openssl rand -hex 32)\`, or bind 127.0.0.1`,
    })
  }

  if (flows.dir !== undefined) {
    resolved.flows.dir = pathOf('flows.dir', flows.dir)
    resolved.flows.dirSource = 'config'
  } else {
    const examples =
      options.exampleFlowsDir === undefined ? EXAMPLE_FLOWS_DIR : options.exampleFlowsDir
    if (examples !== null && existsSync(examples)) {
      resolved.flows.dir = examples
      resolved.flows.dirSource = 'examples'
    }
  }
  if (issues.length > 0) throw new ConfigError(issues)
  return resolved
}

/**
 * The overrides of a CLI `--store` value (`memory`, `sqlite:<path>`, `redis://…`, `nats://…`):
 * it sets `cache.type` and `cache.url` or `cache.path`. Throws {@link ConfigError} for any
 * other value.
 */
export function storeOverrides(spec: string, source = '--store'): ConfigOverride[] {
  if (spec === 'memory') return [{ path: ['cache', 'type'], value: 'memory', source }]
  if (spec === 'sqlite' || spec.startsWith('sqlite:')) {
    const path = spec.slice('sqlite:'.length)
    return [
      { path: ['cache', 'type'], value: 'sqlite', source },
      ...(path === '' ? [] : [{ path: ['cache', 'path'] as const, value: path, source }]),
    ]
  }
  if (/^rediss?:\/\//.test(spec)) {
    return [
      { path: ['cache', 'type'], value: 'redis', source },
      { path: ['cache', 'url'], value: spec, source },
    ]
  }
  if (spec.startsWith('nats://')) {
    return [
      { path: ['cache', 'type'], value: 'nats', source },
      { path: ['cache', 'url'], value: spec, source },
    ]
  }
  throw new ConfigError([
    {
      source,
      path: '',
      message: `'${spec}' is not a store; use memory, sqlite:<path>, redis://host:6379[/db] or nats://host:4222`,
    },
  ])
}
