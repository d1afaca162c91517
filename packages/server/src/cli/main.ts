/**
 * The `flowcache` command line: a commander program whose commands live in `commands/`.
 * {@link main} runs one invocation and returns its exit code instead of exiting, so it can be
 * called in-process.
 */
import { Command, CommanderError } from 'commander'
import { COMMANDS } from './commands/index.js'
import { ExitCode, processIo, type CliIo } from './io.js'

/** Builds the program; `done` receives the exit code of the command that ran. */
export function buildProgram(io: CliIo, done: (code: ExitCode) => void): Command {
  const program = new Command()
    .name('flowcache')
    .description('flowcache: cache, state and coordination for workflow automation')
    .version('0.1.0', '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
  for (const register of COMMANDS) register(program, io, done)
  program.commands.forEach((command) =>
    command.exitOverride().configureOutput({ writeOut: io.stdout, writeErr: io.stderr }),
  )
  return program
}

/**
 * Runs `flowcache <args>` (`args` without `node` and the script). Returns 0 on success, 1 when
 * the flow, a script or the store failed, 2 for bad usage (unknown command or option, missing
 * argument, invalid flow file or event).
 */
export async function main(args: readonly string[], io: CliIo = processIo()): Promise<ExitCode> {
  let code: ExitCode = ExitCode.ok
  const program = buildProgram(io, (result) => {
    code = result
  })
  if (args.length === 0) {
    io.stdout(program.helpInformation())
    return ExitCode.usage
  }
  try {
    await program.parseAsync([...args], { from: 'user' })
  } catch (error) {
    if (error instanceof CommanderError) {
      const shown = ['commander.helpDisplayed', 'commander.version', 'commander.help']
      return shown.includes(error.code) ? ExitCode.ok : ExitCode.usage
    }
    io.stderr(
      `flowcache: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    )
    return ExitCode.failure
  }
  return code
}
