/**
 * The default value codec and the value helpers built on the same type rules.
 *
 * Encoding format (`jsonCodec`): JSON-compatible data is written as plain JSON, so what
 * `redis-cli GET` shows is what was stored. Everything else becomes a tagged object
 * `{"$t":"<Tag>","v":<payload>}`:
 *
 * | value                      | encoded as                                                     |
 * | -------------------------- | -------------------------------------------------------------- |
 * | `-0`, `NaN`, `±Infinity`   | `{"$t":"Number","v":"-0"}` (`"NaN"`, `"Infinity"`, `"-Infinity"`) |
 * | `12n`                      | `{"$t":"BigInt","v":"12"}`                                     |
 * | `Date`                     | `{"$t":"Date","v":"2024-05-01T10:00:00.000Z"}` (invalid: `null`) |
 * | `Map`                      | `{"$t":"Map","v":[["a",1],[2,{"$t":"Undefined"}]]}`            |
 * | `Set`                      | `{"$t":"Set","v":["a",1]}`                                     |
 * | `Uint8Array` / `Buffer`    | `{"$t":"Uint8Array","v":"AQID"}` / `{"$t":"Buffer","v":"AQID"}` |
 * | `undefined` in a container | `{"$t":"Undefined"}`                                           |
 * | array with holes           | `{"$t":"SparseArray","v":{"length":3,"items":{"1":"x"}}}`      |
 * | object with own key `$t`   | `{"$t":"Object","v":{"$t":"mine","a":1}}` (keys of `v` literal) |
 *
 * Every tagged object has exactly the keys `$t` and (except `Undefined`) `v`, and a plain object
 * that owns a `$t` key is always wrapped, which keeps the encoding injective.
 */
import { Buffer } from 'node:buffer'
import { types } from 'node:util'
import { DecodeError, UnsupportedValueError } from '../errors.js'
import type { Codec } from '../types/codec.js'

/**
 * Deepest nesting of containers (arrays, plain objects, Maps, Sets) a value may have; the
 * outermost container is level 1. Deeper values are rejected with `UnsupportedValueError`.
 */
export const MAX_DEPTH = 1000

/** The default codec plus its text form, which is what the byte form carries as UTF-8. */
export interface JsonCodec extends Codec {
  /**
   * Encodes a value to JSON text (see the module documentation for the format). Throws
   * `UnsupportedValueError` (`E_UNSUPPORTED_VALUE`) for values the cache cannot store.
   */
  encodeText(value: unknown): string
  /** Decodes text produced by `encodeText`. Throws `DecodeError` (`E_DECODE`) on anything else. */
  decodeText(text: string): unknown
}

// ---------------------------------------------------------------------------------------------
// Classification shared by the encoder, copyValue, freezeValue and canonicalize

const K_PLAIN = 0
const K_ARRAY = 1
const K_DATE = 2
const K_MAP = 3
const K_SET = 4
const K_BYTES = 5
const K_BUFFER = 6
const K_OTHER = 7
type Kind = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7

/**
 * Prototype identity first: it is one load and a few compares, and it is what rules out
 * subclasses (whose extra state or behaviour would be lost). The brand checks then reject
 * impostors such as `Object.create(Date.prototype)`.
 */
function kindOf(value: object): Kind {
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto === Object.prototype || proto === null) return Array.isArray(value) ? K_OTHER : K_PLAIN
  if (proto === Array.prototype) return Array.isArray(value) ? K_ARRAY : K_OTHER
  if (proto === Date.prototype) return types.isDate(value) ? K_DATE : K_OTHER
  if (proto === Map.prototype) return types.isMap(value) ? K_MAP : K_OTHER
  if (proto === Set.prototype) return types.isSet(value) ? K_SET : K_OTHER
  if (proto === Uint8Array.prototype) return types.isUint8Array(value) ? K_BYTES : K_OTHER
  if (proto === Buffer.prototype) return types.isUint8Array(value) ? K_BUFFER : K_OTHER
  return K_OTHER
}

/** Finite and not -0: the numbers JSON writes back exactly. */
function isJsonNumber(value: number): boolean {
  // value - value is NaN for NaN and ±Infinity; 1 / -0 is -Infinity.
  return value - value === 0 && (value !== 0 || 1 / value > 0)
}

