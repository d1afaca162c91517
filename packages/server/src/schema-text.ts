/**
 * Pieces shared by the schemas of flow files and of `flowcache.yaml`, so both word their errors
 * the same way.
 */
import { z } from 'zod'
import { parseDuration } from './flowcache.js'

/** What a value is, for "got …" in messages. */
export function describeInput(input: unknown): string {
  if (input === null) return 'nothing (null)'
  if (Array.isArray(input)) return 'a list'
  if (typeof input === 'object') return 'a mapping'
  if (typeof input === 'string') return `'${input.length > 40 ? `${input.slice(0, 40)}…` : input}'`
  if (typeof input === 'number' || typeof input === 'boolean') return `${typeof input} ${input}`
  return typeof input
}

/**
 * A duration field: ms as a number, or a string like `example`, parsed to ms with flowcache's
 * duration parser. A missing value is "is required" (wrap the schema in `.optional()` when it may
 * be absent).
 */
export function durationSchema(example: string) {
  return z.unknown().transform((input, ctx): number => {
    if (input === undefined) {
      ctx.addIssue({ code: 'custom', message: `is required; e.g. '${example}'` })
      return z.NEVER
    }
    try {
      return parseDuration(input)
    } catch {
      ctx.addIssue({
        code: 'custom',
        message: `must be a duration like '${example}' (milliseconds, or a string with units ms, s, m, h, d, w); got ${describeInput(input)}`,
      })
      return z.NEVER
    }
  })
}

/** The message of an error value, for logs and status. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
