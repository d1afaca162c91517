/**
 * Tags and dependencies: the indexes behind `set(…, { tags, dependsOn })`, `invalidateTags` and
 * cascade invalidation, kept in the store as system keys so that every replica and process sees
 * them, and written only through the Store contract.
 *
 * Layout, in the namespace whose prefix is `<ns>` (see the keyspace):
 * - tag index (kind `t`): one entry per (tag, key) pair, `<ns>t/<escaped tag>=00<escaped key>`,
 *   with the TTL of the entry it points to. `=00` (a NUL byte) never occurs in an escaped tag,
 *   so `<ns>t/<escaped tag>=00` selects exactly the members of one tag and
 *   `invalidateTags` finds them with one prefix listing per tag.
 * - dependency index (kind `d`): one record per parent key, `<ns>d/<escaped key>`, listing the
 *   store keys that depend on it with their expiry deadlines; it expires with the last of them.
 *   A write of any key reads this record alongside the write (one extra read, no listing),
 *   and deletes the dependents it lists, transitively.
 *
 * Ordering rules that make the guarantees hold across replicas:
 * - a write stores the entry first and its index entries after it, and resolves only after both;
 * - an index entry is only removed with a fenced delete (its revision as read before), after the
 *   entries it points to were deleted or seen absent, so an index entry rewritten meanwhile
 *   stays, and so does one whose entry could not be deleted.
 * Hence an entry written with a tag (or a dependency) by a call that resolved is found by every
 * invalidation that starts later, as long as the entry lives.
 */
import type { Revision, Store, StoreEntry } from '../types/store.js'
import { DecodeError, InvalidArgumentError, StoreUnavailableError } from '../errors.js'
import { escapeKeyPart, isUserKey } from './keyspace.js'

/** Most tags one write may carry. */
export const MAX_TAGS = 64
/** Longest tag, in UTF-8 bytes. */
export const MAX_TAG_BYTES = 128
/** Most keys one write may depend on. */
export const MAX_DEPENDS_ON = 64

/** Compare-and-set attempts when adding a dependent to a contended dependency record. */
const RECORD_ATTEMPTS = 1000
/** Separator between the escaped tag and the escaped key in a tag index key (a NUL byte). */
const TAG_SEPARATOR = '=00'
/** Bytes of every tag index entry; the key says everything. */
const TAG_MARK = new Uint8Array([1])
/** Format version of dependency records. */
const RECORD_VERSION = 1

/** Whether `text` holds a C0 or C1 control character (U+0000–U+001F, U+007F–U+009F). */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) return true
  }
  return false
}

/**
 * In-process, non-persistent stores (the memory store) that have held a dependency record. Only
 * this process can write to such a store, so until a record was added to it no write needs to
 * read one: a write of a key nobody depends on then costs nothing extra.
 */
const storesWithRecords = new WeakSet<Store>()

/** Whether writes to `store` must read dependency records (see {@link storesWithRecords}). */
function mayHaveRecords(store: Store): boolean {
  const { local, persistent, distributed } = store.capabilities
  return !(local && !persistent && !distributed) || storesWithRecords.has(store)
}

/**
 * Checks the `tags` option and returns the tags escaped for the keyspace, without duplicates.
 * A tag is a string of 1 to {@link MAX_TAG_BYTES} UTF-8 bytes without control characters; a
 * write carries at most {@link MAX_TAGS}. Throws {@link InvalidArgumentError}.
 */
export function checkTags(tags: unknown, name = 'tags', max = MAX_TAGS): string[] {
  const list = typeof tags === 'string' ? [tags] : tags
  if (!Array.isArray(list)) {
    throw InvalidArgumentError.format(name, `must be an array of strings; got ${typeof tags}`)
  }
  if (list.length > max) {
    throw InvalidArgumentError.format(
      name,
      `has ${list.length} tags; the limit is ${max}: use fewer, broader tags`,
    )
  }
  const escaped = new Set<string>()
  for (const tag of list as unknown[]) escaped.add(escapeTag(tag, name))
  return [...escaped]
}

/** Escapes one tag after checking its grammar and length. */
function escapeTag(tag: unknown, name: string): string {
  if (typeof tag !== 'string') {
    throw InvalidArgumentError.format(name, `must hold strings only; got ${typeof tag}`)
  }
  if (tag === '') throw InvalidArgumentError.format(name, 'must not hold an empty tag')
  if (hasControlCharacter(tag)) {
    throw InvalidArgumentError.format(
      name,
      `must not hold control characters; got ${JSON.stringify(tag)}`,
    )
  }
  const bytes = Buffer.byteLength(tag, 'utf8')
  if (bytes > MAX_TAG_BYTES) {
    throw InvalidArgumentError.format(
      name,
      `holds a tag of ${bytes} bytes in UTF-8; the limit is ${MAX_TAG_BYTES}: shorten it`,
    )
  }
  return escapeKeyPart(tag, 'tag', MAX_TAG_BYTES)
}

