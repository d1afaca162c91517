/**
 * The wire form of L1 invalidation messages, the same on every bus: JSON text
 * `{"origin":"…","keys":[…],"prefixes":[…]}`. Parsing keeps only well-formed fields, so a stray
 * message on the channel cannot break the tier.
 */
import { DecodeError } from '../errors.js'
import type { Invalidation } from '../types/store.js'

/** Serializes an invalidation message. */
export function encodeInvalidation(invalidation: Invalidation): string {
  return JSON.stringify(invalidation)
}

function strings(list: unknown): string[] | undefined {
  return Array.isArray(list)
    ? list.filter((item): item is string => typeof item === 'string')
    : undefined
}

/** Parses an invalidation message; {@link DecodeError} when it is not one. */
export function decodeInvalidation(text: string): Invalidation {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new DecodeError('an invalidation message is not JSON', { cause: error })
  }
  if (typeof parsed !== 'object' || parsed === null) {
    throw new DecodeError('an invalidation message is not an object')
  }
  const { origin, keys, prefixes } = parsed as Record<string, unknown>
  if (typeof origin !== 'string') throw new DecodeError('an invalidation message without an origin')
  const message: Invalidation = { origin }
  const keyList = strings(keys)
  const prefixList = strings(prefixes)
  if (keyList !== undefined) message.keys = keyList
  if (prefixList !== undefined) message.prefixes = prefixList
  return message
}
