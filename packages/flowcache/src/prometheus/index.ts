/**
 * `flowcache/prometheus`: Prometheus metrics of one or more caches through prom-client (an
 * optional peer dependency). Counters and gauges read `cache.stats()` when the registry is
 * scraped, so they cost nothing between scrapes; the latency histogram is fed from the
 * `flowcache:operation` diagnostics channel with every call, and the election counter from
 * `flowcache:election`.
 *
 * ```ts
 * import { register } from 'prom-client'
 * import { registerMetrics } from 'flowcache/prometheus'
 * const metrics = registerMetrics(cache, { name: 'orders' })
 * // serve `await register.metrics()` on /metrics; metrics.close() when the cache goes away
 * ```
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Counter, Gauge, Histogram, register as defaultRegistry, type Registry } from 'prom-client'
import type { Cache } from '../core/cache.js'
import { channels, type ElectionEvent, type OperationEvent } from '../core/diagnostics.js'
import type { CacheStats } from '../core/stats.js'
import type { NamespaceStats } from '../core/namespace-stats.js'
import { InvalidArgumentError } from '../errors.js'

/** Options of {@link registerMetrics}. */
export interface MetricsOptions {
  /** Registry to add the metrics to. @default prom-client's global `register` */
  registry?: Registry
  /** Start of every metric name; `[a-zA-Z_:][a-zA-Z0-9_:]*`. @default 'flowcache_' */
  prefix?: string
  /**
   * Value of the `cache` label of this cache's series; unique per registry and prefix, so
   * several caches can share one registry. @default 'default'
   */
  name?: string
  /**
   * More constant labels on every series of this cache, e.g. `{ service: 'billing' }`. Every
   * cache registered in one registry with one prefix must use the same label names.
   * @default none
   */
  labels?: Record<string, string>
  /** Upper bounds of the latency histogram's buckets, in seconds, ascending. @default {@link DEFAULT_BUCKETS} */
  buckets?: readonly number[]
}

/** What {@link registerMetrics} returns. */
export interface CacheMetrics {
  /**
   * Stops reporting this cache: its series disappear from the registry, and the metrics
   * themselves once no cache is left in it. Idempotent.
   */
  close(): void
}

/**
 * Latency buckets in seconds: 10 µs (a memory hit) to 5 s (a slow network store).
 */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
  0.25, 0.5, 1, 2.5, 5,
]

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
/** Label names the metrics use themselves. */
const RESERVED_LABELS = new Set([
  'cache',
  'operation',
  'store',
  'outcome',
  'namespace',
  'le',
  'quantile',
])

type Labels = Record<string, string>

/** Observations of one histogram series: a count per bucket (not cumulative), the sum, the count. */
interface SeriesCounts {
  readonly labels: Labels
  readonly buckets: Float64Array
  sum: number
  count: number
}

/**
 * The latency histogram. Every cache call is one observation, so observing goes through a
 * bucket search and three additions here instead of prom-client's per-call label validation and
 * hashing (about 0.7 µs, several times a memory-store read); prom-client reads the counts when
 * the registry is scraped, through `get()`, in the shape its own histograms give.
 */
class CountedHistogram extends Histogram {
  readonly #name: string
  readonly #help: string
  readonly #bounds: readonly number[]
  readonly #series = new Map<Labels, SeriesCounts>()

  constructor(
    name: string,
    help: string,
    labelNames: string[],
    bounds: readonly number[],
    registry: Registry,
  ) {
    super({ name, help, labelNames, buckets: [...bounds], registers: [registry] })
    this.#name = name
    this.#help = help
    this.#bounds = bounds
  }

