/**
 * Launch and probe private redis-server / nats-server processes for tests.
 *
 * Used by the vitest global setup (to start a server when none is reachable) and by fault tests
 * that need to own a server: pause it (`kill('SIGSTOP')`), crash it (`kill('SIGKILL')`), and
 * restart it on the same data dir (`startRedisServer({ dir: old.dir, port: old.port })`).
 * For a Redis restart to keep data, start both with `args: ['--appendonly', 'yes']`. The dir
 * belongs to the handle that created it: stop the restarted server first, then call `old.stop()`
 * (a no-op for the dead process) to remove the dir.
 *
 * Only node built-ins are used so this works before any client library is installed.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import {
  accessSync,
  closeSync,
  constants as fsConstants,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
} from 'node:fs'
import { createServer, connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'

export type ProbeResult = { ok: true } | { ok: false; reason: string }

export interface StartServerOptions {
  /** Data dir. Default: a fresh temp dir, removed by `stop()`. A dir you pass is never removed. */
  dir?: string
  /** Loopback port. Default: a free port picked by the OS. */
  port?: number
  /** Extra command line arguments, appended after the defaults (so they can override them). */
  args?: string[]
  /** How long to wait for the server to answer. Default 10 s. */
  readyTimeoutMs?: number
}

export interface StopOptions {
  /** Time between SIGTERM and SIGKILL. Default 5 s. */
  graceMs?: number
  /** Keep the data dir even if the launcher created it (e.g. to restart on it). */
  keepDir?: boolean
}

export interface ServerHandle {
  /** `redis://127.0.0.1:PORT` or `nats://127.0.0.1:PORT`. */
  readonly url: string
  readonly port: number
  readonly pid: number
  /** The server's data dir (also holds `server.log`). */
  readonly dir: string
  /** True while the process has not exited. */
  readonly running: boolean
  /** Resolves when the process has exited. */
  readonly exited: Promise<void>
  /** SIGCONT (in case it was paused), SIGTERM, SIGKILL after the grace period; removes its temp dir. */
  stop(options?: StopOptions): Promise<void>
  /** Send a signal, e.g. 'SIGSTOP', 'SIGCONT', 'SIGKILL'. No-op once the process has exited. */
  kill(signal: NodeJS.Signals): void
  /** The server's log so far (stdout and stderr). */
  log(): string
}

const LOOPBACK = '127.0.0.1'
const DEFAULT_READY_TIMEOUT_MS = 10_000
const DEFAULT_GRACE_MS = 5_000

/** Directories Debian puts daemons in; often missing from a normal user's PATH. */
const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

/** Absolute path of an executable found on PATH (or in the sbin dirs), or undefined. */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN_DIRS]
  for (const dir of dirs) {
    const candidate = join(dir, name)
    try {
      accessSync(candidate, fsConstants.X_OK)
      return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

/** A port that was free on 127.0.0.1 a moment ago (listen on port 0, read it, close). */
export function getFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, LOOPBACK, () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        server.close()
        reject(new Error('could not get a free port'))
        return
      }
      const { port } = address
      server.close(() => resolve(port))
    })
  })
}

/**
 * Open a connection, optionally write `request`, and collect data until `isComplete` says so.
 * Never throws: failures come back as `{ ok: false, reason }`.
 */
function exchange(
  url: URL,
  defaultPort: number,
  request: string | undefined,
  check: (received: string) => ProbeResult | undefined,
  timeoutMs: number,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const host = url.hostname.replace(/^\[|\]$/g, '') || LOOPBACK
    const port = url.port === '' ? defaultPort : Number(url.port)
    const secure = url.protocol === 'rediss:' || url.protocol === 'tls:'
    let received = ''
    let settled = false
    const socket: Socket = secure
      ? tlsConnect({ host, port, servername: host })
      : connect({ host, port })
    const finish = (result: ProbeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      resolve(result)
    }
    const timer = setTimeout(
      () => finish({ ok: false, reason: `no answer from ${host}:${port} within ${timeoutMs} ms` }),
      timeoutMs,
    )
    socket.setEncoding('utf8')
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      if (request !== undefined) socket.write(request)
    })
    socket.on('data', (chunk: string) => {
      received += chunk
      const result = check(received)
      if (result !== undefined) finish(result)
    })
    socket.once('error', (error) => finish({ ok: false, reason: error.message }))
    socket.once('close', () =>
      finish({
        ok: false,
        reason: `${host}:${port} closed the connection (got ${JSON.stringify(received.slice(0, 200))})`,
      }),
    )
  })
}

