/**
 * A fixture script (test/fixtures/*.ts) run in a child process of its own, as the multi-process
 * tests run them: forked with tsx from the repository root, talking over IPC with advanced
 * serialization (bigints and typed arrays cross as they are), stderr collected for error
 * messages, stdout ignored. The fixture gets its config as JSON in its first argument and says
 * `{ type: 'ready' }` once it can take requests.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url))

/** How long a fixture may take to say `ready`. */
const READY_TIMEOUT_MS = 20_000

/** How a child process ended. */
export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/**
 * Parent side of one fixture process. Subclasses handle the fixture's other messages in
 * {@link FixtureProcess.received}.
 */
export class FixtureProcess<ToParent = unknown> {
  /** Everything the process wrote to stderr so far. */
  stderr = ''
  readonly child: ChildProcess
  readonly exited: Promise<Exit>
  /**
   * Resolves at the fixture's `ready` message; rejects if it exits first or is not ready within
   * 20 s. Await it after starting the process.
   */
  readonly ready: Promise<void>
  /** Set while the test holds the process SIGSTOPped, so that `destroy()` resumes it first. */
  paused = false

  /**
   * Forks `fixture` (a path) with `config` as its JSON argument. `name` says which process it is
   * in errors, e.g. `worker` or `replica A`.
   */
  constructor(
    readonly name: string,
    fixture: string,
    config: unknown,
  ) {
    this.child = fork(fixture, [JSON.stringify(config)], {
      cwd: repoRoot,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    })
    this.child.stderr?.setEncoding('utf8')
    this.child.stderr?.on('data', (chunk: string) => (this.stderr += chunk))
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => resolve({ code, signal })),
    )
    let resolveReady = (): void => undefined
    this.ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name} not ready after 20 s; stderr: ${this.stderr}`)),
        READY_TIMEOUT_MS,
      )
      void this.exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`${name} exited at start; stderr: ${this.stderr}`))
      })
      resolveReady = () => {
        clearTimeout(timer)
        resolve()
      }
    })
    // A rejection nobody awaits (the process died before the test awaited `ready`) is not a crash.
    this.ready.catch(() => undefined)
    this.child.on('message', (message: ToParent) => {
      if ((message as { type?: unknown }).type === 'ready') resolveReady()
      else this.received(message)
    })
  }

  get pid(): number {
    return this.child.pid as number
  }

  /** Whether the process has neither exited nor been killed by a signal. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Sends `message` while the IPC channel is open (a dead process is not an error here). */
  send(message: unknown): void {
    if (this.child.connected) this.child.send(message as object)
  }

  /** Handles a message other than `ready`; ignores it unless a subclass says otherwise. */
  protected received(_message: ToParent): void {}

  /** SIGCONT (if paused) and SIGKILL by PID, if it is still running; resolves once it exited. */
  async destroy(): Promise<void> {
    if (!this.running) return
    try {
      if (this.paused) process.kill(this.pid, 'SIGCONT')
      process.kill(this.pid, 'SIGKILL')
    } catch {
      // gone already
    }
    await this.exited
  }

  /**
   * Closes the IPC channel, which the fixtures take as the order to close their cache and exit;
   * SIGKILLs the process by PID if it has not exited within `graceMs`.
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return
    if (this.child.connected) this.child.disconnect()
    const timer = setTimeout(() => void this.destroy(), graceMs)
    await this.exited
    clearTimeout(timer)
  }
}
