/**
 * getOrSet with `distributed: true` across real processes: 3 workers (fixtures/get-or-set-worker.ts)
 * share one Redis, then one NATS bucket. In each round every worker makes 200 concurrent calls on
 * one missing key with a 50 ms factory, started together; across the cluster the factory runs
 * exactly once and all 600 callers get the value it returned.
 */
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import type { ToChild, ToParent, WorkerConfig } from './fixtures/get-or-set-worker.js'
import { FixtureProcess } from './helpers/fixture-process.js'
import { deleteRedisKeys, destroyNatsBucket, natsUrl, redisUrl } from './helpers/services.js'

const fixture = fileURLToPath(new URL('./fixtures/get-or-set-worker.ts', import.meta.url))
const run = randomBytes(4).toString('hex')
const bucket = `fc-test-gosd-${run}`
const rootOfRun = `gosd${run}`

const WORKERS = 3
const CALLERS = 200
const ROUNDS = 5

type Done = Extract<ToParent, { type: 'done' }>

class Worker extends FixtureProcess<ToParent> {
  readonly #waiting = new Map<string, (done: Done) => void>()

  constructor(config: WorkerConfig) {
    super('worker', fixture, config)
  }

  protected override received(message: ToParent): void {
    if (message.type === 'done') this.#waiting.get(message.key)?.(message)
  }

  stampede(key: string): Promise<Done> {
    return new Promise((resolve) => {
      this.#waiting.set(key, resolve)
      this.child.send({ type: 'stampede', key } satisfies ToChild)
    })
  }
}

const workers: Worker[] = []

afterEach(async () => {
  await Promise.all(workers.splice(0).map((worker) => worker.stop()))
})

afterAll(async () => {
  await deleteRedisKeys(`*${rootOfRun}*`)
  await destroyNatsBucket(bucket)
})

describe.each(['redis', 'nats'] as const)(
  'distributed getOrSet across 3 processes on %s',
  (kind) => {
    it('runs the factory once per key across the cluster and every caller gets its value', async () => {
      const prefix = `${rootOfRun}_${kind}`
      const config: WorkerConfig = {
        kind,
        url: kind === 'redis' ? redisUrl() : natsUrl(),
        bucket,
        prefix,
        callers: CALLERS,
        factoryMs: 50,
      }
      for (let i = 0; i < WORKERS; i++) workers.push(new Worker(config))
      await Promise.all(workers.map((worker) => worker.ready))

      for (let round = 0; round < ROUNDS; round++) {
        const key = `report:${round}`
        const results = await Promise.all(workers.map((worker) => worker.stampede(key)))
        const factoryCalls = results.reduce((sum, done) => sum + done.factoryCalls, 0)
        const errors = results.flatMap((done) => done.errors)
        expect(errors).toEqual([])
        expect(factoryCalls).toBe(1)
        const values = results.flatMap((done) => done.values)
        expect(values).toHaveLength(WORKERS * CALLERS)
        const winner = values[0]
        expect(winner?.key).toBe(key)
        expect(values.every((value) => value.key === key && value.pid === winner?.pid)).toBe(true)
      }
    }, 60_000)
  },
)
