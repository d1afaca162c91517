/**
 * The script sandbox of the flow host: see {@link createSandbox}.
 */
export {
  MAX_SOURCE_LENGTH,
  Sandbox,
  checkSandboxRuntime,
  createSandbox,
  positionIn,
} from './sandbox.js'
export type {
  FlowInfo,
  RunOptions,
  RunResult,
  SandboxOptions,
  SandboxStats,
  ScriptContext,
} from './sandbox.js'
export { DEFAULT_RUN_LIMITS, resolveRunLimits } from './limits.js'
export type { ResolvedRunLimits, RunLimits } from './limits.js'
export { MAX_LISTED_KEYS } from './bridge.js'
export {
  SandboxSetupError,
  ScriptError,
  ScriptLimitError,
  ScriptMemoryError,
  ScriptResultError,
  ScriptRunError,
  ScriptTimeoutError,
} from './errors.js'
export type { LogEntry, ScriptErrorDetails, ScriptErrorOptions, TimeBudget } from './errors.js'
