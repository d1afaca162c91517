/**
 * How flowcache entries are laid out in a NATS JetStream KV bucket.
 *
 * - Subject: `$KV.<bucket>.<store key>`. Store keys from the keyspace already use only NATS KV's
 *   key alphabet (`[-/=.\w]`), so they are used as they are: `nats kv get <bucket> <store key>`
 *   finds them, and a namespace prefix is a run of whole subject tokens, which is what lets
 *   `list` filter on the server.
 * - Payload: the value bytes exactly as written (the cache's codec output, JSON text by default),
 *   so `nats kv get` and any other KV client read the value itself.
 * - Header `Flowcache-Expires-At`: the expiry deadline in ms since the epoch (decimal), present
 *   only on entries written with a TTL. It is the source of truth for expiry on every server
 *   version; see `nats stream get KV_<bucket> --last-for '$KV.<bucket>.<key>'` to read it.
 * - Deletes are KV `DEL` markers (`KV-Operation: DEL`). A marker flowcache writes because the
 *   entry's deadline passed also carries `Flowcache-Expired: <deadline>`.
 *
 * The deadline lives in a header rather than in an envelope around the value so that the stored
 * bytes stay the value (readable, and the same bytes other KV clients see), and so that scans
 * can check deadlines from headers alone (`headers_only` consumers) without moving any values.
 */
import { headers, type MsgHdrs } from '@nats-io/transport-node'

import { InvalidArgumentError, KeyTooLongError, ValueTooLargeError } from '../../errors.js'

/** Header holding an entry's expiry deadline, ms since the epoch. */
export const EXPIRES_HEADER = 'Flowcache-Expires-At'
/** Header on a delete marker written because the entry's deadline passed. */
export const EXPIRED_HEADER = 'Flowcache-Expired'
/** KV operation header of delete and purge markers (ADR-8). */
export const OPERATION_HEADER = 'KV-Operation'
/** Set by servers >= 2.11 on the marker left when a per-message TTL removes a key's last message. */
export const MARKER_REASON_HEADER = 'Nats-Marker-Reason'
/** Optimistic concurrency header: the write applies only if the subject's last sequence is this. */
export const EXPECTED_SEQUENCE_HEADER = 'Nats-Expected-Last-Subject-Sequence'
/** Added by the server to headers-only deliveries: the size of the payload left out. */
export const SIZE_HEADER = 'Nats-Msg-Size'
/** Per-message TTL of servers >= 2.11 (ADR-43). */
export const NATIVE_TTL_HEADER = 'Nats-TTL'

/** A KV key: tokens of `[-/=\w]` separated by single dots (no empty token). */
const KEY_PATTERN = /^[-/=\w]+(?:\.[-/=\w]+)*$/
/** Characters a key may contain at all; a list prefix with any other cannot match a key. */
const KEY_ALPHABET = /^[-/=.\w]*$/
/** Bucket names, as `@nats-io/kv` accepts them. */
const BUCKET_PATTERN = /^[-\w]+$/

/**
 * The server's default `max_control_line` is 4096 bytes, and the longest protocol line flowcache
 * sends for a key is a direct get: `PUB $JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key> <inbox>
 * <size>`. A longer line makes the server drop the whole connection, so keys are bounded here.
 * 200 bytes cover the verb, the API prefix, the reply inbox and the sizes.
 */
const MAX_CONTROL_LINE = 4096
const CONTROL_LINE_OVERHEAD = 200

/** One stored message of a key, as flowcache reads it. */
export interface RawEntry {
  /** Stream sequence: the entry's revision. */
  seq: number
  /** The payload (empty for markers and for headers-only reads). */
  value: Uint8Array
  /**
   * Bytes of the stored payload: the value's length, or on a headers-only read the server's
   * {@link SIZE_HEADER}, so scans learn sizes without moving values.
   */
  size: number
  /** Deadline from {@link EXPIRES_HEADER}, or `null` when the entry never expires. */
  expiresAt: number | null
  /** A DEL or PURGE marker, or a TTL marker of a newer server: the key has no value. */
  deleted: boolean
}

/** Validates a bucket name; returns it. */
export function checkBucket(bucket: string): string {
  if (typeof bucket !== 'string' || !BUCKET_PATTERN.test(bucket)) {
    throw InvalidArgumentError.format(
      'bucket',
      `must be a NATS KV bucket name of [A-Za-z0-9_-]; got ${JSON.stringify(bucket)}`,
    )
  }
  return bucket
}

/** Longest store key that fits the protocol line of a request for it. */
export function maxKeyBytes(bucket: string): number {
  return MAX_CONTROL_LINE - CONTROL_LINE_OVERHEAD - 2 * bucket.length
}

/**
 * Checks a store key against the NATS KV key grammar. Keyspace keys always pass; anything else
 * is a caller bug, reported before any I/O so it cannot reach the server as a bad subject.
 */
