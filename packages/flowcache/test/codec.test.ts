import { Buffer } from 'node:buffer'
import { isDeepStrictEqual } from 'node:util'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  MAX_DEPTH,
  canonicalize,
  copyValue,
  freezeValue,
  jsonCodec,
  valuesEqual,
} from '../src/core/codec.js'
import { DecodeError, FlowcacheError, UnsupportedValueError } from '../src/errors.js'

// ---------------------------------------------------------------------------------------------
// Helpers

function roundTrip<T>(value: T): T {
  return jsonCodec.decode(jsonCodec.encode(value)) as T
}

function roundTripText<T>(value: T): T {
  return jsonCodec.decodeText(jsonCodec.encodeText(value)) as T
}

function thrown(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error('expected the call to throw')
}

function nest(depth: number, wrap: (inner: unknown) => unknown, leaf: unknown = 1): unknown {
  let value = leaf
  for (let i = 0; i < depth; i++) value = wrap(value)
  return value
}

/** Objects built with defineProperty, so that `__proto__` keys become own properties. */
function objectOf(entries: readonly (readonly [string, unknown])[]): Record<string, unknown> {
  const object: Record<string, unknown> = {}
  for (const [key, value] of entries) {
    Object.defineProperty(object, key, {
      value,
      enumerable: true,
      writable: true,
      configurable: true,
    })
  }
  return object
}

/** Every object (and every ArrayBuffer behind a byte array) reachable from a value. */
function reachableObjects(value: unknown, into = new Set<object>()): Set<object> {
  if (typeof value !== 'object' || value === null || into.has(value)) return into
  into.add(value)
  if (value instanceof Uint8Array) {
    into.add(value.buffer)
  } else if (value instanceof Map) {
    for (const [key, child] of value) {
      reachableObjects(key, into)
      reachableObjects(child, into)
    }
  } else if (value instanceof Set) {
    for (const member of value) reachableObjects(member, into)
  } else if (!(value instanceof Date)) {
    for (const key of Object.keys(value))
      reachableObjects((value as Record<string, unknown>)[key], into)
  }
  return into
}

function containsMutableBuiltIn(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  if (value instanceof Map || value instanceof Set || value instanceof Date) return true
  if (value instanceof Uint8Array) return true
  return Object.keys(value).some((key) =>
    containsMutableBuiltIn((value as Record<string, unknown>)[key]),
  )
}

function everyPlainContainerFrozen(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== Array.prototype) return true
  if (!Object.isFrozen(value)) return false
  return Object.keys(value).every((key) =>
    everyPlainContainerFrozen((value as Record<string, unknown>)[key]),
  )
}

/** Rebuilds a value with every object's keys and every Map/Set's entries in reverse order. */
function reversed(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  if (value instanceof Map) {
    return new Map([...value].reverse().map(([key, child]) => [reversed(key), reversed(child)]))
  }
  if (value instanceof Set) return new Set([...value].reverse().map(reversed))
  if (Array.isArray(value)) {
    const copy = new Array<unknown>(value.length)
    for (const key of Object.keys(value)) copy[Number(key)] = reversed(value[Number(key)])
    return copy
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    const record = value as Record<string, unknown>
    return objectOf(
      Object.keys(record)
        .reverse()
        .map((key) => [key, reversed(record[key])] as const),
    )
  }
  return value
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c))
const anyCodeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c))

const stringArb = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({ unit: anyCodeUnit, maxLength: 6 }),
  fc.string({ unit: fc.oneof(loneSurrogate, fc.constantFrom('a', '"', '\\', '$', 't')) }),
  fc.constantFrom('$t', '"$t"', '{"$t":"Undefined"}', 'Undefined', '-0', 'NaN', '\u2028'),
)

const keyArb = fc.oneof(
  fc.constantFrom(
    '$t',
    'v',
    '__proto__',
    'constructor',
    'prototype',
    'toJSON',
    'hasOwnProperty',
    'length',
    'items',
    '0',
    '1',
    '',
  ),
  fc.string({ maxLength: 4 }),
  fc.string({ unit: anyCodeUnit, maxLength: 3 }),
)

const numberArb = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(0, -0, NaN, Infinity, -Infinity, Number.MAX_VALUE, Number.MIN_VALUE, 2 ** 53),
)

function leafArb(invalidDates: boolean): fc.Arbitrary<unknown> {
  return fc.oneof(
    fc.constantFrom(null, true, false),
    numberArb,
    stringArb,
    fc.bigInt(),
    fc.date({ noInvalidDate: !invalidDates }),
    fc.uint8Array({ maxLength: 10 }),
    fc.uint8Array({ maxLength: 10 }).map((bytes) => Buffer.from(bytes)),
  )
}

/** Every type a cache value may have, nested, with the awkward cases over-represented. */
function valueArb(invalidDates = true): fc.Arbitrary<unknown> {
  return fc.letrec<{
    value: unknown
    inner: unknown
    array: unknown[]
    sparse: unknown[]
    object: Record<string, unknown>
    map: Map<unknown, unknown>
    set: Set<unknown>
  }>((tie) => ({
    value: fc.oneof(
      { maxDepth: 4, depthSize: 'small', withCrossShrink: true },
      leafArb(invalidDates),
      tie('array'),
      tie('sparse'),
      tie('object'),
      tie('map'),
      tie('set'),
    ),
    // undefined is only storable inside a container
    inner: fc.oneof(
      { arbitrary: fc.constant(undefined), weight: 1 },
      { arbitrary: tie('value'), weight: 6 },
    ),
    array: fc.array(tie('inner'), { maxLength: 5 }),
    sparse: fc.sparseArray(tie('inner'), { maxLength: 8 }),
    object: fc.array(fc.tuple(keyArb, tie('inner')), { maxLength: 5 }).map(objectOf),
    map: fc.array(fc.tuple(tie('inner'), tie('inner')), { maxLength: 4 }).map((e) => new Map(e)),
    set: fc.array(tie('inner'), { maxLength: 4 }).map((members) => new Set(members)),
  })).value
}

