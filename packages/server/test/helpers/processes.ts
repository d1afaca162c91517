/**
 * Finds and ends the processes a test started, including the ones they started themselves (the
 * `flowcache` binary's wrapper starts the CLI in a second Node process). Reads `/proc`, so the
 * process tree is only known on Linux; elsewhere a process has no known children.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'

/** Whether `/proc` lists processes with their parents (Linux). */
export const hasProc = existsSync('/proc/self/stat')

/** The state letter and parent of a process from `/proc/<pid>/stat`; undefined once it is gone. */
function stat(pid: number): { state: string; ppid: number } | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
  const [state = '', ppid = ''] = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { state, ppid: Number(ppid) }
}

/** The processes whose parent is `pid` (none when `/proc` is not there). */
export function childrenOf(pid: number): number[] {
  if (!hasProc) return []
  const children: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    if (stat(Number(name))?.ppid === pid) children.push(Number(name))
  }
  return children
}

/** The children of `pid`, their children, and so on. */
export function descendantsOf(pid: number): number[] {
  const found: number[] = []
  const queue = [pid]
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const children = childrenOf(next)
    found.push(...children)
    queue.push(...children)
  }
  return found
}

/**
 * Whether process `pid` still runs. A process that exited but was not yet reaped by its parent
 * (a zombie: it holds no port, file or lock any more) does not count.
 */
export function isRunning(pid: number): boolean {
  if (hasProc) {
    const state = stat(pid)?.state
    return state !== undefined && state !== 'Z' && state !== 'X'
  }
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Sends `signal` to `pid` if it still runs; never throws. */
export function signalIfRunning(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (!isRunning(pid)) return
  try {
    process.kill(pid, signal)
  } catch {
    // Gone in between.
  }
}

/**
 * Sends SIGKILL to `pid` and to every process below it. The descendants are listed first: once
 * their parent is gone they no longer point at it.
 */
export function killTree(pid: number): void {
  const descendants = descendantsOf(pid)
  signalIfRunning(pid)
  for (const descendant of descendants) signalIfRunning(descendant)
}
