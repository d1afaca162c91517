#!/usr/bin/env node
/**
 * Entry point of the `flowcache` binary: starts `flowcache.ts` in a Node process with the flags
 * the flow host needs (`--no-node-snapshot` for the script sandbox, and tsx to load TypeScript),
 * passing arguments, standard streams, signals and the exit code through.
 */
import { spawn } from 'node:child_process'
import process from 'node:process'
import { fileURLToPath, URL } from 'node:url'

const entry = fileURLToPath(new URL('./flowcache.ts', import.meta.url))
const tsx = import.meta.resolve('tsx')
const child = spawn(
  process.execPath,
  ['--no-node-snapshot', '--import', tsx, entry, ...process.argv.slice(2)],
  { stdio: 'inherit' },
)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => child.kill(signal))
}
child.on('exit', (code, signal) => {
  if (signal !== null) process.kill(process.pid, signal)
  else process.exit(code ?? 1)
})
