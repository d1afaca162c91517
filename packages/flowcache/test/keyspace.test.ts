import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createCache } from '../src/core/cache.js'
import {
  namespacePrefixes,
  underPrefixes,
  childPrefix,
  escapeKeyPart,
  isUserKey,
  parseStoreKey,
  rootPrefix,
  unescapeKeyPart,
  userKey,
  userKeyPrefix,
} from '../src/core/keyspace.js'
import { InvalidArgumentError, KeyTooLongError } from '../src/errors.js'

const MAX = 1024

/** Pieces that have broken other caches' key schemes, combined into crafted names. */
const hostilePiece = fc.constantFrom(
  ':',
  '.',
  '*',
  '>',
  '/',
  '..',
  '\0',
  '__proto__',
  'constructor',
  'prototype',
  '=',
  '=3A',
  '=2E',
  'k/',
  'k',
  'l/',
  '%',
  '\\',
  ' ',
  '?',
  '[',
  ']',
  '{',
  '}',
  'é',
  '🙂',
  'ß',
  '\u2028',
  'fc',
  'a',
  'b',
)
const craftedName = fc
  .array(fc.oneof(hostilePiece, fc.string({ unit: 'grapheme', maxLength: 4 })), {
    minLength: 1,
    maxLength: 5,
  })
  .map((parts) => parts.join(''))
  .filter((name) => name.length > 0)
const craftedPath = fc.array(craftedName, { maxLength: 3 })

function prefixOf(path: readonly string[]): string {
  return path.reduce((prefix, name) => childPrefix(prefix, name, MAX), rootPrefix('fc'))
}

function isPathPrefix(outer: readonly string[], inner: readonly string[]): boolean {
  return outer.length <= inner.length && outer.every((name, i) => inner[i] === name)
}

describe('keyspace encoding', () => {
  it('keeps [A-Za-z0-9_-] literal and escapes everything else as =XX of UTF-8', () => {
    expect(escapeKeyPart('order_42-a', 'key', MAX)).toBe('order_42-a')
    expect(escapeKeyPart('user:42', 'key', MAX)).toBe('user=3A42')
    expect(escapeKeyPart('a.b', 'key', MAX)).toBe('a=2Eb')
    expect(escapeKeyPart('é', 'key', MAX)).toBe('=C3=A9')
    expect(escapeKeyPart('🙂', 'key', MAX)).toBe('=F0=9F=99=82')
    expect(userKey(prefixOf(['tenant:acme', 'flow:orders']), 'order:42', MAX)).toBe(
      'fc.tenant=3Aacme.flow=3Aorders.k/order=3A42',
    )
  })

  it('produces only characters of the NATS key grammar', () => {
    fc.assert(
      fc.property(craftedPath, craftedName, (path, key) => {
        expect(userKey(prefixOf(path), key, MAX)).toMatch(/^[-/=.\w]+$/)
      }),
      { numRuns: 2000 },
    )
  })

  it('decodes back to the original key and namespaces', () => {
    fc.assert(
      fc.property(craftedPath, craftedName, (path, key) => {
        const parsed = parseStoreKey(userKey(prefixOf(path), key, MAX))
        expect(parsed).toEqual({ root: 'fc', namespaces: path, kind: 'k', key })
        expect(unescapeKeyPart(escapeKeyPart(key, 'key', MAX))).toBe(key)
      }),
      { numRuns: 2000 },
    )
  })

  it('is injective: different (namespace path, key) pairs never share a store key', () => {
    fc.assert(
      fc.property(
        craftedPath,
        craftedName,
        craftedPath,
        craftedName,
        (pathA, keyA, pathB, keyB) => {
          const same = keyA === keyB && pathA.length === pathB.length && isPathPrefix(pathA, pathB)
          const a = userKey(prefixOf(pathA), keyA, MAX)
          const b = userKey(prefixOf(pathB), keyB, MAX)
          expect(a === b).toBe(same)
        },
      ),
      { numRuns: 5000 },
    )
  })

  it('a namespace prefix selects exactly the keys of that namespace and its children', () => {
    fc.assert(
      fc.property(craftedPath, craftedPath, craftedName, (scope, path, key) => {
        const storeKey = userKey(prefixOf(path), key, MAX)
        expect(storeKey.startsWith(prefixOf(scope))).toBe(isPathPrefix(scope, path))
        // The user-key prefix of a namespace never reaches into a child namespace.
        expect(storeKey.startsWith(userKeyPrefix(prefixOf(scope), undefined, MAX))).toBe(
          scope.length === path.length && isPathPrefix(scope, path),
        )
      }),
      { numRuns: 5000 },
    )
  })

  it('a key prefix matches exactly the keys that start with it', () => {
    fc.assert(
      fc.property(craftedName, craftedName, (keyPrefix, key) => {
        const ns = prefixOf(['n'])
        expect(userKey(ns, key, MAX).startsWith(userKeyPrefix(ns, keyPrefix, MAX))).toBe(
          key.startsWith(keyPrefix),
        )
      }),
      { numRuns: 5000 },
    )
  })

  it('tells user keys from system keys', () => {
    expect(isUserKey('fc.a.k/x')).toBe(true)
    expect(isUserKey('fc.k.l/x')).toBe(false)
    expect(isUserKey('fc.k=2F.e/x')).toBe(false)
    expect(isUserKey(userKey(prefixOf(['k/', 'l/']), 'k/', MAX))).toBe(true)
  })

  it('rejects empty names, lone surrogates and keys over the byte limit with typed errors', () => {
    expect(() => escapeKeyPart('', 'key', MAX)).toThrow(InvalidArgumentError)
    expect(() => escapeKeyPart('a\uD800b', 'key', MAX)).toThrow(/lone UTF-16 surrogate/)
    expect(() => escapeKeyPart('\uDC00', 'key', MAX)).toThrow(InvalidArgumentError)
    expect(() => escapeKeyPart('x'.repeat(11), 'key', 10)).toThrow(KeyTooLongError)
    // The limit counts UTF-8 bytes, not UTF-16 units: 4 × 'é' is 8 bytes.
    expect(() => escapeKeyPart('éééé', 'key', 7)).toThrow(KeyTooLongError)
    expect(escapeKeyPart('éééé', 'key', 8)).toBe('=C3=A9=C3=A9=C3=A9=C3=A9')
    expect(() => rootPrefix('a.b')).toThrow(InvalidArgumentError)
  })
})

