/**
 * `flowcache run <flow.yaml> --event <json|@file|->`: runs one flow file once on one event and
 * prints the result with each step's cache outcome. `--connections <file>` gives the flow's
 * scripts the connections file a flow host would (`ctx.connections`).
 */
import type { Command } from 'commander'
import { FlowcacheError } from '../../flowcache.js'
import { FlowStepError, FlowValidationError } from '../../flows/errors.js'
import { loadFlowFile } from '../../flows/loader.js'
import { FlowRunner } from '../../flows/runner.js'
import { parseConnections, type Connections } from '../../host/from-dir.js'
import { fileResource } from '../../resources/file.js'
import type { RefreshingResource } from '../../resources/refreshing.js'
import type { FlowRunResult, StepReport } from '../../flows/types.js'
import { ExitCode, UsageError, type CliIo } from '../io.js'
import { openCache, STORE_SPEC_HELP } from '../stores.js'
import { formatMs, table } from '../table.js'
import { readJsonArgument } from './common.js'

/** Options of `flowcache run`. */
export interface RunCommandOptions {
  event?: string
  store: string
  /**
   * `--connections`: a YAML (or `.json`) mapping of connection names to their settings, as the
   * flow host's `connectionsFile`; the flow sees the entries it declares as `ctx.connections`.
   * @default none: a flow that declares connections fails with `E_CONNECTION_MISSING`
   */
  connections?: string
  json?: boolean
  debug?: boolean
}

/** Reads `--event`: JSON text, `@file` or `-` (standard input); must be a JSON object. */
export async function readEvent(
  spec: string | undefined,
  io: CliIo,
): Promise<Record<string, unknown>> {
  if (spec === undefined) return {}
  const event = await readJsonArgument(spec, io, '--event')
  if (typeof event !== 'object' || event === null || Array.isArray(event)) {
    const got = Array.isArray(event) ? 'an array' : event === null ? 'null' : typeof event
    throw new UsageError(
      `--event must be a JSON object, the whole event, e.g. '{"data":{"id":1}}'; got ${got}`,
    )
  }
  return event as Record<string, unknown>
}

function hitText(step: StepReport): string {
  if (step.bypassed === true) return 'bypassed'
  if (step.hit === null) return '-'
  return step.hit ? 'hit' : 'miss'
}

/** The readable report of a run: a summary line, a table of steps, logs and the output. */
export function formatRun(result: FlowRunResult, flowFile: string): string {
  const lines: string[] = []
  const last = result.steps[result.steps.length - 1]
  const outcome = result.dropped ? `dropped by step '${last?.name ?? '?'}'` : 'ok'
  lines.push(
    `flow ${result.flow} (${flowFile}) run ${result.runId}: ${outcome} in ${formatMs(result.ms)}`,
  )
  lines.push('')
  lines.push(
    table(
      ['step', 'cache', 'time'],
      result.steps.map((step) => [step.name, hitText(step), formatMs(step.ms)]),
      [false, false, true],
    ),
  )
  const logs = result.steps.flatMap((step) =>
    (step.logs ?? []).map((entry) => `  [${step.name}] ${entry.level}: ${entry.message}`),
  )
  if (logs.length > 0) lines.push('', 'logs:', ...logs)
  lines.push('', 'output:', JSON.stringify(result.output, null, 2))
  return `${lines.join('\n')}\n`
}

/** What `--json` prints for a failure. */
function errorDocument(error: unknown): Record<string, unknown> {
  if (error instanceof FlowValidationError) {
    return { error: { code: error.code, message: error.message, issues: error.issues } }
  }
  if (error instanceof FlowStepError) {
    return {
      error: {
        code: error.code,
        causeCode: error.causeCode,
        message: error.message,
        flow: error.flow,
        step: error.step,
        file: error.file,
        line: error.line,
        runId: error.runId,
        logs: error.logs,
      },
    }
  }
  const code = error instanceof FlowcacheError ? error.code : undefined
  return { error: { code, message: error instanceof Error ? error.message : String(error) } }
}

