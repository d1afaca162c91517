import { Redis } from 'ioredis'
import { redisStore } from './src/stores/redis/index.js'
const run = `qb${Date.now().toString(36)}`
const store = redisStore({ url: 'redis://127.0.0.1:6379' })
const free = `${run}.free.`, quoted = `${run}.quoted.`, tight = `${run}.tight.`
await store.setQuota(quoted, { maxBytes: 100_000_000 })
await store.setQuota(tight, { maxEntries: 500 })
const value = new Uint8Array(200).fill(1)
for (const p of [free, quoted, tight]) for (let i = 0; i < 1000; i++) await store.set(`${p}k/x${i}`, value)
let n = 0
const scen: Record<string, () => Promise<unknown>> = {
  'get, no quota': () => store.get(`${free}k/x${n++ % 1000}`),
  'get, under quota': () => store.get(`${quoted}k/x${n++ % 1000}`),
  'set, no quota': () => store.set(`${free}k/x${n++ % 1000}`, value),
  'set, under quota (no eviction)': () => store.set(`${quoted}k/x${n++ % 1000}`, value),
  'set, quota full (1 eviction per write)': () => store.set(`${tight}k/y${n++}`, value),
}
const rates: Record<string, number[]> = {}
for (let round = 0; round < 15; round++) {
  for (const [name, op] of Object.entries(scen)) {
    for (let w = 0; w < 50; w++) await op()
    const start = performance.now(); let ops = 0
    while (performance.now() - start < 200) { await op(); ops++ }
    ;(rates[name] ??= []).push(ops / ((performance.now() - start) / 1000))
  }
}
for (const [name, r] of Object.entries(rates)) {
  r.sort((a, b) => a - b)
  const med = r[Math.floor(r.length / 2)]!
  console.log(`${name.padEnd(42)} median ${med.toFixed(0)} ops/s (${(1e6 / med).toFixed(1)} µs/op), best ${r.at(-1)!.toFixed(0)}`)
}
await store.close()
const raw = new Redis()
let cursor = '0'
do { const [next, keys] = await raw.scan(cursor, 'MATCH', `*${run}*`, 'COUNT', 1000); cursor = next; if (keys.length) await raw.unlink(...keys) } while (cursor !== '0')
await raw.hdel('flowcache#quotas', quoted, tight)
await raw.quit()
