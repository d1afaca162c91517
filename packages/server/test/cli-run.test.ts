import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { redisUrl } from '../../flowcache/test/helpers/services.js'
import { redisStore } from '../../flowcache/src/stores/redis/index.js'
import { createCache } from '../src/flowcache.js'
import { loadFlowFile } from '../src/flows/loader.js'
import { flowNamespace } from '../src/flows/runner.js'
import { cli as runCli, type CliOutcome } from './helpers/cli.js'

/** Runs the CLI as `npm run flowcache -- <args>` does; `plain`: through the binary's wrapper. */
function cli(
  args: string[],
  options: { stdin?: string; plain?: boolean } = {},
): Promise<CliOutcome> {
  return runCli(args, {
    ...(options.stdin === undefined ? {} : { stdin: options.stdin }),
    wrapper: options.plain === true,
  })
}

const tenant = `cli${randomBytes(4).toString('hex')}`
let dir: string
let flowFile: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flowcache-cli-'))
  flowFile = join(dir, 'orders.yaml')
  await writeFile(
    flowFile,
    `name: orders
tenant: ${tenant}
trigger:
  http: { method: POST, path: /orders }
steps:
  - name: check
    script: |
      if (event.data.id === undefined) throw new Error('no id in the event')
      if (event.data.drop) return null
      return event
  - name: price
    cache: { key: 'price:{{event.data.id}}', ttl: 1h }
    script: |
      ctx.log('pricing', event.data.id)
      return { data: { ...event.data, price: event.data.id * 10 } }
`,
  )
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('flowcache run', { timeout: 90_000 }, () => {
  it('runs a flow on a JSON --event and prints the output and the step table', async () => {
    const { code, stdout, stderr } = await cli(['run', flowFile, '--event', '{"data":{"id":4}}'])
    expect(stderr).toBe('')
    expect(code).toBe(0)
    expect(stdout).toMatch(/^flow orders \(.*orders\.yaml\) run [0-9a-f-]{36}: ok in /)
    expect(stdout).toMatch(/\ncheck\s+-\s+[\d.]+ ms\n/)
    expect(stdout).toMatch(/\nprice\s+miss\s+[\d.]+ ms\n/)
    expect(stdout).toContain('[price] info: pricing 4')
    expect(stdout).toContain('"price": 40')
  })

  it('reads the event from @file and from standard input; --json output parses', async () => {
    const eventFile = join(dir, 'event.json')
    await writeFile(eventFile, '{"data":{"id":5}}')
    const fromFile = await cli(['run', flowFile, '--event', `@${eventFile}`, '--json'])
    expect(fromFile.code).toBe(0)
    const result = JSON.parse(fromFile.stdout)
    expect(result).toMatchObject({
      flow: 'orders',
      dropped: false,
      output: { data: { id: 5, price: 50 } },
      steps: [
        { name: 'check', hit: null },
        { name: 'price', hit: false, logs: [{ level: 'info', message: 'pricing 5' }] },
      ],
    })
    const fromStdin = await cli(['run', flowFile, '--event', '-', '--json'], {
      stdin: '{"data":{"id":6,"drop":true}}',
    })
    expect(fromStdin.code).toBe(0)
    expect(JSON.parse(fromStdin.stdout)).toMatchObject({
      dropped: true,
      output: null,
      steps: [{ name: 'check' }],
    })
  })

  it('exits 1 with the step, file and line when a script fails', async () => {
    const human = await cli(['run', flowFile, '--event', '{"data":{}}'])
    expect(human.code).toBe(1)
    expect(human.stdout).toBe('')
    expect(human.stderr).toMatch(
      /^flowcache run: flow 'orders' step 'check' failed \(.*orders\.yaml:8\): no id in the event \[E_SCRIPT\]/,
    )
    const machine = await cli(['run', flowFile, '--event', '{"data":{}}', '--json'])
    expect(machine.code).toBe(1)
    expect(JSON.parse(machine.stdout)).toMatchObject({
      error: { code: 'E_FLOW_STEP', causeCode: 'E_SCRIPT', flow: 'orders', step: 'check', line: 8 },
    })
  })

  it('exits 2 for bad usage, a bad event and an invalid flow file', async () => {
    const badJson = await cli(['run', flowFile, '--event', '{not json'])
    expect(badJson.code).toBe(2)
    expect(badJson.stderr).toMatch(/--event: the --event text is not valid JSON/)
    const notObject = await cli(['run', flowFile, '--event', '[1]'])
    expect(notObject.code).toBe(2)
    expect(notObject.stderr).toMatch(/must be a JSON object/)
    const invalid = join(dir, 'invalid.yaml')
    await writeFile(invalid, 'name: x\ntrigger: { schedule: { every: soon } }\nsteps: []\n')
    const badFlow = await cli(['run', invalid, '--json'])
    expect(badFlow.code).toBe(2)
    expect(JSON.parse(badFlow.stdout).error.issues).toMatchObject([
      { line: 2, column: 31, path: 'trigger.schedule.every' },
      { line: 3, column: 8, path: 'steps' },
    ])
    const unknownOption = await cli(['run', flowFile, '--nope'])
    expect(unknownOption.code).toBe(2)
    expect(unknownOption.stderr).toMatch(/unknown option '--nope'/)
    const badStore = await cli([
      'run',
      flowFile,
      '--event',
      '{"data":{"id":1}}',
      '--store',
      'mongo://x',
    ])
    expect(badStore.code).toBe(2)
    expect(badStore.stderr).toMatch(/--store mongo:\/\/x is not a store/)
  })

  it('prints help with exit 0, through the plain node wrapper too', async () => {
    const help = await cli(['run', '--help'], { plain: true })
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/Usage: flowcache run \[options\] <flow\.yaml>/)
    expect(help.stdout).toMatch(/Exit codes: 0 ok, 1 .*, 2 bad usage/)
    const missing = await cli(['run'], { plain: true })
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/missing required argument/)
  })

  it('keeps memoized step results in a persistent store between runs; --debug bypasses them', async () => {
    const store = `sqlite:${join(dir, 'cache.db')}`
    const event = '{"data":{"id":7}}'
    const first = JSON.parse(
      (await cli(['run', flowFile, '--event', event, '--store', store, '--json'])).stdout,
    )
    expect(first.steps[1]).toMatchObject({ name: 'price', hit: false })
    const second = JSON.parse(
      (await cli(['run', flowFile, '--event', event, '--store', store, '--json'])).stdout,
    )
    expect(second.steps[1]).toMatchObject({ name: 'price', hit: true })
    expect(second.output).toEqual(first.output)
    const debug = await cli(['run', flowFile, '--event', event, '--store', store, '--debug'])
    expect(debug.code).toBe(0)
    expect(debug.stdout).toMatch(/\nprice\s+bypassed\s/)
  })

  it('runs on Redis with --store redis://', async () => {
    const event = '{"data":{"id":8}}'
    const args = ['run', flowFile, '--event', event, '--store', redisUrl(), '--json']
    try {
      const first = await cli(args)
      expect(first.stderr).toBe('')
      expect(JSON.parse(first.stdout).steps[1]).toMatchObject({ hit: false })
      expect(JSON.parse((await cli(args)).stdout).steps[1]).toMatchObject({ hit: true })
    } finally {
      const cache = createCache({ store: redisStore({ url: redisUrl() }) })
      await flowNamespace(cache, await loadFlowFile(flowFile)).clear()
      await cache.close()
    }
  })
})
