/**
 * Service discovery for integration tests: find (or start) a Redis and a NATS JetStream server.
 *
 * For each service independently, in this order:
 *   (a) `FLOWCACHE_REDIS_URL` / `FLOWCACHE_NATS_URL` if set; it must answer, else we fail loudly.
 *   (b) the default local port: 127.0.0.1:6379 (`PING` → `+PONG`) / 127.0.0.1:4222 (`INFO` with
 *       `"jetstream":true`).
 *   (c) `redis-server` / `nats-server` from PATH (or /usr/sbin), started on a free loopback port
 *       with a fresh temp dir; stopped by the global teardown.
 *   (d) as root with apt-get: `apt-get update && apt-get install -y redis-server nats-server`,
 *       then (c).
 *   (e) otherwise: throw, naming the Debian packages to install and the env vars to set.
 * Nothing is ever skipped silently.
 *
 * Environment variables:
 *   FLOWCACHE_REDIS_URL      use this Redis (redis://[[user]:pass@]host:port) instead of discovery
 *   FLOWCACHE_NATS_URL       use this NATS server (nats://host:port; JetStream must be enabled)
 *   FLOWCACHE_TEST_NO_PROBE  set to 1 to skip step (b), i.e. ignore servers on the default ports
 *                            and go straight to launching private ones (used to test path (c))
 *
 * Tests read the URLs with `redisUrl()` / `natsUrl()`, which use vitest's `inject`.
 */
import { spawn } from 'node:child_process'
import { inject } from 'vitest'
import {
  findExecutable,
  probeNats,
  probeRedis,
  startNatsServer,
  startRedisServer,
  waitUntilReady,
  type ProbeResult,
  type ServerHandle,
} from './servers.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the Redis server for this test run, e.g. `redis://127.0.0.1:6379`. */
    redisUrl: string
    /** URL of the JetStream-enabled NATS server for this test run, e.g. `nats://127.0.0.1:4222`. */
    natsUrl: string
  }
}

export type ServiceName = 'redis' | 'nats'

export interface ResolvedService {
  name: ServiceName
  url: string
  /** How the URL was found. */
  source: 'env' | 'default-port' | 'started' | 'installed-and-started'
  /** Set when we launched the server; the teardown must stop it. */
  server?: ServerHandle
}

/** Hooks so each discovery path can be exercised in isolation. Defaults are the real thing. */
export interface ResolveOptions {
  env?: NodeJS.ProcessEnv
  log?: (line: string) => void
  /** Step (b) on/off. Default: on unless FLOWCACHE_TEST_NO_PROBE=1. */
  probeDefaultPort?: boolean
  findExecutable?: (name: string) => string | undefined
  /** Step (d) on/off. Default: running as root and apt-get exists. */
  canInstall?: () => boolean
  /** Step (d) itself. Default: apt-get update && apt-get install -y redis-server nats-server. */
  install?: () => Promise<void>
}

const SPEC = {
  redis: {
    envVar: 'FLOWCACHE_REDIS_URL',
    defaultUrl: 'redis://127.0.0.1:6379',
    binary: 'redis-server',
    probe: (url: string) => probeRedis(url),
    start: () => startRedisServer(),
    example: 'redis://127.0.0.1:6379',
  },
  nats: {
    envVar: 'FLOWCACHE_NATS_URL',
    defaultUrl: 'nats://127.0.0.1:4222',
    binary: 'nats-server',
    probe: (url: string) => probeNats(url),
    start: () => startNatsServer(),
    example: 'nats://127.0.0.1:4222 (with JetStream: nats-server -js)',
  },
} as const

export const DEBIAN_PACKAGES = ['redis-server', 'nats-server'] as const

const defaultLog = (line: string): void => {
  process.stdout.write(`[flowcache services] ${line}\n`)
}

function runAsRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

function defaultCanInstall(): boolean {
  return runAsRoot() && findExecutable('apt-get') !== undefined
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    // Keep stdin closed; show apt's output on stderr so the run log explains the wait.
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit'], env })
    child.once('error', reject)
    child.once('exit', (code, signal) => {
      if (code === 0) resolve()
      else
        reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit code ${code}`})`))
    })
  })
}

let installOnce: Promise<void> | undefined

/** `apt-get update && apt-get install -y redis-server nats-server`, at most once per process. */
export function aptInstallServers(log: (line: string) => void = defaultLog): Promise<void> {
  installOnce ??= (async () => {
    log(
      `installing Debian packages: apt-get update && apt-get install -y ${DEBIAN_PACKAGES.join(' ')}`,
    )
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    await run('apt-get', ['update'], env)
    await run('apt-get', ['install', '-y', ...DEBIAN_PACKAGES], env)
  })()
  return installOnce
}

