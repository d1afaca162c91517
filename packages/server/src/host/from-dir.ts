/**
 * A flow host wired to a folder of flow files: the flows are loaded through the definition cache
 * (memory, then cache files, by revision), run by a `FlowRunner`, and re-read from the folder on
 * every route refresh, so a file added while the host runs becomes routable. Invalid files are
 * reported through the logger with their `file:line:col` and never stop the valid ones. A
 * connections file, when given, is a refreshing file resource: reloaded every few minutes, the
 * last good copy served while the file is broken, loaded fresh for debug runs, cleared on demand.
 */
import { InvalidArgumentError, stderrLogger, type Duration, type Logger } from '../flowcache.js'
import { FlowDefinitions, type FlowDefinitionsOptions } from '../flows/definitions.js'
import type { FlowValidationError } from '../flows/errors.js'
import { FlowRunner, type FlowRunnerOptions } from '../flows/runner.js'
import type { FlowDefinition, FlowRunnerLike } from '../flows/types.js'
import { fileResource } from '../resources/file.js'
import type { RefreshingResource, RefreshingResourceStats } from '../resources/refreshing.js'
import { FlowHost, type FlowHostOptions, type HostStatus } from './host.js'

/** The value of the host's connections resource: connection settings by name. */
export type Connections = Record<string, unknown>

/** Options of {@link createFlowHostFromDir}: the host's options, with a folder instead of a loader. */
export interface FlowHostFromDirOptions extends Omit<FlowHostOptions, 'runner' | 'flows'> {
  /** Folder of the flow files (`*.yaml`, `*.yml`; subfolders are not read). */
  dir: string
  /**
   * The definition cache the files are loaded through: an instance (shared with other code), or
   * options for a new one. @default new FlowDefinitions() (memory, then `.flowcache/definitions`
   * under the current directory)
   */
  definitionsCache?: FlowDefinitions | FlowDefinitionsOptions
  /**
   * Runs the flows. Without it the host creates a `FlowRunner` on `cache` (with `sandboxes`,
   * `limits` and `logger`) and closes it in `stop()`; a runner passed here is not closed.
   * @default a new FlowRunner
   */
  runner?: FlowRunnerLike
  /** Sandboxes of the created runner (see `FlowRunner`). @default createSandbox defaults */
  sandboxes?: FlowRunnerOptions['sandboxes']
  /** Limits of every step run by the created runner. @default the sandbox's */
  limits?: FlowRunnerOptions['limits']
  /**
   * The connections file: a YAML (or `.json`) mapping of connection names to their settings
   * (`crm: { url: …, apiKey: … }`). A flow lists the names its scripts may read
   * (`connections: [crm]`) and sees those entries as `ctx.connections`. The file is loaded at
   * `start()` (a missing or invalid file makes `start()` reject), reloaded every
   * `connectionsRefreshEvery`, and loaded fresh for debug runs; while it is broken the last good
   * copy is served and each failed reload is logged. Needs the runner the host creates (not
   * `runner`). @default none: flows that declare connections fail with `E_CONNECTION_MISSING`
   */
  connectionsFile?: string
  /**
   * How often the connections file is reloaded: a duration (`'90s'`) or ms. Only with
   * `connectionsFile`. @default '5m'
   */
  connectionsRefreshEvery?: Duration
}

/** What {@link DirFlowHost.status} reports: the host's status and its resource caches. */
export interface DirHostStatus extends HostStatus {
  /** The host's refreshing resources, by role; `connections` is there with a connections file. */
  resources: { connections?: RefreshingResourceStats }
}

/** Describes a value for "got …" in messages. */
function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'nothing'
  if (Array.isArray(value)) return 'a list'
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`
}

/**
 * Checks a parsed connections file: a mapping of names to settings. Anything else (an empty
 * file, a list, a scalar) is refused, so the last good connections stay in use.
 */
export function parseConnections(document: unknown): Connections {
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    throw new TypeError(
      `must be a mapping of connection names to their settings (e.g. crm: { url: https://crm.example.com }); got ${describeValue(document)}`,
    )
  }
  return document as Connections
}

/**
 * A {@link FlowHost} whose flows come from a folder. Also exposes the folder, the definition
 * cache and the runner, and the files that were invalid at the last load.
 */
export class DirFlowHost extends FlowHost {
  /** The folder of flow files, as given. */
  readonly dir: string
  /** The definition cache the files are loaded through. */
  readonly definitions: FlowDefinitions
  /** The runner of the flows. */
  readonly runner: FlowRunnerLike
  /**
   * The connections file as a refreshing resource, when `connectionsFile` was given; its name is
   * the file's absolute path. The host starts and stops it.
   */
  readonly connections: RefreshingResource<Connections> | undefined
  readonly #ownedRunner: FlowRunner | undefined
  #invalid: FlowValidationError[] = []
  #stopping: Promise<void> | undefined
  #resourcesStarted = false