const INDEX_KEY = /^(?:0|[1-9]\d*)$/

function isHole(array: readonly unknown[], index: number): boolean {
  // Object.hasOwn, not `in`: an index inherited from a polluted Array.prototype is still a hole.
  return !Object.hasOwn(array, index)
}

/** Own array indices in ascending order, without visiting every slot of a huge sparse array. */
function ownIndices(array: readonly unknown[]): number[] {
  const indices: number[] = []
  for (const key of Object.keys(array)) {
    // Named properties on arrays are ignored, as JSON.stringify ignores them.
    if (INDEX_KEY.test(key)) {
      const index = Number(key)
      if (index < array.length) indices.push(index)
    }
  }
  return indices
}

function bytesToBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
}

/**
 * An unpooled Buffer: small `Buffer.from` results are slices of a shared 8 KiB slab, and a cached
 * value must neither pin that slab nor expose its neighbours through `.buffer`.
 */
function ownBuffer(bytes: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength)
  copy.set(bytes)
  return copy
}

function copyBytes(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes)
}

// ---------------------------------------------------------------------------------------------
// Paths and rejection messages

class EntrySegment {
  constructor(
    readonly role: 'key' | 'value' | 'member',
    readonly index: number,
    readonly key: unknown,
  ) {}
}

/** Where a value sits in its parent: object key, array index, Map/Set entry, or `null` (root). */
type Segment = string | number | EntrySegment | null