/** Store-key prefix selecting the tag index entries of one escaped tag in a namespace. */
export function tagIndexPrefix(namespacePrefix: string, escapedTag: string): string {
  return `${namespacePrefix}t/${escapedTag}${TAG_SEPARATOR}`
}

/** The dependency record of a user store key: same namespace and key, kind `d`. */
export function dependentsKeyOf(userStoreKey: string): string {
  const leaf = userStoreKey.lastIndexOf('.') + 1
  return `${userStoreKey.slice(0, leaf)}d${userStoreKey.slice(leaf + 1)}`
}

/** The user store key a tag index entry points to, or `undefined` for a malformed one. */
export function tagMemberOf(tagStoreKey: string): string | undefined {
  const leaf = tagStoreKey.lastIndexOf('.') + 1
  if (!tagStoreKey.startsWith('t/', leaf)) return undefined
  const separator = tagStoreKey.indexOf(TAG_SEPARATOR, leaf + 2)
  if (separator === -1 || separator + TAG_SEPARATOR.length >= tagStoreKey.length) return undefined
  return `${tagStoreKey.slice(0, leaf)}k/${tagStoreKey.slice(separator + TAG_SEPARATOR.length)}`
}

/** One dependent in a dependency record: its store key and expiry deadline (`null` = none). */
type Dependent = [key: string, expiresAt: number | null]

function encodeRecord(dependents: readonly Dependent[]): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ v: RECORD_VERSION, d: dependents }))
}

function decodeRecord(storeKey: string, bytes: Uint8Array): Dependent[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes))
  } catch (error) {
    throw corrupt(storeKey, { cause: error })
  }
  const record = parsed as { v?: unknown; d?: unknown }
  if (typeof record !== 'object' || record === null || record.v !== RECORD_VERSION) {
    throw corrupt(storeKey)
  }
  if (!Array.isArray(record.d)) throw corrupt(storeKey)
  const dependents: Dependent[] = []
  for (const item of record.d as unknown[]) {
    if (!Array.isArray(item)) throw corrupt(storeKey)
    const [key, expiresAt] = item as unknown[]
    if (typeof key !== 'string' || !isUserKey(key)) throw corrupt(storeKey)
    if (expiresAt !== null && typeof expiresAt !== 'number') throw corrupt(storeKey)
    dependents.push([key, expiresAt])
  }
  return dependents
}

function corrupt(storeKey: string, options?: { cause?: unknown }): DecodeError {
  return new DecodeError(
    `dependency record ${storeKey} is not one flowcache wrote; delete that store key (it only costs a cascade)`,
    options,
  )
}

/** What the index needs from the cache it serves. */
export interface LinksHost {
  /** The store to use now (the memory fallback while a distributed store is down). */
  store(): Store
  /** The store's clock, ms since the epoch. */
  now(): number
  /** Runs a store call, turning faults into `StoreUnavailableError`. */
  call<R>(operation: string, run: () => Promise<R>): Promise<R>
  /** Deletes user entries and drops their L1 copies on every replica; returns how many existed. */
  deleteEntries(storeKeys: string[], operation: string): Promise<number>
  /** Most keys per store batch. */
  readonly batchSize: number
}

/**
 * Dependency records read alongside a write, to cascade once the write is done; `undefined`
 * when the store cannot hold any.
 */
export type DependentsRead = Promise<Array<StoreEntry | undefined>> | undefined

/** The tag and dependency indexes of one cache (all namespaces: keys carry their namespace). */
export class Links {
  readonly #host: LinksHost

  constructor(host: LinksHost) {
    this.#host = host
  }

  /**
   * Starts reading the dependency records of `storeKeys`, to run alongside a write of them.
   * The returned promise is marked handled, so a write that fails first leaves no unhandled
   * rejection; awaiting it still throws.
   */
  readDependents(storeKeys: readonly string[]): DependentsRead {
    const host = this.#host
    if (!mayHaveRecords(host.store())) return undefined
    const read =
      storeKeys.length === 1
        ? host
            .call('dependents', () => host.store().get(dependentsKeyOf(storeKeys[0] as string)))
            .then((entry) => [entry])
        : host.call('dependents', () => host.store().getMany(storeKeys.map(dependentsKeyOf)))
    read.catch(() => undefined)
    return read
  }

