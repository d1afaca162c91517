/**
 * cache-manager over flowcache: code written for cache-manager (or anything else built on Keyv)
 * keeps its API, while flowcache's store, namespaces and quotas sit underneath. Run it with
 * `npx tsx examples/keyv-cache-manager.ts`.
 */
import { createCache as createCacheManager } from 'cache-manager'
import Keyv from 'keyv'

import { createCache } from '../packages/flowcache/src/index.js'
import { KeyvFlowcache } from '../packages/flowcache/src/keyv/index.js'

/** Runs the example and returns what it printed, line by line. */
export async function main(): Promise<string[]> {
  const lines: string[] = []
  const flowcache = createCache()
  // Keyv's namespace `profiles` becomes the flowcache namespace `profiles`, with its own quota.
  flowcache.namespace('profiles', { maxEntries: 10_000 })
  const keyv = new Keyv({ store: new KeyvFlowcache(flowcache), namespace: 'profiles' })
  const manager = createCacheManager({ stores: [keyv] })

  let calls = 0
  const loadProfile = async (id: string): Promise<{ id: string; name: string }> => {
    calls++
    return { id, name: `user ${id}` }
  }
  // wrap() is cache-aside: the first call loads, the second is served from flowcache.
  const first = await manager.wrap('user:42', () => loadProfile('42'), 60_000)
  const second = await manager.wrap('user:42', () => loadProfile('42'), 60_000)
  lines.push(`wrap twice: ${JSON.stringify(second)}, loader called ${calls} time(s)`)
  lines.push(`same value: ${JSON.stringify(first) === JSON.stringify(second)}`)

  // The entry lives in flowcache's `profiles` namespace, stored the way Keyv serializes it.
  const keys = await flowcache.namespace('profiles').keys()
  lines.push(`flowcache keys in profiles: ${keys.join(', ')}`)
  const expiresAt = await manager.ttl('user:42')
  lines.push(
    `expires in about a minute: ${expiresAt !== undefined && expiresAt - Date.now() > 55_000}`,
  )

  await manager.del('user:42')
  lines.push(`after del: ${String(await manager.get('user:42'))}`)
  await manager.disconnect()
  await flowcache.close()
  return lines
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of await main()) console.log(line)
}
