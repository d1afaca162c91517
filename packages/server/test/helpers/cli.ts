/**
 * Runs the `flowcache` CLI in a child process, as `npm run flowcache -- <args>` does, and
 * collects its exit code and output.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const repoRoot = fileURLToPath(new URL('../../../..', import.meta.url))
const entry = fileURLToPath(new URL('../../bin/flowcache.ts', import.meta.url))
/** The binary's wrapper: resolves tsx itself, so the CLI runs from any working directory. */
const wrapper = fileURLToPath(new URL('../../bin/flowcache.js', import.meta.url))

/** What one CLI invocation did. */
export interface CliOutcome {
  code: number | null
  stdout: string
  stderr: string
}

/** Options of {@link cli}. */
export interface CliOptions {
  /** Written to the command's standard input. @default '' */
  stdin?: string
  /** Working directory. @default the repository's root */
  cwd?: string
  /**
   * Added to this process's environment. An inherited `FLOWCACHE_CONFIG` is dropped unless
   * given here, so a developer's own setting never reaches the tests.
   */
  env?: Record<string, string>
  /**
   * Run through the `bin/flowcache.js` wrapper as an installed `flowcache` runs (it starts Node
   * with the sandbox flag and tsx itself), instead of `node --import tsx bin/flowcache.ts`.
   * @default false
   */
  wrapper?: boolean
}

/** Runs `flowcache <args>` in a child process and collects its exit code and output. */
export function cli(args: readonly string[], options: CliOptions = {}): Promise<CliOutcome> {
  const argv =
    options.wrapper === true
      ? [wrapper, ...args]
      : ['--no-node-snapshot', '--import', 'tsx', entry, ...args]
  const env: Record<string, string | undefined> = { ...process.env, ...options.env }
  if (options.env?.FLOWCACHE_CONFIG === undefined) delete env.FLOWCACHE_CONFIG
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      cwd: options.cwd ?? repoRoot,
      env,
      stdio: 'pipe',
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(options.stdin ?? '')
  })
}
