/**
 * The HTTP route table of the flow host: built from the `http` triggers of the loaded flows, it
 * maps a method and a path such as `/orders/42` to a flow and its path parameters (`{ id: '42' }`
 * for the route `/orders/:id`). A table is immutable; the host swaps in a new one on each reload.
 */
import type { FlowDefinition, HttpMethod } from '../flows/types.js'

/** One segment of a route pattern: literal text, or a named parameter (`:id`). */
type Segment = { kind: 'literal'; text: string } | { kind: 'param'; name: string }

/** A route of the table: one flow's `http` trigger, compiled. */
export interface Route {
  method: HttpMethod
  /** The pattern as written in the flow, e.g. `/orders/:id`. */
  path: string
  flow: FlowDefinition
  segments: readonly Segment[]
}

/** Two flows claiming the same method and route shape; the table keeps the first by name. */
export interface RouteConflict {
  method: HttpMethod
  path: string
  /** The flow the table routes to. */
  kept: string
  /** The flows it ignores for this route. */
  ignored: string[]
}

/** Result of {@link RouteTable.match}. */
export type RouteMatch =
  | { kind: 'found'; route: Route; params: Record<string, string> }
  /** The path matches a route, but not for this method; `allow` lists the methods that match. */
  | { kind: 'method-not-allowed'; allow: HttpMethod[] }
  | { kind: 'not-found' }

/** Splits a path into its segments: no empty segments, so `/a//b/` is `['a', 'b']`. */
export function pathSegments(path: string): string[] {
  return path.split('/').filter((part) => part !== '')
}

/**
 * Compiles a route pattern. A segment starting with `:` is a parameter (`:id`); anything else is
 * matched literally and case-sensitively. Throws a `TypeError` naming the flow for a bad pattern.
 */
export function compileRoute(path: string, flowName: string): Segment[] {
  if (!path.startsWith('/')) {
    throw new TypeError(`flow "${flowName}": http path "${path}" must start with "/"`)
  }
  const names = new Set<string>()
  return pathSegments(path).map((part): Segment => {
    if (!part.startsWith(':')) return { kind: 'literal', text: part }
    const name = part.slice(1)
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new TypeError(
        `flow "${flowName}": http path "${path}" has a bad parameter "${part}"; use letters, digits and _ after ":"`,
      )
    }
    if (names.has(name)) {
      throw new TypeError(
        `flow "${flowName}": http path "${path}" uses the parameter ":${name}" twice`,
      )
    }
    names.add(name)
    return { kind: 'param', name }
  })
}

/** The shape of a pattern: parameters' names do not count, so `/a/:x` and `/a/:y` are one shape. */
function shapeOf(segments: readonly Segment[]): string {
  return segments.map((s) => (s.kind === 'literal' ? `=${s.text}` : ':')).join('/')
}

/**
 * Orders routes so that literal segments win over parameters at the first place they differ:
 * `/orders/new` is tried before `/orders/:id`, whatever the order of the flows.
 */
function bySpecificity(a: Route, b: Route): number {
  const length = Math.min(a.segments.length, b.segments.length)
  for (let i = 0; i < length; i++) {
    const [x, y] = [a.segments[i] as Segment, b.segments[i] as Segment]
    if (x.kind !== y.kind) return x.kind === 'literal' ? -1 : 1
  }
  return 0
}

/** Matches `segments` against a route; the decoded parameters, or `undefined`. */
function matchRoute(route: Route, segments: readonly string[]): Record<string, string> | undefined {
  if (route.segments.length !== segments.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < segments.length; i++) {
    const pattern = route.segments[i] as Segment
    const part = segments[i] as string
    if (pattern.kind === 'literal') {
      if (pattern.text !== part) return undefined
      continue
    }
    try {
      params[pattern.name] = decodeURIComponent(part)
    } catch {
      return undefined // a malformed percent-escape matches no route
    }
  }
  return params
}

/** An immutable route table. Build one with {@link RouteTable.build}. */
export class RouteTable {
  /** Routes by method, most specific first. */
  readonly #byMethod: ReadonlyMap<HttpMethod, readonly Route[]>
  /** Every route, in flow-name order. */
  readonly routes: readonly Route[]
  /** Routes claimed by more than one flow. */
  readonly conflicts: readonly RouteConflict[]
  /** Flows whose `http` path could not be compiled, with why. */
  readonly invalid: readonly { flow: string; error: string }[]

  private constructor(
    routes: Route[],
    conflicts: RouteConflict[],
    invalid: { flow: string; error: string }[],
  ) {
    this.routes = routes
    this.conflicts = conflicts
    this.invalid = invalid
    const byMethod = new Map<HttpMethod, Route[]>()
    for (const route of routes) {
      const list = byMethod.get(route.method) ?? []
      list.push(route)
      byMethod.set(route.method, list)
    }
    for (const list of byMethod.values()) list.sort(bySpecificity)
    this.#byMethod = byMethod
  }

  /** An empty table: every request is unknown. */
  static empty(): RouteTable {
    return new RouteTable([], [], [])
  }

  /**
   * Builds the table of the `http` triggers of `flows`. Flows are taken in name order; when two
   * claim the same method and route shape, the first keeps it and the conflict is recorded. A flow
   * with a bad path is left out and recorded in `invalid`.
   */
  static build(flows: readonly FlowDefinition[]): RouteTable {
    const routes: Route[] = []
    const invalid: { flow: string; error: string }[] = []
    const claimed = new Map<string, { route: Route; conflict?: RouteConflict }>()
    const conflicts: RouteConflict[] = []
    const sorted = [...flows].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const flow of sorted) {
      const trigger = flow.trigger
      if (trigger.kind !== 'http') continue
      let segments: Segment[]
      try {
        segments = compileRoute(trigger.path, flow.name)
      } catch (error) {
        invalid.push({ flow: flow.name, error: (error as Error).message })
        continue
      }
      const route: Route = { method: trigger.method, path: trigger.path, flow, segments }
      const key = `${trigger.method} ${shapeOf(segments)}`
      const owner = claimed.get(key)
      if (owner !== undefined) {
        if (owner.conflict === undefined) {
          owner.conflict = {
            method: trigger.method,
            path: owner.route.path,
            kept: owner.route.flow.name,
            ignored: [],
          }
          conflicts.push(owner.conflict)
        }
        owner.conflict.ignored.push(flow.name)
        continue
      }
      claimed.set(key, { route })
      routes.push(route)
    }
    return new RouteTable(routes, conflicts, invalid)
  }

  /** Number of routes. */
  get size(): number {
    return this.routes.length
  }

  /** Finds the route of `method` and `path` (a path without its query string). */
  match(method: string, path: string): RouteMatch {
    const segments = pathSegments(path)
    const upper = method.toUpperCase() as HttpMethod
    for (const route of this.#byMethod.get(upper) ?? []) {
      const params = matchRoute(route, segments)
      if (params !== undefined) return { kind: 'found', route, params }
    }
    const allow: HttpMethod[] = []
    for (const [other, routes] of this.#byMethod) {
      if (other === upper) continue
      if (routes.some((route) => matchRoute(route, segments) !== undefined)) allow.push(other)
    }
    return allow.length > 0
      ? { kind: 'method-not-allowed', allow: allow.sort() }
      : { kind: 'not-found' }
  }
}
