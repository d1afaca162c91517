/**
 * Runs the `flowcache` CLI in a child process, as `npm run flowcache -- <args>` does, and
 * collects its exit code and output.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const repoRoot = fileURLToPath(new URL('../../../..', import.meta.url))
const entry = fileURLToPath(new URL('../../bin/flowcache.ts', import.meta.url))

/** What one CLI invocation did. */
export interface CliOutcome {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `flowcache <args>`; `stdin` is written to its standard input. */
export function cli(
  args: readonly string[],
  options: { stdin?: string } = {},
): Promise<CliOutcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--no-node-snapshot', '--import', 'tsx', entry, ...args],
      { cwd: repoRoot, stdio: 'pipe' },
    )
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(options.stdin ?? '')
  })
}
