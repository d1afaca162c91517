/**
 * `flowcache doctor`: checks what the flow host needs (Node, the sandbox flag) and the store
 * (reachable, version, settings, a write/read/delete round trip) and says what to fix.
 */
import { randomBytes } from 'node:crypto'
import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { Command } from 'commander'
import { cacheForCommand, type CommandCache } from '../cache.js'
import { ExitCode, type CliIo } from '../io.js'
import { STORE_SPEC_HELP } from '../stores.js'
import {
  formatLatency,
  helpAfter,
  isReportable,
  errorCode,
  printJson,
  type OutputOptions,
} from './common.js'

/** Oldest Node version the flow host supports (the package's `engines`). */
export const MIN_NODE = [20, 19] as const
/** A median round trip above this many ms is reported as a warning. */
export const SLOW_ROUND_TRIP_MS = 20
/** How long doctor waits for a Redis or NATS server to answer, ms. */
const CONNECT_TIMEOUT_MS = 2000

/** Outcome of one check. */
export type CheckStatus = 'pass' | 'warn' | 'fail'

/** One line of the doctor's report. */
export interface DoctorCheck {
  /** Short name, e.g. `node`, `redis server`, `store probe`. */
  name: string
  status: CheckStatus
  /** What was found. */
  detail: string
  /** What to do about a `warn` or `fail`. */
  fix?: string
}

/** What `doctor --json` prints. */
export interface DoctorReport {
  /** No check failed. */
  ok: boolean
  /** `--store`, with any password hidden. */
  store: string
  checks: DoctorCheck[]
}

/** Options of `flowcache doctor`. */
export interface DoctorCommandOptions extends OutputOptions {
  /** `--store`. @default 'memory' */
  store: string
}

const check = (name: string, status: CheckStatus, detail: string, fix?: string): DoctorCheck =>
  fix === undefined ? { name, status, detail } : { name, status, detail, fix }

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

/** `spec` with the password of a URL replaced by `***`. */
export function redactStore(spec: string): string {
  try {
    const url = new URL(spec)
    if (url.password === '') return spec
    url.password = '***'
    return url.toString()
  } catch {
    return spec
  }
}

/** Node version, and the `--no-node-snapshot` flag the script sandbox (isolated-vm) needs. */
export function runtimeChecks(
  version = process.versions.node,
  execArgv: readonly string[] = process.execArgv,
  nodeOptions = process.env.NODE_OPTIONS ?? '',
): DoctorCheck[] {
  const [major = 0, minor = 0] = version.split('.').map(Number)
  const needed = `${MIN_NODE[0]}.${MIN_NODE[1]}`
  const nodeOk = major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1])
  const flagged =
    execArgv.includes('--no-node-snapshot') ||
    nodeOptions.split(/\s+/).includes('--no-node-snapshot')
  return [
    nodeOk
      ? check('node', 'pass', `Node ${version} (needs ${needed} or later)`)
      : check(
          'node',
          'fail',
          `Node ${version} is older than ${needed}`,
          `install Node ${needed} or later (e.g. the current LTS)`,
        ),
    flagged
      ? check(
          'sandbox flag',
          'pass',
          'Node runs with --no-node-snapshot, as the script sandbox needs',
        )
      : check(
          'sandbox flag',
          'warn',
          'Node runs without --no-node-snapshot: flow scripts cannot run in the sandbox (cache commands work)',
          'start flowcache through its binary (bin/flowcache.js adds the flag), or run node --no-node-snapshot, or set NODE_OPTIONS=--no-node-snapshot',
        ),
  ]
}

/** SQLite: the database file (or the directory it will be created in) is writable. */
export async function sqliteChecks(path: string): Promise<DoctorCheck[]> {
  if (path === ':memory:') {
    return [
      check(
        'sqlite file',
        'warn',
        ':memory: keeps nothing after the command',
        'give a file path, e.g. sqlite:./.flowcache/cache.db',
      ),
    ]
  }
  const file = resolve(path)
  try {
    const info = await stat(file)
    if (!info.isFile()) {
      return [
        check(
          'sqlite file',
          'fail',
          `${file} is not a file`,
          'point --store sqlite:<path> at a file',
        ),
      ]
    }
    await access(file, constants.R_OK | constants.W_OK)
    return [check('sqlite file', 'pass', `${file} exists and is writable`)]
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      return [
        check(
          'sqlite file',
          'fail',
          `${file} is not writable: ${messageOf(error)}`,
          `give the user running flowcache write access to ${file}`,
        ),
      ]
    }
  }
  // The file does not exist yet: the store creates it (and missing directories).
  let dir = dirname(file)
  for (;;) {
    try {
      await access(dir, constants.W_OK)
      return [
        check(
          'sqlite file',
          'pass',
          `${file} does not exist yet; ${dir} is writable, so it will be created`,
        ),
      ]
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(dir) === dir) {
        return [
          check(
            'sqlite file',
            'fail',
            `${file} cannot be created: ${dir} is not writable`,
            `create the directory or choose a writable path`,
          ),
        ]
      }
      dir = dirname(dir)
    }
  }
}

