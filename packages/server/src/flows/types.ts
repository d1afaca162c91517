/**
 * The shapes the flow host works with: a flow definition as loaded from its YAML file, and the
 * result of one run. The loader (`loader.ts`) produces definitions, the runner (`runner.ts`) runs
 * them, the host (`../host/`) triggers them.
 */

/** HTTP methods an `http` trigger can listen on. */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** Where an `events` trigger reads its events from. */
export type EventSource =
  | { kind: 'file'; path: string }
  | { kind: 'stdin' }
  | { kind: 'nats'; subject: string; url?: string }

/** What starts a flow: exactly one trigger per flow. */
export type Trigger =
  | { kind: 'http'; method: HttpMethod; path: string }
  | { kind: 'schedule'; everyMs: number }
  | { kind: 'events'; source: EventSource }

/** One step of a flow: a JavaScript script run in the sandbox. */
export interface StepDefinition {
  /** Step name, unique in its flow. */
  name: string
  /** Script source: gets `event` and `ctx`, returns the next event or `null` to drop it. */
  script: string
  /** Memoize the step: same key → the cached result, without running the script. */
  cache?: {
    /** Key template; `undefined` keys the step by a hash of its input event. */
    key?: string
    /** TTL of a cached result, in ms. */
    ttlMs: number
  }
  /** Line of the step in its file (1-based), for error messages. */
  line: number
  /**
   * Line in the file of the script's first line, when each script line is one file line (a
   * literal block `script: |`, or a one-line script); maps script errors to file lines.
   */
  scriptLine?: number
}

/** A flow as loaded from one YAML file. */
export interface FlowDefinition {
  /** Flow name, unique in the host. */
  name: string
  /** Tenant the flow belongs to: its cache namespace is `tenant:<tenant>` / `flow:<name>`. */
  tenant: string
  /** Absolute path of the file the flow was loaded from. */
  file: string
  /** Revision: a hash of the file's content. */
  revision: string
  trigger: Trigger
  /** Run scheduled and event flows on exactly one replica (the elected leader). */
  requireLeaderElection: boolean
  /**
   * Names of the entries of the host's connections file that the flow's scripts may read as
   * `ctx.connections`; absent or empty when the flow reads none.
   */
  connections?: string[]
  steps: StepDefinition[]
}

/** How one step of a run went. */
export interface StepReport {
  name: string
  /** `true`: served from the step cache; `false`: ran and was cached; `null`: not memoized. */
  hit: boolean | null
  /** Wall time of the step, in ms. */
  ms: number
  /** A memoized step run with `debug: true`: the step cache was neither read nor written. */
  bypassed?: boolean
  /** What the script logged (absent when the result came from the step cache). */
  logs?: Array<{ level: 'debug' | 'info' | 'warn' | 'error'; message: string }>
}

/** The outcome of one run of a flow. */
export interface FlowRunResult {
  /** Run id (unique per run). */
  runId: string
  flow: string
  /** The last step's returned event; `null` when a step dropped it. */
  output: unknown
  /** Whether a step returned `null`. */
  dropped: boolean
  /** Steps that ran (a dropped event ends the run: later steps are absent). */
  steps: StepReport[]
  /** Wall time of the run, in ms. */
  ms: number
}

/** Runs flows; implemented by `FlowRunner` in `runner.ts`. */
export interface FlowRunnerLike {
  run(flow: FlowDefinition, event: unknown, options?: { debug?: boolean }): Promise<FlowRunResult>
}
