/**
 * The keyspace: how a namespace path and a key become one store key, injectively.
 *
 * A store key reads `<root>.<ns>.<ns>….<kind>/<key>`, for example
 * `fc.tenant=3Aacme.flow=3Aorders.k/order=3A42`. Each namespace name and the key are escaped so
 * that only `[A-Za-z0-9_-]` stay literal and every other UTF-8 byte becomes `=XX` (upper-case hex).
 * Escaped parts never contain `.` or `/`, so:
 * - the token after the last `.` is the leaf (`<kind>/<key>`), every token before it a namespace;
 * - a namespace's prefix (`<root>.<ns>….`) is a string prefix of exactly its own keys and those of
 *   its child namespaces, which is what prefix listing and scoped clear rely on;
 * - the alphabet is NATS KV's (`[-/=.\w]`), readable in `redis-cli` and `nats kv ls`.
 * Kind `k` holds user entries; every other kind is a system key (locks, leases, limiter state,
 * bookkeeping), which eviction and the stores' `clear()` never touch. The tag (`t`) and
 * dependency (`d`) indexes are system keys too; `Cache.clear()` removes the ones of the cleared
 * namespaces itself, once the entries they point to are gone.
 */
import { InvalidArgumentError, KeyTooLongError } from '../errors.js'

/** Leaf kinds. `user` entries are the only ones eviction and `clear()` may remove. */
export const KeyKind = {
  user: 'k',
  lock: 'l',
  lease: 'e',
  limiter: 'r',
  meta: 'm',
  /** `getOrSet` single-flight locks of `distributed: true`. */
  flight: 'f',
  /** `getOrSet` grace copies: the last good value, kept for ttl + grace. */
  grace: 'g',
  /** Tag index: one entry per (tag, user key) pair, expiring with the user entry. */
  tag: 't',
  /** Dependency index: one record per parent key listing the keys that depend on it. */
  dependents: 'd',
} as const
/** One of the {@link KeyKind} letters. */
export type KeyKind = (typeof KeyKind)[keyof typeof KeyKind]

const ROOT_PATTERN = /^[A-Za-z0-9_-]{1,64}$/

/** `=XX` for every byte value, so escaping appends one precomputed string per byte. */
const ESCAPED_BYTE: readonly string[] = Array.from(
  { length: 256 },
  (_, byte) => `=${byte.toString(16).toUpperCase().padStart(2, '0')}`,
)

/** Which UTF-16 code units below 128 stay literal: `[A-Za-z0-9_-]`. */
const LITERAL = new Uint8Array(128)
for (let code = 0; code < 128; code++) {
  const ch = String.fromCharCode(code)
  if (/[A-Za-z0-9_-]/.test(ch)) LITERAL[code] = 1
}

function isLiteral(code: number): boolean {
  return code < 128 && LITERAL[code] === 1
}

function escapedByte(byte: number): string {
  return ESCAPED_BYTE[byte] as string
}

/**
 * Escapes one namespace name or key. Throws {@link InvalidArgumentError} for an empty string or
 * a string with a lone UTF-16 surrogate (it has no UTF-8 form, so it could collide with U+FFFD),
 * and {@link KeyTooLongError} when its UTF-8 form is longer than `maxBytes`.
 *
 * @param what `key` or `namespace`, for the error message
 */
export function escapeKeyPart(part: string, what: string, maxBytes: number): string {
  if (typeof part !== 'string') {
    throw InvalidArgumentError.format(what, `must be a string; got ${typeof part}`)
  }
  const length = part.length
  if (length === 0) throw InvalidArgumentError.format(what, 'must not be empty')
  let out = ''
  let bytes = 0
  // Start of the pending run of literal characters, copied with one slice when it ends.
  let run = 0
  for (let i = 0; i < length; i++) {
    const code = part.charCodeAt(i)
    if (isLiteral(code)) continue
    if (i > run) {
      out += part.slice(run, i)
      bytes += i - run
    }
    if (code < 0x80) {
      out += escapedByte(code)
      bytes += 1
    } else if (code < 0x800) {
      out += escapedByte(0xc0 | (code >> 6)) + escapedByte(0x80 | (code & 63))
      bytes += 2
    } else if (code >= 0xd800 && code <= 0xdbff) {
      const low = i + 1 < length ? part.charCodeAt(i + 1) : 0
      if (low < 0xdc00 || low > 0xdfff) throw loneSurrogate(what, i)
      const point = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
      out +=
        escapedByte(0xf0 | (point >> 18)) +
        escapedByte(0x80 | ((point >> 12) & 63)) +
        escapedByte(0x80 | ((point >> 6) & 63)) +
        escapedByte(0x80 | (point & 63))
      bytes += 4
      i++
    } else if (code >= 0xdc00 && code <= 0xdfff) {
      throw loneSurrogate(what, i)
    } else {
      out +=
        escapedByte(0xe0 | (code >> 12)) +
        escapedByte(0x80 | ((code >> 6) & 63)) +
        escapedByte(0x80 | (code & 63))
      bytes += 3
    }
    run = i + 1
  }
  if (run === 0) {
    if (length > maxBytes) throw tooLong(what, length, maxBytes)
    return part
  }
  if (run < length) {
    out += part.slice(run)
    bytes += length - run
  }
  if (bytes > maxBytes) throw tooLong(what, bytes, maxBytes)
  return out
}

function tooLong(what: string, bytes: number, maxBytes: number): KeyTooLongError {
  return new KeyTooLongError(
    `${what} is ${bytes} bytes in UTF-8; the limit is ${maxBytes} (raise limits.maxKeyBytes or hash long keys)`,
  )
}