/** Redis: reachable, its version, and whether it publishes expire events for `watch()`. */
export async function redisChecks(
  url: string,
): Promise<{ checks: DoctorCheck[]; reachable: boolean }> {
  const { Redis } = await import('ioredis')
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: CONNECT_TIMEOUT_MS,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  let lastError: unknown
  client.on('error', (error: unknown) => {
    lastError = error
  })
  const where = `${client.options.host ?? '127.0.0.1'}:${client.options.port ?? 6379}`
  const checks: DoctorCheck[] = []
  try {
    try {
      await client.connect()
      const info = await client.info('server')
      const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown'
      const [major = 0] = version.split('.').map(Number)
      checks.push(
        major >= 5 || version === 'unknown'
          ? check('redis server', 'pass', `Redis ${version} at ${where}`)
          : check(
              'redis server',
              'fail',
              `Redis ${version} at ${where} is older than 5.0`,
              'upgrade Redis to 5.0 or later',
            ),
      )
    } catch (error) {
      checks.push(
        check(
          'redis server',
          'fail',
          `cannot connect to Redis at ${where}: ${messageOf(lastError ?? error)}`,
          'start Redis, or fix the host, port, password or TLS (rediss://) in --store',
        ),
      )
      return { checks, reachable: false }
    }
    try {
      const reply = await client.config('GET', 'notify-keyspace-events')
      const flags = Array.isArray(reply) && typeof reply[1] === 'string' ? reply[1] : ''
      const on = flags.includes('E') && (flags.includes('x') || flags.includes('A'))
      checks.push(
        on
          ? check(
              'expire events',
              'pass',
              `notify-keyspace-events is "${flags}": watch() reports expiries`,
            )
          : check(
              'expire events',
              'warn',
              `notify-keyspace-events is "${flags}": watch() does not report entries that expire`,
              'if you watch keys, run: redis-cli CONFIG SET notify-keyspace-events Ex (and set it in redis.conf)',
            ),
      )
    } catch (error) {
      checks.push(
        check(
          'expire events',
          'warn',
          `cannot read notify-keyspace-events (${messageOf(error)}); managed Redis often disables CONFIG`,
          "enable keyspace notifications 'Ex' in your provider's settings if you watch keys",
        ),
      )
    }
    return { checks, reachable: true }
  } finally {
    client.disconnect()
  }
}

/** Decodes a JetStream API reply. */
function jsonOf(data: Uint8Array): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>
}

/**
 * NATS: reachable, its version, JetStream enabled; after the probe (which creates the bucket
 * when missing), that the bucket's stream answers.
 */
