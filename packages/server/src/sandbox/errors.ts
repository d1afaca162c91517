/**
 * Errors of the script sandbox. All are `FlowcacheError`s with a stable `code`; the ones a run
 * can end with carry the log lines the script wrote before it stopped.
 */
import { FlowcacheError, type FlowcacheErrorOptions } from '../flowcache.js'

/** One line a script wrote with `ctx.log` or `console.*`. */
export interface LogEntry {
  /** `info` for `ctx.log` and `console.log`, else the `console` method's name. */
  level: 'debug' | 'info' | 'warn' | 'error'
  /** The arguments, formatted and joined by spaces; cut at `limits.maxLogBytes`. */
  message: string
}

/** Options of the errors a run ends with. */
export interface ScriptErrorOptions extends FlowcacheErrorOptions {
  /** Log lines written before the run stopped. */
  logs?: readonly LogEntry[]
}

/**
 * The sandbox cannot be created in this process: isolated-vm is missing, or Node was started
 * without the flag it needs. The message says what to change.
 */
export class SandboxSetupError extends FlowcacheError {
  static override readonly code: string = 'E_SANDBOX_SETUP'
}

/** Base class of the errors a script run ends with; `logs` holds what the script wrote. */
export class ScriptRunError extends FlowcacheError {
  static override readonly code: string = 'E_SCRIPT_RUN'
  /** Log lines written before the run stopped. */
  readonly logs: readonly LogEntry[]

  constructor(message: string, options?: ScriptErrorOptions) {
    super(message, options)
    this.logs = options?.logs ?? []
  }
}

/** What a {@link ScriptError} knows about the error the script threw. */
export interface ScriptErrorDetails extends ScriptErrorOptions {
  /** The thrown error's `name` (`TypeError`, `SyntaxError`, `Error`…), if it had one. */
  scriptName?: string
  /** The thrown error's `code`, e.g. `E_NOT_A_NUMBER` for a flowcache error from `ctx.cache`. */
  scriptCode?: string
  /** Line in the script source (1-based) where it was thrown, when known. */
  line?: number
  /** Column (1-based) on that line, when known. */
  column?: number
}

/**
 * The script threw (or did not compile). `message` is the script's own message; `scriptCode`
 * is the thrown error's `code`, so a flowcache error raised by `ctx.cache` keeps its code.
 */
export class ScriptError extends ScriptRunError {
  static override readonly code: string = 'E_SCRIPT'
  /** The thrown error's `name`, if it had one. */
  readonly scriptName: string | undefined
  /** The thrown error's `code`, if it had one. */
  readonly scriptCode: string | undefined
  /** Line in the script source (1-based), when known. */
  readonly line: number | undefined
  /** Column (1-based), when known. */
  readonly column: number | undefined

  constructor(message: string, details: ScriptErrorDetails = {}) {
    super(message, details)
    this.scriptName = details.scriptName
    this.scriptCode = details.scriptCode
    this.line = details.line
    this.column = details.column
  }
}

/** Which budget a {@link ScriptTimeoutError} exhausted. */
export type TimeBudget = 'cpu' | 'wall'

/**
 * The run used up its CPU-time or wall-time budget and was stopped. The isolate it ran in was
 * disposed; the sandbox starts a fresh one for the next run.
 */
export class ScriptTimeoutError extends ScriptRunError {
  static override readonly code: string = 'E_SCRIPT_TIMEOUT'
  /** The budget that ran out. */
  readonly budget: TimeBudget
  /** The budget, in ms. */
  readonly limitMs: number
  /** What the run had used of that budget when it was stopped, in ms. */
  readonly usedMs: number

  constructor(budget: TimeBudget, limitMs: number, usedMs: number, options?: ScriptErrorOptions) {
    super(
      budget === 'cpu'
        ? `the script used more than its ${limitMs} ms of CPU time and was stopped; make it do less work per event or raise limits.cpuTime`
        : `the script ran for more than its ${limitMs} ms of wall time and was stopped; check for slow or never-ending awaits, or raise limits.wallTime`,
      options,
    )
    this.budget = budget
    this.limitMs = limitMs
    this.usedMs = usedMs
  }
}

/**
 * The run went over the isolate's memory limit and was stopped. The isolate was disposed; the
 * sandbox starts a fresh one for the next run.
 */
export class ScriptMemoryError extends ScriptRunError {
  static override readonly code: string = 'E_SCRIPT_MEMORY'
}

/**
 * The script's result cannot leave the sandbox: it is larger than `limits.maxResultBytes`, is
 * not JSON (a `BigInt`, a `Map`, a cycle…), or is neither an object nor `null`.
 */
export class ScriptResultError extends ScriptRunError {
  static override readonly code: string = 'E_SCRIPT_RESULT'
}

/** The run made more `ctx` calls than `limits.maxCalls` and was stopped. */
export class ScriptLimitError extends ScriptRunError {
  static override readonly code: string = 'E_SCRIPT_LIMIT'
}
