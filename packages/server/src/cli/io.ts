/**
 * What a CLI command reads and writes, so that commands can be run in-process (tests, the
 * server's own use) as well as from the `flowcache` binary.
 */

/** The streams of one CLI invocation. */
export interface CliIo {
  /** Normal output (results, tables, `--json` documents). */
  stdout: (text: string) => void
  /** Errors and diagnostics. */
  stderr: (text: string) => void
  /** Reads all of standard input (for `--event -`). */
  readStdin: () => Promise<string>
}

/** Exit codes of the `flowcache` CLI. */
export const ExitCode = {
  /** Success. */
  ok: 0,
  /** The flow, a script or the store failed. */
  failure: 1,
  /** Bad usage: an unknown option, a missing argument, an invalid flow file or event. */
  usage: 2,
  /** A lookup found nothing: `get` or `ttl` of a key without a live entry. */
  miss: 3,
} as const

/** One of {@link ExitCode}. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** A usage problem found by a command: printed on stderr, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Reads a whole stream as UTF-8 text. */
export async function readAll(stream: AsyncIterable<unknown>): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array))
  }
  return Buffer.concat(chunks).toString('utf8')
}

/** The streams of the current process. */
export function processIo(): CliIo {
  return {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    readStdin: () => readAll(process.stdin),
  }
}