/** Runs the command; returns the exit code. */
export async function runCommand(
  flowFile: string,
  options: RunCommandOptions,
  io: CliIo,
): Promise<ExitCode> {
  const fail = (error: unknown, exitCode: ExitCode): ExitCode => {
    if (options.json === true) io.stdout(`${JSON.stringify(errorDocument(error), null, 2)}\n`)
    io.stderr(`flowcache run: ${error instanceof Error ? error.message : String(error)}\n`)
    if (error instanceof FlowStepError && error.logs.length > 0 && options.json !== true) {
      io.stderr(
        `logs of step '${error.step}':\n${error.logs.map((entry) => `  ${entry.level}: ${entry.message}`).join('\n')}\n`,
      )
    }
    return exitCode
  }
  let event: Record<string, unknown>
  let flow
  try {
    event = await readEvent(options.event, io)
    flow = await loadFlowFile(flowFile)
  } catch (error) {
    if (error instanceof UsageError || error instanceof FlowValidationError) {
      return fail(error, ExitCode.usage)
    }
    throw error
  }
  let connections: RefreshingResource<Connections> | undefined
  if (options.connections !== undefined) {
    connections = fileResource(options.connections, parseConnections, { logger: quietLogger })
    try {
      await connections.start()
    } catch (error) {
      connections.stop()
      return fail(error, ExitCode.usage)
    }
  }
  let cache
  try {
    cache = await openCache(options.store)
  } catch (error) {
    connections?.stop()
    return fail(error, error instanceof UsageError ? ExitCode.usage : ExitCode.failure)
  }
  const runner = new FlowRunner({ cache, ...(connections === undefined ? {} : { connections }) })
  try {
    const result = await runner.run(flow, event, { debug: options.debug === true })
    io.stdout(
      options.json === true ? `${JSON.stringify(result, null, 2)}\n` : formatRun(result, flowFile),
    )
    return ExitCode.ok
  } catch (error) {
    return fail(error, ExitCode.failure)
  } finally {
    connections?.stop()
    await runner.close()
    await cache.close()
  }
}

/**
 * The connections file is read once per command; a failed first load is reported as the
 * command's error, so the resource's own log lines would only repeat it.
 */
const quietLogger = { info: () => undefined, warn: () => undefined, error: () => undefined }

/** Adds `run` to the program. */
export function registerRun(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  program
    .command('run')
    .summary('run a flow file once on one event')
    .description(
      'Runs the flow in <flow.yaml> once on one event and prints its output and, per step, whether the step cache was hit. The event is the whole event object, e.g. {"data":{"id":1}}.',
    )
    .argument('<flow.yaml>', 'the flow file')
    .option(
      '-e, --event <json|@file|->',
      'the event: JSON text, @file to read a file, - to read standard input (default: {})',
    )
    .option('-s, --store <store>', `where ctx.cache keeps its data: ${STORE_SPEC_HELP}`, 'memory')
    .option(
      '--connections <file>',
      'connections file (YAML or JSON mapping of names to settings); the flow sees the ones it declares as ctx.connections',
    )
    .option('--json', 'print the result (or the error) as JSON')
    .option('--debug', 'debug run: run every script, without reading or writing the step cache')
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 1 the flow, a script or the store failed, 2 bad usage, flow file, event or connections file.\n\nExamples:\n  flowcache run flows/orders.yaml --event \'{"data":{"id":42}}\'\n  flowcache run flows/orders.yaml --event @event.json --store redis://127.0.0.1:6379\n  echo \'{"data":{}}\' | flowcache run flows/orders.yaml --event - --json\n  flowcache run flows/crm-sync.yaml --event @event.json --connections connections.yaml',
    )
    .action(async (flowFile: string, options: RunCommandOptions) => {
      done(await runCommand(flowFile, options, io))
    })
}
