/**
 * Errors of the configuration: every problem names its field and where it was written (a line
 * of `flowcache.yaml`, an environment variable or a command-line option).
 */
import { InvalidArgumentError } from '../flowcache.js'

/** One problem of the configuration. */
export interface ConfigIssue {
  /**
   * Where the bad value was written: `flowcache.yaml:12:3` (file as given, line and column of the
   * field), `FLOWCACHE_PORT` (an environment variable) or `--port` (an option).
   */
  source: string
  /** Field path, e.g. `cache.type`; empty for the whole file. */
  path: string
  /** What is wrong and what to write instead. */
  message: string
}

/** `source path: message`, the one-line form of an issue. */
export function formatConfigIssue(issue: ConfigIssue): string {
  return issue.path === ''
    ? `${issue.source} ${issue.message}`
    : `${issue.source} ${issue.path}: ${issue.message}`
}

/**
 * The configuration is not valid: a YAML syntax error, an unknown field, a bad value (in the
 * file, the environment or an option), or a server bound beyond loopback without a token.
 * `issues` lists every problem; the message has one line per issue.
 */
export class ConfigError extends InvalidArgumentError {
  static override readonly code: string = 'E_CONFIG'
  /** Every problem found. */
  readonly issues: readonly ConfigIssue[]

  constructor(issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    const lines = issues.map(formatConfigIssue)
    super(
      issues.length === 1
        ? `invalid configuration: ${lines[0] ?? ''}`
        : `invalid configuration (${issues.length} problems):\n  ${lines.join('\n  ')}`,
      options,
    )
    this.issues = issues
  }
}