function howToFix(): string {
  return (
    'To run the integration tests, do one of:\n' +
    `  - install the Debian packages: sudo apt-get install ${DEBIAN_PACKAGES.join(' ')}\n` +
    `  - or set FLOWCACHE_REDIS_URL=${SPEC.redis.example}\n` +
    `    and FLOWCACHE_NATS_URL=${SPEC.nats.example}`
  )
}

/** Find or start one service, following steps (a) to (e). */
export async function resolveService(
  name: ServiceName,
  options: ResolveOptions = {},
): Promise<ResolvedService> {
  const spec = SPEC[name]
  const env = options.env ?? process.env
  const log = options.log ?? defaultLog
  const find = options.findExecutable ?? findExecutable
  const probeDefault = options.probeDefaultPort ?? env.FLOWCACHE_TEST_NO_PROBE !== '1'
  const tried: string[] = []

  // (a) explicit URL: must work, no fallback.
  const explicit = env[spec.envVar]
  if (explicit !== undefined && explicit !== '') {
    const result: ProbeResult = await waitUntilReady(() => spec.probe(explicit), 3_000)
    if (!result.ok) {
      throw new Error(
        `${spec.envVar}=${explicit} does not answer: ${result.reason}\n` +
          `Start that server, fix the URL, or unset ${spec.envVar} to let the tests find or start a local ${spec.binary}.`,
      )
    }
    log(`${name}: ${explicit} (from ${spec.envVar})`)
    return { name, url: explicit, source: 'env' }
  }
  tried.push(`${spec.envVar} is not set`)

  // (b) default local port.
  if (probeDefault) {
    const result = await spec.probe(spec.defaultUrl)
    if (result.ok) {
      log(`${name}: ${spec.defaultUrl} (found on the default port)`)
      return { name, url: spec.defaultUrl, source: 'default-port' }
    }
    tried.push(`${spec.defaultUrl}: ${result.reason}`)
  } else {
    const why = env.FLOWCACHE_TEST_NO_PROBE === '1' ? ' (FLOWCACHE_TEST_NO_PROBE=1)' : ''
    tried.push(`${spec.defaultUrl}: not probed${why}`)
  }

  // (c) launch from PATH; (d) install first if allowed.
  let source: ResolvedService['source'] = 'started'
  if (find(spec.binary) === undefined) {
    tried.push(`${spec.binary} is not on PATH`)
    const canInstall = (options.canInstall ?? defaultCanInstall)()
    if (!canInstall) {
      tried.push(
        !runAsRoot()
          ? 'not running as root, so not installing packages'
          : findExecutable('apt-get') === undefined
            ? 'apt-get is not available, so not installing packages'
            : 'automatic install is disabled',
      )
      throw new Error(
        `No ${name} server for the integration tests:\n  - ${tried.join('\n  - ')}\n${howToFix()}`,
      )
    }
    await (options.install ?? (() => aptInstallServers(log)))()
    if (find(spec.binary) === undefined) {
      throw new Error(
        `apt-get install ${DEBIAN_PACKAGES.join(' ')} finished but ${spec.binary} is still not on PATH.\n${howToFix()}`,
      )
    }
    tried.push(`installed ${spec.binary} with apt-get`)
    source = 'installed-and-started'
  }
  log(`${name}: starting a private ${spec.binary} (${tried.slice(1).join('; ')})`)
  const server = await spec.start()
  log(`${name}: ${server.url} (started ${spec.binary}, pid ${server.pid}, dir ${server.dir})`)
  return { name, url: server.url, source, server }
}

/** The Redis URL provided by the global setup. */
export function redisUrl(): string {
  return providedUrl('redisUrl', SPEC.redis.envVar)
}

/** The NATS (JetStream) URL provided by the global setup. */
export function natsUrl(): string {
  return providedUrl('natsUrl', SPEC.nats.envVar)
}

function providedUrl(key: 'redisUrl' | 'natsUrl', envVar: string): string {
  const url = inject(key) ?? process.env[envVar]
  if (url === undefined || url === '') {
    throw new Error(
      `${key} was not provided: run the tests through the root vitest config (npm test), ` +
        'whose globalSetup is packages/flowcache/test/helpers/global-setup.ts',
    )
  }
  return url
}

/** Deletes a NATS KV bucket a test file created; a missing bucket is fine. */
export async function destroyNatsBucket(bucket: string): Promise<void> {
  const { connect } = await import('@nats-io/transport-node')
  const { Kvm } = await import('@nats-io/kv')
  const nc = await connect({ servers: natsUrl() })
  try {
    await new Kvm(nc)
      .open(bucket)
      .then((kv) => kv.destroy())
      .catch(() => undefined)
  } finally {
    await nc.close()
  }
}

/** Deletes the Redis keys matching a SCAN `pattern` that a test file wrote (never FLUSHDB). */
export async function deleteRedisKeys(pattern: string): Promise<void> {
  const { Redis } = await import('ioredis')
  const redis = new Redis(redisUrl(), { maxRetriesPerRequest: 1 })
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}