/** State of one validating walk; a fresh one per call keeps re-entrant calls (from getters) safe. */
interface Walk {
  /** Segments of the containers being visited, outermost first. */
  readonly path: Segment[]
  /** The containers being visited, parallel to `path`, for cycle detection. */
  readonly ancestors: object[]
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/

function renderSegment(segment: Segment): string {
  if (segment === null) return ''
  if (typeof segment === 'number') return `[${segment}]`
  if (typeof segment === 'string') {
    return IDENTIFIER.test(segment) ? `.${segment}` : `[${JSON.stringify(segment)}]`
  }
  if (segment.role === 'member') return `<Set member #${segment.index}>`
  if (segment.role === 'key') return `<Map key #${segment.index}>`
  const key = segment.key
  switch (typeof key) {
    case 'string':
      return `.get(${JSON.stringify(key)})`
    case 'number':
    case 'boolean':
    case 'undefined':
      return `.get(${String(key)})`
    case 'bigint':
      return `.get(${key}n)`
    default:
      return key === null ? '.get(null)' : `<Map value #${segment.index}>`
  }
}

function renderPath(path: readonly Segment[], count: number, leaf: Segment): string {
  let out = 'value'
  for (let i = 0; i < count; i++) out += renderSegment(path[i] ?? null)
  return out + renderSegment(leaf)
}

function reject(walk: Walk, segment: Segment, problem: string): never {
  throw new UnsupportedValueError(`${renderPath(walk.path, walk.path.length, segment)} ${problem}`)
}

function describeInstance(value: object): string {
  let name = ''
  try {
    const proto: unknown = Object.getPrototypeOf(value)
    const ctor: unknown =
      typeof proto === 'object' && proto !== null ? Reflect.get(proto, 'constructor') : undefined
    if (typeof ctor === 'function' && ctor.name !== '') name = ctor.name
  } catch {
    // A hostile proxy or getter: fall back to the brand below.
  }
  if (name === '') name = Object.prototype.toString.call(value).slice(8, -1)
  if (types.isTypedArray(value) || types.isAnyArrayBuffer(value) || types.isDataView(value)) {
    return `is a ${name}; only Uint8Array and Buffer are supported among binary types — convert it to a Uint8Array (or a plain array of numbers) first`
  }
  if (types.isPromise(value)) {
    return 'is a Promise; await it and store the resolved value instead'
  }
  return `is an instance of ${name}; only plain objects, arrays, Date, Map, Set, Uint8Array and Buffer can be stored — store its data as a plain object and rebuild the ${name} after reading`
}

function rejectLeaf(walk: Walk, segment: Segment, value: unknown): never {
  if (typeof value === 'function') {
    return reject(
      walk,
      segment,
      'is a function; store plain data and recreate behaviour after reading it',
    )
  }
  if (typeof value === 'symbol') {
    return reject(walk, segment, 'is a symbol; symbols cannot be stored — use a string instead')
  }
  return reject(walk, segment, describeInstance(value as object))
}

/** Depth and cycle checks, then records the container on the walk's stack. */
function enter(walk: Walk, container: object, segment: Segment, depth: number): void {
  if (depth > MAX_DEPTH) {
    reject(
      walk,
      segment,
      `is nested more than ${MAX_DEPTH} levels deep; flatten the value or split it across several keys`,
    )
  }
  // Linear search: ancestor stacks are short for real data, and a Set would cost more per object.
  const at = walk.ancestors.indexOf(container)
  if (at !== -1) {
    reject(
      walk,
      segment,
      `refers back to ${renderPath(walk.path, at, walk.path[at] ?? null)}, which contains it (a cycle); store a tree instead — replace the back-reference with an id`,
    )
  }
  walk.path.push(segment)
  walk.ancestors.push(container)
}

function leave(walk: Walk): void {
  walk.path.pop()
  walk.ancestors.pop()
}

function checkSymbolKeys(walk: Walk, object: object): void {
  const symbols = Object.getOwnPropertySymbols(object)
  if (symbols.length === 0) return
  // The object itself is on the stack already, so the path names it.
  const segment = walk.path.pop() ?? null
  walk.ancestors.pop()
  reject(
    walk,
    segment,
    `has a symbol key (${String(symbols[0])}); symbol-keyed properties cannot be stored — use a string key`,
  )
}

function newWalk(): Walk {
  return { path: [], ancestors: [] }
}

// ---------------------------------------------------------------------------------------------
// Encoding

const TAG = '$t'

interface Tagged {
  $t: string
  v?: unknown
}

const UNDEFINED_TAG: Tagged = Object.freeze({ $t: 'Undefined' })
const NEGATIVE_ZERO_TAG: Tagged = Object.freeze({ $t: 'Number', v: '-0' })
const NAN_TAG: Tagged = Object.freeze({ $t: 'Number', v: 'NaN' })
const INFINITY_TAG: Tagged = Object.freeze({ $t: 'Number', v: 'Infinity' })
const NEGATIVE_INFINITY_TAG: Tagged = Object.freeze({ $t: 'Number', v: '-Infinity' })

function numberTag(value: number): Tagged {
  if (value !== value) return NAN_TAG
  if (value === Infinity) return INFINITY_TAG
  if (value === -Infinity) return NEGATIVE_INFINITY_TAG
  return NEGATIVE_ZERO_TAG
}

/**
 * Validates `value` and returns its JSON-ready form. The result is `value` itself whenever
 * `JSON.stringify(value)` already yields the right text, so plain JSON data costs one read-only
 * walk and no allocation besides `Object.keys`; containers are copied lazily, only from the
 * first child that needs a tag.
 */
function toJson(value: unknown, walk: Walk, segment: Segment, depth: number): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      return isJsonNumber(value) ? value : numberTag(value)
    case 'undefined':
      return UNDEFINED_TAG
    case 'bigint':
      return { $t: 'BigInt', v: value.toString() }
    case 'function':
    case 'symbol':
      return rejectLeaf(walk, segment, value)
  }
  if (value === null) return null
  const object = value as object
  switch (kindOf(object)) {
    case K_PLAIN:
      return plainToJson(object as Record<string, unknown>, walk, segment, depth)
    case K_ARRAY:
      return arrayToJson(object as unknown[], walk, segment, depth)
    case K_DATE: {
      const time = (object as Date).getTime()
      return { $t: 'Date', v: time === time ? (object as Date).toISOString() : null }
    }
    case K_MAP:
      return mapToJson(object as Map<unknown, unknown>, walk, segment, depth)
    case K_SET:
      return setToJson(object as Set<unknown>, walk, segment, depth)
    case K_BYTES:
      return { $t: 'Uint8Array', v: bytesToBase64(object as Uint8Array) }
    case K_BUFFER:
      return { $t: 'Buffer', v: bytesToBase64(object as Uint8Array) }
    default:
      return rejectLeaf(walk, segment, object)
  }
}