function resp(...parts: string[]): string {
  return `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`
}

/**
 * Send `PING` (after `AUTH` when the URL has credentials) and expect `+PONG`.
 * Accepts `redis://[[user]:password@]host[:port][/db]` and `rediss://` (TLS).
 */
export function probeRedis(redisUrl: string, timeoutMs = 2_000): Promise<ProbeResult> {
  let url: URL
  try {
    url = new URL(redisUrl)
  } catch {
    return Promise.resolve({ ok: false, reason: `not a URL: ${redisUrl}` })
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    return Promise.resolve({
      ok: false,
      reason: `expected a redis:// or rediss:// URL, got ${redisUrl}`,
    })
  }
  const user = decodeURIComponent(url.username)
  const password = decodeURIComponent(url.password)
  const auth =
    password === '' ? '' : user === '' ? resp('AUTH', password) : resp('AUTH', user, password)
  return exchange(
    url,
    6379,
    auth + resp('PING'),
    (received) => {
      const lines = received.split('\r\n')
      const needed = auth === '' ? 1 : 2
      if (lines.length <= needed) return undefined // wait for complete lines
      const replies = lines.slice(0, needed)
      const error = replies.find((line) => line.startsWith('-'))
      if (error !== undefined) return { ok: false, reason: `Redis answered ${error}` }
      const last = replies[needed - 1]
      if (last === '+PONG') return { ok: true }
      return { ok: false, reason: `expected +PONG, got ${JSON.stringify(last)}` }
    },
    timeoutMs,
  )
}

