/**
 * `flowcache serve`: loads the configuration, opens the cache, runs the flows of the flows
 * folder (HTTP routes, schedules, event sources, leader-elected flows) and serves the HTTP API
 * until SIGINT or SIGTERM, then shuts down gracefully.
 */
import { resolve } from 'node:path'
import type { Command } from 'commander'
import {
  createCacheFromConfig,
  loadConfig,
  storeOverrides,
  type ConfigOverride,
  type ResolvedConfig,
} from '../../config/index.js'
import { ConfigError } from '../../config/errors.js'
import type { Cache, Logger } from '../../flowcache.js'
import { FlowDefinitions } from '../../flows/definitions.js'
import { loadFlowsDir, readFlowFile } from '../../flows/loader.js'
import { FlowRunner } from '../../flows/runner.js'
import type { FlowDefinition } from '../../flows/types.js'
import { createFlowHost, type FlowHost } from '../../host/host.js'
import { createServer, type FlowcacheServer } from '../../http/server.js'
import { ExitCode, type CliIo } from '../io.js'

/** Options of `flowcache serve`, as commander parses them. */
export interface ServeCommandOptions {
  config?: string
  host?: string
  port?: string
  flows?: string
  store?: string
}

/** A running `flowcache serve`. */
export interface ServeHandle {
  /** Base URL the API answers on. */
  url: string
  config: ResolvedConfig
  cache: Cache
  host: FlowHost
  server: FlowcacheServer
  /**
   * Graceful shutdown: stops accepting connections, finishes requests in flight, stops the
   * flow host (its runs finish, leaders hand their lease back), closes the sandboxes and then
   * the cache (which flushes pending writes). Idempotent.
   */
  close(): Promise<void>
}

/** A logger writing `flowcache serve: <level>: message` lines on stderr. */
function ioLogger(io: CliIo): Logger {
  const line =
    (level: string) =>
    (message: string, details?: Record<string, unknown>): void =>
      io.stderr(
        `flowcache serve: ${level}: ${message}${details === undefined ? '' : ` ${JSON.stringify(details)}`}\n`,
      )
  return { info: line('info'), warn: line('warn'), error: line('error') }
}

/** The command-line options as configuration overrides. */
function overridesOf(options: ServeCommandOptions): ConfigOverride[] {
  const overrides: ConfigOverride[] = []
  if (options.store !== undefined) overrides.push(...storeOverrides(options.store))
  if (options.host !== undefined) {
    overrides.push({ path: ['server', 'host'], value: options.host, source: '--host' })
  }
  if (options.port !== undefined) {
    overrides.push({ path: ['server', 'port'], value: options.port, source: '--port' })
  }
  if (options.flows !== undefined) {
    overrides.push({ path: ['flows', 'dir'], value: options.flows, source: '--flows' })
  }
  return overrides
}

/**
 * Loads the flows of `dir` through the definition cache; a flow file without `tenant:` gets
 * `tenant`. Invalid files are logged (once per distinct problem) and skipped.
 */
function flowLoader(
  dir: string | undefined,
  tenant: string,
  definitions: FlowDefinitions,
  logger: Logger,
): () => Promise<FlowDefinition[]> {
  const reported = new Set<string>()
  return async () => {
    if (dir === undefined) return []
    const { flows, errors } = await loadFlowsDir(dir, {
      load: async (file) => {
        const parsed = await definitions.loadParsed(file)
        if (tenant !== 'default' && parsed.flow.tenant === 'default') {
          const text = await readFlowFile(file)
          if (!/^tenant\s*:/m.test(text)) return { ...parsed, flow: { ...parsed.flow, tenant } }
        }
        return parsed
      },
    })
    for (const error of errors) {
      if (reported.has(error.message)) continue
      reported.add(error.message)
      logger.warn(`${error.message}; that flow is not loaded`)
    }
    return flows
  }
}

/**
 * Starts `flowcache serve` in this process: the configuration (file, environment, `options`),
 * the cache (waiting until it is ready), the flow host and the HTTP server. Rejects with
 * `ConfigError` for a bad configuration; whatever was opened is closed again on failure.
 */
export async function startServe(
  options: ServeCommandOptions,
  io: CliIo,
  env: Record<string, string | undefined> = process.env,
): Promise<ServeHandle> {
  const logger = ioLogger(io)
  const config = await loadConfig({
    ...(options.config === undefined ? {} : { file: options.config }),
    env,
    overrides: overridesOf(options),
  })
  const cache = await createCacheFromConfig(config, { logger })
  const runner = new FlowRunner({ cache, logger })
  let host: FlowHost | undefined
  let server: FlowcacheServer | undefined
  try {
    await cache.ready()
    const definitions = new FlowDefinitions({
      dir: resolve('.flowcache', 'definitions'),
      logger,
    })
    const load = flowLoader(config.flows.dir, config.flows.tenant, definitions, logger)
    let known = new Map<string, FlowDefinition>()
    const flows = async (): Promise<FlowDefinition[]> => {
      const loaded = await load()
      known = new Map(loaded.map((flow) => [flow.name, flow]))
      return loaded
    }
    host = createFlowHost({ cache, runner, flows, logger })
    await host.start()
    server = createServer({
      config,
      cache,
      host,
      logger,
      runFlow: async (name, event, runOptions) => {
        const flow = known.get(name)
        return flow === undefined ? undefined : runner.run(flow, event, runOptions)
      },
    })
    const url = await server.listen()
    let closing: Promise<void> | undefined
    const started = { host, server }
    return {
      url,
      config,
      cache,
      host,
      server,
      close() {
        closing ??= (async () => {
          await started.server.close()
          await runner.close()
          await cache.close()
        })()
        return closing
      },
    }
  } catch (error) {
    await server?.close().catch(() => undefined)
    await host?.stop().catch(() => undefined)
    await runner.close().catch(() => undefined)
    await cache.close().catch(() => undefined)
    throw error
  }
}