export async function natsChecks(url: string): Promise<{
  checks: DoctorCheck[]
  reachable: boolean
  bucketCheck: (bucket: string) => Promise<DoctorCheck>
  close: () => Promise<void>
}> {
  const { connect } = await import('@nats-io/transport-node')
  const checks: DoctorCheck[] = []
  const none = {
    bucketCheck: () => Promise.resolve(check('nats bucket', 'fail', 'not checked')),
    close: () => Promise.resolve(),
  }
  let nc
  try {
    nc = await connect({ servers: url, timeout: CONNECT_TIMEOUT_MS, reconnect: false })
  } catch (error) {
    checks.push(
      check(
        'nats server',
        'fail',
        `cannot connect to NATS at ${url}: ${messageOf(error)}`,
        'start nats-server (with -js), or fix the host, port or credentials in --store',
      ),
    )
    return { checks, reachable: false, ...none }
  }
  const connection = nc
  const version = connection.info?.version ?? 'unknown'
  const [major = 0, minor = 0] = version.split('.').map(Number)
  checks.push(check('nats server', 'pass', `nats-server ${version} at ${connection.getServer()}`))
  if (version !== 'unknown' && (major < 2 || (major === 2 && minor < 11))) {
    checks.push(
      check(
        'nats ttl',
        'warn',
        `nats-server ${version} has no per-key TTL: flowcache enforces TTLs itself and its sweep removes expired entries`,
        'nothing to do for correctness; upgrade to nats-server 2.11 or later for native expiry',
      ),
    )
  }
  let jetstream = false
  try {
    const reply = jsonOf(
      (await connection.request('$JS.API.INFO', undefined, { timeout: CONNECT_TIMEOUT_MS })).data,
    )
    const apiError = reply.error as { description?: string } | undefined
    if (apiError === undefined) {
      jetstream = true
      checks.push(check('jetstream', 'pass', 'JetStream is enabled for this account'))
    } else {
      checks.push(
        check(
          'jetstream',
          'fail',
          `JetStream answered: ${apiError.description ?? 'error'}`,
          'enable JetStream for the account in the server configuration',
        ),
      )
    }
  } catch (error) {
    checks.push(
      check(
        'jetstream',
        'fail',
        `JetStream is not enabled (${messageOf(error)})`,
        'start nats-server with -js (or jetstream {} in its configuration)',
      ),
    )
  }
  return {
    checks,
    reachable: jetstream,
    bucketCheck: async (bucket) => {
      try {
        const reply = jsonOf(
          (
            await connection.request(`$JS.API.STREAM.INFO.KV_${bucket}`, undefined, {
              timeout: CONNECT_TIMEOUT_MS,
            })
          ).data,
        )
        const apiError = reply.error as { description?: string } | undefined
        if (apiError !== undefined) {
          return check(
            'nats bucket',
            'fail',
            `bucket ${bucket}: ${apiError.description ?? 'error'}`,
            'check the account has permission to create and use the KV bucket',
          )
        }
        const state = reply.state as { messages?: number } | undefined
        return check(
          'nats bucket',
          'pass',
          `bucket ${bucket} (stream KV_${bucket}) reachable, ${state?.messages ?? 0} stored messages`,
        )
      } catch (error) {
        return check(
          'nats bucket',
          'fail',
          `bucket ${bucket} does not answer: ${messageOf(error)}`,
          'check the account has permission to use $JS.API',
        )
      }
    },
    close: () => connection.close(),
  }
}

/**
 * Writes, reads and deletes a probe key in a private namespace of the store, then times a few
 * reads. Returns the checks.
 */
export async function probeChecks(opened: CommandCache): Promise<DoctorCheck[]> {
  const space = opened.root.namespace(`flowcache-doctor-${randomBytes(6).toString('hex')}`)
  const nonce = randomBytes(8).toString('hex')
  const checks: DoctorCheck[] = []
  try {
    await space.set('probe', { nonce }, 60_000)
    const back = await space.get<{ nonce: string }>('probe')
    if (back?.nonce !== nonce) {
      checks.push(
        check(
          'store probe',
          'fail',
          'a probe key read back differs from what was written',
          'another process may be writing the same keys; check the store',
        ),
      )
      return checks
    }
    const times: number[] = []
    for (let i = 0; i < 5; i++) {
      const started = performance.now()
      await space.get('probe')
      times.push(performance.now() - started)
    }
    const deleted = await space.delete('probe')
    const gone = (await space.get('probe')) === undefined
    checks.push(
      deleted && gone
        ? check(
            'store probe',
            'pass',
            `wrote, read back and deleted a probe key (${opened.root.store.name} store)`,
          )
        : check('store probe', 'fail', 'the probe key was not deleted', 'check the store'),
    )
    times.sort((a, b) => a - b)
    const median = times[2] ?? 0
    checks.push(
      median <= SLOW_ROUND_TRIP_MS
        ? check('round trip', 'pass', `${formatLatency(median)} median of 5 reads`)
        : check(
            'round trip',
            'warn',
            `${formatLatency(median)} median of 5 reads is slow`,
            'run flowcache close to the store (same region or network), or add an L1 tier',
          ),
    )
  } catch (error) {
    if (!isReportable(error)) throw error
    checks.push(
      check(
        'store probe',
        'fail',
        `${errorCode(error)}: ${error.message}`,
        'check the store is up and accepts writes',
      ),
    )
  } finally {
    await space.clear().catch(() => undefined)
  }
  return checks
}