  /** Counts one observation of `seconds` in the series `labels` (compared by identity). */
  record(labels: Labels, seconds: number): void {
    let series = this.#series.get(labels)
    if (series === undefined) {
      series = { labels, buckets: new Float64Array(this.#bounds.length), sum: 0, count: 0 }
      this.#series.set(labels, series)
    }
    const bounds = this.#bounds
    let bucket = 0
    while (bucket < bounds.length && seconds > (bounds[bucket] as number)) bucket++
    // Beyond the last bound it is counted in `+Inf` only, which is the count.
    if (bucket < bounds.length) series.buckets[bucket] = (series.buckets[bucket] as number) + 1
    series.sum += seconds
    series.count++
  }

  /** Drops the series `labels` (the same object `record` was given). */
  forget(labels: Labels): void {
    this.#series.delete(labels)
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields exist.
    if (#series in this) this.#series.clear()
  }

  override get(): ReturnType<Histogram['get']> {
    const name = this.#name
    const values: Array<{
      labels: Record<string, string | number>
      value: number
      metricName: string
    }> = []
    for (const series of this.#series.values()) {
      let cumulative = 0
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += series.buckets[i] as number
        values.push({
          labels: { ...series.labels, le: this.#bounds[i] as number },
          value: cumulative,
          metricName: `${name}_bucket`,
        })
      }
      values.push(
        {
          labels: { ...series.labels, le: '+Inf' },
          value: series.count,
          metricName: `${name}_bucket`,
        },
        { labels: { ...series.labels }, value: series.sum, metricName: `${name}_sum` },
        { labels: { ...series.labels }, value: series.count, metricName: `${name}_count` },
      )
    }
    // What prom-client's own histograms give; its typings declare `type` as a numeric enum and
    // require `collect`, while the registry reads the string type and never calls `collect` here.
    const metric = { name, help: this.#help, type: 'histogram', values, aggregator: 'sum' }
    return Promise.resolve(metric as unknown as Awaited<ReturnType<Histogram['get']>>)
  }

  /** What the registry reads for the text format; the same values as `get()`. */
  getForPromString(): ReturnType<Histogram['get']> {
    return this.get()
  }
}

/** One registered cache. */
interface Member {
  readonly cache: Cache
  readonly labels: Labels
  /** Histogram label sets in use, by `operation|store|outcome`. */
  readonly series: Map<string, Labels>
  /** Election counter label sets in use, by outcome. */
  readonly elections: Map<string, Labels>
  /** `stats()` of the scrape in progress; dropped once the scrape's collects have run. */
  snapshot: CacheStats | undefined
  /** Tracked namespaces' stats of the scrape in progress; dropped once it has settled. */
  namespaces: Promise<NamespaceStats[]> | undefined
}

/** The metrics of one registry and prefix, shared by the caches registered there. */
interface MetricSet {
  readonly registry: Registry
  readonly prefix: string
  readonly labelNames: readonly string[]
  readonly members: Map<Cache, Member>
  readonly names: Set<string>
  readonly metricNames: string[]
  readonly histogram: CountedHistogram
  readonly elections: Counter
  readonly onOperation: (message: unknown) => void
  readonly onElection: (message: unknown) => void
}

const sets = new WeakMap<Registry, Map<string, MetricSet>>()

/** A counter or gauge read from `stats()` at scrape time. */
interface StatMetric {
  kind: 'counter' | 'gauge'
  name: string
  help: string
  /** Values of this cache: one per `outcome` label value, or one without it (`''`). */
  read(stats: CacheStats): Record<string, number> | undefined
}

function single(read: (stats: CacheStats) => number | undefined): StatMetric['read'] {
  return (stats) => {
    const value = read(stats)
    return value === undefined ? undefined : { '': value }
  }
}

const STAT_METRICS: readonly StatMetric[] = [
  {
    kind: 'counter',
    name: 'hits_total',
    help: 'Reads that found a value (get, getMany keys, entry, exists).',
    read: single((s) => s.hits),
  },
  {
    kind: 'counter',
    name: 'misses_total',
    help: 'Reads that found nothing.',
    read: single((s) => s.misses),
  },
  {
    kind: 'counter',
    name: 'sets_total',
    help: 'Successful writes (set, add that wrote, setMany items, increment, compareAndSet that wrote).',
    read: single((s) => s.sets),
  },
  {
    kind: 'counter',
    name: 'deletes_total',
    help: 'Entries deleted by delete, deleteMany and clear.',
    read: single((s) => s.deletes),
  },
  {
    kind: 'counter',
    name: 'evictions_total',
    help: 'Entries the store evicted for its limits or a namespace quota (store-wide; 0 when the store does not report it).',
    read: single((s) => s.evictions),
  },
  {
    kind: 'counter',
    name: 'expirations_total',
    help: 'Entries the store removed because their TTL passed (store-wide; 0 when the store does not report it).',
    read: single((s) => s.expirations),
  },
  {
    kind: 'gauge',
    name: 'entries',
    help: 'Entries in the store, user and system (store-wide; 0 when the store does not report it).',
    read: single((s) => s.entries),
  },
  {
    kind: 'gauge',
    name: 'bytes',
    help: 'Encoded bytes in the store (store-wide; 0 when the store does not report it).',
    read: single((s) => s.bytes),
  },
  {
    kind: 'gauge',
    name: 'fallback_active',
    help: '1 while the start-up memory fallback serves instead of the distributed store, else 0.',
    read: single((s) => (s.fallback.active ? 1 : 0)),
  },
  {
    kind: 'counter',
    name: 'fallback_activations_total',
    help: 'Times the cache switched to the start-up memory fallback.',
    read: single((s) => s.fallback.activations),
  },
  {
    kind: 'counter',
    name: 'lock_outcomes_total',
    help: 'Lock outcomes: acquired, contended, extended, released, lost, failed.',
    read: (s) => ({ ...s.locks }),
  },
  {
    kind: 'counter',
    name: 'rate_limit_decisions_total',
    help: 'Rate-limit decisions: allowed, denied, and failed_open / failed_closed on store faults.',
    read: (s) => ({
      allowed: s.rateLimits.allowed,
      denied: s.rateLimits.denied,
      failed_open: s.rateLimits.failedOpen,
      failed_closed: s.rateLimits.failedClosed,
    }),
  },
  {
    kind: 'counter',
    name: 'rate_limit_conflicts_total',
    help: 'Rate-limit writes that lost a race to another replica and were retried.',
    read: single((s) => s.rateLimits.conflicts),
  },
  {
    kind: 'counter',
    name: 'get_or_set_total',
    help: 'getOrSet and memoize outcomes: hit, miss, factory_call, factory_error, grace_served, soft_timeout, timeout, refresh, lock_wait.',
    read: (s) => ({
      hit: s.getOrSet.hits,
      miss: s.getOrSet.misses,
      factory_call: s.getOrSet.factoryCalls,
      factory_error: s.getOrSet.factoryErrors,
      grace_served: s.getOrSet.graceServed,
      soft_timeout: s.getOrSet.softTimeouts,
      timeout: s.getOrSet.timeouts,
      refresh: s.getOrSet.refreshes,
      lock_wait: s.getOrSet.lockWaits,
    }),
  },
  {
    kind: 'counter',
    name: 'write_behind_total',
    help: 'Write-behind outcomes of every writer: flushed (operations written), batch (successful target calls), failure (failed target calls), retry, coalesced.',
    read: (s) => ({
      flushed: s.writeBehind.flushed,
      batch: s.writeBehind.batches,
      failure: s.writeBehind.failures,
      retry: s.writeBehind.retries,
      coalesced: s.writeBehind.coalesced,
    }),
  },
  {
    kind: 'gauge',
    name: 'write_behind_pending',
    help: 'Operations queued in open write-behind writers, not yet written to their target.',
    read: single((s) => s.writeBehind.pending),
  },
  {
    kind: 'gauge',
    name: 'write_behind_failing',
    help: 'Open write-behind writers whose target is failing now.',
    read: single((s) => s.writeBehind.failing),
  },
  {
    kind: 'counter',
    name: 'l1_hits_total',
    help: 'Reads answered by the L1 tier (only caches with one).',
    read: single((s) => s.l1?.hits),
  },
  {
    kind: 'gauge',
    name: 'l1_entries',
    help: 'Entries in the L1 tier (only caches with one).',
    read: single((s) => s.l1?.entries),
  },
  {
    kind: 'counter',
    name: 'l1_invalidations_received_total',
    help: 'Invalidation messages the L1 tier received from other replicas.',
    read: single((s) => s.l1?.invalidationsReceived),
  },
  {
    kind: 'counter',
    name: 'l1_publish_failures_total',
    help: 'Invalidation messages the L1 tier could not publish.',
    read: single((s) => s.l1?.publishFailures),
  },
  {
    kind: 'gauge',
    name: 'l1_live',
    help: '1 while the L1 invalidation bus is connected and L1 is in use, else 0.',
    read: single((s) => (s.l1 === undefined ? undefined : s.l1.live ? 1 : 0)),
  },
]

const OUTCOME_METRICS = new Set([
  'lock_outcomes_total',
  'rate_limit_decisions_total',
  'get_or_set_total',
  'write_behind_total',
])

/** A per-namespace counter or gauge, read from `trackedNamespaceStats()` at scrape time. */
interface NamespaceMetric {
  kind: 'counter' | 'gauge'
  name: string
  help: string
  read(stats: NamespaceStats): number | undefined
}

const NAMESPACE_METRICS: readonly NamespaceMetric[] = [
  {
    kind: 'gauge',
    name: 'namespace_entries',
    help: 'User entries of a namespace with a quota, as the store accounts them (shared by every process on a distributed store).',
    read: (s) => s.entries,
  },
  {
    kind: 'gauge',
    name: 'namespace_bytes',
    help: 'Encoded bytes of the user entries of a namespace with a quota, as the store accounts them.',
    read: (s) => s.bytes,
  },
  {
    kind: 'counter',
    name: 'namespace_evictions_total',
    help: "Entries a namespace's quota evicted since it was first set, as the store counts them.",
    read: (s) => s.evictions,
  },
  {
    kind: 'counter',
    name: 'namespace_hits_total',
    help: 'Reads in this process that found a value in a tracked namespace (a quota, or trackStats).',
    read: (s) => s.hits,
  },
  {
    kind: 'counter',
    name: 'namespace_misses_total',
    help: 'Reads in this process that found nothing in a tracked namespace.',
    read: (s) => s.misses,
  },
]

/** The member's tracked namespaces for the scrape in progress: one store round per cache and scrape. */
function namespacesOf(member: Member): Promise<NamespaceStats[]> {
  if (member.namespaces === undefined) {
    const pending = member.cache.trackedNamespaceStats({ top: 0 })
    member.namespaces = pending
    // A registry starts every collect of one scrape at once: once this settles, it is over.
    const done = (): void => {
      if (member.namespaces === pending) member.namespaces = undefined
    }
    pending.then(done, done)
  }
  return member.namespaces
}

/** Whether a stat metric has an `outcome` label. */
function hasOutcome(metric: StatMetric): boolean {
  return OUTCOME_METRICS.has(metric.name)
}

/** The member's stats for the scrape in progress: one `stats()` call per cache and scrape. */
function snapshotOf(member: Member): CacheStats {
  if (member.snapshot === undefined) {
    member.snapshot = member.cache.stats()
    // A registry runs every collect of one scrape synchronously: a microtask later it is over.
    queueMicrotask(() => {
      member.snapshot = undefined
    })
  }
  return member.snapshot
}

function checkOptions(cache: Cache, options: MetricsOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw InvalidArgumentError.format('options', 'must be an object')
  }
  if (
    typeof cache !== 'object' ||
    cache === null ||
    typeof (cache as { stats?: unknown }).stats !== 'function'
  ) {
    throw InvalidArgumentError.format('cache', 'must be a cache made by createCache()')
  }
  if (cache.path.length > 0) {
    throw InvalidArgumentError.format(
      'cache',
      'is a namespace view; register the cache createCache() returned, whose metrics cover all its namespaces',
    )
  }
  const prefix = options.prefix ?? 'flowcache_'
  if (typeof prefix !== 'string' || !METRIC_NAME.test(prefix)) {
    throw InvalidArgumentError.format(
      'prefix',
      `must match [a-zA-Z_:][a-zA-Z0-9_:]*; got ${String(prefix)}`,
    )
  }
  const name = options.name ?? 'default'
  if (typeof name !== 'string' || name === '') {
    throw InvalidArgumentError.format('name', 'must be a non-empty string')
  }
  for (const [label, value] of Object.entries(options.labels ?? {})) {
    if (!LABEL_NAME.test(label) || label.startsWith('__') || RESERVED_LABELS.has(label)) {
      throw InvalidArgumentError.format(
        `label "${label}"`,
        `must match [a-zA-Z_][a-zA-Z0-9_]*, not start with __ and not be one of ${[...RESERVED_LABELS].join(', ')}`,
      )
    }
    if (typeof value !== 'string') {
      throw InvalidArgumentError.format(`label "${label}"`, 'must have a string value')
    }
  }
  const buckets = options.buckets
  if (buckets !== undefined) {
    const ascending =
      Array.isArray(buckets) &&
      buckets.length > 0 &&
      buckets.every(
        (bound, i) =>
          typeof bound === 'number' &&
          Number.isFinite(bound) &&
          bound > 0 &&
          (i === 0 || bound > (buckets[i - 1] as number)),
      )
    if (!ascending) {
      throw InvalidArgumentError.format(
        'buckets',
        'must be a non-empty array of positive, finite, strictly ascending numbers of seconds',
      )
    }
  }
}

/** Creates the metrics of one registry and prefix and subscribes them to the channels. */
function createSet(
  registry: Registry,
  prefix: string,
  extraLabels: readonly string[],
  buckets: readonly number[],
): MetricSet {
  const labelNames = ['cache', ...extraLabels]
  const members = new Map<Cache, Member>()
  const metricNames: string[] = []
  const registers = [registry]
  const suffixes = [...STAT_METRICS, ...NAMESPACE_METRICS].map((stat) => stat.name)
  for (const suffix of [...suffixes, 'operation_duration_seconds', 'elections_total']) {
    if (registry.getSingleMetric(`${prefix}${suffix}`) !== undefined) {
      throw InvalidArgumentError.format(
        'prefix',
        `gives the metric name ${prefix}${suffix}, which this registry already has; pass another prefix`,
      )
    }
  }
  const register = <M>(name: string, create: () => M): M => {
    const metric = create()
    metricNames.push(name)
    return metric
  }
  for (const stat of STAT_METRICS) {
    const name = `${prefix}${stat.name}`
    const names = hasOutcome(stat) ? [...labelNames, 'outcome'] : labelNames
    const fill = (metric: Counter | Gauge): void => {
      metric.reset()
      for (const member of members.values()) {
        const values = stat.read(snapshotOf(member))
        if (values === undefined) continue
        for (const [outcome, value] of Object.entries(values)) {
          const labels = outcome === '' ? member.labels : { ...member.labels, outcome }
          if (metric instanceof Counter) metric.inc(labels, value)
          else metric.set(labels, value)
        }
      }
    }
    register(name, () =>
      stat.kind === 'counter'
        ? new Counter({
            name,
            help: stat.help,
            labelNames: names,
            registers,
            collect() {
              fill(this)
            },
          })
        : new Gauge({
            name,
            help: stat.help,
            labelNames: names,
            registers,
            collect() {
              fill(this)
            },
          }),
    )
  }
  for (const stat of NAMESPACE_METRICS) {
    const name = `${prefix}${stat.name}`
    const fill = async (metric: Counter | Gauge): Promise<void> => {
      const all = await Promise.all(
        [...members.values()].map(async (member) => {
          try {
            return { member, namespaces: await namespacesOf(member) }
          } catch {
            // A closed cache or an unreachable store: its namespaces are left out of this scrape.
            return { member, namespaces: [] }
          }
        }),
      )
      metric.reset()
      for (const { member, namespaces } of all) {
        for (const namespace of namespaces) {
          const value = stat.read(namespace)
          if (value === undefined) continue
          const labels = { ...member.labels, namespace: namespace.namespace.join('/') }
          if (metric instanceof Counter) metric.inc(labels, value)
          else metric.set(labels, value)
        }
      }
    }
    const names = [...labelNames, 'namespace']
    register(name, () =>
      stat.kind === 'counter'
        ? new Counter({
            name,
            help: stat.help,
            labelNames: names,
            registers,
            async collect() {
              await fill(this)
            },
          })
        : new Gauge({
            name,
            help: stat.help,
            labelNames: names,
            registers,
            async collect() {
              await fill(this)
            },
          }),
    )
  }
  const histogramName = `${prefix}operation_duration_seconds`
  const histogram = register(
    histogramName,
    () =>
      new CountedHistogram(
        histogramName,
        'Duration of cache calls in seconds, by operation, store and outcome (hit, miss, ok, error); every call.',
        [...labelNames, 'operation', 'store', 'outcome'],
        buckets,
        registry,
      ),
  )
  const electionsName = `${prefix}elections_total`
  const elections = register(
    electionsName,
    () =>
      new Counter({
        name: electionsName,
        help: 'Leader election terms of this process: elected, revoked (counted from registration on).',
        labelNames: [...labelNames, 'outcome'],
        registers,
      }),
  )
  const onOperation = (message: unknown): void => {
    const event = message as OperationEvent
    const member = members.get(event.cache)
    if (member === undefined) return
    const id = `${event.operation}|${event.store}|${event.outcome}`
    let labels = member.series.get(id)
    if (labels === undefined) {
      labels = {
        ...member.labels,
        operation: event.operation,
        store: event.store,
        outcome: event.outcome,
      }
      member.series.set(id, labels)
    }
    histogram.record(labels, event.durationMs / 1000)
  }
  const onElection = (message: unknown): void => {
    const event = message as ElectionEvent
    const member = members.get(event.cache)
    if (member === undefined) return
    let labels = member.elections.get(event.outcome)
    if (labels === undefined) {
      labels = { ...member.labels, outcome: event.outcome }
      member.elections.set(event.outcome, labels)
    }
    elections.inc(labels)
  }
  subscribe(channels.operation, onOperation)
  subscribe(channels.election, onElection)
  return {
    registry,
    prefix,
    labelNames,
    members,
    names: new Set(),
    metricNames,
    histogram,
    elections,
    onOperation,
    onElection,
  }
}

/**
 * Reports `cache` (the cache `createCache` returned; its namespaces included) to a prom-client
 * registry: hits, misses, sets, deletes, evictions, expirations, entries, bytes, fallback state,
 * lock and rate-limit outcomes, elections, L1 figures when the cache has an L1 tier, a
 * histogram of every call's duration per operation, store and outcome, and per-namespace
 * entries, bytes, evictions, hits and misses (label `namespace`, the path joined with `/`) of
 * the namespaces the cache tracks: those with a quota or `trackStats: true`, so the label's
 * cardinality is what the application chose. Every series has the
 * label `cache` (`options.name`, default `'default'`) and `options.labels`. Throws
 * `InvalidArgumentError` for a bad option, a namespace view, a `name` already registered in that
 * registry with that prefix, or label names that differ from the caches registered before.
 */
export function registerMetrics(cache: Cache, options: MetricsOptions = {}): CacheMetrics {
  checkOptions(cache, options)
  const registry = options.registry ?? defaultRegistry
  const prefix = options.prefix ?? 'flowcache_'
  const name = options.name ?? 'default'
  const extra = Object.keys(options.labels ?? {}).sort()
  let byPrefix = sets.get(registry)
  if (byPrefix === undefined) {
    byPrefix = new Map()
    sets.set(registry, byPrefix)
  }
  let set = byPrefix.get(prefix)
  if (set !== undefined) {
    const expected = set.labelNames.slice(1)
    if (expected.join(',') !== extra.join(',')) {
      throw InvalidArgumentError.format(
        'labels',
        `must have the label names of the caches already registered with prefix ${prefix} (${expected.join(', ') || 'none'}); got ${extra.join(', ') || 'none'}`,
      )
    }
    if (set.names.has(name)) {
      throw InvalidArgumentError.format(
        'name',
        `"${name}" is already registered in this registry with prefix ${prefix}; give each cache its own name`,
      )
    }
    if (set.members.has(cache)) {
      throw InvalidArgumentError.format(
        'cache',
        'is already registered in this registry with this prefix',
      )
    }
  } else {
    set = createSet(registry, prefix, extra, options.buckets ?? DEFAULT_BUCKETS)
    byPrefix.set(prefix, set)
  }
  const member: Member = {
    cache,
    labels: { ...options.labels, cache: name },
    series: new Map(),
    elections: new Map(),
    snapshot: undefined,
    namespaces: undefined,
  }
  set.members.set(cache, member)
  set.names.add(name)
  const owner = set
  let closed = false
  return {
    close(): void {
      if (closed) return
      closed = true
      removeMember(owner, member, name)
    },
  }
}

/** Drops a cache's series; drops the metrics and the subscriptions with the last cache. */
function removeMember(set: MetricSet, member: Member, name: string): void {
  set.members.delete(member.cache)
  set.names.delete(name)
  for (const labels of member.series.values()) set.histogram.forget(labels)
  for (const labels of member.elections.values()) set.elections.remove(labels)
  if (set.members.size > 0) return
  unsubscribe(channels.operation, set.onOperation)
  unsubscribe(channels.election, set.onElection)
  for (const metricName of set.metricNames) set.registry.removeSingleMetric(metricName)
  sets.get(set.registry)?.delete(set.prefix)
}
