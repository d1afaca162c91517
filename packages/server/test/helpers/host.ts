/**
 * Helpers of the flow host tests: flow definitions built in code, a runner that records its calls
 * (and can hold runs until released), and a polling wait.
 */
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type {
  FlowDefinition,
  FlowRunResult,
  FlowRunnerLike,
  Trigger,
} from '../../src/flows/types.js'

/** A flow with one step (never run by the recording runner) and the given trigger. */
export function flowDef(
  name: string,
  trigger: Trigger,
  options: { tenant?: string; requireLeaderElection?: boolean; revision?: string } = {},
): FlowDefinition {
  return {
    name,
    tenant: options.tenant ?? 'acme',
    file: `/flows/${name}.yaml`,
    revision: options.revision ?? 'r1',
    trigger,
    requireLeaderElection: options.requireLeaderElection ?? false,
    steps: [{ name: 'pass', script: 'return event', line: 5 }],
  }
}

/** One call the recording runner got. */
export interface RunnerCall {
  flow: string
  event: Record<string, unknown>
  debug: boolean
}

/**
 * A runner that records each call and answers with the event as output. `hold()` makes the next
 * runs wait until `release()`; `failWith(error)` makes runs reject.
 */
export class RecordingRunner implements FlowRunnerLike {
  readonly calls: RunnerCall[] = []
  running = 0
  #held: Promise<void> | undefined
  #release: (() => void) | undefined
  #error: Error | undefined

  hold(): void {
    this.#held = new Promise((resolve) => (this.#release = resolve))
  }

  release(): void {
    this.#release?.()
    this.#held = undefined
  }

  failWith(error: Error | undefined): void {
    this.#error = error
  }

  async run(
    flow: FlowDefinition,
    event: unknown,
    options: { debug?: boolean } = {},
  ): Promise<FlowRunResult> {
    this.calls.push({
      flow: flow.name,
      event: event as Record<string, unknown>,
      debug: options.debug === true,
    })
    this.running++
    try {
      if (this.#held !== undefined) await this.#held
      if (this.#error !== undefined) throw this.#error
      return {
        runId: randomUUID(),
        flow: flow.name,
        output: event,
        dropped: false,
        steps: [{ name: 'pass', hit: null, ms: 0 }],
        ms: 0,
      }
    } finally {
      this.running--
    }
  }

  /** Calls for `flow`. */
  of(flow: string): RunnerCall[] {
    return this.calls.filter((call) => call.flow === flow)
  }
}

/** Polls `check` every 10 ms until it holds; fails after `limitMs` (a liveness bound). */
export async function waitUntil(
  check: () => boolean,
  what: string,
  limitMs = 10_000,
): Promise<void> {
  const start = performance.now()
  while (!check()) {
    if (performance.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}
