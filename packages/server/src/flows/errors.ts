/**
 * Errors of flow files and flow runs. All are `FlowcacheError`s with a stable `code`.
 */
import { FlowcacheError, InvalidArgumentError } from '../flowcache.js'
import type { LogEntry } from '../sandbox/index.js'

/** One problem found in a flow file, with where it is. */
export interface FlowIssue {
  /** The file, as it was given to the loader (relative paths stay relative). */
  file: string
  /** Line in the file (1-based). */
  line: number
  /** Column on that line (1-based). */
  column: number
  /** Field path, e.g. `steps[1].cache.ttl`; empty for the whole file or a YAML syntax error. */
  path: string
  /** What is wrong and what to write instead. */
  message: string
}

/** `file:line:col path: message`, the one-line form of an issue. */
export function formatIssue(issue: FlowIssue): string {
  const where = `${issue.file}:${issue.line}:${issue.column}`
  return issue.path === ''
    ? `${where} ${issue.message}`
    : `${where} ${issue.path}: ${issue.message}`
}

/**
 * A flow file is not a valid flow: a YAML syntax error, a missing or bad field, a duplicate flow
 * name. `issues` lists every problem found (each with file, line, column and field path), and
 * the message has one line per issue.
 */
export class FlowValidationError extends InvalidArgumentError {
  static override readonly code: string = 'E_FLOW_INVALID'
  /** The file the issues are in, as it was given to the loader. */
  readonly file: string
  /** Every problem found, in file order. */
  readonly issues: readonly FlowIssue[]

  constructor(file: string, issues: readonly FlowIssue[], options?: { cause?: unknown }) {
    const lines = issues.map(formatIssue)
    super(
      issues.length === 1
        ? `invalid flow file: ${lines[0] ?? file}`
        : `invalid flow file ${file} (${issues.length} problems):\n  ${lines.join('\n  ')}`,
      options,
    )
    this.file = file
    this.issues = issues
  }
}

/** Where a failing step is, for {@link FlowStepError}. */
export interface FlowStepErrorDetails {
  /** Flow name. */
  flow: string
  /** Step name. */
  step: string
  /** Absolute path of the flow file. */
  file: string
  /** Line in the flow file (1-based): of the failing script line when known, else of the step. */
  line: number
  /** Column in the flow file (1-based), when known. */
  column?: number
  /** Run id. */
  runId: string
  /** What the step's script logged before it failed. */
  logs?: readonly LogEntry[]
  /** The error the step ended with (`ScriptError`, `ScriptTimeoutError`, a store error…). */
  cause: unknown
}

/**
 * A step of a flow failed. `cause` is the typed error it ended with (`ScriptError` `E_SCRIPT`,
 * `ScriptTimeoutError` `E_SCRIPT_TIMEOUT`, `StoreUnavailableError`…) and `causeCode` its code;
 * `flow`, `step`, `file` and `line` say where. The message reads
 * `flow 'orders' step 'enrich' failed (flows/orders.yaml:12:9): <the cause's message> [E_SCRIPT]`.
 */
export class FlowStepError extends FlowcacheError {
  static override readonly code: string = 'E_FLOW_STEP'
  /** Flow name. */
  readonly flow: string
  /** Step name. */
  readonly step: string
  /** Absolute path of the flow file. */
  readonly file: string
  /** Line in the flow file (1-based). */
  readonly line: number
  /** Column in the flow file (1-based), when known. */
  readonly column: number | undefined
  /** Id of the run that failed. */
  readonly runId: string
  /** The cause's `code` (`E_SCRIPT`, `E_SCRIPT_TIMEOUT`…), or `undefined` for a non-flowcache error. */
  readonly causeCode: string | undefined
  /** What the step's script logged before it failed. */
  readonly logs: readonly LogEntry[]

  constructor(details: FlowStepErrorDetails, displayFile: string) {
    const cause = details.cause
    const causeCode = cause instanceof FlowcacheError ? cause.code : undefined
    const reason = cause instanceof Error ? cause.message : String(cause)
    const where = `${displayFile}:${details.line}${details.column === undefined ? '' : `:${details.column}`}`
    super(
      `flow '${details.flow}' step '${details.step}' failed (${where}): ${reason}${causeCode === undefined ? '' : ` [${causeCode}]`}`,
      { cause },
    )
    this.flow = details.flow
    this.step = details.step
    this.file = details.file
    this.line = details.line
    this.column = details.column
    this.runId = details.runId
    this.causeCode = causeCode
    this.logs = details.logs ?? []
  }
}

/** What {@link ConnectionMissingError} says. */
export interface ConnectionMissingErrorDetails {
  /** Flow name. */
  flow: string
  /** Absolute path of the flow file. */
  flowFile: string
  /** The connection the flow declared and could not be given. */
  connection: string
  /**
   * The connections resource the name was looked up in (for a connections file, its absolute
   * path), or `undefined` when the runner has no connections resource.
   */
  file: string | undefined
}

/**
 * A flow declares a connection (`connections: [crm]`) that the host's connections file does not
 * have, or the host has no connections file at all. Nothing of the run has executed. Add the
 * entry to the file (the host picks it up at its next refresh) or remove the name from the flow.
 */
export class ConnectionMissingError extends FlowcacheError {
  static override readonly code: string = 'E_CONNECTION_MISSING'
  /** Flow name. */
  readonly flow: string
  /** Absolute path of the flow file. */
  readonly flowFile: string
  /** The missing connection's name. */
  readonly connection: string
  /** The connections file (or resource name) looked in; `undefined` when there is none. */
  readonly file: string | undefined

  constructor(details: ConnectionMissingErrorDetails) {
    super(
      details.file === undefined
        ? `flow '${details.flow}' (${details.flowFile}) declares connection '${details.connection}', but the host has no connections file; give the host one (connectionsFile) or remove '${details.connection}' from the flow's connections`
        : `flow '${details.flow}' (${details.flowFile}) declares connection '${details.connection}', which ${details.file} does not have; add '${details.connection}' to that file or remove it from the flow's connections`,
    )
    this.flow = details.flow
    this.flowFile = details.flowFile
    this.connection = details.connection
    this.file = details.file
  }
}