  /**
   * After `roots` changed or were deleted: deletes every key that depends on one of them,
   * transitively, never a root itself (so a cycle through a root stops there), each key once.
   * `read` is the result of {@link Links.readDependents} for `roots`. Returns how many entries
   * were deleted.
   */
  async cascade(
    roots: readonly string[],
    read: DependentsRead,
    operation: string,
  ): Promise<number> {
    if (read === undefined) return 0
    const records = await read
    let frontier: Array<[string, StoreEntry]> = []
    records.forEach((entry, i) => {
      if (entry !== undefined) frontier.push([dependentsKeyOf(roots[i] as string), entry])
    })
    if (frontier.length === 0) return 0
    const host = this.#host
    const visited = new Set(roots)
    const seen: Array<[string, Revision]> = []
    let deleted = 0
    while (frontier.length > 0) {
      const now = host.now()
      const next: string[] = []
      for (const [recordKey, entry] of frontier) {
        seen.push([recordKey, entry.revision])
        for (const [key, expiresAt] of decodeRecord(recordKey, entry.value)) {
          if ((expiresAt !== null && expiresAt <= now) || visited.has(key)) continue
          visited.add(key)
          next.push(key)
        }
      }
      if (next.length === 0) break
      frontier = []
      for (let at = 0; at < next.length; at += host.batchSize) {
        const batch = next.slice(at, at + host.batchSize)
        const nextRecords = this.readDependents(batch)
        deleted += await host.deleteEntries(batch, operation)
        ;((await nextRecords) ?? []).forEach((entry, i) => {
          if (entry !== undefined) frontier.push([dependentsKeyOf(batch[i] as string), entry])
        })
      }
    }
    // Fenced: a record a dependent was added to meanwhile stays, and still points to it.
    await host.call(operation, () =>
      Promise.all(seen.map(([key, revision]) => host.store().delete(key, { expected: revision }))),
    )
    return deleted
  }

  /**
   * The earliest expiry deadline among the live `parents` (store keys), or `null` when none of
   * them expires (or none exists). A dependent's TTL is capped by it.
   */
  async parentsDeadline(parents: readonly string[]): Promise<number | null> {
    const host = this.#host
    const entries = await host.call('dependsOn', () => host.store().getMany(parents))
    let deadline: number | null = null
    for (const entry of entries) {
      if (entry?.expiresAt == null) continue
      if (deadline === null || entry.expiresAt < deadline) deadline = entry.expiresAt
    }
    return deadline
  }

