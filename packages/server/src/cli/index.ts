/**
 * The `flowcache` CLI, callable in-process: {@link main}.
 */
export { buildProgram, main } from './main.js'
export { ExitCode, UsageError, processIo, readAll } from './io.js'
export type { CliIo } from './io.js'
export { COMMANDS } from './commands/index.js'
export type { RegisterCommand } from './commands/index.js'
export { formatRun, readEvent, runCommand } from './commands/run.js'
export type { RunCommandOptions } from './commands/run.js'
export { openCache, storeFromSpec, STORE_SPEC_HELP } from './stores.js'
export { registerServe, serveCommand, startServe } from './commands/serve.js'
export type { ServeCommandOptions, ServeHandle } from './commands/serve.js'