function loneSurrogate(what: string, index: number): InvalidArgumentError {
  return InvalidArgumentError.format(
    what,
    `has a lone UTF-16 surrogate at index ${index}; keys must be well-formed Unicode (see String.prototype.toWellFormed)`,
  )
}

/** Reverses {@link escapeKeyPart}. Throws {@link InvalidArgumentError} on text it never produces. */
export function unescapeKeyPart(escaped: string): string {
  if (!escaped.includes('=')) return escaped
  const bytes: number[] = []
  for (let i = 0; i < escaped.length; i++) {
    const ch = escaped.charCodeAt(i)
    if (ch === 61) {
      const hex = escaped.slice(i + 1, i + 3)
      if (!/^[0-9A-F]{2}$/.test(hex)) {
        throw InvalidArgumentError.format('store key', `has a broken escape at ${i}: "${escaped}"`)
      }
      bytes.push(Number.parseInt(hex, 16))
      i += 2
    } else {
      bytes.push(ch)
    }
  }
  return Buffer.from(bytes).toString('utf8')
}

/** Checks a store root prefix (`[A-Za-z0-9_-]{1,64}`), the first token of every key. */
export function checkRoot(root: string): string {
  if (typeof root !== 'string' || !ROOT_PATTERN.test(root)) {
    throw InvalidArgumentError.format(
      'prefix',
      `must be 1-64 characters of [A-Za-z0-9_-]; got ${JSON.stringify(root)}`,
    )
  }
  return root
}

/** Prefix of the root namespace: `<root>.`. */
export function rootPrefix(root: string): string {
  return `${checkRoot(root)}.`
}

/** Prefix of a child namespace of the namespace whose prefix is `parentPrefix`. */
export function childPrefix(parentPrefix: string, name: string, maxBytes: number): string {
  return `${parentPrefix}${escapeKeyPart(name, 'namespace', maxBytes)}.`
}

/** Store key of a user entry: `<prefix>k/<escaped key>`. */
export function userKey(prefix: string, key: string, maxBytes: number): string {
  return `${prefix}k/${escapeKeyPart(key, 'key', maxBytes)}`
}

/** Store key of a system entry of the given kind in the namespace with `prefix`. */
export function systemKey(
  prefix: string,
  kind: Exclude<KeyKind, 'k'>,
  key: string,
  maxBytes: number,
): string {
  return `${prefix}${kind}/${escapeKeyPart(key, 'key', maxBytes)}`
}

/** Store-key prefix that selects the user keys of one namespace (not its children) that start with `keyPrefix`. */
export function userKeyPrefix(
  prefix: string,
  keyPrefix: string | undefined,
  maxBytes: number,
): string {
  return keyPrefix === undefined || keyPrefix === ''
    ? `${prefix}k/`
    : `${prefix}k/${escapeKeyPart(keyPrefix, 'prefix', maxBytes)}`
}

/**
 * The namespace prefixes of a store key, shortest first: each part up to and including one of its
 * dots (`fc.a.b.k/x` → `fc.`, `fc.a.`, `fc.a.b.`). The stores find the quotas a key counts
 * toward by these.
 */
export function namespacePrefixes(storeKey: string): string[] {
  const prefixes: string[] = []
  let dot = storeKey.indexOf('.')
  while (dot !== -1) {
    prefixes.push(storeKey.slice(0, dot + 1))
    dot = storeKey.indexOf('.', dot + 1)
  }
  return prefixes
}

/** The values of `byPrefix` under the {@link namespacePrefixes} of `storeKey`, shortest first. */
export function underPrefixes<T>(byPrefix: ReadonlyMap<string, T>, storeKey: string): T[] {
  const found: T[] = []
  for (const prefix of namespacePrefixes(storeKey)) {
    const value = byPrefix.get(prefix)
    if (value !== undefined) found.push(value)
  }
  return found
}

/** Whether a store key holds a user entry (kind `k`). Everything else is a system key. */
export function isUserKey(storeKey: string): boolean {
  const leaf = storeKey.lastIndexOf('.') + 1
  return storeKey.charCodeAt(leaf) === 107 /* k */ && storeKey.charCodeAt(leaf + 1) === 47 /* / */
}

/** A store key taken apart: root, namespace path, kind and the original key. */
export interface ParsedKey {
  root: string
  namespaces: string[]
  kind: string
  key: string
}

/** Parses a store key written by flowcache; `undefined` for anything else. */
export function parseStoreKey(storeKey: string): ParsedKey | undefined {
  const tokens = storeKey.split('.')
  if (tokens.length < 2) return undefined
  const root = tokens[0] as string
  const leaf = tokens[tokens.length - 1] as string
  if (!ROOT_PATTERN.test(root) || leaf.length < 3 || leaf[1] !== '/') return undefined
  try {
    return {
      root,
      namespaces: tokens.slice(1, -1).map(unescapeKeyPart),
      kind: leaf[0] as string,
      key: unescapeKeyPart(leaf.slice(2)),
    }
  } catch {
    return undefined
  }
}

/**
 * The key of a store key relative to `keyPrefix` (as made by {@link userKeyPrefix} with no key
 * prefix): the original key, or `undefined` when the store key is not a direct user key there.
 */
export function stripUserKey(storeKey: string, namespaceUserPrefix: string): string | undefined {
  if (!storeKey.startsWith(namespaceUserPrefix)) return undefined
  const rest = storeKey.slice(namespaceUserPrefix.length)
  if (rest.includes('.')) return undefined
  return unescapeKeyPart(rest)
}