/** Read the server's `INFO {...}` greeting and require `"jetstream":true` in it. */
export function probeNats(natsUrl: string, timeoutMs = 2_000): Promise<ProbeResult> {
  let url: URL
  try {
    url = new URL(natsUrl)
  } catch {
    return Promise.resolve({ ok: false, reason: `not a URL: ${natsUrl}` })
  }
  if (url.protocol !== 'nats:') {
    // The greeting is plaintext even for TLS servers, but keep it simple: nats:// only.
    return Promise.resolve({ ok: false, reason: `expected a nats:// URL, got ${natsUrl}` })
  }
  return exchange(
    url,
    4222,
    undefined,
    (received) => {
      const end = received.indexOf('\r\n')
      if (end < 0) return undefined
      const line = received.slice(0, end)
      if (!line.startsWith('INFO ')) {
        return {
          ok: false,
          reason: `not a NATS server (greeting ${JSON.stringify(line.slice(0, 80))})`,
        }
      }
      let info: unknown
      try {
        info = JSON.parse(line.slice(5))
      } catch {
        return {
          ok: false,
          reason: `unreadable NATS INFO line ${JSON.stringify(line.slice(0, 200))}`,
        }
      }
      if (
        typeof info === 'object' &&
        info !== null &&
        (info as { jetstream?: unknown }).jetstream === true
      ) {
        return { ok: true }
      }
      return {
        ok: false,
        reason:
          'NATS server answers but JetStream is not enabled ("jetstream":true missing in INFO)',
      }
    },
    timeoutMs,
  )
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Poll `probe` until it succeeds or `timeoutMs` passes; stops early if `givenUp()` says so. */
export async function waitUntilReady(
  probe: () => Promise<ProbeResult>,
  timeoutMs: number,
  givenUp: () => string | undefined = () => undefined,
): Promise<ProbeResult> {
  const deadline = Date.now() + timeoutMs
  let last: ProbeResult = { ok: false, reason: 'not probed yet' }
  for (;;) {
    const reason = givenUp()
    if (reason !== undefined) return { ok: false, reason }
    last = await probe()
    if (last.ok) return last
    if (Date.now() >= deadline)
      return { ok: false, reason: `not ready after ${timeoutMs} ms: ${last.reason}` }
    await sleep(100)
  }
}

interface ServerKind {
  name: 'redis-server' | 'nats-server'
  scheme: 'redis' | 'nats'
  args(port: number, dir: string): string[]
  probe(url: string): Promise<ProbeResult>
}

const REDIS: ServerKind = {
  name: 'redis-server',
  scheme: 'redis',
  args: (port, dir) => [
    '--bind',
    LOOPBACK,
    '--port',
    String(port),
    '--dir',
    dir,
    '--save',
    '',
    '--appendonly',
    'no',
  ],
  // Started with e.g. `args: ['--requirepass', 'x']` it answers -NOAUTH: that is up, too.
  probe: async (url) => {
    const result = await probeRedis(url, 1_000)
    return !result.ok && result.reason.includes('-NOAUTH') ? { ok: true } : result
  },
}

const NATS: ServerKind = {
  name: 'nats-server',
  scheme: 'nats',
  args: (port, dir) => ['-a', LOOPBACK, '-p', String(port), '-js', '-sd', dir],
  probe: (url) => probeNats(url, 1_000),
}

/** Launch exactly once on a given port; rejects (after cleaning up) if the server does not come up. */
async function launchOnce(
  kind: ServerKind,
  options: StartServerOptions,
  port: number,
): Promise<ServerHandle> {
  const binary = findExecutable(kind.name)
  if (binary === undefined) {
    throw new Error(`${kind.name} is not on PATH (Debian: apt-get install ${kind.name})`)
  }
  const ownsDir = options.dir === undefined
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), `flowcache-${kind.scheme}-`))
  const logPath = join(dir, 'server.log')
  const logFd = openSync(logPath, 'a')
  let child: ChildProcess
  try {
    child = spawn(binary, [...kind.args(port, dir), ...(options.args ?? [])], {
      cwd: dir,
      stdio: ['ignore', logFd, logFd],
    })
  } finally {
    closeSync(logFd) // the child has its own copy
  }

  let exitInfo: string | undefined
  let spawnError: Error | undefined
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exitInfo = signal === null ? `exit code ${code}` : `signal ${signal}`
      resolve()
    })
    child.once('error', (error) => {
      spawnError = error
      exitInfo ??= `spawn error: ${error.message}`
      resolve()
    })
  })

  const readLog = (): string => {
    try {
      return readFileSync(logPath, 'utf8')
    } catch {
      return ''
    }
  }
  const url = `${kind.scheme}://${LOOPBACK}:${port}`
  let removed = false
  const removeDir = (): void => {
    if (ownsDir && !removed) {
      removed = true
      rmSync(dir, { recursive: true, force: true })
    }
  }

  const handle: ServerHandle = {
    url,
    port,
    pid: child.pid ?? -1,
    dir,
    get running() {
      return exitInfo === undefined
    },
    exited,
    kill(signal) {
      if (exitInfo === undefined) child.kill(signal)
    },
    log: readLog,
    async stop(stopOptions = {}) {
      const graceMs = stopOptions.graceMs ?? DEFAULT_GRACE_MS
      if (exitInfo === undefined) {
        child.kill('SIGCONT') // a paused (SIGSTOP) server would ignore SIGTERM
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
        await exited
        clearTimeout(timer)
      }
      if (!stopOptions.keepDir) removeDir()
    },
  }

  const ready = await waitUntilReady(
    () => kind.probe(url),
    options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS,
    () => (exitInfo === undefined ? undefined : `${kind.name} exited (${exitInfo})`),
  )
  if (!ready.ok || spawnError !== undefined || handle.pid < 0) {
    const log = readLog().trim().split('\n').slice(-15).join('\n')
    await handle.stop({ graceMs: 1_000 })
    throw new Error(
      `${kind.name} (${binary}) did not start on ${url}: ${ready.ok ? 'no pid' : ready.reason}` +
        (log === '' ? '' : `\n--- last lines of its log ---\n${log}`),
    )
  }
  return handle
}

async function startServer(kind: ServerKind, options: StartServerOptions): Promise<ServerHandle> {
  if (options.port !== undefined) return launchOnce(kind, options, options.port)
  // A free port can be taken between our check and the server's bind: retry with another one.
  let lastError: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await launchOnce(kind, options, await getFreePort())
    } catch (error) {
      lastError = error
      if (!/address already in use|EADDRINUSE/i.test(String(error))) throw error
    }
  }
  throw lastError
}

/**
 * Start a private `redis-server --bind 127.0.0.1 --port P --dir T --save '' --appendonly no`
 * and wait until it answers PING. Pass `args: ['--appendonly', 'yes']` for a restartable one.
 */
export function startRedisServer(options: StartServerOptions = {}): Promise<ServerHandle> {
  return startServer(REDIS, options)
}

/** Start a private `nats-server -a 127.0.0.1 -p P -js -sd T` and wait until it offers JetStream. */
export function startNatsServer(options: StartServerOptions = {}): Promise<ServerHandle> {
  return startServer(NATS, options)
}

