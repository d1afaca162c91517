/**
 * A TCP fault proxy for fault tests, built on node:net only.
 *
 * Put one proxy between ONE replica and Redis (or NATS) and switch its mode at runtime to cut,
 * slow down or reset that replica's link while the other replicas keep their direct connection.
 * A mode applies to current and new connections alike.
 *
 * Bytes that arrive while a direction is cut (`blackhole()`, `oneway()`) are held in order and
 * delivered once the direction is healed, as TCP would retransmit them after a partition heals.
 * Dropping them instead would desynchronise request/reply protocols (a client would match a later
 * reply to a request that timed out). `reset()` discards everything that is held.
 *
 * @example
 *   const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: 6379 } })
 *   const redis = new Redis(proxy.url(redisUrl()))
 *   proxy.blackhole() // partition: commands hang, no RST
 *   await proxy.pass() // heal
 */
import { connect, createServer, type Server, type Socket } from 'node:net'

const LOOPBACK = '127.0.0.1'
/** Held bytes per direction above which we stop reading the sender (back-pressure). */
const HIGH_WATER_BYTES = 1 << 20

/** `up`: client → target. `down`: target → client. */
export type Direction = 'up' | 'down'

export type FaultMode =
  | { kind: 'pass' }
  | { kind: 'delay'; ms: number; jitterMs: number }
  | { kind: 'blackhole' }
  | { kind: 'oneway'; direction: Direction }
  | { kind: 'throttle'; bytesPerSecond: number }

export interface FaultProxyOptions {
  /** Where to forward to, e.g. the Redis or NATS server. */
  target: { host: string; port: number }
  /** Port to listen on (on 127.0.0.1). Default 0: a free port picked by the OS. */
  listenPort?: number
}

export interface FaultProxy {
  /** The port the proxy listens on; stays the same across `refuse()` / `pass()`. */
  readonly port: number
  /**
   * `url('redis')` → `redis://127.0.0.1:PORT`. Given a full URL instead of a scheme
   * (`url('redis://:pw@127.0.0.1:6379/2')`), only its host and port are replaced.
   */
  url(schemeOrUrl: string): string
  /** The current forwarding mode. */
  readonly mode: FaultMode
  /** True between `refuse()` and the next `pass()`. */
  readonly refusing: boolean
  /** Connections accepted so far, including closed ones. */
  readonly totalConnections: number
  /** Number of connections currently open. */
  connections(): number
  /** Forward everything (flushing held bytes) and reopen the listener if `refuse()` closed it. */
  pass(): Promise<void>
  /** Delay every chunk by `ms` plus a random `0..jitterMs`, in both directions, keeping order. */
  delay(ms: number, jitterMs?: number): void
  /** Partition: keep accepting and reading, forward nothing either way, never send RST. */
  blackhole(): void
  /** Forward in one direction only; the other direction is held as in `blackhole()`. */
  oneway(direction: Direction): void
  /** Limit each direction of each connection to `bytesPerSecond`. */
  throttle(bytesPerSecond: number): void
  /** Abort every current connection with RST on both sides. The mode is unchanged. */
  reset(): void
  /** Close the listener: new connects get ECONNREFUSED. Current connections are kept. */
  refuse(): Promise<void>
  /** Destroy all connections and stop listening. */
  close(): Promise<void>
}

/** A chunk (`null`: the sender's FIN), its arrival time and its share of the jitter. */
interface Held {
  data: Buffer | null
  at: number
  jitter: number
}

function isCut(mode: FaultMode, direction: Direction): boolean {
  return mode.kind === 'blackhole' || (mode.kind === 'oneway' && mode.direction !== direction)
}

/** One direction of one connection: an ordered queue drained as fast as the mode allows. */
class Pipe {
  private readonly queue: Held[] = []
  private heldBytes = 0
  private timer: NodeJS.Timeout | undefined
  private waitingForDrain = false
  /** Throttle: earliest time the next slice may be sent. */
  private nextSendAt = 0

  constructor(
    private readonly direction: Direction,
    private readonly source: Socket,
    private readonly destination: () => Socket | undefined,
    private readonly mode: () => FaultMode,
  ) {
    source.on('data', (data: Buffer) => this.hold(data))
    source.on('end', () => this.hold(null))
  }

  private hold(data: Buffer | null): void {
    this.queue.push({ data, at: performance.now(), jitter: Math.random() })
    if (data !== null) {
      this.heldBytes += data.length
      if (this.heldBytes > HIGH_WATER_BYTES) this.source.pause()
    }
    this.pump()
  }

  /** Send what the mode allows now and schedule a timer for the rest. Safe to call any time. */
  pump(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    const destination = this.destination()
    while (this.queue.length > 0 && destination !== undefined && !destination.destroyed) {
      const mode = this.mode()
      if (this.waitingForDrain || isCut(mode, this.direction)) return
      const head = this.queue[0]!
      const now = performance.now()
      const sendAt =
        mode.kind === 'delay'
          ? head.at + mode.ms + head.jitter * mode.jitterMs
          : mode.kind === 'throttle'
            ? this.nextSendAt
            : now
      if (sendAt > now) {
        // Timers may fire a little early; pump() re-checks the time and re-arms if so.
        this.timer = setTimeout(() => this.pump(), Math.ceil(sendAt - now))
        return
      }
      if (head.data === null) {
        this.queue.shift()
        destination.end()
        continue
      }
      let data = head.data
      if (mode.kind === 'throttle') {
        const slice = Math.max(1, Math.floor(mode.bytesPerSecond / 20)) // 50 ms worth
        if (data.length > slice) {
          head.data = data.subarray(slice)
          data = data.subarray(0, slice)
        } else this.queue.shift()
        this.nextSendAt = now + (data.length * 1000) / mode.bytesPerSecond
      } else this.queue.shift()
      this.heldBytes -= data.length
      if (this.heldBytes <= HIGH_WATER_BYTES && this.source.isPaused()) this.source.resume()
      if (!destination.write(data)) {
        this.waitingForDrain = true
        destination.once('drain', () => {
          this.waitingForDrain = false
          this.pump()
        })
        return
      }
    }
  }

