/**
 * Helpers of the sandbox tests: a tenant's flow view and a run shorthand.
 */
import { randomUUID } from 'node:crypto'
import { expect } from 'vitest'
import type { Cache } from '../../src/flowcache.js'
import type { RunLimits, RunResult, Sandbox } from '../../src/sandbox/index.js'

/** The view the flow host gives a flow: `tenant:<tenant>` → `flow:<flow>`. */
export function flowView(root: Cache, tenant: string, flow: string): Cache {
  return root.namespace(`tenant:${tenant}`).namespace(`flow:${flow}`)
}

/** Runs `source` for tenant `tenant` with an event `{ data }`. */
export function runIn(
  sandbox: Sandbox,
  cache: Cache,
  source: string,
  options: { data?: unknown; tenant?: string; limits?: Partial<RunLimits> } = {},
): Promise<RunResult> {
  const run: Parameters<Sandbox['run']>[1] = {
    event: { data: options.data ?? null },
    ctx: {
      cache,
      flow: { name: 'orders', runId: randomUUID(), tenant: options.tenant ?? 'acme' },
    },
  }
  if (options.limits !== undefined) run.limits = options.limits
  return sandbox.run(source, run)
}

/** Resolves to the error a promise rejects with; fails the test if it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    const value = await promise
    expect.fail(`expected a rejection, got ${JSON.stringify(value)}`)
  } catch (error) {
    if (error instanceof Error) return error
    throw error
  }
}