export function checkKey(key: string, maxBytes: number): void {
  if (typeof key !== 'string' || !KEY_PATTERN.test(key)) {
    throw InvalidArgumentError.format(
      'store key',
      `must be dot-separated tokens of [-/=A-Za-z0-9_] (NATS KV keys); got ${JSON.stringify(key)}`,
    )
  }
  // The pattern admits ASCII only, so length is the byte count.
  if (key.length > maxBytes) {
    throw new KeyTooLongError(
      `store key is ${key.length} bytes; NATS limits a request line to ${MAX_CONTROL_LINE} bytes, which leaves ${maxBytes} for keys in this bucket (use shorter keys or hash them)`,
    )
  }
}

/**
 * The subject filter (relative to the bucket) that selects every key starting with `prefix`:
 * the prefix's whole tokens followed by `>`. The caller still checks `startsWith`, since the
 * last, partial token is not part of the filter. `undefined` when no key can start with `prefix`.
 */
export function filterForPrefix(prefix: string): string | undefined {
  if (!KEY_ALPHABET.test(prefix)) return undefined
  const lastDot = prefix.lastIndexOf('.')
  if (lastDot < 0) return '>'
  const tokens = prefix.slice(0, lastDot)
  if (!KEY_PATTERN.test(tokens)) return undefined // an empty token: no key has one
  return `${tokens}.>`
}

/** Reads a message's headers into a {@link RawEntry}. */
export function toRawEntry(seq: number, value: Uint8Array, header: MsgHdrs | undefined): RawEntry {
  if (header === undefined)
    return { seq, value, size: value.byteLength, expiresAt: null, deleted: false }
  const operation = header.get(OPERATION_HEADER)
  const deleted =
    operation === 'DEL' || operation === 'PURGE' || header.get(MARKER_REASON_HEADER) !== ''
  const sizeText = header.get(SIZE_HEADER)
  const reported = sizeText === '' ? Number.NaN : Number(sizeText)
  const size = Number.isSafeInteger(reported) && reported >= 0 ? reported : value.byteLength
  return { seq, value, size, expiresAt: parseDeadline(header.get(EXPIRES_HEADER)), deleted }
}

function parseDeadline(text: string): number | null {
  if (text === '') return null
  const deadline = Number(text)
  // A header that is not ours (or damaged) must not make an entry look expired.
  return Number.isSafeInteger(deadline) ? deadline : null
}

/** What a write carries besides the value. */
export interface WriteHeaders {
  /** Deadline for {@link EXPIRES_HEADER}, or `null` for no expiry. */
  expiresAt: number | null
  /** Expected last sequence of the subject (0 = no message yet); omitted = unconditional. */
  expectedSeq?: number
  /** Native per-message TTL in whole seconds (servers >= 2.11 only). */
  nativeTtlSeconds?: number
}

/** Builds the headers of a write, or `undefined` when it needs none. */
export function writeHeaders(options: WriteHeaders): MsgHdrs | undefined {
  const fields: Array<[string, string]> = []
  if (options.expiresAt !== null) fields.push([EXPIRES_HEADER, String(options.expiresAt)])
  if (options.expectedSeq !== undefined)
    fields.push([EXPECTED_SEQUENCE_HEADER, String(options.expectedSeq)])
  if (options.nativeTtlSeconds !== undefined)
    fields.push([NATIVE_TTL_HEADER, `${options.nativeTtlSeconds}s`])
  return toHeaders(fields)
}

/** Headers of a DEL marker, fenced on `expectedSeq`; `expiredAt` marks an expiry. */
export function deleteHeaders(expectedSeq: number | undefined, expiredAt?: number): MsgHdrs {
  const fields: Array<[string, string]> = [[OPERATION_HEADER, 'DEL']]
  if (expectedSeq !== undefined) fields.push([EXPECTED_SEQUENCE_HEADER, String(expectedSeq)])
  if (expiredAt !== undefined) fields.push([EXPIRED_HEADER, String(expiredAt)])
  return toHeaders(fields) as MsgHdrs
}

function toHeaders(fields: Array<[string, string]>): MsgHdrs | undefined {
  if (fields.length === 0) return undefined
  const h = headers()
  for (const [name, value] of fields) h.set(name, value)
  return h
}

/**
 * Bytes the headers add on the wire: `NATS/1.0\r\n`, one `Name: value\r\n` per field, `\r\n`.
 * The server's `max_payload` bounds headers and payload together.
 */
export function headerBytes(h: MsgHdrs | undefined): number {
  if (h === undefined) return 0
  let total = 12
  for (const name of h.keys()) {
    for (const value of h.values(name)) total += name.length + value.length + 4
  }
  return total
}

/** Throws {@link ValueTooLargeError} when a message would exceed the server's `max_payload`. */
export function checkPayload(value: Uint8Array, h: MsgHdrs | undefined, maxPayload: number): void {
  const extra = headerBytes(h)
  if (value.byteLength + extra > maxPayload) {
    throw new ValueTooLargeError(
      `a value of ${value.byteLength} bytes (+${extra} header bytes) exceeds the NATS server's max_payload of ${maxPayload} bytes; store smaller values or raise max_payload in the server configuration`,
    )
  }
}
