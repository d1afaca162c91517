#!/usr/bin/env node
/**
 * Entry point of the `flowcache` binary: starts `flowcache.ts` in a Node process with the flags
 * the flow host needs (`--no-node-snapshot` for the script sandbox, and tsx to load TypeScript),
 * passing arguments, standard streams, signals and the exit code through.
 *
 * The inner process also gets an IPC channel, which carries no messages: it tells the inner
 * process that this one is gone. Signals can only be forwarded while this process lives; when it
 * is killed with SIGKILL, crashes or is stopped hard by a supervisor, the operating system closes
 * its end of the channel, the inner process sees the channel disconnect and stops as on SIGTERM
 * (see `flowcache.ts`), so a `flowcache serve` never keeps its port and store as an orphan. The
 * channel is chosen over watching `process.ppid` because it needs no polling and works the same
 * on every platform Node runs on.
 */
import { spawn } from 'node:child_process'
import process from 'node:process'
import { fileURLToPath, URL } from 'node:url'

const entry = fileURLToPath(new URL('./flowcache.ts', import.meta.url))
const tsx = import.meta.resolve('tsx')
const child = spawn(
  process.execPath,
  ['--no-node-snapshot', '--import', tsx, entry, ...process.argv.slice(2)],
  { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] },
)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => child.kill(signal))
}
child.on('exit', (code, signal) => {
  if (signal !== null) process.kill(process.pid, signal)
  else process.exit(code ?? 1)
})