/** Inline check for the children JSON.stringify writes as they are, to skip a call per leaf. */
function isPlainLeaf(value: unknown): boolean {
  return (
    typeof value === 'string' ||
    typeof value === 'boolean' ||
    value === null ||
    (typeof value === 'number' && isJsonNumber(value))
  )
}

function plainToJson(
  object: Record<string, unknown>,
  walk: Walk,
  segment: Segment,
  depth: number,
): unknown {
  enter(walk, object, segment, depth)
  checkSymbolKeys(walk, object)
  const keys = Object.keys(object)
  let out: Record<string, unknown> | undefined
  let ownsTag = false
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string
    if (key === TAG) ownsTag = true
    const child = object[key]
    const encoded = isPlainLeaf(child) ? child : toJson(child, walk, key, depth + 1)
    if (out === undefined && encoded !== child) {
      // Null prototype: assigning a `__proto__` key must create a property, not set a prototype.
      out = Object.create(null) as Record<string, unknown>
      for (let j = 0; j < i; j++) {
        const previous = keys[j] as string
        out[previous] = object[previous]
      }
    }
    if (out !== undefined) out[key] = encoded
  }
  leave(walk)
  const result = out ?? object
  return ownsTag ? { $t: 'Object', v: result } : result
}

function arrayToJson(array: unknown[], walk: Walk, segment: Segment, depth: number): unknown {
  enter(walk, array, segment, depth)
  const length = array.length
  let out: unknown[] | undefined
  for (let i = 0; i < length; i++) {
    const child = array[i]
    let encoded: unknown = child
    if (child === undefined) {
      if (isHole(array, i)) {
        leave(walk)
        return sparseToJson(array, walk, segment, depth)
      }
      encoded = UNDEFINED_TAG
    } else if (!isPlainLeaf(child)) {
      encoded = toJson(child, walk, i, depth + 1)
    }
    if (out === undefined && encoded !== child) out = array.slice(0, i)
    if (out !== undefined) out.push(encoded)
  }
  leave(walk)
  return out ?? array
}

function sparseToJson(array: unknown[], walk: Walk, segment: Segment, depth: number): unknown {
  enter(walk, array, segment, depth)
  const items = Object.create(null) as Record<string, unknown>
  for (const index of ownIndices(array)) {
    items[index] = toJson(array[index], walk, index, depth + 1)
  }
  leave(walk)
  return { $t: 'SparseArray', v: { length: array.length, items } }
}

function mapToJson(
  map: Map<unknown, unknown>,
  walk: Walk,
  segment: Segment,
  depth: number,
): unknown {
  enter(walk, map, segment, depth)
  const pairs: unknown[] = []
  let index = 0
  for (const [key, child] of map) {
    pairs.push([
      toJson(key, walk, new EntrySegment('key', index, key), depth + 1),
      toJson(child, walk, new EntrySegment('value', index, key), depth + 1),
    ])
    index++
  }
  leave(walk)
  return { $t: 'Map', v: pairs }
}

function setToJson(set: Set<unknown>, walk: Walk, segment: Segment, depth: number): unknown {
  enter(walk, set, segment, depth)
  const members: unknown[] = []
  let index = 0
  for (const member of set) {
    members.push(toJson(member, walk, new EntrySegment('member', index, member), depth + 1))
    index++
  }
  leave(walk)
  return { $t: 'Set', v: members }
}

function encodeText(value: unknown): string {
  // Top-level scalars skip the walk entirely: they are the most common small cache values.
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      if (isJsonNumber(value)) return String(value)
      break
    case 'boolean':
      return value ? 'true' : 'false'
    case 'undefined':
      throw new UnsupportedValueError(
        'value is undefined; undefined cannot be stored as a whole value — use delete() to remove an entry, or store null',
      )
  }
  if (value === null) return 'null'
  const json = toJson(value, newWalk(), null, 1)
  try {
    return JSON.stringify(json)
  } catch (error) {
    // Tags add JSON levels (a Map adds three), so a value within MAX_DEPTH can still exhaust
    // the native serialiser's stack when the caller is itself deep in recursion.
    if (error instanceof RangeError) {
      throw new UnsupportedValueError(
        'value is nested too deeply to serialise on the current call stack; flatten the value or split it across several keys',
        { cause: error },
      )
    }
    throw error
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

const TAG_MARKER = '"$t"'
const BIGINT_TEXT = /^(?:0|-?[1-9]\d*)$/
const BASE64_TEXT = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const NUMBER_PAYLOADS: Readonly<Record<string, number>> = Object.assign(Object.create(null), {
  '-0': -0,
  NaN: NaN,
  Infinity: Infinity,
  '-Infinity': -Infinity,
}) as Record<string, number>

function corrupt(problem: string, cause?: unknown): DecodeError {
  return new DecodeError(
    `stored value ${problem}; it was not written by flowcache's json codec or is corrupt`,
    cause === undefined ? undefined : { cause },
  )
}

function badTag(tag: string, problem: string): DecodeError {
  return corrupt(`has an invalid ${JSON.stringify(tag)} tag (${problem})`)
}

function checkDecodeDepth(depth: number): void {
  if (depth > MAX_DEPTH) throw corrupt(`is nested more than ${MAX_DEPTH} levels deep`)
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    })
  } else {
    target[key] = value
  }
}