describe('namespace prefixes of a store key', () => {
  it('lists each part up to a dot, shortest first, and finds the values under them', () => {
    const key = userKey(
      childPrefix(childPrefix(rootPrefix('fc'), 'a', 200), 'b.c', 200),
      'x.y',
      200,
    )
    const prefixes = namespacePrefixes(key)
    expect(prefixes).toEqual([
      rootPrefix('fc'),
      childPrefix(rootPrefix('fc'), 'a', 200),
      childPrefix(childPrefix(rootPrefix('fc'), 'a', 200), 'b.c', 200),
    ])
    expect(namespacePrefixes('no-dot')).toEqual([])
    const byPrefix = new Map([
      [prefixes[2] as string, 'inner'],
      [prefixes[0] as string, 'root'],
      ['fc.other.', 'elsewhere'],
    ])
    expect(underPrefixes(byPrefix, key)).toEqual(['root', 'inner'])
  })
})

describe('namespace isolation through the Cache API', () => {
  it('no crafted key is readable, listable, deletable or clearable outside its namespace', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.tuple(craftedPath, craftedName), {
          minLength: 2,
          maxLength: 12,
          selector: ([path, key]) => JSON.stringify([path, key]),
        }),
        fc.nat(),
        async (pairs, pick) => {
          const cache = createCache()
          const viewOf = (path: readonly string[]) =>
            path.reduce((view, name) => view.namespace(name), cache)
          const id = (path: readonly string[], key: string) => JSON.stringify([path, key])
          for (const [path, key] of pairs) await viewOf(path).set(key, id(path, key))

          // Read: every pair sees exactly its own value.
          for (const [path, key] of pairs) expect(await viewOf(path).get(key)).toBe(id(path, key))

          // List: a namespace lists exactly the keys written directly into it.
          for (const [path] of pairs) {
            const expected = pairs
              .filter(([other]) => JSON.stringify(other) === JSON.stringify(path))
              .map(([, key]) => key)
              .sort()
            expect(await viewOf(path).keys()).toEqual(expected)
          }

          // Delete: removing one pair leaves every other pair intact.
          const [victimPath, victimKey] = pairs[pick % pairs.length] as [string[], string]
          expect(await viewOf(victimPath).delete(victimKey)).toBe(true)
          for (const [path, key] of pairs) {
            const expected = path === victimPath && key === victimKey ? undefined : id(path, key)
            expect(await viewOf(path).get(key)).toBe(expected)
          }

          // Clear: clearing a namespace removes its entries and its children's, nothing else.
          const scope = victimPath
          await viewOf(scope).clear()
          for (const [path, key] of pairs) {
            const gone = (path === victimPath && key === victimKey) || isPathPrefix(scope, path)
            expect(await viewOf(path).get(key)).toBe(gone ? undefined : id(path, key))
          }
          await cache.close()
        },
      ),
      { numRuns: 400 },
    )
  })
})