/** The start-up lines: where the API is, the store, the flows. */
function banner(handle: ServeHandle): string {
  const { config } = handle
  const cache = config.cache
  const store =
    cache.type === 'sqlite'
      ? `sqlite ${cache.path}`
      : cache.type === 'memory'
        ? 'memory (not persistent)'
        : `${cache.type} ${cache.url ?? ''}`
  const status = handle.host.status()
  const flows =
    config.flows.dir === undefined
      ? 'none (set flows.dir or --flows)'
      : `${status.flows.length} from ${config.flows.dir}${config.flows.dirSource === 'examples' ? ' (the example flows)' : ''}`
  const auth = handle.server.authRequired ? 'bearer token required' : 'no token (loopback only)'
  return [
    `flowcache serve: listening on ${handle.url}`,
    `  store:  ${store}${config.file === undefined ? '' : ` (config ${config.file})`}`,
    `  flows:  ${flows}`,
    `  auth:   ${auth}`,
    `  console: ${handle.url}/console/`,
    `  health: ${handle.url}/healthz   metrics: ${handle.url}/metrics`,
    '',
  ].join('\n')
}

/**
 * Runs `flowcache serve` until SIGINT or SIGTERM (or `stop` resolves), then shuts down
 * gracefully. Returns the exit code: 0 after a clean stop, 2 for a bad configuration, 1 when the
 * store or the server fails to start.
 */
export async function serveCommand(
  options: ServeCommandOptions,
  io: CliIo,
  stop?: Promise<unknown>,
): Promise<ExitCode> {
  let handle: ServeHandle
  try {
    handle = await startServe(options, io)
  } catch (error) {
    io.stderr(`flowcache serve: ${error instanceof Error ? error.message : String(error)}\n`)
    return error instanceof ConfigError ? ExitCode.usage : ExitCode.failure
  }
  io.stdout(banner(handle))
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM']
  let onSignal: (() => void) | undefined
  const signalled = new Promise<string>((resolveSignal) => {
    onSignal = () => resolveSignal('signal')
    for (const signal of signals) process.once(signal, onSignal)
  })
  const why = await Promise.race([
    signalled,
    ...(stop === undefined ? [] : [stop.then(() => 'stop')]),
  ])
  for (const signal of signals) if (onSignal !== undefined) process.off(signal, onSignal)
  io.stderr(`flowcache serve: shutting down (${why}); finishing requests in flight\n`)
  try {
    await handle.close()
  } catch (error) {
    io.stderr(
      `flowcache serve: shutdown failed: ${error instanceof Error ? error.message : String(error)}\n`,
    )
    return ExitCode.failure
  }
  io.stderr('flowcache serve: stopped\n')
  return ExitCode.ok
}

/** Adds `serve` to the program. */
export function registerServe(program: Command, io: CliIo, done: (code: ExitCode) => void): void {
  program
    .command('serve')
    .summary('run the flows and serve the HTTP API')
    .description(
      'Loads flowcache.yaml (or --config), opens the cache, runs the flows of the flows folder and serves the HTTP API until SIGINT or SIGTERM. Defaults: 127.0.0.1:7700, a SQLite store in ./.flowcache/cache.db, the example flows. Environment variables (FLOWCACHE_HOST, FLOWCACHE_PORT, FLOWCACHE_TOKEN, …) override the file; options override both.',
    )
    .option('-c, --config <file>', 'configuration file (default: ./flowcache.yaml when it exists)')
    .option('--host <address>', 'address to bind (default 127.0.0.1; anything else needs a token)')
    .option('-p, --port <port>', 'TCP port (default 7700; 0 picks a free one)')
    .option('-f, --flows <dir>', 'folder of flow files (default: the example flows)')
    .option(
      '-s, --store <store>',
      'store: memory, sqlite:<path>, redis://host:6379[/db] or nats://host:4222 (default: sqlite:./.flowcache/cache.db)',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  flowcache serve\n  flowcache serve --store redis://127.0.0.1:6379 --port 7701\n  FLOWCACHE_TOKEN=$(openssl rand -hex 32) flowcache serve --host 0.0.0.0',
    )
    .action(async (options: ServeCommandOptions) => {
      done(await serveCommand(options, io))
    })
}
