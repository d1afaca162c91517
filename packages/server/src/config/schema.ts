/**
 * The schema of `flowcache.yaml` (zod), in the file's own spelling (snake_case). Every error
 * message says what the field must be and what it got.
 */
import { z } from 'zod'
import { describeInput, durationSchema } from '../schema-text.js'

/** The stores `cache.type` accepts. */
export const CACHE_TYPES = ['memory', 'sqlite', 'redis', 'nats'] as const

/** An error function: `problem; got …`. */
function expected(problem: string): (issue: { input?: unknown }) => string {
  return (issue) => `${problem}; got ${describeInput(issue.input)}`
}

/** A mapping whose unknown fields are errors that list the known ones. */
function strict<Shape extends z.ZodRawShape>(shape: Shape) {
  const known = Object.keys(shape).join(', ')
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `is not a field here (known: ${known})`
        : `must be a mapping; got ${describeInput(issue.input)}`,
  })
}

function integer(min: number, max: number) {
  const rule = `must be an integer from ${min} to ${max}`
  return z
    .number({ error: expected(rule) })
    .int({ error: expected(rule) })
    .min(min, { error: expected(rule) })
    .max(max, { error: expected(rule) })
}

const text = z
  .string({ error: expected('must be a string') })
  .min(1, { error: 'must not be empty' })

/** A duration: ms as a number, or a string like '1h'; parsed to ms. */
const duration = durationSchema('1h')

const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib)?$/i
const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1000, kib: 1024, mb: 1e6, mib: 1024 * 1024 }

/** A size in bytes: an integer, or a string like '512KiB', '1MiB', '2mb'. */
const size = z.unknown().transform((input, ctx): number => {
  let bytes: number | undefined
  if (typeof input === 'number') bytes = input
  else if (typeof input === 'string') {
    const match = SIZE.exec(input.trim())
    if (match !== null) {
      bytes = Number(match[1]) * (SIZE_UNITS[(match[2] ?? 'b').toLowerCase()] ?? 1)
    }
  }
  if (bytes === undefined || !Number.isSafeInteger(bytes) || bytes < 1024 || bytes > 1024 ** 3) {
    ctx.addIssue({
      code: 'custom',
      message: `must be a size from 1KiB to 1GiB: bytes, or a string like '512KiB' or '1MiB'; got ${describeInput(input)}`,
    })
    return z.NEVER
  }
  return bytes
})

const l1Schema = z.union([
  z.boolean({ error: expected('must be true, false or a mapping') }),
  strict({
    max_entries: integer(1, 10_000_000).optional(),
    max_memory_mb: integer(1, 1_000_000).optional(),
    max_ttl: duration.optional(),
  }),
])

const cacheSchema = strict({
  enabled: z.boolean({ error: expected('must be true or false') }).optional(),
  type: z
    .enum(CACHE_TYPES, { error: expected(`must be one of ${CACHE_TYPES.join(', ')}`) })
    .optional(),
  url: text.optional(),
  path: text.optional(),
  credentials_path: text.optional(),
  db_name: z
    .string({ error: expected('must be a string') })
    .regex(/^[A-Za-z0-9_-]{1,255}$/, {
      error: expected('must be a bucket name of letters, digits, _ and -'),
    })
    .optional(),
  history: integer(0, 64).optional(),
  tombstone_ttl: duration.optional(),
  fallback: z.enum(['memory', 'fail'], { error: expected('must be memory or fail') }).optional(),
  max_entries: integer(1, 100_000_000).optional(),
  max_memory_mb: integer(1, 1_000_000).optional(),
  user_cache_limit_mb: integer(1, 1_000_000).optional(),
  l1: l1Schema.optional(),
  prefix: z
    .string({ error: expected('must be a string') })
    .regex(/^[A-Za-z0-9_-]{1,64}$/, {
      error: expected('must be 1-64 letters, digits, _ or -'),
    })
    .optional(),
})

const serverSchema = strict({
  host: text.optional(),
  port: integer(0, 65535).optional(),
  token: z
    .string({ error: expected('must be a string') })
    .min(16, { error: 'must be at least 16 characters; generate one with `openssl rand -hex 32`' })
    .optional(),
  token_file: text.optional(),
  body_limit: size.optional(),
})

const flowsSchema = strict({
  dir: text.optional(),
  tenant: z
    .string({ error: expected('must be a string') })
    .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/, {
      error: expected('must be 1-100 letters, digits, _, - or ., starting with a letter or digit'),
    })
    .optional(),
})

/** One namespace's quota under `quotas:`. */
const quotaSchema = strict({
  max_memory_mb: integer(1, 1_000_000).optional(),
  max_entries: integer(1, 100_000_000).optional(),
}).refine((quota) => quota.max_memory_mb !== undefined || quota.max_entries !== undefined, {
  error: 'must give max_memory_mb, max_entries or both',
})

/** `quotas:`: top-level namespace name → its quota. */
const quotasSchema = z.record(
  z.string().min(1, { error: 'must be a namespace name, not empty' }),
  quotaSchema,
  { error: expected('must be a mapping of namespace name → { max_memory_mb, max_entries }') },
)

/** The whole file. */
export const configSchema = strict({
  cache: cacheSchema.optional(),
  server: serverSchema.optional(),
  flows: flowsSchema.optional(),
  quotas: quotasSchema.optional(),
})

/** The file as validated (durations and sizes already parsed). */
export type ConfigInput = z.output<typeof configSchema>