/**
 * Rebuilds tagged values in the freshly parsed tree, in place: the tree is ours alone, and
 * JSON.parse has already created every key (`__proto__` included) as an own data property.
 */
function revive(node: unknown, depth: number): unknown {
  if (typeof node !== 'object' || node === null) return node
  if (Array.isArray(node)) {
    checkDecodeDepth(depth)
    const array = node as unknown[]
    for (let i = 0; i < array.length; i++) {
      const child = array[i]
      if (typeof child === 'object' && child !== null) {
        const revived = revive(child, depth + 1)
        if (revived !== child) array[i] = revived
      }
    }
    return array
  }
  const record = node as Record<string, unknown>
  if (Object.hasOwn(record, TAG)) return reviveTagged(record, depth)
  checkDecodeDepth(depth)
  reviveProperties(record, depth)
  return record
}

function reviveProperties(record: Record<string, unknown>, depth: number): void {
  for (const key of Object.keys(record)) {
    const child = record[key]
    if (typeof child === 'object' && child !== null) {
      const revived = revive(child, depth + 1)
      if (revived !== child) setOwn(record, key, revived)
    }
  }
}

function reviveTagged(record: Record<string, unknown>, depth: number): unknown {
  const tag = record[TAG]
  if (typeof tag !== 'string') throw corrupt('has a "$t" key whose value is not a string')
  const hasPayload = Object.hasOwn(record, 'v')
  if (Object.keys(record).length !== (hasPayload ? 2 : 1)) {
    throw badTag(tag, 'a tagged object has only the keys "$t" and "v"')
  }
  if (tag === 'Undefined') {
    if (hasPayload) throw badTag(tag, 'unexpected payload')
    return undefined
  }
  if (!hasPayload) throw badTag(tag, 'missing payload "v"')
  const payload = record.v
  switch (tag) {
    case 'Number': {
      const number = typeof payload === 'string' ? NUMBER_PAYLOADS[payload] : undefined
      if (number === undefined) throw badTag(tag, 'expected "-0", "NaN", "Infinity" or "-Infinity"')
      return number
    }
    case 'BigInt':
      if (typeof payload !== 'string' || !BIGINT_TEXT.test(payload)) {
        throw badTag(tag, 'expected a decimal integer string')
      }
      return BigInt(payload)
    case 'Date': {
      if (payload === null) return new Date(NaN)
      const date = typeof payload === 'string' ? new Date(payload) : undefined
      if (date === undefined || Number.isNaN(date.getTime()) || date.toISOString() !== payload) {
        throw badTag(tag, 'expected an ISO 8601 string from Date#toISOString, or null')
      }
      return date
    }
    case 'Uint8Array': {
      const bytes = bytesFromBase64(tag, payload)
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    }
    case 'Buffer':
      return bytesFromBase64(tag, payload)
    case 'Map':
      return reviveMap(payload, depth)
    case 'Set':
      return reviveSet(payload, depth)
    case 'SparseArray':
      return reviveSparse(payload, depth)
    case 'Object':
      if (!isRecord(payload) || !Object.hasOwn(payload, TAG)) {
        throw badTag(tag, 'expected an object that has a "$t" key')
      }
      checkDecodeDepth(depth)
      reviveProperties(payload, depth)
      return payload
    default:
      throw corrupt(`has an unknown tag ${JSON.stringify(tag)}`)
  }
}

