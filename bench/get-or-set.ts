/**
 * getOrSet stampede benchmark: settle time of 1,000 concurrent `getOrSet` calls on one missing
 * key with a 50 ms factory (from the first call until every caller has its value), and how many
 * times the factory ran. Compared with an ideal single flight (a bare Map of shared promises) and
 * BentoCache's `getOrSet`, in memory and on Redis; flowcache also with grace and timeouts, and
 * with `distributed: true`. Run with `npm run bench:getorset --workspace @flowcache/bench`.
 *
 * Contenders take turns round by round, in rotating order, so the noise of a shared machine falls
 * on all of them alike; the figure is the median of the rounds after one warm-up round each.
 * Redis is FLOWCACHE_REDIS_URL, else redis://127.0.0.1:6379; without it the Redis rows are left
 * out. Knobs: BENCH_ROUNDS [15], BENCH_CALLERS [1000], BENCH_FACTORY_MS [50].
 */
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { createCache, silentLogger, type Cache } from '../packages/flowcache/src/index.js'
import { redisStore } from '../packages/flowcache/src/stores/redis/index.js'
import { machineLine, median, packageVersion, positiveEnv, ratio, revision } from './harness.js'

const ROUNDS = Math.round(positiveEnv('BENCH_ROUNDS', 15))
const CALLERS = Math.round(positiveEnv('BENCH_CALLERS', 1000))
const FACTORY_MS = positiveEnv('BENCH_FACTORY_MS', 50)
const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url))
const RUN = `bgos${randomBytes(3).toString('hex')}`

type Factory = () => Promise<unknown>
interface Contender {
  name: string
  getOrSet(key: string, factory: Factory): Promise<unknown>
  close(): Promise<void>
}

function idealSingleFlight(): Contender {
  const values = new Map<string, unknown>()
  const flights = new Map<string, Promise<unknown>>()
  return {
    name: 'ideal single-flight (Map of promises)',
    getOrSet: async (key, factory) => {
      const value = values.get(key)
      if (value !== undefined) return value
      let flight = flights.get(key)
      if (flight === undefined) {
        flight = factory().then(
          (loaded) => {
            values.set(key, loaded)
            flights.delete(key)
            return loaded
          },
          (error: unknown) => {
            flights.delete(key)
            throw error
          },
        )
        flights.set(key, flight)
      }
      return flight
    },
    close: async () => undefined,
  }
}

function flowcache(name: string, cache: Cache, options: object = {}): Contender {
  return {
    name,
    getOrSet: (key, factory) => cache.getOrSet(key, factory, { ttl: '5m', ...options }),
    close: () => cache.close(),
  }
}

async function bento(name: string, redisUrl?: string): Promise<Contender> {
  const { BentoCache, bentostore } = await import('bentocache')
  const { memoryDriver } = await import('bentocache/drivers/memory')
  let connection: Redis | undefined
  let store = bentostore().useL1Layer(memoryDriver({ maxItems: 50_000 }))
  if (redisUrl !== undefined) {
    const { redisDriver } = await import('bentocache/drivers/redis')
    connection = new Redis(redisUrl)
    store = bentostore().useL2Layer(redisDriver({ connection, prefix: `${RUN}-bento` }))
  }
  const cache = new BentoCache({ default: 'store', stores: { store } })
  return {
    name,
    getOrSet: (key, factory) => cache.getOrSet({ key, factory, ttl: '5m' }),
    close: async () => {
      await cache.disconnectAll()
      connection?.disconnect()
    },
  }
}

async function reachableRedis(): Promise<string | undefined> {
  const url = process.env.FLOWCACHE_REDIS_URL ?? 'redis://127.0.0.1:6379'
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  try {
    await redis.connect()
    await redis.ping()
    return url
  } catch {
    return undefined
  } finally {
    redis.disconnect()
  }
}

async function contenders(redisUrl: string | undefined): Promise<Contender[]> {
  const list = [
    idealSingleFlight(),
    flowcache('flowcache getOrSet (memory)', createCache()),
    flowcache('flowcache getOrSet + grace + timeouts (memory)', createCache(), {
      grace: '1h',
      timeout: { soft: '1s', hard: '5s' },
    }),
    await bento('BentoCache getOrSet (memory)'),
  ]
  if (redisUrl !== undefined) {
    const redis = (): Cache =>
      createCache({ store: redisStore({ url: redisUrl }), prefix: RUN, logger: silentLogger })
    list.push(
      flowcache('flowcache getOrSet (Redis)', redis()),
      flowcache('flowcache getOrSet distributed (Redis)', redis(), { distributed: true }),
      await bento('BentoCache getOrSet (Redis L2)', redisUrl),
    )
  }
  return list
}

/** One stampede: settle time in ms and factory calls. */
async function stampede(contender: Contender, key: string): Promise<{ ms: number; calls: number }> {
  let calls = 0
  const factory = async (): Promise<unknown> => {
    calls++
    await new Promise((resolve) => setTimeout(resolve, FACTORY_MS))
    return { key, computedAt: Date.now() }
  }
  const start = performance.now()
  const results = await Promise.all(
    Array.from({ length: CALLERS }, () => contender.getOrSet(key, factory)),
  )
  const ms = performance.now() - start
  if (!results.every((result) => (result as { key?: string }).key === key)) {
    throw new Error(`${contender.name} returned a wrong value`)
  }
  return { ms, calls }
}

async function main(): Promise<void> {
  const redisUrl = await reachableRedis()
  const list = await contenders(redisUrl)
  const settle = list.map((): number[] => [])
  const calls = list.map((): number[] => [])
  for (let round = 0; round <= ROUNDS; round++) {
    for (let turn = 0; turn < list.length; turn++) {
      const index = (round + turn) % list.length
      const contender = list[index] as Contender
      const result = await stampede(contender, `stampede:${round}:${index}`)
      if (round === 0) continue // warm-up
      settle[index]?.push(result.ms)
      calls[index]?.push(result.calls)
    }
  }
  await Promise.all(list.map((contender) => contender.close()))
  if (redisUrl !== undefined) await deleteKeys(redisUrl)

  const ideal = median(settle[0] ?? [])
  const lines = [
    machineLine(),
    `${revision(BENCH_DIR)} · bentocache ${packageVersion(BENCH_DIR, 'bentocache')} · ` +
      `${CALLERS} concurrent callers, ${FACTORY_MS} ms factory, median of ${ROUNDS} rounds (after one warm-up), contenders interleaved` +
      (redisUrl === undefined ? ' · Redis not reachable: Redis rows left out' : ''),
    '',
    '| Loader | factory calls per stampede | settle time (median) | vs ideal |',
    '| --- | ---: | ---: | ---: |',
  ]
  list.forEach((contender, index) => {
    const ms = median(settle[index] ?? [])
    const factoryCalls = [...new Set(calls[index])].join(', ')
    lines.push(
      `| ${contender.name} | ${factoryCalls} | ${ms.toFixed(1)} ms | ${ratio(ms, ideal)} |`,
    )
  })
  const memory = median(settle[1] ?? [])
  lines.push(
    '',
    `Goal: flowcache getOrSet (memory) settle time vs ideal single-flight: ${ratio(memory, ideal)} (target ≤ 1.2×) — ${memory / ideal <= 1.2 ? 'met' : 'MISSED'}`,
  )
  process.stdout.write(`${lines.join('\n')}\n`)
}

async function deleteKeys(url: string): Promise<void> {
  const redis = new Redis(url)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `*${RUN}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
}

await main()
