/**
 * `flowcache/keyv`: a Keyv (v5) storage adapter over a flowcache {@link Cache} or namespace view,
 * so code written for Keyv, cacheable or cache-manager can keep its API and get flowcache's
 * stores, namespaces, quotas, fallback and L1 tier underneath.
 *
 * Keyv hands the adapter keys that already carry its namespace (`keyv:user-1`) and values it has
 * already serialized. The adapter maps Keyv's namespace onto a flowcache namespace view of the
 * given cache and strips the `namespace:` prefix, so `new Keyv({ store, namespace: 'sessions' })`
 * writes `user-1` in `cache.namespace('sessions')`, where flowcache code reads it too, and Keyv's
 * `clear()` clears that namespace only.
 *
 * This module never imports `keyv`: the adapter is a plain event emitter with the methods Keyv
 * calls, so `keyv` stays an optional dependency of your application.
 */
import { EventEmitter } from 'node:events'

import type { Cache } from '../core/cache.js'

/** Options of {@link KeyvFlowcache}. */
export interface KeyvFlowcacheOptions {
  /**
   * Close the cache when Keyv calls `disconnect()`. Leave it off when the cache is shared with
   * other code. @default false
   */
  closeOnDisconnect?: boolean
}

/** What a Keyv v5 adapter exposes as `opts`; Keyv reads it, flowcache does not need it. */
export interface KeyvFlowcacheOpts {
  /** Names this adapter in Keyv's diagnostics. */
  dialect: 'flowcache'
  /** The store under the cache, as `flowcache:<store name>`. */
  url: string
  /** Keyv sets serialization hooks here; the adapter keeps whatever Keyv gives it. */
  [option: string]: unknown
}

/** An entry of {@link KeyvFlowcache.setMany}, as Keyv passes it. */
export interface KeyvEntry {
  key: string
  value: unknown
  /** Relative TTL in ms; `undefined` or `0` for none. */
  ttl?: number
}

/**
 * A Keyv storage adapter over a flowcache cache:
 *
 * ```ts
 * import Keyv from 'keyv'
 * import { createCache } from 'flowcache'
 * import { KeyvFlowcache } from 'flowcache/keyv'
 *
 * const keyv = new Keyv({ store: new KeyvFlowcache(createCache()), namespace: 'sessions' })
 * ```
 *
 * Errors of the cache (a store outage, a value over the size limit) reject the Keyv call with
 * flowcache's typed error. A write without a TTL gets the namespace's default TTL, if the cache
 * has one.
 */
export class KeyvFlowcache extends EventEmitter {
  /** Keyv's namespace, set by Keyv; `undefined` means the cache itself. */
  namespace: string | undefined
  /** Adapter options as Keyv expects them. */
  readonly opts: KeyvFlowcacheOpts
  readonly #cache: Cache
  readonly #closeOnDisconnect: boolean
  readonly #views = new Map<string, Cache>()

  /** Wraps `cache` (a cache or any namespace view of one). */
  constructor(cache: Cache, options: KeyvFlowcacheOptions = {}) {
    super()
    this.#cache = cache
    this.#closeOnDisconnect = options.closeOnDisconnect ?? false
    this.opts = { dialect: 'flowcache', url: `flowcache:${cache.store.name}` }
  }

  /** The cache this adapter writes to, for Keyv's current namespace. */
  get cache(): Cache {
    return this.#view(this.namespace)
  }

  /** Reads the raw (serialized) value Keyv stored, or `undefined`. */
  async get<Value>(key: string): Promise<Value | undefined> {
    const [view, name] = this.#locate(key)
    return view.get<Value>(name)
  }

  /** Reads many raw values, in the order of `keys`. */
  async getMany<Value>(keys: string[]): Promise<Array<Value | undefined>> {
    const groups = this.#group(keys)
    const values: Array<Value | undefined> = Array.from({ length: keys.length })
    for (const { view, names, positions } of groups) {
      const found = await view.getMany<Value>(names)
      found.forEach((value, i) => (values[positions[i] as number] = value))
    }
    return values
  }