/** A small domain, so that two independent draws are often equal or nearly so. */
const smallValueArb: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown; inner: unknown }>(
  (tie) => ({
    value: fc.oneof(
      { maxDepth: 2, depthSize: 'small', withCrossShrink: true },
      fc.constantFrom<unknown>(null, 0, -0, NaN, 1, '1', 1n, '', true, 'Undefined', '-0'),
      fc.constantFrom(0, 1).map((time) => new Date(time)),
      fc.constant(null).map(() => new Date(NaN)),
      fc.uint8Array({ maxLength: 1, max: 1 }),
      fc.uint8Array({ maxLength: 1, max: 1 }).map((bytes) => Buffer.from(bytes)),
      fc.array(tie('inner'), { maxLength: 2 }),
      fc.sparseArray(tie('inner'), { maxLength: 2 }),
      fc
        .array(fc.tuple(fc.constantFrom('a', '$t', 'v', '__proto__'), tie('inner')), {
          maxLength: 2,
        })
        .map(objectOf),
      fc.array(fc.tuple(tie('inner'), tie('inner')), { maxLength: 2 }).map((e) => new Map(e)),
      fc.array(tie('inner'), { maxLength: 2 }).map((members) => new Set(members)),
    ),
    inner: fc.oneof(fc.constant(undefined), tie('value')),
  }),
).value

// ---------------------------------------------------------------------------------------------

describe('jsonCodec: plain JSON data is stored as plain, readable JSON', () => {
  it('stores numbers, strings, booleans and null as their JSON text', () => {
    expect(jsonCodec.encodeText(5)).toBe('5')
    expect(jsonCodec.encodeText(-1.5e-7)).toBe('-1.5e-7')
    expect(jsonCodec.encodeText('abc')).toBe('"abc"')
    expect(jsonCodec.encodeText(true)).toBe('true')
    expect(jsonCodec.encodeText(false)).toBe('false')
    expect(jsonCodec.encodeText(null)).toBe('null')
  })

  it('stores plain objects and arrays exactly as JSON.stringify would', () => {
    expect(jsonCodec.encodeText({ a: 1, b: 'x' })).toBe('{"a":1,"b":"x"}')
    const order = { id: 42, lines: [{ sku: 'a', qty: 2 }], paid: true, note: null, tags: [] }
    expect(jsonCodec.encodeText(order)).toBe(JSON.stringify(order))
    expect(jsonCodec.encodeText(Object.assign(Object.create(null), { a: 1 }))).toBe('{"a":1}')
  })

  it('writes a Date as its ISO string inside a readable tag', () => {
    const text = jsonCodec.encodeText({ at: new Date('2024-05-01T10:00:00Z') })
    expect(text).toBe('{"at":{"$t":"Date","v":"2024-05-01T10:00:00.000Z"}}')
  })

  it('writes each tag in the documented format', () => {
    const cases: [unknown, string][] = [
      [-0, '{"$t":"Number","v":"-0"}'],
      [NaN, '{"$t":"Number","v":"NaN"}'],
      [Infinity, '{"$t":"Number","v":"Infinity"}'],
      [-Infinity, '{"$t":"Number","v":"-Infinity"}'],
      [-12345678901234567890n, '{"$t":"BigInt","v":"-12345678901234567890"}'],
      [new Date(NaN), '{"$t":"Date","v":null}'],
      [
        new Map<unknown, unknown>([
          ['a', 1],
          [2, undefined],
        ]),
        '{"$t":"Map","v":[["a",1],[2,{"$t":"Undefined"}]]}',
      ],
      [new Set(['a', 1]), '{"$t":"Set","v":["a",1]}'],
      [new Uint8Array([1, 2, 3]), '{"$t":"Uint8Array","v":"AQID"}'],
      [Buffer.from([1, 2, 3]), '{"$t":"Buffer","v":"AQID"}'],
      [[undefined, 1], '[{"$t":"Undefined"},1]'],
      [{ a: undefined }, '{"a":{"$t":"Undefined"}}'],
      // eslint-disable-next-line no-sparse-arrays
      [[, 'x', ,], '{"$t":"SparseArray","v":{"length":3,"items":{"1":"x"}}}'],
      [{ $t: 'mine', a: 1 }, '{"$t":"Object","v":{"$t":"mine","a":1}}'],
      [{ $t: 'Date', v: -0 }, '{"$t":"Object","v":{"$t":"Date","v":{"$t":"Number","v":"-0"}}}'],
    ]
    for (const [value, text] of cases) {
      expect(jsonCodec.encodeText(value)).toBe(text)
      expect(valuesEqual(jsonCodec.decodeText(text), value)).toBe(true)
    }
  })

  it('encodes to the UTF-8 bytes of encodeText, in an exact-size buffer of its own', () => {
    const value = { name: 'Zoë 🚀', n: 1n }
    const bytes = jsonCodec.encode(value)
    expect(Buffer.from(bytes).toString('utf8')).toBe(jsonCodec.encodeText(value))
    expect(bytes.byteOffset).toBe(0)
    expect(bytes.buffer.byteLength).toBe(bytes.byteLength)
  })

  it('reports encodedSize as the byte length of encode, multi-byte characters included', () => {
    for (const value of ['é', '🚀', { a: 'Zoë' }, [1n, new Date(0)], '\ud800', 0]) {
      expect(jsonCodec.encodedSize(value)).toBe(jsonCodec.encode(value).byteLength)
    }
  })

  it('is named json', () => {
    expect(jsonCodec.name).toBe('json')
  })
})