  /** Drop everything held and cancel timers. */
  stop(): void {
    clearTimeout(this.timer)
    this.queue.length = 0
  }
}

interface Connection {
  client: Socket
  upstream: Socket | undefined
  pipes: Pipe[]
}

/** RST if possible (Node ≥ 18.3), otherwise a plain destroy. */
function abort(socket: Socket | undefined): void {
  if (socket === undefined || socket.destroyed) return
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy()
  }
}

/** Start a proxy on 127.0.0.1 that forwards to `target`, in `pass` mode. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const { host, port: targetPort } = options.target
  const open = new Set<Connection>()
  let mode: FaultMode = { kind: 'pass' }
  let server: Server | undefined
  let port = options.listenPort ?? 0
  let total = 0
  let closed = false

  const pipe = (direction: Direction, source: Socket, to: () => Socket | undefined): Pipe =>
    new Pipe(direction, source, to, () => mode)

  /** Abort both sockets with RST and drop whatever is held. */
  const teardown = (conn: Connection): void => {
    open.delete(conn)
    for (const pipe of conn.pipes) pipe.stop()
    abort(conn.client)
    abort(conn.upstream)
  }

  /** Connect upstream once the up direction is not cut (a partitioned SYN reaches nobody). */
  const ensureUpstream = (conn: Connection): void => {
    if (conn.upstream !== undefined || isCut(mode, 'up') || !open.has(conn)) return
    const upstream = connect({ host, port: targetPort, allowHalfOpen: true })
    conn.upstream = upstream
    conn.pipes.push(pipe('down', upstream, () => conn.client))
    upstream.on('error', () => teardown(conn))
    upstream.on('close', () => {
      if (conn.client.destroyed) open.delete(conn)
    })
  }

  const accept = (client: Socket): void => {
    if (closed) {
      client.destroy()
      return
    }
    total++
    const conn: Connection = { client, upstream: undefined, pipes: [] }
    open.add(conn)
    conn.pipes.push(pipe('up', client, () => conn.upstream))
    client.on('error', () => teardown(conn))
    client.on('close', () => {
      if (conn.upstream === undefined || conn.upstream.destroyed) open.delete(conn)
    })
    ensureUpstream(conn)
  }

  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const next = createServer({ allowHalfOpen: true }, accept)
      next.once('error', reject)
      next.listen(port, LOOPBACK, () => {
        next.off('error', reject)
        const address = next.address()
        if (address !== null && typeof address === 'object') port = address.port
        server = next
        resolve()
      })
    })

  const setMode = (next: FaultMode): void => {
    mode = next
    for (const conn of open) {
      ensureUpstream(conn)
      for (const pipe of conn.pipes) pipe.pump()
    }
  }

  await listen()

  return {
    get port() {
      return port
    },
    url(schemeOrUrl) {
      if (!schemeOrUrl.includes('://')) {
        return `${schemeOrUrl.replace(/:$/, '')}://${LOOPBACK}:${port}`
      }
      const url = new URL(schemeOrUrl)
      url.hostname = LOOPBACK
      url.port = String(port)
      return url.toString()
    },
    get mode() {
      return mode
    },
    get refusing() {
      return server === undefined
    },
    get totalConnections() {
      return total
    },
    connections: () => open.size,
    async pass() {
      if (closed) throw new Error('fault proxy is closed')
      if (server === undefined) await listen()
      setMode({ kind: 'pass' })
    },
    delay(ms, jitterMs = 0) {
      if (!(ms >= 0 && jitterMs >= 0)) throw new RangeError(`bad delay ${ms} ms ± ${jitterMs} ms`)
      setMode({ kind: 'delay', ms, jitterMs })
    },
    blackhole: () => setMode({ kind: 'blackhole' }),
    oneway: (direction) => setMode({ kind: 'oneway', direction }),
    throttle(bytesPerSecond) {
      if (!(bytesPerSecond > 0 && Number.isFinite(bytesPerSecond))) {
        throw new RangeError(`bad throttle ${bytesPerSecond} bytes/s`)
      }
      setMode({ kind: 'throttle', bytesPerSecond })
    },
    reset() {
      for (const conn of [...open]) teardown(conn)
    },
    async refuse() {
      // close() shuts the listening socket at once; its callback would wait for the connections.
      server?.close()
      server = undefined
      await new Promise((resolve) => setImmediate(resolve))
    },
    async close() {
      closed = true
      for (const conn of [...open]) teardown(conn)
      const last = server
      server = undefined
      if (last !== undefined) await new Promise((resolve) => last.close(resolve))
    },
  }
}