function bytesFromBase64(tag: string, payload: unknown): Buffer {
  if (typeof payload !== 'string' || !BASE64_TEXT.test(payload)) {
    throw badTag(tag, 'expected padded base64')
  }
  const length = Buffer.byteLength(payload, 'base64')
  // Unpooled, for the reason given at ownBuffer.
  const bytes = Buffer.allocUnsafeSlow(length)
  if (bytes.write(payload, 0, length, 'base64') !== length) throw badTag(tag, 'truncated base64')
  return bytes
}

function reviveMap(payload: unknown, depth: number): Map<unknown, unknown> {
  if (!Array.isArray(payload)) throw badTag('Map', 'expected an array of [key, value] pairs')
  checkDecodeDepth(depth)
  const map = new Map<unknown, unknown>()
  for (const pair of payload as unknown[]) {
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw badTag('Map', 'expected an array of [key, value] pairs')
    }
    const [key, value] = pair as [unknown, unknown]
    map.set(revive(key, depth + 1), revive(value, depth + 1))
  }
  if (map.size !== payload.length) throw badTag('Map', 'duplicate keys')
  return map
}

function reviveSet(payload: unknown, depth: number): Set<unknown> {
  if (!Array.isArray(payload)) throw badTag('Set', 'expected an array of members')
  checkDecodeDepth(depth)
  const set = new Set<unknown>()
  for (const member of payload as unknown[]) set.add(revive(member, depth + 1))
  if (set.size !== payload.length) throw badTag('Set', 'duplicate members')
  return set
}

function reviveSparse(payload: unknown, depth: number): unknown[] {
  const shape =
    'expected {"length": <array length>, "items": {<index>: <value>}} with at least one hole'
  if (!isRecord(payload) || Object.keys(payload).length !== 2) throw badTag('SparseArray', shape)
  const { length, items } = payload
  if (
    typeof length !== 'number' ||
    !Number.isInteger(length) ||
    length < 0 ||
    length > 2 ** 32 - 1
  ) {
    throw badTag('SparseArray', shape)
  }
  if (!isRecord(items)) throw badTag('SparseArray', shape)
  checkDecodeDepth(depth)
  const keys = Object.keys(items)
  if (keys.length >= length) throw badTag('SparseArray', shape)
  const array = new Array<unknown>(length)
  for (const key of keys) {
    const index = Number(key)
    if (!INDEX_KEY.test(key) || index >= length) throw badTag('SparseArray', shape)
    array[index] = revive(items[key], depth + 1)
  }
  return array
}

function decodeText(text: string): unknown {
  if (typeof text !== 'string') throw corrupt('is not text')
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw corrupt(`is not valid JSON (${text.length} characters)`, error)
  }
  // No tag anywhere means the text was plain JSON data: JSON.parse already built the value.
  if (!text.includes(TAG_MARKER)) return parsed
  const value = revive(parsed, 1)
  if (value === undefined) throw corrupt('is a bare undefined tag, which encode never writes')
  return value
}

// ---------------------------------------------------------------------------------------------
// The codec

const utf8Decoder = new TextDecoder('utf-8', { fatal: true })

/**
 * The default codec (`name: 'json'`): readable JSON with `$t` tags for the types JSON lacks, so
 * every supported value round-trips with its type. `encode` returns an unpooled `Buffer` holding
 * exactly the UTF-8 of `encodeText`; `decode` rejects invalid UTF-8, JSON and tags with
 * `DecodeError`. Values nested deeper than {@link MAX_DEPTH} containers are rejected.
 */
export const jsonCodec: JsonCodec = Object.freeze({
  name: 'json',
  encodeText,
  decodeText,
  encode(value: unknown): Uint8Array {
    const text = encodeText(value)
    const length = Buffer.byteLength(text, 'utf8')
    // Unpooled and exact-size, so `.buffer` is exactly these bytes.
    const bytes = Buffer.allocUnsafeSlow(length)
    bytes.write(text, 0, length, 'utf8')
    return bytes
  },
  decode(bytes: Uint8Array): unknown {
    if (!types.isUint8Array(bytes)) throw corrupt('is not a Uint8Array')
    let text: string
    try {
      text = utf8Decoder.decode(bytes)
    } catch (error) {
      throw corrupt('is not valid UTF-8', error)
    }
    return decodeText(text)
  },
  encodedSize(value: unknown): number {
    return Buffer.byteLength(encodeText(value), 'utf8')
  },
})