/** Runs every check for `--store`. */
export async function runDoctor(spec: string): Promise<DoctorCheck[]> {
  const checks = runtimeChecks()
  let after: ((opened: CommandCache) => Promise<DoctorCheck>) | undefined
  let close: () => Promise<void> = () => Promise.resolve()
  if (spec === 'memory') {
    checks.push(
      check(
        'store',
        'warn',
        'memory: entries live only as long as one command',
        'for the CLI, use sqlite:<path>, redis://… or nats://… to keep entries',
      ),
    )
  } else if (spec.startsWith('sqlite:')) {
    checks.push(...(await sqliteChecks(spec.slice('sqlite:'.length))))
  } else if (spec.startsWith('nats://')) {
    const nats = await natsChecks(spec)
    checks.push(...nats.checks)
    close = nats.close
    if (!nats.reachable) return finish(checks, close)
    after = (opened) => nats.bucketCheck(bucketOf(opened))
  } else if (/^rediss?:\/\//.test(spec)) {
    const redis = await redisChecks(spec)
    checks.push(...redis.checks)
    if (!redis.reachable) return checks
  } else {
    checks.push(
      check('store', 'fail', `--store ${spec} is not a store`, `use one of ${STORE_SPEC_HELP}`),
    )
    return checks
  }
  let opened: CommandCache
  try {
    opened = await cacheForCommand({ store: spec, config: false })
  } catch (error) {
    checks.push(
      check(
        'store probe',
        'fail',
        messageOf(error),
        spec.startsWith('sqlite:')
          ? 'choose a path in a directory this user can write'
          : 'check that the store is up and reachable from this machine',
      ),
    )
    return finish(checks, close)
  }
  try {
    checks.push(...(await probeChecks(opened)))
    if (after !== undefined) checks.push(await after(opened))
  } finally {
    await opened.close()
  }
  return finish(checks, close)
}

async function finish(checks: DoctorCheck[], close: () => Promise<void>): Promise<DoctorCheck[]> {
  await close().catch(() => undefined)
  return checks
}

/** The KV bucket of an opened NATS store. */
function bucketOf(opened: CommandCache): string {
  const bucket = (opened.root.store as { bucket?: unknown }).bucket
  return typeof bucket === 'string' ? bucket : 'flowcache'
}

const LABEL: Record<CheckStatus, string> = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' }

/** The readable report: one line per check, `fix:` under warnings and failures, a tally. */
export function formatDoctor(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length))
  const lines = [`flowcache doctor: store ${report.store}`, '']
  for (const c of report.checks) {
    lines.push(`${LABEL[c.status]}  ${c.name.padEnd(width)}  ${c.detail}`)
    if (c.fix !== undefined) lines.push(`      ${' '.repeat(width)}  fix: ${c.fix}`)
  }
  const warnings = report.checks.filter((c) => c.status === 'warn').length
  const failures = report.checks.filter((c) => c.status === 'fail').length
  lines.push(
    '',
    `${failures} ${failures === 1 ? 'failure' : 'failures'}, ${warnings} ${warnings === 1 ? 'warning' : 'warnings'}`,
  )
  return `${lines.join('\n')}\n`
}

/** Runs the checks and prints them; 0 when none failed (warnings allowed), 1 otherwise. */
export async function doctorCommand(options: DoctorCommandOptions, io: CliIo): Promise<ExitCode> {
  const checks = await runDoctor(options.store)
  const report: DoctorReport = {
    ok: checks.every((c) => c.status !== 'fail'),
    store: redactStore(options.store),
    checks,
  }
  if (options.json === true) printJson(io, report)
  else io.stdout(formatDoctor(report))
  return report.ok ? ExitCode.ok : ExitCode.failure
}

/** Adds `doctor` to the program. */
export function registerDoctor(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  program
    .command('doctor')
    .summary('check the setup and the store, and say what to fix')
    .description(
      'Checks Node and the --no-node-snapshot flag the script sandbox needs, then the store: that it is reachable, its version and settings (Redis expire events; NATS JetStream and the bucket; SQLite file writable), and a write, read and delete of a probe key in a private namespace, with the round-trip time. Each check prints PASS, WARN or FAIL, with what to do.',
    )
    .option('-s, --store <store>', `the store to check: ${STORE_SPEC_HELP}`, 'memory')
    .option('--json', 'print {"ok","store","checks":[{"name","status","detail","fix"}]} as JSON')
    .addHelpText(
      'after',
      helpAfter('0 no check failed (warnings allowed), 1 a check failed', [
        'flowcache doctor --store redis://127.0.0.1:6379',
        'flowcache doctor --store nats://127.0.0.1:4222 --json',
        'flowcache doctor --store sqlite:./.flowcache/cache.db',
      ]),
    )
    .action(async (options: DoctorCommandOptions) => {
      done(await doctorCommand(options, io))
    })
}
