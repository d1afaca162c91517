/**
 * A tour of flowcache as a workflow engine uses it, on the embedded memory store:
 * dedup of incoming events, state between runs, a memoized expensive step, per-tenant
 * namespaces with quotas, TTLs and stats. Run it with `npm start`.
 */
import { createCache } from '../packages/flowcache/src/index.js'

const cache = createCache()
const log = (label: string, value: unknown) =>
  console.log(`${label.padEnd(48)} ${typeof value === 'string' ? value : JSON.stringify(value)}`)

console.log('flowcache demo: one embedded cache, the jobs a workflow engine gives it\n')

// 1. Dedup: a webhook delivers the same event three times; add() lets exactly one through.
const acme = cache.namespace('tenant:acme', { maxEntries: 1000 })
const orders = acme.namespace('flow:orders', { defaultTtl: '1h' })
const deliveries = ['evt-1', 'evt-2', 'evt-1', 'evt-3', 'evt-1']
const processed: string[] = []
await Promise.all(
  deliveries.map(async (id) => {
    if (await orders.add(`seen:${id}`, true, '24h')) processed.push(id)
  }),
)
log('dedup: deliveries → processed once', `${deliveries.join(',')} → ${processed.sort().join(',')}`)

// 2. State between runs: a counter and a cursor that survive from one run to the next.
for (let run = 0; run < 3; run++) await orders.increment('runs')
await orders.set('cursor', { lastId: 'evt-3', at: new Date('2026-11-21T10:00:00Z') })
const cursor = await orders.get<{ lastId: string; at: Date }>('cursor')
log('state: runs counted', await orders.get('runs'))
log(
  'state: cursor keeps its Date type',
  `${cursor?.lastId} at ${cursor?.at.toISOString()} (${cursor?.at.constructor.name})`,
)

// 3. A memoized expensive step: 100 concurrent callers, one computation.
let computations = 0
const exchangeRate = async () => {
  computations++
  await new Promise((resolve) => setTimeout(resolve, 50))
  return { usdToEur: 0.92 }
}
await Promise.all(
  Array.from({ length: 100 }, () => acme.getOrSet('fx:usd-eur', exchangeRate, { ttl: '10m' })),
)
log('memoized step: 100 callers → computations', computations)

// 4. TTLs are exact and typed: a zero TTL is an error, never "forever".
await cache.set('session:42', { user: 'ada' }, '30m')
log('ttl of session:42 (ms)', await cache.ttl('session:42'))
try {
  await cache.set('session:43', { user: 'bob' }, 0)
} catch (error) {
  log('set with ttl 0 →', `${(error as { code: string }).code}: ${(error as Error).message}`)
}

// 5. Namespaces are isolated, whatever characters keys use.
await cache.namespace('tenant:evil').set('../tenant:acme/flow:orders/runs', 999)
log('tenant:acme runs after a crafted key elsewhere', await orders.get('runs'))
log('keys of flow:orders', await orders.keys())

// 6. Null is a value, a miss is undefined.
await orders.set('last-error', null)
log('stored null vs miss', [await orders.get('last-error'), await orders.get('nope', 'default')])

const { hits, misses, sets, entries, hitRatio } = cache.stats()
log('stats', { hits, misses, sets, entries, hitRatio: Number(hitRatio.toFixed(2)) })
await cache.close()
console.log('\nNext: npm test runs the test suite; docs/ explains every concept.')