  /**
   * Writes the index entries of a write that is already stored: one tag index entry per tag
   * (with the entry's TTL) and the key's registration in each parent's dependency record.
   */
  async record(
    items: ReadonlyArray<{
      storeKey: string
      tags: readonly string[]
      parents: readonly string[]
      ttlMs: number | undefined
    }>,
  ): Promise<void> {
    const host = this.#host
    const store = host.store()
    const tagEntries = items.flatMap((item) =>
      item.tags.map((tag) => ({
        key: tagIndexKey(item.storeKey, tag),
        value: TAG_MARK,
        ttlMs: item.ttlMs,
      })),
    )
    const now = host.now()
    const registrations = items.flatMap((item) =>
      item.parents.map((parent) =>
        this.#addDependent(
          dependentsKeyOf(parent),
          item.storeKey,
          item.ttlMs === undefined ? null : now + item.ttlMs,
        ),
      ),
    )
    const writes: Array<Promise<unknown>> = [...registrations]
    for (let at = 0; at < tagEntries.length; at += host.batchSize) {
      const batch = tagEntries.slice(at, at + host.batchSize)
      writes.push(host.call('tags', () => store.setMany(batch)))
    }
    const results = await Promise.allSettled(writes)
    for (const result of results) if (result.status === 'rejected') throw result.reason
  }

  /** Adds `child` to the dependency record `recordKey` with a compare-and-set loop. */
  async #addDependent(recordKey: string, child: string, expiresAt: number | null): Promise<void> {
    const host = this.#host
    const store = host.store()
    storesWithRecords.add(store)
    for (let attempt = 0; attempt < RECORD_ATTEMPTS; attempt++) {
      const entry = await host.call('dependsOn', () => store.get(recordKey))
      const now = host.now()
      const listed = entry === undefined ? [] : decodeRecord(recordKey, entry.value)
      // Already there with a deadline at least as late: a rewrite would change nothing.
      const known = listed.find(([key]) => key === child)
      if (
        known !== undefined &&
        (known[1] === null || (expiresAt !== null && known[1] >= expiresAt))
      ) {
        return
      }
      const dependents = listed.filter(([key, at]) => key !== child && (at === null || at > now))
      dependents.push([child, expiresAt])
      let deadline: number | null = 0
      for (const [, at] of dependents)
        deadline = at === null || deadline === null ? null : Math.max(deadline, at)
      const options = deadline === null ? {} : { ttlMs: Math.max(1, Math.ceil(deadline - now)) }
      const bytes = encodeRecord(dependents)
      const written = await host.call('dependsOn', () =>
        entry === undefined
          ? store.create(recordKey, bytes, options)
          : store.compareAndSet(recordKey, bytes, entry.revision, options),
      )
      if (written !== undefined) return
    }
    throw new StoreUnavailableError(
      `adding a dependent to ${recordKey} lost ${RECORD_ATTEMPTS} compare-and-set races in a row; too many writes depend on that key at once: use a tag instead`,
    )
  }

  /**
   * Deletes the entries of a namespace carrying any of `escapedTags`, then the keys depending on
   * them, then the index entries, fenced by the revisions read before: an index entry rewritten
   * by a concurrent write stays, and one whose entry could not be deleted is still there for the
   * next call. Returns how many entries were deleted.
   */
  async invalidateTags(namespacePrefix: string, escapedTags: readonly string[]): Promise<number> {
    const host = this.#host
    const store = host.store()
    const indexKeys: string[] = []
    for (const tag of escapedTags) {
      const prefix = tagIndexPrefix(namespacePrefix, tag)
      await host.call('invalidateTags', async () => {
        for await (const key of store.list(prefix)) indexKeys.push(key)
      })
    }
    let deleted = 0
    for (let at = 0; at < indexKeys.length; at += host.batchSize) {
      const batch = indexKeys.slice(at, at + host.batchSize)
      // Revisions first: a write that stored its entry after this read rewrites its index entry.
      const entries = await host.call('invalidateTags', () => store.getMany(batch))
      const members = new Set<string>()
      batch.forEach((key, i) => {
        const member = tagMemberOf(key)
        if (member !== undefined && entries[i] !== undefined) members.add(member)
      })
      const roots = [...members]
      if (roots.length > 0) {
        const read = this.readDependents(roots)
        deleted += await host.deleteEntries(roots, 'invalidateTags')
        deleted += await this.cascade(roots, read, 'invalidateTags')
      }
      await host.call('invalidateTags', () =>
        Promise.all(
          batch.map((key, i) => {
            const entry = entries[i]
            return entry === undefined
              ? Promise.resolve(false)
              : store.delete(key, { expected: entry.revision })
          }),
        ),
      )
    }
    return deleted
  }

  /**
   * After `clear()` of the namespace with `namespacePrefix`: removes its tag and dependency
   * index entries (children included) whose entries are gone, fenced by revision, so an index
   * entry written by a concurrent write is kept. Returns how many were removed.
   */
  async sweep(namespacePrefix: string): Promise<number> {
    const host = this.#host
    const store = host.store()
    const indexKeys: string[] = []
    await host.call('clear', async () => {
      for await (const key of store.list(namespacePrefix)) {
        const kind = key.charCodeAt(key.lastIndexOf('.') + 1)
        if (kind === 116 /* t */ || kind === 100 /* d */) indexKeys.push(key)
      }
    })
    let removed = 0
    for (let at = 0; at < indexKeys.length; at += host.batchSize) {
      const batch = indexKeys.slice(at, at + host.batchSize)
      // The index entries first, then what they point to: see the ordering rules above.
      const entries = await host.call('clear', () => store.getMany(batch))
      const targets = batch.map((key, i) => {
        const entry = entries[i]
        if (entry === undefined) return []
        if (key.charCodeAt(key.lastIndexOf('.') + 1) === 116) {
          const member = tagMemberOf(key)
          return member === undefined ? [] : [member]
        }
        return decodeRecord(key, entry.value).map(([child]) => child)
      })
      const flat = [...new Set(targets.flat())]
      const live = new Set<string>()
      for (let from = 0; from < flat.length; from += host.batchSize) {
        const some = flat.slice(from, from + host.batchSize)
        const found = await host.call('clear', () => store.getMany(some))
        found.forEach((entry, i) => entry !== undefined && live.add(some[i] as string))
      }
      const results = await host.call('clear', () =>
        Promise.all(
          batch.map((key, i) => {
            const entry = entries[i]
            const keep = (targets[i] as string[]).some((target) => live.has(target))
            if (entry === undefined || keep) return Promise.resolve(false)
            return store.delete(key, { expected: entry.revision })
          }),
        ),
      )
      removed += results.filter(Boolean).length
    }
    return removed
  }
}

/** The tag index key of an escaped tag on a user store key. */
function tagIndexKey(userStoreKey: string, escapedTag: string): string {
  const leaf = userStoreKey.lastIndexOf('.') + 1
  return `${userStoreKey.slice(0, leaf)}t/${escapedTag}${TAG_SEPARATOR}${userStoreKey.slice(leaf + 2)}`
}