describe('jsonCodec: every supported type round-trips with its type', () => {
  it('a stored null decodes as null, distinct from a miss', () => {
    expect(roundTrip(null)).toBeNull()
    expect(roundTrip({ a: null }).a).toBeNull()
    expect(Object.hasOwn(roundTrip({ a: null }), 'a')).toBe(true)
  })

  it('keeps -0, NaN and both infinities (Object.is)', () => {
    for (const n of [
      -0,
      NaN,
      Infinity,
      -Infinity,
      0,
      5,
      -1.5,
      Number.MAX_VALUE,
      Number.MIN_VALUE,
    ]) {
      expect(Object.is(roundTrip(n), n)).toBe(true)
      expect(Object.is(roundTrip([n])[0], n)).toBe(true)
    }
  })

  it('keeps BigInts as bigint, including beyond 2^64', () => {
    for (const n of [0n, 1n, -1n, 2n ** 130n, -(2n ** 70n)]) {
      const back = roundTrip(n)
      expect(typeof back).toBe('bigint')
      expect(back).toBe(n)
    }
  })

  it('keeps Dates as Date instances with the same time, invalid Dates included', () => {
    for (const time of [0, 1714557600123, -8.64e15, 8.64e15, -1]) {
      const back = roundTrip(new Date(time))
      expect(back).toBeInstanceOf(Date)
      expect(back.getTime()).toBe(time)
    }
    const invalid = roundTrip(new Date(NaN))
    expect(invalid).toBeInstanceOf(Date)
    expect(Number.isNaN(invalid.getTime())).toBe(true)
  })

  it('keeps Maps with their insertion order and non-string keys', () => {
    const objectKey = { id: 1 }
    const map = new Map<unknown, unknown>([
      ['b', 1],
      [1, 'one'],
      [objectKey, new Date(5)],
      [undefined, undefined],
      [null, NaN],
      [2n, [1]],
    ])
    const back = roundTrip(map)
    expect(back).toBeInstanceOf(Map)
    expect([...back.keys()].map((key) => canonicalize(key))).toEqual(
      [...map.keys()].map((key) => canonicalize(key)),
    )
    expect(isDeepStrictEqual(back, map)).toBe(true)
  })

  it('keeps Sets with their members and order', () => {
    const set = new Set<unknown>(['x', 1, 1n, undefined, null, NaN, { a: 1 }, new Set([2])])
    const back = roundTrip(set)
    expect(back).toBeInstanceOf(Set)
    expect(isDeepStrictEqual([...back], [...set])).toBe(true)
  })

  it('keeps a Uint8Array a plain Uint8Array and a Buffer a Buffer', () => {
    const bytes = roundTrip(new Uint8Array([0, 1, 254, 255]))
    expect(bytes.constructor).toBe(Uint8Array)
    expect(Buffer.isBuffer(bytes)).toBe(false)
    expect([...bytes]).toEqual([0, 1, 254, 255])
    const buffer = roundTrip(Buffer.from('hello'))
    expect(Buffer.isBuffer(buffer)).toBe(true)
    expect(buffer.toString()).toBe('hello')
    expect(roundTrip(new Uint8Array(0)).byteLength).toBe(0)
  })

  it('stores only the viewed bytes of a Uint8Array that is a window into a larger buffer', () => {
    const whole = new Uint8Array([9, 9, 1, 2, 9])
    const view = whole.subarray(2, 4)
    expect([...roundTrip(view)]).toEqual([1, 2])
    expect([...roundTrip(Buffer.from(whole.buffer, 1, 2))]).toEqual([9, 1])
  })

  it('decodes byte arrays into memory of their own, not a shared pool slab', () => {
    const bytes = roundTrip(new Uint8Array([1, 2]))
    const buffer = roundTrip(Buffer.from([1, 2]))
    expect(bytes.buffer.byteLength).toBe(2)
    expect(buffer.buffer.byteLength).toBe(2)
  })

  it('keeps undefined inside arrays, object properties, Map keys and values and Sets', () => {
    const back = roundTrip({
      a: undefined,
      list: [undefined, 1],
      map: new Map([[undefined, undefined]]),
    })
    expect(Object.hasOwn(back, 'a')).toBe(true)
    expect(back.a).toBeUndefined()
    expect(back.list).toHaveLength(2)
    expect(Object.hasOwn(back.list, 0)).toBe(true)
    expect(back.map.has(undefined)).toBe(true)
    expect(roundTrip(new Set([undefined])).has(undefined)).toBe(true)
  })

  it('keeps holes in sparse arrays distinct from undefined, trailing holes included', () => {
    // eslint-disable-next-line no-sparse-arrays
    const sparse = [1, , undefined, , 'x', ,]
    const back = roundTrip(sparse)
    expect(back).toHaveLength(6)
    expect(Object.keys(back)).toEqual(['0', '2', '4'])
    expect(isDeepStrictEqual(back, sparse)).toBe(true)
    expect(roundTrip(new Array(3))).toHaveLength(3)
    expect(Object.keys(roundTrip(new Array(3)))).toEqual([])
  })

  it('handles a huge sparse array by its present elements, not its length', () => {
    const huge: unknown[] = []
    huge[2 ** 32 - 2] = 'last'
    huge[3] = { a: 1 }
    const text = jsonCodec.encodeText(huge)
    expect(text.length).toBeLessThan(200)
    const back = jsonCodec.decodeText(text) as unknown[]
    expect(back).toHaveLength(2 ** 32 - 1)
    expect(Object.keys(back)).toEqual(['3', String(2 ** 32 - 2)])
    expect(valuesEqual(back, huge)).toBe(true)
    expect(valuesEqual(copyValue(huge), huge)).toBe(true)
    expect(freezeValue(copyValue(huge))).toBe(true)
  })

  it('keeps a plain object that owns a "$t" key as that plain object', () => {
    const values = [
      { $t: 'Date', v: '2024-01-01T00:00:00.000Z' },
      { $t: 'Undefined' },
      { $t: 'Object', v: { $t: 'Object' } },
      { $t: 5 },
      { $t: undefined },
      [{ $t: { $t: { $t: null } } }],
    ]
    for (const value of values) {
      const back = roundTrip(value)
      expect(isDeepStrictEqual(back, value)).toBe(true)
    }
  })

  it('keeps __proto__, constructor and prototype keys as own data, never as prototypes', () => {
    const value = objectOf([
      ['__proto__', { polluted: true }],
      ['constructor', { prototype: { polluted: true } }],
      ['prototype', 1],
    ])
    // The bigint forces the tagged (slow) decoding path, which rebuilds objects itself.
    for (const object of [roundTrip(value), roundTrip({ wrapper: value, tagged: 1n }).wrapper]) {
      expect(Object.getPrototypeOf(object)).toBe(Object.prototype)
      expect(Object.keys(object)).toEqual(['__proto__', 'constructor', 'prototype'])
      expect(Object.getOwnPropertyDescriptor(object, '__proto__')?.value).toEqual({
        polluted: true,
      })
      expect(isDeepStrictEqual(object, value)).toBe(true)
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it('keeps strings with lone surrogates through the byte form', () => {
    const value = {
      text: '\ud800 a \udfff b \ud83d',
      [`key\udc00`]: ['\ud83d\ude80', '\ude80\ud83d'],
      map: new Map([['\udbff', '\ud800']]),
    }
    const bytes = jsonCodec.encode(value)
    // Lone surrogates travel as \uXXXX escapes, so the bytes stay valid UTF-8 (no U+FFFD).
    expect(jsonCodec.encodeText(value)).toContain('\\ud800 a \\udfff b \\ud83d')
    expect(() => new TextDecoder('utf-8', { fatal: true }).decode(bytes)).not.toThrow()
    expect(isDeepStrictEqual(jsonCodec.decode(bytes), value)).toBe(true)
    expect(roundTrip('\ud800')).toBe('\ud800')
  })

  it('round-trips a nested mix of every type', () => {
    const value = {
      id: 7,
      when: new Date(1700000000000),
      big: 2n ** 64n,
      weird: [-0, NaN, Infinity, -Infinity, undefined],
      tags: new Set(['a', { nested: new Map([[1, new Set([2n])]]) }]),
      index: new Map<unknown, unknown>([
        [{ composite: ['key', 1] }, { at: new Date(0), bytes: new Uint8Array([7]) }],
        ['buffer', Buffer.from('hi')],
      ]),
      // eslint-disable-next-line no-sparse-arrays
      sparse: [, [new Date(NaN)], ,],
      tagged: { $t: 'Map', v: [[1, 2]] },
      deeper: [[[{ a: [[{ b: undefined }]] }]]],
    }
    const back = roundTrip(value)
    expect(isDeepStrictEqual(back, value)).toBe(false) // only because of the invalid Date
    expect(valuesEqual(back, value)).toBe(true)
    expect(back.index).toBeInstanceOf(Map)
    expect(Buffer.isBuffer(back.index.get('buffer'))).toBe(true)
  })

  it('duplicates shared (non-cyclic) references instead of rejecting them', () => {
    const shared = { n: 1 }
    const back = roundTrip({ a: shared, b: shared, list: [shared, shared] })
    expect(back.a).toEqual(shared)
    expect(back.b).toEqual(shared)
    expect(back.a).not.toBe(back.b)
    expect(back.list[0]).not.toBe(back.list[1])
  })

  it(`accepts exactly MAX_DEPTH (${MAX_DEPTH}) levels of nesting, even of tagged containers`, () => {
    const arrays = nest(MAX_DEPTH, (inner) => [inner])
    expect(valuesEqual(roundTrip(arrays), arrays)).toBe(true)
    const objects = nest(MAX_DEPTH, (inner) => ({ $t: 'x', v: inner }))
    expect(valuesEqual(roundTrip(objects), objects)).toBe(true)
    // Map and SparseArray tags each add three JSON levels per value level.
    const maps = nest(MAX_DEPTH, (inner) => new Map([[1n, inner]]), new Date(0))
    expect(valuesEqual(roundTrip(maps), maps)).toBe(true)
    const sparse = nest(MAX_DEPTH, (inner) => {
      const array: unknown[] = []
      array[1] = inner
      return array
    })
    expect(valuesEqual(roundTrip(sparse), sparse)).toBe(true)
  })
})

describe('jsonCodec: values that cannot be stored are rejected with a typed error naming the path', () => {
  class User {
    constructor(readonly name: string) {}
  }
  class Tags extends Array<string> {}
  class Registry extends Map<string, number> {}
  const cyclic: Record<string, unknown> = { a: { b: {} } }
  ;((cyclic.a as Record<string, unknown>).b as Record<string, unknown>).back = cyclic.a
  const selfArray: unknown[] = [1]
  selfArray.push(selfArray)
  const cyclicMap = new Map<string, unknown>()
  cyclicMap.set('me', { map: cyclicMap })
  const cyclicSet = new Set<unknown>()
  cyclicSet.add([cyclicSet])

  const cases: [string, unknown, string][] = [
    ['a function', { items: [1, 2, 3, { fn: () => 1 }] }, 'value.items[3].fn is a function'],
    ['a function at the top', () => 1, 'value is a function'],
    ['an async function', { run: async () => {} }, 'value.run is a function'],
    ['a symbol value', { s: Symbol('x') }, 'value.s is a symbol'],
    ['a symbol key', { a: { [Symbol('k')]: 1 } }, 'value.a has a symbol key (Symbol(k))'],
    [
      'a non-enumerable symbol key',
      Object.defineProperty({}, Symbol('hidden'), { value: 1 }),
      'value has a symbol key',
    ],
    ['a class instance', { owner: new User('ann') }, 'value.owner is an instance of User'],
    ['an Array subclass', { tags: Tags.from(['a']) }, 'value.tags is an instance of Tags'],
    ['a Map subclass', [new Registry()], 'value[0] is an instance of Registry'],
    [
      'a Date impostor',
      { d: Object.create(Date.prototype) as unknown },
      'value.d is an instance of Date',
    ],
    ['a Float64Array', [new Float64Array(2)], 'value[0] is a Float64Array'],
    ['a Uint8ClampedArray', { px: new Uint8ClampedArray(1) }, 'value.px is a Uint8ClampedArray'],
    ['an ArrayBuffer', { raw: new ArrayBuffer(4) }, 'value.raw is a ArrayBuffer'],
    ['a DataView', { view: new DataView(new ArrayBuffer(1)) }, 'value.view is a DataView'],
    ['a WeakMap', { w: new WeakMap() }, 'value.w is an instance of WeakMap'],
    ['a Promise', { p: Promise.resolve(1) }, 'value.p is a Promise; await it'],
    ['an Error', { e: new Error('boom') }, 'value.e is an instance of Error'],
    ['a RegExp', /x/, 'value is an instance of RegExp'],
    ['a URL', { u: new URL('https://example.com') }, 'value.u is an instance of URL'],
    ['a boxed string', { s: new String('x') }, 'value.s is an instance of String'],
    [
      'an array with a null prototype',
      [Object.setPrototypeOf([1], null) as unknown],
      'value[0] is an instance of Array',
    ],
    ['a function as a Map value', new Map([['k', () => 1]]), 'value.get("k") is a function'],
    ['a symbol as a Map key', new Map([[Symbol('m'), 1]]), 'value<Map key #0> is a symbol'],
    [
      'a class instance in a Set',
      new Set([1, new WeakSet()]),
      'value<Set member #1> is an instance of WeakSet',
    ],
    [
      'a function under a non-identifier key',
      { 'a b': [() => 1] },
      'value["a b"][0] is a function',
    ],
    [
      'a cycle through objects',
      cyclic,
      'value.a.b.back refers back to value.a, which contains it (a cycle)',
    ],
    ['a cycle through an array', selfArray, 'value[1] refers back to value,'],
    ['a cycle through a Map', cyclicMap, 'value.get("me").map refers back to value,'],
    ['a cycle through a Set', cyclicSet, 'value<Set member #0>[0] refers back to value,'],
  ]

  it.each(cases)('rejects %s', (_, value, message) => {
    for (const encode of [jsonCodec.encode, jsonCodec.encodeText, jsonCodec.encodedSize]) {
      const error = thrown(() => encode(value))
      expect(error).toBeInstanceOf(UnsupportedValueError)
      expect(error).toBeInstanceOf(FlowcacheError)
      expect((error as UnsupportedValueError).code).toBe('E_UNSUPPORTED_VALUE')
      expect((error as Error).message).toContain(message)
    }
    expect(thrown(() => canonicalize(value))).toBeInstanceOf(UnsupportedValueError)
  })

  it('every rejection message says what to do instead', () => {
    for (const [, value] of cases) {
      const message = (thrown(() => jsonCodec.encode(value)) as Error).message
      expect(message).toMatch(/store|use|convert|await|replace|flatten/)
    }
  })

  it('rejects a top-level undefined and points to delete()', () => {
    const error = thrown(() => jsonCodec.encode(undefined)) as UnsupportedValueError
    expect(error).toBeInstanceOf(UnsupportedValueError)
    expect(error.code).toBe('E_UNSUPPORTED_VALUE')
    expect(error.message).toContain('delete()')
    expect(thrown(() => jsonCodec.encodedSize(undefined))).toBeInstanceOf(UnsupportedValueError)
  })

  it(`rejects nesting one level deeper than MAX_DEPTH`, () => {
    const error = thrown(() => jsonCodec.encode(nest(MAX_DEPTH + 1, (inner) => [inner])))
    expect(error).toBeInstanceOf(UnsupportedValueError)
    expect((error as Error).message).toContain(`nested more than ${MAX_DEPTH} levels deep`)
    expect((error as Error).message).toMatch(/^value(\[0\]){1000} is nested/)
  })

  it('throws a typed error, not a RangeError, for 10k-deep nesting of any container', () => {
    const deep = [
      nest(10_000, (inner) => [inner]),
      nest(10_000, (inner) => ({ a: inner })),
      nest(10_000, (inner) => new Map([['k', inner]])),
      nest(10_000, (inner) => new Set([inner])),
    ]
    for (const value of deep) {
      expect(thrown(() => jsonCodec.encode(value))).toBeInstanceOf(UnsupportedValueError)
      expect(thrown(() => canonicalize(value))).toBeInstanceOf(UnsupportedValueError)
    }
  })

  it('rejects a cycle quickly even when it sits beside a large subtree', () => {
    const value: Record<string, unknown> = {
      big: Array.from({ length: 50_000 }, (_, i) => ({ i })),
    }
    value.self = value
    const started = performance.now()
    expect(thrown(() => jsonCodec.encode(value))).toBeInstanceOf(UnsupportedValueError)
    expect(performance.now() - started).toBeLessThan(2_000)
  })
})

describe('jsonCodec: decoding garbage throws DecodeError', () => {
  const deepTagged = '['.repeat(10_000) + '{"$t":"Undefined"}' + ']'.repeat(10_000)
  const texts: [string, string][] = [
    ['empty text', ''],
    ['invalid JSON', '{"a":'],
    ['trailing garbage', '1 2'],
    ['a non-string tag', '{"$t":1}'],
    ['an unknown tag', '{"$t":"Regexp","v":"x"}'],
    ['a tag with extra keys', '{"$t":"Date","v":null,"w":1}'],
    ['a tag without payload', '{"$t":"BigInt"}'],
    ['an Undefined tag with a payload', '[{"$t":"Undefined","v":1}]'],
    ['a bare Undefined at the top', '{"$t":"Undefined"}'],
    ['a bad Number payload', '{"$t":"Number","v":"1"}'],
    ['a non-decimal BigInt', '{"$t":"BigInt","v":"0x10"}'],
    ['a BigInt "-0"', '{"$t":"BigInt","v":"-0"}'],
    ['a BigInt number payload', '{"$t":"BigInt","v":12}'],
    ['an unparsable Date', '{"$t":"Date","v":"yesterday"}'],
    ['a non-canonical Date string', '{"$t":"Date","v":"2024-01-01"}'],
    ['a Date number payload', '{"$t":"Date","v":0}'],
    ['invalid base64', '{"$t":"Uint8Array","v":"a*=="}'],
    ['unpadded base64', '{"$t":"Buffer","v":"AQI"}'],
    ['a Map of non-pairs', '{"$t":"Map","v":[[1]]}'],
    ['a Map that is an object', '{"$t":"Map","v":{"a":1}}'],
    ['a Map with duplicate keys', '{"$t":"Map","v":[[1,2],[1,3]]}'],
    ['a Set with duplicate members', '{"$t":"Set","v":[1,1]}'],
    ['a Set that is not an array', '{"$t":"Set","v":"ab"}'],
    ['a SparseArray without holes', '{"$t":"SparseArray","v":{"length":1,"items":{"0":1}}}'],
    [
      'a SparseArray index past its length',
      '{"$t":"SparseArray","v":{"length":2,"items":{"5":1}}}',
    ],
    [
      'a SparseArray non-index key',
      '{"$t":"SparseArray","v":{"length":3,"items":{"__proto__":1}}}',
    ],
    ['a SparseArray with a bad length', '{"$t":"SparseArray","v":{"length":-1,"items":{}}}'],
    ['a SparseArray with a huge length', '{"$t":"SparseArray","v":{"length":1e12,"items":{}}}'],
    ['an Object tag without "$t"', '{"$t":"Object","v":{"a":1}}'],
    ['an Object tag around an array', '{"$t":"Object","v":[1]}'],
    ['a tag nested 10k levels deep', deepTagged],
  ]

  it.each(texts)('rejects %s', (_, text) => {
    const error = thrown(() => jsonCodec.decodeText(text))
    expect(error).toBeInstanceOf(DecodeError)
    expect((error as DecodeError).code).toBe('E_DECODE')
    expect(thrown(() => jsonCodec.decode(Buffer.from(text)))).toBeInstanceOf(DecodeError)
  })

  it('keeps the JSON parse error as the cause', () => {
    const error = thrown(() => jsonCodec.decodeText('{nope')) as DecodeError
    expect(error.cause).toBeInstanceOf(SyntaxError)
  })

  it('rejects bytes that are not valid UTF-8, keeping the decoder error as the cause', () => {
    for (const bytes of [[0xff], [0x22, 0xc3, 0x22], [0x22, 0xed, 0xa0, 0x80, 0x22]]) {
      const error = thrown(() => jsonCodec.decode(new Uint8Array(bytes))) as DecodeError
      expect(error).toBeInstanceOf(DecodeError)
      expect(error.cause).toBeInstanceOf(TypeError)
    }
  })

  it('rejects input that is not bytes or text', () => {
    expect(thrown(() => jsonCodec.decode('5' as unknown as Uint8Array))).toBeInstanceOf(DecodeError)
    expect(thrown(() => jsonCodec.decodeText(5 as unknown as string))).toBeInstanceOf(DecodeError)
  })

  it('never touches Object.prototype while decoding hostile keys', () => {
    const before = Object.getOwnPropertyNames(Object.prototype).sort()
    const hostile = [
      '{"__proto__":{"polluted":1}}',
      '{"a":1n,"__proto__":{"polluted":1}}'.replace('1n', '{"$t":"BigInt","v":"1"}'),
      '{"$t":"Object","v":{"$t":1,"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}}',
      '{"$t":"Map","v":[["__proto__",{"__proto__":{"polluted":1},"x":{"$t":"Undefined"}}]]}',
      '[{"__proto__":{"$t":"Set","v":[{"__proto__":{"polluted":1}}]}}]',
    ]
    for (const text of hostile) {
      const value = jsonCodec.decodeText(text)
      expect(reachableObjects(value).size).toBeGreaterThan(0)
      for (const object of reachableObjects(value)) {
        if (object instanceof Map || object instanceof Set || Array.isArray(object)) continue
        expect(Object.getPrototypeOf(object)).toBe(Object.prototype)
      }
    }
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(before)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false)
  })
})

describe('jsonCodec: properties over arbitrary values of every supported type', () => {
  it('decode(encode(x)) equals x, type for type (valuesEqual)', () => {
    fc.assert(
      fc.property(valueArb(), (value) => {
        expect(valuesEqual(roundTrip(value), value)).toBe(true)
        expect(valuesEqual(roundTripText(value), value)).toBe(true)
      }),
      { numRuns: 3000 },
    )
  })

  it('decode(encode(x)) is deep-strict-equal to x (node:util), without invalid Dates', () => {
    fc.assert(
      fc.property(valueArb(false), (value) => {
        expect(isDeepStrictEqual(roundTrip(value), value)).toBe(true)
      }),
      { numRuns: 3000 },
    )
  })

  it('encodedSize(x) is the byte length of encode(x) and the text is valid JSON', () => {
    fc.assert(
      fc.property(valueArb(), (value) => {
        const text = jsonCodec.encodeText(value)
        expect(jsonCodec.encodedSize(value)).toBe(jsonCodec.encode(value).byteLength)
        expect(() => JSON.parse(text) as unknown).not.toThrow()
      }),
      { numRuns: 1000 },
    )
  })

  it('encoding is injective: different canonical forms never share an encoding', () => {
    let equalPairs = 0
    fc.assert(
      fc.property(smallValueArb, smallValueArb, (a, b) => {
        const sameValue = canonicalize(a) === canonicalize(b)
        const sameText = jsonCodec.encodeText(a) === jsonCodec.encodeText(b)
        if (sameValue) equalPairs++
        // Equal values may differ in text only by key or entry order.
        if (!sameValue) expect(sameText).toBe(false)
        if (sameText) expect(sameValue).toBe(true)
      }),
      { numRuns: 10_000 },
    )
    // The small domain must actually produce equal pairs for the implication to be tested.
    expect(equalPairs).toBeGreaterThan(100)
  })

  it('encoding is injective over hand-picked look-alikes', () => {
    const lookAlikes: unknown[] = [
      0,
      -0,
      NaN,
      '0',
      '-0',
      'NaN',
      0n,
      1,
      '1',
      1n,
      null,
      'null',
      true,
      'true',
      '',
      [],
      {},
      [undefined],
      [null],
      new Array(1),
      [[]],
      new Set(),
      new Map(),
      new Set([undefined]),
      new Uint8Array([1]),
      Buffer.from([1]),
      [1],
      new Set([1]),
      new Map([[1, 1]]),
      [[1, 1]],
      new Date(0),
      '1970-01-01T00:00:00.000Z',
      { $t: 'Date', v: '1970-01-01T00:00:00.000Z' },
      { $t: 'Undefined' },
      { $t: 'Number', v: 'NaN' },
      { $t: 'Number', v: '-0' },
      { $t: 'Object', v: { $t: 'x' } },
      { $t: 'x' },
      { v: 1 },
      { $t: 'Set', v: [] },
      new Date(NaN),
      { $t: 'Date', v: null },
      [{ $t: 'Undefined' }],
      { a: undefined },
      { a: null },
      objectOf([['__proto__', 1]]),
      { proto: 1 },
      { $t: 'SparseArray', v: { length: 1, items: {} } },
    ]
    const texts = lookAlikes.map((value) => jsonCodec.encodeText(value))
    const forms = lookAlikes.map((value) => canonicalize(value))
    expect(new Set(texts).size).toBe(lookAlikes.length)
    expect(new Set(forms).size).toBe(lookAlikes.length)
  })

  it('copyValue(x) equals x and shares no object or byte storage with it', () => {
    fc.assert(
      fc.property(valueArb(), (value) => {
        const copy = copyValue(value)
        expect(valuesEqual(copy, value)).toBe(true)
        const original = reachableObjects(value)
        for (const object of reachableObjects(copy)) expect(original.has(object)).toBe(false)
      }),
      { numRuns: 3000 },
    )
  })

  it('copyValue(x) is deep-strict-equal to x (node:util), without invalid Dates', () => {
    fc.assert(
      fc.property(valueArb(false), (value) => {
        expect(isDeepStrictEqual(copyValue(value), value)).toBe(true)
      }),
      { numRuns: 1000 },
    )
  })

  it('canonicalize ignores object key order and Map/Set insertion order', () => {
    fc.assert(
      fc.property(valueArb(), (value) => {
        const other = reversed(value)
        expect(canonicalize(other)).toBe(canonicalize(value))
        expect(valuesEqual(other, value)).toBe(true)
      }),
      { numRuns: 2000 },
    )
  })

  it('canonical equality agrees with node:util deep strict equality, without invalid Dates', () => {
    fc.assert(
      fc.property(smallValueArb, smallValueArb, (a, b) => {
        const objects = [...reachableObjects([a, b])]
        fc.pre(!objects.some((o) => o instanceof Date && Number.isNaN(o.getTime())))
        expect(valuesEqual(a, b)).toBe(isDeepStrictEqual(a, b))
      }),
      { numRuns: 5000 },
    )
  })

  it('freezeValue freezes every plain object and array and reports whether that suffices', () => {
    fc.assert(
      fc.property(valueArb(), (value) => {
        const copy = copyValue(value)
        const immutable = freezeValue(copy)
        expect(immutable).toBe(!containsMutableBuiltIn(copy))
        expect(everyPlainContainerFrozen(copy)).toBe(true)
        expect(valuesEqual(copy, value)).toBe(true)
      }),
      { numRuns: 1000 },
    )
  })
})

describe('copyValue', () => {
  it('copies every container and keeps each type', () => {
    const value = {
      list: [1, { a: 2 }],
      when: new Date(5),
      map: new Map([[{ k: 1 }, [1]]]),
      set: new Set([{ m: 1 }]),
      bytes: new Uint8Array([1, 2]),
      buffer: Buffer.from('hi'),
      // eslint-disable-next-line no-sparse-arrays
      holes: [, 1, ,],
    }
    const copy = copyValue(value)
    expect(copy).not.toBe(value)
    expect(copy.list).not.toBe(value.list)
    expect(copy.when).toBeInstanceOf(Date)
    expect(copy.when).not.toBe(value.when)
    expect(copy.map).toBeInstanceOf(Map)
    expect([...copy.map.keys()][0]).not.toBe([...value.map.keys()][0])
    expect(copy.set).toBeInstanceOf(Set)
    expect(copy.bytes.constructor).toBe(Uint8Array)
    expect(Buffer.isBuffer(copy.buffer)).toBe(true)
    expect(copy.buffer.buffer.byteLength).toBe(2)
    expect(Object.keys(copy.holes)).toEqual(['1'])
    expect(copy.holes).toHaveLength(3)
    expect(isDeepStrictEqual(copy, value)).toBe(true)
  })

  it('isolates the copy: mutating it leaves the original untouched', () => {
    const value = { list: [1], nested: { n: 1 }, when: new Date(0), bytes: Buffer.from([1]) }
    const copy = copyValue(value)
    copy.list.push(2)
    copy.nested.n = 2
    copy.when.setTime(99)
    copy.bytes[0] = 9
    expect(value).toEqual({
      list: [1],
      nested: { n: 1 },
      when: new Date(0),
      bytes: Buffer.from([1]),
    })
  })

  it('keeps __proto__ keys as own properties without changing the prototype', () => {
    const copy = copyValue(objectOf([['__proto__', { evil: true }]]))
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype)
    expect(Object.keys(copy)).toEqual(['__proto__'])
    expect(copy.evil).toBeUndefined()
  })

  it('returns primitives as they are', () => {
    for (const value of [1, -0, NaN, 'x', 1n, null, undefined, true]) {
      expect(Object.is(copyValue(value), value)).toBe(true)
    }
  })

  it('gives null-prototype objects an ordinary prototype, as a codec round trip does', () => {
    const copy = copyValue(Object.assign(Object.create(null) as object, { a: 1 }))
    expect(Object.getPrototypeOf(copy)).toBe(Object.prototype)
    expect(copy).toEqual({ a: 1 })
  })

  it('rejects an object the codec would reject rather than sharing it', () => {
    expect(thrown(() => copyValue({ e: new Error('x') }))).toBeInstanceOf(UnsupportedValueError)
  })
})

describe('freezeValue', () => {
  it('deep-freezes plain objects and arrays and reports them immutable', () => {
    const value = { a: [1, { b: 2 }], c: { d: 'x' } }
    expect(freezeValue(value)).toBe(true)
    expect(Object.isFrozen(value)).toBe(true)
    expect(Object.isFrozen(value.a)).toBe(true)
    expect(Object.isFrozen(value.a[1])).toBe(true)
    expect(Object.isFrozen(value.c)).toBe(true)
    expect(() => {
      value.c.d = 'y'
    }).toThrow(TypeError)
  })

  it('reports primitives immutable', () => {
    for (const value of [1, 'x', null, undefined, 1n, NaN]) expect(freezeValue(value)).toBe(true)
  })

  it('reports Map, Set, Date and byte arrays as needing a copy on read, yet freezes the rest', () => {
    for (const mutable of [new Map(), new Set(), new Date(0), new Uint8Array(1), Buffer.alloc(1)]) {
      expect(freezeValue(mutable)).toBe(false)
      const value = { plain: { a: 1 }, list: [mutable] }
      expect(freezeValue(value)).toBe(false)
      expect(Object.isFrozen(value.plain)).toBe(true)
      expect(Object.isFrozen(value.list)).toBe(true)
    }
  })

  it('freezes sparse arrays and the objects after their holes', () => {
    const sparse: unknown[] = []
    sparse[3] = { late: true }
    expect(freezeValue(sparse)).toBe(true)
    expect(Object.isFrozen(sparse[3])).toBe(true)
    const withMap: unknown[] = []
    withMap[5] = new Map()
    expect(freezeValue(withMap)).toBe(false)
  })
})

describe('canonicalize and valuesEqual', () => {
  it('ignores object key order', () => {
    expect(canonicalize({ a: 1, b: 2 })).toBe(canonicalize({ b: 2, a: 1 }))
    expect(valuesEqual({ a: 1, b: { c: [1], d: 2 } }, { b: { d: 2, c: [1] }, a: 1 })).toBe(true)
  })

  it('ignores Map and Set insertion order', () => {
    expect(
      valuesEqual(
        new Map<unknown, unknown>([
          ['a', 1],
          [{ k: 1 }, 2],
        ]),
        new Map<unknown, unknown>([
          [{ k: 1 }, 2],
          ['a', 1],
        ]),
      ),
    ).toBe(true)
    expect(valuesEqual(new Set([1, 'x', { a: 1 }]), new Set([{ a: 1 }, 'x', 1]))).toBe(true)
  })

  it('keeps types apart', () => {
    const distinct: unknown[] = [
      1,
      1n,
      '1',
      true,
      'true',
      null,
      undefined,
      'u',
      'n',
      new Uint8Array([1]),
      Buffer.from([1]),
      [1],
      new Set([1]),
      new Date(1),
      { 0: 1 },
      new Map([[0, 1]]),
      [undefined],
      new Array(1),
      [null],
    ]
    for (const [i, a] of distinct.entries()) {
      for (const [j, b] of distinct.entries()) {
        expect(valuesEqual(a, b)).toBe(i === j)
        expect(canonicalize(a) === canonicalize(b)).toBe(i === j)
      }
    }
  })

  it('treats NaN as equal to NaN and -0 as different from 0, at any depth', () => {
    expect(valuesEqual(NaN, NaN)).toBe(true)
    expect(valuesEqual([NaN], [NaN])).toBe(true)
    expect(valuesEqual(-0, 0)).toBe(false)
    expect(valuesEqual({ a: -0 }, { a: 0 })).toBe(false)
    expect(valuesEqual(new Date(NaN), new Date(NaN))).toBe(true)
  })

  it('compares Maps as multisets of entries, even with look-alike object keys', () => {
    const twoKeys = new Map([
      [{ a: 1 }, 1],
      [{ a: 1 }, 1],
    ])
    const oneKey = new Map([[{ a: 1 }, 1]])
    expect(valuesEqual(twoKeys, oneKey)).toBe(false)
    expect(valuesEqual(twoKeys, copyValue(twoKeys))).toBe(true)
  })

  it('keeps a stable, documented-by-test text form for hashing', () => {
    expect(canonicalize({ b: [1, 'x', undefined], a: null, c: 2n })).toBe(
      '{"a":n,"b":[d1,"x",u],"c":b2}',
    )
    expect(canonicalize(new Map([['k', new Set([2, 1])]]))).toBe('M{"k":S{d1,d2}}')
    // eslint-disable-next-line no-sparse-arrays
    expect(canonicalize([, -0, ,])).toBe('H3[1:d-0]')
    expect(canonicalize([new Date(0), new Uint8Array([1]), Buffer.from([1])])).toBe(
      '[D0,UAQ==,BAQ==]',
    )
  })

  it('compares primitives without building text, including a top-level undefined', () => {
    expect(valuesEqual(undefined, undefined)).toBe(true)
    expect(valuesEqual(undefined, null)).toBe(false)
    expect(valuesEqual('a', 'a')).toBe(true)
    expect(valuesEqual(1n, 1n)).toBe(true)
    expect(valuesEqual(1, { a: 1 })).toBe(false)
    expect(canonicalize(undefined)).toBe('u')
  })
})
