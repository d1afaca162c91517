/**
 * A flow host wired to a folder of flow files: the flows are loaded through the definition cache
 * (memory, then cache files, by revision), run by a `FlowRunner`, and re-read from the folder on
 * every route refresh, so a file added while the host runs becomes routable. Invalid files are
 * reported through the logger with their `file:line:col` and never stop the valid ones.
 */
import { InvalidArgumentError, stderrLogger, type Logger } from '../flowcache.js'
import { FlowDefinitions, type FlowDefinitionsOptions } from '../flows/definitions.js'
import type { FlowValidationError } from '../flows/errors.js'
import { FlowRunner, type FlowRunnerOptions } from '../flows/runner.js'
import type { FlowDefinition, FlowRunnerLike } from '../flows/types.js'
import { FlowHost, type FlowHostOptions } from './host.js'

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
  readonly #ownedRunner: FlowRunner | undefined
  #invalid: FlowValidationError[] = []
  #stopping: Promise<void> | undefined

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
      ...hostOptions
    } = options
    if (typeof dir !== 'string' || dir === '') {
      throw InvalidArgumentError.format('dir', 'must be the path of a folder of flow files')
    }
    const logger = hostOptions.logger ?? stderrLogger
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
    this.#ownedRunner = owned
    bound.load = () => this.#loadDir(logger)
  }

  /** Files that were invalid at the last load (empty when all were valid). */
  get invalidFiles(): readonly FlowValidationError[] {
    return this.#invalid
  }

  /** {@link FlowHost.stop}, then closes the runner this host created (and its sandboxes). */
  override async stop(): Promise<void> {
    this.#stopping ??= (async () => {
      try {
        await super.stop()
      } finally {
        await this.#ownedRunner?.close()
      }
    })()
    return this.#stopping
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