  /** Stores a raw value; `ttl` is relative, in ms (`undefined` or `0`: the namespace default). */
  async set(key: string, value: unknown, ttl?: number): Promise<boolean> {
    const [view, name] = this.#locate(key)
    return view.set(name, value, ttlOf(ttl))
  }

  /** Stores many raw values. */
  async setMany(entries: KeyvEntry[]): Promise<void> {
    const byView = new Map<Cache, Array<{ key: string; value: unknown; ttl?: number }>>()
    for (const entry of entries) {
      const [view, name] = this.#locate(entry.key)
      const items = byView.get(view) ?? []
      const ttl = ttlOf(entry.ttl)
      items.push(
        ttl === undefined
          ? { key: name, value: entry.value }
          : { key: name, value: entry.value, ttl },
      )
      byView.set(view, items)
    }
    for (const [view, items] of byView) await view.setMany(items)
  }

  /** Deletes a key; `true` if it existed. */
  async delete(key: string): Promise<boolean> {
    const [view, name] = this.#locate(key)
    return view.delete(name)
  }

  /** Deletes many keys; `true` if at least one existed. */
  async deleteMany(keys: string[]): Promise<boolean> {
    let deleted = 0
    for (const { view, names } of this.#group(keys)) deleted += await view.deleteMany(names)
    return deleted > 0
  }

  /** Whether a live entry exists. */
  async has(key: string): Promise<boolean> {
    const [view, name] = this.#locate(key)
    return view.has(name)
  }

  /** Whether live entries exist, in the order of `keys`. */
  async hasMany(keys: string[]): Promise<boolean[]> {
    const values = await this.getMany(keys)
    return values.map((value) => value !== undefined)
  }

  /**
   * Deletes every entry of Keyv's namespace (its flowcache namespace and that namespace's
   * children); without a namespace, every entry of the wrapped cache.
   */
  async clear(): Promise<void> {
    await this.#view(this.namespace).clear()
  }

  /**
   * Every `[key, rawValue]` of a namespace (default: Keyv's), keys prefixed the way Keyv gave
   * them. Keyv 5 attaches `keyv.iterator()` only for the adapters it knows by name, so call this
   * method on the adapter to iterate.
   */
  async *iterator(namespace?: string): AsyncGenerator<[string, unknown]> {
    const ns = namespace ?? this.namespace
    const view = this.#view(ns)
    const names = await view.keys()
    for (let i = 0; i < names.length; i += 100) {
      const batch = names.slice(i, i + 100)
      const values = await view.getMany(batch)
      for (const [j, value] of values.entries()) {
        if (value === undefined) continue
        const name = batch[j] as string
        yield [ns === undefined ? name : `${ns}:${name}`, value]
      }
    }
  }

  /** Closes the cache if the adapter was created with `closeOnDisconnect`. */
  async disconnect(): Promise<void> {
    if (this.#closeOnDisconnect) await this.#cache.close()
  }

  /** The view and the key inside it for a key Keyv passed. */
  #locate(key: string): [Cache, string] {
    const ns = this.namespace
    if (ns === undefined || ns === '') return [this.#cache, key]
    const prefixed = key.startsWith(`${ns}:`) && key.length > ns.length + 1
    return [this.#view(ns), prefixed ? key.slice(ns.length + 1) : key]
  }

  #group(keys: string[]): Array<{ view: Cache; names: string[]; positions: number[] }> {
    const groups = new Map<Cache, { view: Cache; names: string[]; positions: number[] }>()
    keys.forEach((key, position) => {
      const [view, name] = this.#locate(key)
      let group = groups.get(view)
      if (group === undefined) {
        group = { view, names: [], positions: [] }
        groups.set(view, group)
      }
      group.names.push(name)
      group.positions.push(position)
    })
    return [...groups.values()]
  }

  #view(ns: string | undefined): Cache {
    if (ns === undefined || ns === '') return this.#cache
    let view = this.#views.get(ns)
    if (view === undefined) {
      view = this.#cache.namespace(ns)
      this.#views.set(ns, view)
    }
    return view
  }
}

function ttlOf(ttl: number | undefined): number | undefined {
  return ttl === undefined || ttl === 0 ? undefined : ttl
}
