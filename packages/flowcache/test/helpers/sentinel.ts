/**
 * A private Redis Sentinel deployment for tests: one master (`startRedisServer`) and one
 * `redis-server <conf> --sentinel` watching it under the name `mymaster`, on free loopback ports
 * with temp dirs. Enough for a client to discover the master through the Sentinel, as ioredis's
 * `sentinels` option does; it is not a failover setup (one Sentinel, no replica).
 */
import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import {
  findExecutable,
  getFreePort,
  startRedisServer,
  waitUntilReady,
  type ProbeResult,
  type ServerHandle,
} from './servers.js'

/** Name under which the Sentinel watches the master. */
export const SENTINEL_MASTER_NAME = 'mymaster'

/** A running master and Sentinel. */
export interface RedisSentinelHandle {
  /** The Sentinel, as ioredis's `sentinels` option takes it. */
  readonly sentinels: ReadonlyArray<{ host: string; port: number }>
  /** The master the Sentinel watches. */
  readonly master: ServerHandle
  /** PID of the Sentinel process. */
  readonly sentinelPid: number
  /** Stops the Sentinel and the master (by their PIDs) and removes their temp dirs. */
  stop(): Promise<void>
}

/** Asks the Sentinel at `port` for the master's address; ok once it names `masterPort`. */
async function probeSentinel(port: number, masterPort: number): Promise<ProbeResult> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1_000,
  })
  client.on('error', () => undefined)
  try {
    await client.connect()
    const address = (await client.call(
      'SENTINEL',
      'get-master-addr-by-name',
      SENTINEL_MASTER_NAME,
    )) as string[] | null
    if (address?.[1] === String(masterPort)) return { ok: true }
    return { ok: false, reason: `the Sentinel names ${JSON.stringify(address)} as the master` }
  } catch (error) {
    return { ok: false, reason: (error as Error).message }
  } finally {
    client.disconnect()
  }
}

/**
 * Starts a master and a Sentinel monitoring it as `mymaster` (quorum 1), and waits until the
 * Sentinel answers with the master's address. Rejects (after stopping what it started) when
 * redis-server is missing or either process does not come up within `readyTimeoutMs`.
 */
export async function startRedisSentinel(
  options: { readyTimeoutMs?: number } = {},
): Promise<RedisSentinelHandle> {
  const binary = findExecutable('redis-server')
  if (binary === undefined) {
    throw new Error('redis-server is not on PATH (Debian: apt-get install redis-server)')
  }
  const master = await startRedisServer()
  const dir = mkdtempSync(join(tmpdir(), 'flowcache-sentinel-'))
  const logPath = join(dir, 'sentinel.log')
  let child: ReturnType<typeof spawn> | undefined
  let exited = false
  const stop = async (): Promise<void> => {
    if (child !== undefined && !exited) {
      const done = new Promise<void>((resolve) => child?.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child?.kill('SIGKILL'), 5_000)
      await done
      clearTimeout(timer)
    }
    rmSync(dir, { recursive: true, force: true })
    await master.stop()
  }
  try {
    const port = await getFreePort()
    const config = join(dir, 'sentinel.conf')
    // Sentinel rewrites its configuration file, so it lives in the temp dir.
    writeFileSync(
      config,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `logfile ${logPath}`,
        `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${master.port} 1`,
        `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} 5000`,
        '',
      ].join('\n'),
    )
    const logFd = openSync(join(dir, 'stdout.log'), 'a')
    try {
      child = spawn(binary, [config, '--sentinel'], { cwd: dir, stdio: ['ignore', logFd, logFd] })
    } finally {
      closeSync(logFd)
    }
    child.once('exit', () => (exited = true))
    const ready = await waitUntilReady(
      () => probeSentinel(port, master.port),
      options.readyTimeoutMs ?? 15_000,
      () => (exited ? 'the Sentinel exited' : undefined),
    )
    if (!ready.ok) {
      let log = ''
      try {
        log = readFileSync(logPath, 'utf8').trim().split('\n').slice(-10).join('\n')
      } catch {
        // no log yet
      }
      throw new Error(`the Redis Sentinel did not start on port ${port}: ${ready.reason}\n${log}`)
    }
    const sentinelPid = child.pid ?? -1
    return { sentinels: [{ host: '127.0.0.1', port }], master, sentinelPid, stop }
  } catch (error) {
    await stop()
    throw error
  }
}
