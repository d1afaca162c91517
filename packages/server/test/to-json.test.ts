/**
 * `toJson`, the writer of every JSON answer of the server: plain data goes through
 * `JSON.stringify` as is; values JSON has no form for get a readable one.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { toJson } from '../src/http/index.js'

describe('toJson', () => {
  it('writes plain JSON data exactly as JSON.stringify does', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(toJson(value)).toBe(JSON.stringify(value))
        expect(JSON.parse(toJson(value))).toEqual(JSON.parse(JSON.stringify(value)))
      }),
      { numRuns: 500 },
    )
  })

  it('writes BigInt, Map, Set, bytes and Dates readably, at any depth', () => {
    const value = {
      big: 12345678901234567890n,
      map: new Map([['a', 1]]),
      pairs: new Map<unknown, unknown>([[1, 'one']]),
      set: new Set(['x', 'y']),
      bytes: new Uint8Array([1, 2, 3]),
      buffer: Buffer.from('hi'),
      at: new Date('2026-01-02T03:04:05.000Z'),
      nested: [{ deep: { big: 1n } }],
    }
    expect(JSON.parse(toJson(value))).toEqual({
      big: '12345678901234567890',
      map: { a: 1 },
      pairs: [[1, 'one']],
      set: ['x', 'y'],
      bytes: 'AQID',
      buffer: 'aGk=',
      at: '2026-01-02T03:04:05.000Z',
      nested: [{ deep: { big: '1' } }],
    })
  })

  it('leaves objects with a prototype or toJSON to their own form', () => {
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    expect(toJson({ p: new Point(1, 2) })).toBe('{"p":{"x":1,"y":2}}')
    expect(toJson({ v: { toJSON: () => 'custom' } })).toBe('{"v":"custom"}')
    expect(toJson(Object.create(null) as object)).toBe('{}')
  })
})
