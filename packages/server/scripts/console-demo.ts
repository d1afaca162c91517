/**
 * A `flowcache serve` with the example flows on the memory store, filled with example data for
 * the web console: flow runs (step cache hits and misses), keys with TTLs in a few namespaces, a
 * held lock, rate-limit state and a stream of reads and writes that the live charts show.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startServe, type ServeHandle } from '../src/cli/commands/serve.js'

/** The example flows of the repository. */
export const EXAMPLE_FLOWS = fileURLToPath(new URL('../../../examples/flows', import.meta.url))

/** A running demo server. */
export interface ConsoleDemo {
  handle: ServeHandle
  url: string
  /** Stops the traffic and the server and removes its working folder. */
  close(): Promise<void>
}

/** Calls one HTTP-triggered flow and fails when it does not answer 200. */
async function callFlow(url: string, method: string, path: string, body?: unknown): Promise<void> {
  const response = await fetch(`${url}/flows${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  await response.arrayBuffer()
  if (response.status !== 200) throw new Error(`${method} ${path} answered ${response.status}`)
}

/**
 * Starts the demo server on a free loopback port (its working folder is a temporary directory,
 * so no `.flowcache/` is left behind) and fills it with example data.
 */
export async function startConsoleDemo(): Promise<ConsoleDemo> {
  const dir = mkdtempSync(join(tmpdir(), 'flowcache-console-'))
  const cwd = process.cwd()
  process.chdir(dir)
  let handle: ServeHandle
  try {
    handle = await startServe(
      { store: 'memory', port: '0', host: '127.0.0.1', flows: EXAMPLE_FLOWS },
      { stdout: () => undefined, stderr: () => undefined, readStdin: async () => '' },
      {},
    )
  } finally {
    process.chdir(cwd)
  }
  const url = handle.url
  const cache = handle.cache

  for (const [from, to, weightKg] of [
    ['BER', 'LIS', 2],
    ['BER', 'LIS', 2],
    ['AMS', 'OSL', 12],
    ['BER', 'LIS', 2],
  ] as const) {
    await callFlow(url, 'POST', '/quotes', { from, to, weightKg })
  }
  for (const id of ['c-1001', 'c-1002', 'c-1001']) await callFlow(url, 'GET', `/customers/${id}`)
  for (const session of ['s-7f3a', 's-91bc']) {
    await callFlow(url, 'POST', `/chat/${session}`, { text: 'Where is my order?' })
  }
  await callFlow(url, 'POST', '/accounts/acct-42/deposits', { amount: 250 })
  await callFlow(url, 'POST', '/accounts/acct-42/deposits', { amount: 100 })
  for (const eventId of ['evt_1001', 'evt_1002', 'evt_1001']) {
    await callFlow(url, 'POST', '/webhooks/payments', { eventId, amount: 4200, currency: 'EUR' })
  }
  for (let i = 0; i < 3; i++) {
    await callFlow(url, 'POST', '/messages', { user: 'u-17', text: `hello ${i}` })
  }
  await callFlow(url, 'PUT', '/acme/settings', { theme: 'dark', retries: 3 })

  const app = cache.namespace('tenant:acme').namespace('app')
  await app.set('feature-flags', { newCheckout: true, betaSearch: false }, '2h')
  await app.set('exchange-rate:EUR-USD', 1.0842, '5m')
  await app.set('config:webhooks', { url: 'https://hooks.example.com/orders', retries: 5 })
  await app.set('token:payments-api', 'eyJhbGciOi…', '45m')
  for (let i = 1; i <= 6; i++) {
    await app.set(
      `order:${4000 + i}`,
      { id: 4000 + i, status: i % 3 === 0 ? 'shipped' : 'paid' },
      `${i * 7}m`,
    )
  }
  const jobs = cache.namespace('jobs')
  await jobs.locks.acquire('nightly-export', { ttl: '5m', owner: 'worker-7' })
  await jobs.rateLimit('partner-api', { max: 1000, per: '1h' })

  // A steady stream of reads and writes, so the live charts have something to show.
  let stopped = false
  const traffic = (async () => {
    const hot = cache.namespace('tenant:acme').namespace('hot')
    let i = 0
    while (!stopped) {
      i++
      await hot.set(`item:${i % 40}`, { i, at: Date.now() }, '10m')
      if (i % 20 === 0) await jobs.rateLimit('partner-api', { max: 1000, per: '1h' })
      for (let j = 0; j < 4 + (i % 5); j++) await hot.get(`item:${(i + j * 7) % 60}`)
      await new Promise((done) => setTimeout(done, 25 + 35 * (1 + Math.sin(i / 25))))
    }
  })()

  return {
    handle,
    url,
    async close() {
      stopped = true
      await traffic
      await handle.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