/** True if a process with this pid exists (a zombie counts as gone only once reaped). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Options of {@link startRedisCluster}. */
export interface StartRedisClusterOptions {
  /** Master nodes, one redis-server each; `redis-cli --cluster create` needs at least 3. Default 3. */
  nodes?: number
  /** How long to wait for every node to report `cluster_state:ok`. Default 30 s. */
  readyTimeoutMs?: number
}

/** A private Redis Cluster of masters only, on loopback ports with temp dirs. */
export interface RedisClusterHandle {
  /** Seed nodes, as ioredis `new Cluster(nodes)` takes them. */
  readonly nodes: ReadonlyArray<{ host: string; port: number }>
  /** The node processes. */
  readonly servers: readonly ServerHandle[]
  /** Stops every node (by its PID) and removes their temp dirs. */
  stop(options?: StopOptions): Promise<void>
}

/** Runs a command to completion; rejects with its output when it fails or takes longer than `timeoutMs`. */
function runToCompletion(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      if (error === null) resolve(stdout)
      else
        reject(
          new Error(`${command} ${args.join(' ')} failed: ${error.message}\n${stdout}${stderr}`),
        )
    })
  })
}

/** One cluster-enabled redis-server, with its nodes.conf in its own temp dir. */
async function startClusterNode(): Promise<ServerHandle> {
  let lastError: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    // The cluster bus gets a port of its own: the default, port + 10000, is past 65535 for many
    // ephemeral ports. A free port can be taken before the server binds it, hence the retry.
    const busPort = await getFreePort()
    try {
      return await startRedisServer({
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf', // relative to --dir, the node's temp dir
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '5000',
        ],
      })
    } catch (error) {
      lastError = error
      if (!/address already in use|EADDRINUSE/i.test(String(error))) throw error
    }
  }
  throw lastError
}

/**
 * Start a private Redis Cluster: `nodes` cluster-enabled redis-server processes on free loopback
 * ports, joined with `redis-cli --cluster create … --cluster-replicas 0 --cluster-yes`, then wait
 * until every node reports `cluster_state:ok` with all slots assigned. Needs Redis 7 (for
 * `--cluster-port`). `stop()` stops the nodes by PID and removes their dirs; the nodes are also
 * killed if the process exits without calling it.
 */
export async function startRedisCluster(
  options: StartRedisClusterOptions = {},
): Promise<RedisClusterHandle> {
  const count = options.nodes ?? 3
  if (!Number.isInteger(count) || count < 3) {
    throw new Error(`a Redis Cluster needs at least 3 masters; got nodes: ${count}`)
  }
  const cli = findExecutable('redis-cli')
  if (cli === undefined)
    throw new Error('redis-cli is not on PATH (Debian: apt-get install redis-tools)')
  const servers: ServerHandle[] = []
  const killOnExit = (): void => {
    for (const server of servers) server.kill('SIGKILL')
  }
  process.once('exit', killOnExit)
  const stop = async (stopOptions?: StopOptions): Promise<void> => {
    await Promise.all(servers.map((server) => server.stop(stopOptions)))
    process.removeListener('exit', killOnExit)
  }
  try {
    for (let i = 0; i < count; i++) servers.push(await startClusterNode())
    const addresses = servers.map((server) => `${LOOPBACK}:${server.port}`)
    await runToCompletion(
      cli,
      ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'],
      30_000,
    )
    const ready = await waitUntilReady(
      async () => {
        for (const server of servers) {
          const info = await runToCompletion(
            cli,
            ['-h', LOOPBACK, '-p', String(server.port), 'cluster', 'info'],
            2_000,
          )
          const field = (name: string): string | undefined =>
            new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1]
          if (
            field('cluster_state') !== 'ok' ||
            field('cluster_slots_ok') !== '16384' ||
            field('cluster_known_nodes') !== String(count)
          ) {
            return {
              ok: false,
              reason: `node ${server.port}: ${info.trim().split('\n').slice(0, 6).join(', ')}`,
            }
          }
        }
        return { ok: true }
      },
      options.readyTimeoutMs ?? 30_000,
      () => servers.find((server) => !server.running)?.log(),
    )
    if (!ready.ok) throw new Error(`the Redis Cluster did not become ready: ${ready.reason}`)
  } catch (error) {
    await stop({ graceMs: 1_000 })
    throw error
  }
  return {
    nodes: servers.map((server) => ({ host: LOOPBACK, port: server.port })),
    servers,
    stop,
  }
}
