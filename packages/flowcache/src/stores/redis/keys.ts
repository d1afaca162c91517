/**
 * How store keys become Redis keys, and store-key prefixes become SCAN patterns.
 *
 * A store key `<root>.<ns>.….<kind>/<key>` is written as `{<root>.<ns>}.….<kind>/<key>`: the
 * root and the first namespace form a Redis Cluster hash tag, so every key of one top-level
 * namespace (a tenant, say) lives in one slot and multi-key scripts over it never hit CROSSSLOT.
 * Keys of the root namespace itself (`<root>.<kind>/<key>`) are tagged with the root alone.
 * The keyspace alphabet (`[-/=.\w]`) has no braces, so removing the two braces reverses the
 * mapping, and anything else in the database (including our revision counters) is recognised as
 * foreign and never listed or cleared.
 */
import { InvalidArgumentError } from '../../errors.js'

/** The keyspace alphabet; a store key or prefix with anything else was not made by flowcache. */
const STORE_KEY_TEXT = /^[-/=.\w]*$/

/** Suffix of the revision counter of a hash tag: outside the alphabet, so never a store key. */
const COUNTER_SUFFIX = '#revision'

/** Checks that `storeKey` is a non-empty keyspace key, so that the mapping stays reversible. */
export function checkStoreKey(storeKey: string): void {
  if (typeof storeKey !== 'string' || storeKey === '' || !STORE_KEY_TEXT.test(storeKey)) {
    throw InvalidArgumentError.format(
      'store key',
      `must be a non-empty flowcache keyspace key ([-/=.A-Za-z0-9_]); got ${JSON.stringify(storeKey)}`,
    )
  }
}

/** Index of the end of the hash tag in a store key: the second `.`, else the first, else the end. */
function tagEnd(storeKey: string): number {
  const first = storeKey.indexOf('.')
  if (first === -1) return storeKey.length
  const second = storeKey.indexOf('.', first + 1)
  return second === -1 ? first : second
}

/** The Redis key of a store key (checked with {@link checkStoreKey} first). */
export function toRedisKey(storeKey: string): string {
  const end = tagEnd(storeKey)
  return `{${storeKey.slice(0, end)}}${storeKey.slice(end)}`
}

/** The hash tag (without braces) a store key maps to; keys with equal tags share a slot. */
export function hashTagOf(storeKey: string): string {
  return storeKey.slice(0, tagEnd(storeKey))
}

/** The Redis key of the revision counter that the keys with hash tag `tag` draw from. */
export function counterKey(tag: string): string {
  return `{${tag}}${COUNTER_SUFFIX}`
}

/**
 * The quota directory: a HASH of every quota's prefix and limits (`<maxEntries> <maxBytes>`).
 * Outside the keyspace (no braces), so never listed or cleared.
 */
export const QUOTA_DIRECTORY = 'flowcache#quotas'

/**
 * The HASH that defines the quota on `prefix` for the write scripts, next to its accounting:
 * `{<tag>}#quotas` when the prefix fixes a hash tag (root and first namespace), else the
 * directory (reachable by scripts on a single server only).
 */
export function quotaDefinitionsKey(prefix: string): string {
  const first = prefix.indexOf('.')
  if (first === -1 || prefix.indexOf('.', first + 1) === -1) return QUOTA_DIRECTORY
  return `{${hashTagOf(prefix)}}#quotas`
}

/** The store key a Redis key stands for, or `undefined` for a key flowcache did not write. */
export function fromRedisKey(redisKey: string): string | undefined {
  const close = redisKey.indexOf('}')
  if (redisKey.charCodeAt(0) !== 123 /* { */ || close === -1) return undefined
  const storeKey = redisKey.slice(1, close) + redisKey.slice(close + 1)
  if (storeKey === '' || !STORE_KEY_TEXT.test(storeKey)) return undefined
  // Only the canonical form: `{a}.b.k/x` is not how `a.b.k/x` is written, so it is foreign.
  return toRedisKey(storeKey) === redisKey ? storeKey : undefined
}

/** Escapes glob metacharacters for SCAN MATCH (none are in the alphabet; this keeps it so). */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

/**
 * A SCAN MATCH pattern that matches the Redis keys of every store key starting with `prefix`.
 * It may match more (callers filter with {@link fromRedisKey} and `startsWith`), never less.
 */
export function scanPattern(prefix: string): string {
  if (typeof prefix !== 'string' || !STORE_KEY_TEXT.test(prefix)) {
    throw InvalidArgumentError.format(
      'prefix',
      `must be a flowcache store-key prefix ([-/=.A-Za-z0-9_]); got ${JSON.stringify(prefix)}`,
    )
  }
  const first = prefix.indexOf('.')
  // Inside the root: any tag that starts with it.
  if (first === -1) return `{${escapeGlob(prefix)}*`
  const second = prefix.indexOf('.', first + 1)
  if (second === -1) {
    // `<root>.<partial token>`: the token may be a leaf of the root namespace, `{root}.<leaf>`,
    // or the start of a first-level namespace, `{root.<ns>…}`. A leaf always has a `/` and a
    // namespace never does, which settles it when the partial token shows one.
    const root = escapeGlob(prefix.slice(0, first))
    const token = prefix.slice(first + 1)
    if (token.includes('/')) return `{${root}}.${escapeGlob(token)}*`
    return token === '' ? `{${root}[.}]*` : `{${root}[.}]*${escapeGlob(token)}*`
  }
  // The tag is complete: one slot.
  return `{${escapeGlob(prefix.slice(0, second))}}${escapeGlob(prefix.slice(second))}*`
}
