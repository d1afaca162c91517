/**
 * Namespace quotas given to `createCache`: a default allocation for every top-level namespace
 * (the per-tenant user-cache limit) and overrides per namespace name. `Cache.namespace()` on the
 * root cache combines them with the limits it is given, field by field: the namespace's own
 * options first, then its override, then the default.
 */
import { InvalidArgumentError } from '../errors.js'
import type { QuotaLimits } from '../types/store.js'

/** Limits of one namespace quota. */
export interface QuotaOptions {
  /** Most user entries in the namespace (children included); the least recently used go first. */
  maxEntries?: number
  /** Most encoded bytes (keys + values) of user entries in the namespace; a soft limit. */
  maxBytes?: number
}

/** The `quotas` option of `createCache`. */
export interface QuotasOptions {
  /**
   * The allocation of each top-level namespace (each tenant, app or flow opened with
   * `cache.namespace(name)` on the root cache) that neither gives limits of its own nor has an
   * override: every namespace gets this much, separately. @default none
   */
  default?: QuotaOptions
  /**
   * Allocations of particular top-level namespaces, by name. A field given here replaces the
   * default's; a field not given keeps it. @default none
   */
  namespaces?: Record<string, QuotaOptions>
}

/** Checked {@link QuotasOptions}. */
export interface ResolvedQuotas {
  readonly default: QuotaLimits | undefined
  readonly namespaces: ReadonlyMap<string, QuotaLimits>
}

function checkLimit(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw InvalidArgumentError.format(
      name,
      `must be a whole number >= 1; got ${typeof value === 'number' ? String(value) : typeof value}`,
    )
  }
  return value
}

/** Checks one quota's limits; `name` is the option's path in error messages. */
export function checkQuota(value: unknown, name: string): QuotaLimits {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw InvalidArgumentError.format(name, 'must be an object with maxEntries and/or maxBytes')
  }
  const limits: QuotaLimits = {}
  for (const field of Object.keys(value)) {
    if (field !== 'maxEntries' && field !== 'maxBytes') {
      throw InvalidArgumentError.format(
        `${name}.${field}`,
        'is not a quota limit; the limits are maxEntries and maxBytes',
      )
    }
  }
  const record = value as Record<string, unknown>
  const maxEntries = checkLimit(record['maxEntries'], `${name}.maxEntries`)
  const maxBytes = checkLimit(record['maxBytes'], `${name}.maxBytes`)
  if (maxEntries !== undefined) limits.maxEntries = maxEntries
  if (maxBytes !== undefined) limits.maxBytes = maxBytes
  if (maxEntries === undefined && maxBytes === undefined) {
    throw InvalidArgumentError.format(name, 'must give maxEntries, maxBytes or both')
  }
  return limits
}

/** Checks the `quotas` option of `createCache`. */
export function resolveQuotas(options: QuotasOptions | undefined): ResolvedQuotas {
  if (options === undefined) return { default: undefined, namespaces: new Map() }
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw InvalidArgumentError.format('quotas', 'must be an object with default and/or namespaces')
  }
  for (const field of Object.keys(options)) {
    if (field !== 'default' && field !== 'namespaces') {
      throw InvalidArgumentError.format(
        `quotas.${field}`,
        'is not an option; quotas takes default and namespaces',
      )
    }
  }
  const fallback =
    options.default === undefined ? undefined : checkQuota(options.default, 'quotas.default')
  const namespaces = new Map<string, QuotaLimits>()
  const given: unknown = options.namespaces
  if (given !== undefined) {
    if (typeof given !== 'object' || given === null || Array.isArray(given)) {
      throw InvalidArgumentError.format(
        'quotas.namespaces',
        'must be an object of namespace name → { maxEntries, maxBytes }',
      )
    }
    for (const [name, limits] of Object.entries(given)) {
      if (name === '') {
        throw InvalidArgumentError.format('quotas.namespaces', 'has an empty namespace name')
      }
      namespaces.set(name, checkQuota(limits, `quotas.namespaces.${name}`))
    }
  }
  return { default: fallback, namespaces }
}

/**
 * The quota of the namespace `name`: its own `limits`, then (for a top-level namespace) its
 * override and the default, field by field. `undefined` when none gives a limit.
 */
export function quotaFor(
  quotas: ResolvedQuotas,
  name: string,
  topLevel: boolean,
  limits: QuotaLimits,
): QuotaLimits | undefined {
  const merged: QuotaLimits = topLevel
    ? { ...quotas.default, ...quotas.namespaces.get(name), ...limits }
    : { ...limits }
  return merged.maxEntries === undefined && merged.maxBytes === undefined ? undefined : merged
}