// ---------------------------------------------------------------------------------------------
// copyValue

/**
 * Deep copy of a value the codec accepts, keeping every type (Buffer stays Buffer, holes stay
 * holes, Map/Set/Date/bytes are new instances), many times faster than encode + decode. Plain
 * objects are copied as ordinary objects (a null prototype is not kept, as after a round trip
 * through the codec); `__proto__` keys stay own properties. Byte arrays are copied into
 * unpooled memory. Validate first (`jsonCodec.encodedSize`): cycles are not detected here, and
 * an unsupported object throws `UnsupportedValueError`.
 */
export function copyValue<T>(value: T): T {
  return copyAny(value) as T
}

function copyAny(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value
  switch (kindOf(value)) {
    case K_PLAIN:
      return copyPlain(value as Record<string, unknown>)
    case K_ARRAY:
      return copyArray(value as unknown[])
    case K_DATE:
      return new Date((value as Date).getTime())
    case K_MAP: {
      const copy = new Map<unknown, unknown>()
      for (const [key, child] of value as Map<unknown, unknown>)
        copy.set(copyAny(key), copyAny(child))
      return copy
    }
    case K_SET: {
      const copy = new Set<unknown>()
      for (const member of value as Set<unknown>) copy.add(copyAny(member))
      return copy
    }
    case K_BYTES:
      return copyBytes(value as Uint8Array)
    case K_BUFFER:
      return ownBuffer(value as Uint8Array)
    default:
      throw new UnsupportedValueError(`value contains an object that ${describeInstance(value)}`)
  }
}

function copyPlain(source: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {}
  const keys = Object.keys(source)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string
    const child = source[key]
    setOwn(copy, key, typeof child === 'object' && child !== null ? copyAny(child) : child)
  }
  return copy
}

/** Longest array copied into exact-length storage; longer ones grow as they fill. */
const PREALLOCATE_MAX = 65_536

function copyArray(source: unknown[]): unknown[] {
  const length = source.length
  // Exact-length storage: growing by push leaves spare capacity in every stored copy (a
  // two-element array would keep room for seventeen), which the memory store pays per entry.
  const copy: unknown[] = length <= PREALLOCATE_MAX ? new Array<unknown>(length) : []
  for (let i = 0; i < length; i++) {
    const child = source[i]
    if (child === undefined && isHole(source, i)) return copySparse(source)
    copy[i] = typeof child === 'object' && child !== null ? copyAny(child) : child
  }
  return copy
}

function copySparse(source: unknown[]): unknown[] {
  const copy = new Array<unknown>(source.length)
  for (const index of ownIndices(source)) copy[index] = copyAny(source[index])
  return copy
}

// ---------------------------------------------------------------------------------------------
// freezeValue

/**
 * Deep-freezes, in place, every plain object and array in `value` (`Object.freeze`). Returns
 * `true` when the whole value is now immutable, `false` when it contains something freezing
 * cannot protect (Map, Set, Date, Uint8Array, Buffer), so the caller must copy on read instead.
 * Primitives return `true`. Meant for store-owned copies of validated values.
 */
export function freezeValue(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true
  const kind = kindOf(value)
  if (kind === K_PLAIN) {
    let immutable = true
    const record = value as Record<string, unknown>
    for (const key of Object.keys(record)) {
      const child = record[key]
      if (typeof child === 'object' && child !== null && !freezeValue(child)) immutable = false
    }
    Object.freeze(record)
    return immutable
  }
  if (kind === K_ARRAY) {
    let immutable = true
    const array = value as unknown[]
    const length = array.length
    for (let i = 0; i < length; i++) {
      const child = array[i]
      if (child === undefined && isHole(array, i)) {
        for (const index of ownIndices(array)) {
          if (index > i && !freezeValue(array[index])) immutable = false
        }
        break
      }
      if (typeof child === 'object' && child !== null && !freezeValue(child)) immutable = false
    }
    Object.freeze(array)
    return immutable
  }
  return false
}

