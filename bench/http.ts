/**
 * HTTP throughput of `GET /v1/ns/:ns/keys/:key` (flowcache serve's API on the memory store)
 * against a bare fastify route answering the same JSON, on loopback. The servers run in a child
 * process; this process is the load generator: `CONNECTIONS` keep-alive connections, each
 * sending its next request when the previous answer is read. Each server is measured `ROUNDS`
 * times, alternating, for `SECONDS` each.
 *
 *   npm run bench:http --workspace @flowcache/bench
 *   CONNECTIONS=32 SECONDS=5 ROUNDS=3 npm run bench:http --workspace @flowcache/bench
 */
import { fork } from 'node:child_process'
import { Agent, get } from 'node:http'
import { fileURLToPath } from 'node:url'

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16)
const SECONDS = Number(process.env.SECONDS ?? 5)
const ROUNDS = Number(process.env.ROUNDS ?? 2)
const NAMESPACE = 'tenant%3Abench%2Fflow%3Aorders'
const VALUE = { id: 42, status: 'shipped', total: 99.5, items: ['a', 'b', 'c'] }

/** Child mode: starts both servers and reports their ports. */
async function runServers(): Promise<void> {
  const { default: Fastify } = await import('fastify')
  const { createCache } = await import('../packages/flowcache/src/index.js')
  const { createServer } = await import('../packages/server/src/http/server.js')
  const cache = createCache()
  await cache.namespace('tenant:bench').namespace('flow:orders').set('order:42', VALUE)
  const flowcache = createServer({
    cache,
    config: {
      cache: { enabled: true, type: 'memory', path: ':memory:', fallback: 'memory' },
      server: { host: '127.0.0.1', port: 0, bodyLimit: 1024 * 1024 },
      flows: { tenant: 'default' },
    },
  })
  const flowcacheUrl = await flowcache.listen()
  const bare = Fastify({ logger: false })
  bare.get('/v1/ns/:ns/keys/:key', async (request) => ({
    key: (request.params as { key: string }).key,
    value: VALUE,
  }))
  const bareUrl = await bare.listen({ host: '127.0.0.1', port: 0 })
  process.send?.({ flowcacheUrl, bareUrl })
}

/** Sends requests to `url` over `CONNECTIONS` keep-alive connections for `seconds`; requests/s. */
async function load(url: string, seconds: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS })
  const deadline = performance.now() + seconds * 1000
  let done = 0
  let failed = 0
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      get(url, { agent }, (response) => {
        if (response.statusCode !== 200) failed++
        response.resume()
        response.on('end', resolve)
      }).on('error', reject)
    })
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < deadline) {
        await one()
        done++
      }
    }),
  )
  const elapsed = (performance.now() - started) / 1000
  agent.destroy()
  if (failed > 0) throw new Error(`${failed} requests to ${url} did not answer 200`)
  return done / elapsed
}

async function main(): Promise<void> {
  if (process.argv.includes('--servers')) return runServers()
  const child = fork(fileURLToPath(import.meta.url), ['--servers'], {
    execArgv: ['--import', 'tsx'],
    stdio: 'inherit',
  })
  const urls = await new Promise<{ flowcacheUrl: string; bareUrl: string }>((resolve) =>
    child.once('message', (message) =>
      resolve(message as { flowcacheUrl: string; bareUrl: string }),
    ),
  )
  const path = `/v1/ns/${NAMESPACE}/keys/order%3A42`
  const targets = { flowcache: urls.flowcacheUrl + path, bare: urls.bareUrl + path }
  await load(targets.flowcache, 1)
  await load(targets.bare, 1)
  const results: { flowcache: number[]; bare: number[] } = { flowcache: [], bare: [] }
  for (let round = 0; round < ROUNDS; round++) {
    results.bare.push(await load(targets.bare, SECONDS))
    results.flowcache.push(await load(targets.flowcache, SECONDS))
  }
  child.kill('SIGTERM')
  const best = (values: number[]): number => Math.max(...values)
  const flowcache = best(results.flowcache)
  const bare = best(results.bare)
  console.log(
    `HTTP GET one key on loopback: ${CONNECTIONS} keep-alive connections, ${ROUNDS} × ${SECONDS} s per server (best round)`,
  )
  console.log('')
  console.log('| server                                   |  requests/s | ratio |')
  console.log('| ---------------------------------------- | ----------: | ----: |')
  console.log(
    `| bare fastify route, same JSON            | ${bare.toFixed(0).padStart(11)} | 1.00× |`,
  )
  console.log(
    `| flowcache GET /v1/ns/:ns/keys/:key        | ${flowcache.toFixed(0).padStart(11)} | ${(flowcache / bare).toFixed(2)}× |`,
  )
  console.log('')
  console.log(
    `rounds: bare ${results.bare.map((value) => value.toFixed(0)).join(', ')}; flowcache ${results.flowcache.map((value) => value.toFixed(0)).join(', ')}`,
  )
}

await main()
