/**
 * flowcache/keyv beyond the Keyv suite: Keyv namespaces are flowcache namespaces, clear() stays
 * inside one, iteration, disconnect, flowcache errors reach the Keyv caller, and the
 * cache-manager example runs.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import Keyv from 'keyv'
import { describe, expect, it } from 'vitest'

import { createCache } from '../../src/core/cache.js'
import { KeyvFlowcache } from '../../src/keyv/index.js'

describe('flowcache/keyv', () => {
  it('a Keyv namespace is the flowcache namespace of the same name', async () => {
    const cache = createCache()
    const sessions = new Keyv({ store: new KeyvFlowcache(cache), namespace: 'sessions' })
    await sessions.set('user-1', { cart: [1, 2] })
    expect(await cache.namespace('sessions').keys()).toEqual(['user-1'])
    expect(await sessions.get('user-1')).toEqual({ cart: [1, 2] })
    await cache.close()
  })

  it('clear() deletes its own namespace only', async () => {
    const cache = createCache()
    const a = new Keyv({ store: new KeyvFlowcache(cache), namespace: 'a' })
    const b = new Keyv({ store: new KeyvFlowcache(cache), namespace: 'b' })
    await a.set('k', 1)
    await b.set('k', 2)
    await cache.set('root-key', 3)
    await a.clear()
    expect(await a.get('k')).toBeUndefined()
    expect(await b.get('k')).toBe(2)
    expect(await cache.get('root-key')).toBe(3)
    await cache.close()
  })

  it('iterates the entries of a namespace with the keys Keyv gave', async () => {
    const cache = createCache()
    const store = new KeyvFlowcache(cache)
    const keyv = new Keyv({ store, namespace: 'jobs' })
    await keyv.set('one', 1)
    await keyv.set('two', 2)
    await new Keyv({ store: new KeyvFlowcache(cache), namespace: 'other' }).set('three', 3)
    const seen: Array<[string, unknown]> = []
    for await (const [key, raw] of store.iterator()) {
      seen.push([key, (await keyv.deserializeData(raw as string))?.value])
    }
    expect(seen.sort()).toEqual([
      ['jobs:one', 1],
      ['jobs:two', 2],
    ])
    await cache.close()
  })

  it('TTLs are flowcache TTLs', async () => {
    const cache = createCache()
    const keyv = new Keyv({ store: new KeyvFlowcache(cache), namespace: 'ttl' })
    await keyv.set('short', 'v', 60_000)
    const left = await cache.namespace('ttl').ttl('short')
    expect(left).toBeGreaterThan(50_000)
    expect(left).toBeLessThanOrEqual(60_000)
    await keyv.set('forever', 'v')
    expect(await cache.namespace('ttl').ttl('forever')).toBeNull()
    await cache.close()
  })

  it('disconnect() closes the cache only when asked to', async () => {
    const shared = createCache()
    await new Keyv({ store: new KeyvFlowcache(shared) }).disconnect()
    expect(shared.health().status).toBe('ok')
    const owned = createCache()
    await new Keyv({ store: new KeyvFlowcache(owned, { closeOnDisconnect: true }) }).disconnect()
    expect(owned.health().status).toBe('down')
    await shared.close()
  })

  it("flowcache's typed errors reach the Keyv caller", async () => {
    const cache = createCache({ limits: { maxValueBytes: 64 } })
    const keyv = new Keyv({ store: new KeyvFlowcache(cache), throwOnErrors: true })
    await expect(keyv.set('big', 'x'.repeat(1000))).rejects.toMatchObject({
      code: 'E_VALUE_TOO_LARGE',
    })
    await cache.close()
  })

  it('the cache-manager example runs', async () => {
    const example = fileURLToPath(
      new URL('../../../../examples/keyv-cache-manager.ts', import.meta.url),
    )
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', example])
    expect(stdout.trim().split('\n')).toEqual([
      'wrap twice: {"id":"42","name":"user 42"}, loader called 1 time(s)',
      'same value: true',
      'flowcache keys in profiles: user:42',
      'expires in about a minute: true',
      'after del: undefined',
    ])
  })
})