// ---------------------------------------------------------------------------------------------
// canonicalize / valuesEqual

/**
 * A canonical text form of a value, injective over everything the codec accepts plus a
 * top-level `undefined`: equal forms mean type-aware deep equality. Object keys are sorted, Set
 * members and Map entries are sorted by their own canonical form, types are kept apart (`1`,
 * `1n`, `"1"`; Buffer, Uint8Array, array; `null`, `undefined`; hole, `undefined`), `NaN` equals
 * `NaN` and `-0` differs from `0`. Stable across processes, so it can be hashed. Not meant to be
 * parsed or shown; the format may change between major versions. Throws `UnsupportedValueError`
 * like the codec for values it cannot represent.
 */
export function canonicalize(value: unknown): string {
  return canon(value, newWalk(), null, 1)
}

function canon(value: unknown, walk: Walk, segment: Segment, depth: number): string {
  // Each form starts with a character that names its type, and containers are bracketed, so
  // the concatenations below can be read back unambiguously.
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value)
    case 'number':
      return Object.is(value, -0) ? 'd-0' : `d${value}`
    case 'boolean':
      return value ? 't' : 'f'
    case 'undefined':
      return 'u'
    case 'bigint':
      return `b${value}`
    case 'function':
    case 'symbol':
      return rejectLeaf(walk, segment, value)
  }
  if (value === null) return 'n'
  const object = value as object
  switch (kindOf(object)) {
    case K_PLAIN: {
      enter(walk, object, segment, depth)
      checkSymbolKeys(walk, object)
      const record = object as Record<string, unknown>
      const keys = Object.keys(record).sort()
      let out = '{'
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i] as string
        if (i > 0) out += ','
        out += `${JSON.stringify(key)}:${canon(record[key], walk, key, depth + 1)}`
      }
      leave(walk)
      return out + '}'
    }
    case K_ARRAY:
      return canonArray(object as unknown[], walk, segment, depth)
    case K_DATE:
      return `D${(object as Date).getTime()}`
    case K_MAP: {
      enter(walk, object, segment, depth)
      const entries: string[] = []
      let index = 0
      for (const [key, child] of object as Map<unknown, unknown>) {
        entries.push(
          `${canon(key, walk, new EntrySegment('key', index, key), depth + 1)}:${canon(child, walk, new EntrySegment('value', index, key), depth + 1)}`,
        )
        index++
      }
      leave(walk)
      return `M{${entries.sort().join(',')}}`
    }
    case K_SET: {
      enter(walk, object, segment, depth)
      const members: string[] = []
      let index = 0
      for (const member of object as Set<unknown>) {
        members.push(canon(member, walk, new EntrySegment('member', index, member), depth + 1))
        index++
      }
      leave(walk)
      return `S{${members.sort().join(',')}}`
    }
    case K_BYTES:
      return `U${bytesToBase64(object as Uint8Array)}`
    case K_BUFFER:
      return `B${bytesToBase64(object as Uint8Array)}`
    default:
      return rejectLeaf(walk, segment, object)
  }
}

function canonArray(array: unknown[], walk: Walk, segment: Segment, depth: number): string {
  enter(walk, array, segment, depth)
  const length = array.length
  let out = '['
  for (let i = 0; i < length; i++) {
    const child = array[i]
    if (child === undefined && isHole(array, i)) {
      // Holes get their own form; listing only the present indices keeps a huge sparse array
      // from costing its length.
      out = `H${length}[`
      let first = true
      for (const index of ownIndices(array)) {
        out += `${first ? '' : ','}${index}:${canon(array[index], walk, index, depth + 1)}`
        first = false
      }
      break
    }
    if (i > 0) out += ','
    out += canon(child, walk, i, depth + 1)
  }
  leave(walk)
  return out + ']'
}

/**
 * Type-aware deep equality of two cache values: `true` when {@link canonicalize} gives the
 * same form (key order, Map/Set insertion order do not matter; `NaN` equals `NaN`; `-0` is not
 * `0`). Primitives and identical references are compared without building any text.
 */
export function valuesEqual(a: unknown, b: unknown): boolean {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) {
    return Object.is(a, b)
  }
  if (a === b) return true
  return canonicalize(a) === canonicalize(b)
}