  /** @internal use {@link createFlowHostFromDir} */
  constructor(options: FlowHostFromDirOptions) {
    if (typeof options !== 'object' || options === null) {
      throw InvalidArgumentError.format('options', 'must be an object with cache and dir')
    }
    const {
      dir,
      definitionsCache,
      runner: givenRunner,
      sandboxes,
      limits,
      connectionsFile,
      connectionsRefreshEvery,
      ...hostOptions
    } = options
    if (typeof dir !== 'string' || dir === '') {
      throw InvalidArgumentError.format('dir', 'must be the path of a folder of flow files')
    }
    const logger = hostOptions.logger ?? stderrLogger
    let connections: RefreshingResource<Connections> | undefined
    if (connectionsFile !== undefined) {
      if (typeof connectionsFile !== 'string' || connectionsFile === '') {
        throw InvalidArgumentError.format(
          'connectionsFile',
          'must be the path of a YAML or JSON file of connections',
        )
      }
      if (givenRunner !== undefined) {
        throw InvalidArgumentError.format(
          'connectionsFile',
          'is handed to the runner the host creates, so it cannot be used with runner; give your runner the connections yourself (new FlowRunner({ connections: fileResource(file) }))',
        )
      }
      connections = fileResource(connectionsFile, parseConnections, {
        refreshEvery: connectionsRefreshEvery ?? '5m',
        logger,
        ...(hostOptions.clock === undefined ? {} : { clock: hostOptions.clock }),
      })
    } else if (connectionsRefreshEvery !== undefined) {
      throw InvalidArgumentError.format(
        'connectionsRefreshEvery',
        'has no effect without connectionsFile; give both or neither',
      )
    }
    const definitions =
      definitionsCache instanceof FlowDefinitions
        ? definitionsCache
        : new FlowDefinitions({ logger, ...definitionsCache })
    let owned: FlowRunner | undefined
    let runner: FlowRunnerLike
    if (givenRunner === undefined) {
      owned = new FlowRunner({
        cache: hostOptions.cache,
        logger,
        ...(sandboxes === undefined ? {} : { sandboxes }),
        ...(limits === undefined ? {} : { limits }),
        ...(connections === undefined ? {} : { connections }),
      })
      runner = owned
    } else {
      runner = givenRunner
    }
    // The loader needs the host, which does not exist before super(): it is bound just after.
    const bound: { load?: () => Promise<FlowDefinition[]> } = {}
    super({
      ...hostOptions,
      runner,
      flows: () => {
        if (bound.load === undefined) throw new Error('the flow host is not set up')
        return bound.load()
      },
    })
    this.dir = dir
    this.definitions = definitions
    this.runner = runner
    this.connections = connections
    this.#ownedRunner = owned
    bound.load = () => this.#loadDir(logger)
  }

  /** Files that were invalid at the last load (empty when all were valid). */
  get invalidFiles(): readonly FlowValidationError[] {
    return this.#invalid
  }

  /**
   * Loads the connections file (when given) and starts its background reloads, then
   * {@link FlowHost.start}. Rejects with `ResourceLoadError` (`E_RESOURCE_LOAD`, naming the file
   * and the problem) when the connections file cannot be loaded; nothing is left running.
   */
  override async start(): Promise<void> {
    if (this.connections !== undefined && !this.#resourcesStarted) {
      try {
        await this.connections.start()
      } catch (error) {
        this.connections.stop()
        throw error
      }
      this.#resourcesStarted = true
    }
    await super.start()
  }

  /**
   * {@link FlowHost.stop}, then closes the runner this host created (and its sandboxes) and
   * stops reloading the connections file.
   */
  override async stop(): Promise<void> {
    this.#stopping ??= (async () => {
      try {
        await super.stop()
      } finally {
        this.connections?.stop()
        await this.#ownedRunner?.close()
      }
    })()
    return this.#stopping
  }

  /** {@link FlowHost.status}, with the stats of the host's resource caches under `resources`. */
  override status(): DirHostStatus {
    const resources: DirHostStatus['resources'] = {}
    if (this.connections !== undefined) resources.connections = this.connections.stats()
    return { ...super.status(), resources }
  }

  /**
   * The manual "clear cache": drops the held copy of the connections file, so the next run that
   * reads connections loads the file fresh. There is no last good copy to fall back on until
   * that load succeeds: while the file is broken, such runs fail with `E_RESOURCE_LOAD`.
   */
  clearResources(): void {
    this.connections?.clear()
  }

  /**
   * Loads the folder through the definition cache. Each invalid file is logged once, when it
   * first shows up or its problems change, not on every refresh.
   */
  async #loadDir(logger: Logger): Promise<FlowDefinition[]> {
    const { flows, errors } = await this.definitions.loadDir(this.dir)
    const before = new Set(this.#invalid.map((error) => error.message))
    for (const error of errors) {
      if (before.has(error.message)) continue
      logger.error(`flow host: ${error.message}; the other flows still run`, {
        file: error.file,
        issues: error.issues.length,
      })
    }
    this.#invalid = errors
    return flows
  }
}

/**
 * Creates a flow host for the flow files of `dir`: they are loaded through the definition cache
 * at `start()` and on every route refresh (so new and changed files are picked up; schedules and
 * event sources keep the flows they started with), and run by a `FlowRunner` on `cache` unless a
 * runner is given. Invalid files are logged (`file:line:col field: problem`) and skipped; they do
 * not stop the valid flows. Nothing runs until `start()`; `stop()` also closes the created runner.
 * Options are checked here: see `createFlowHost`.
 */
export function createFlowHostFromDir(options: FlowHostFromDirOptions): DirFlowHost {
  return new DirFlowHost(options)
}
