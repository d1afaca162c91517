/**
 * The flow host: triggers flows over HTTP routes, schedules and event sources, with
 * leader-elected flows; see {@link createFlowHost}.
 */
export { FlowHost, createFlowHost } from './host.js'
export type {
  DispatchOptions,
  DispatchResult,
  FlowHostOptions,
  FlowLoader,
  FlowRunCounts,
  FlowStatus,
  HostStatus,
  RunRecord,
} from './host.js'
export { RouteTable, compileRoute } from './routes.js'
export type { Route, RouteConflict, RouteMatch } from './routes.js'
export type { ReloadGuardStats, ReloadOutcome } from './reload-guard.js'
export type { Tick, TickerStats } from './schedule.js'
export type { EventOrigin, SourceStats } from './sources.js'
export { DirFlowHost, createFlowHostFromDir, parseConnections } from './from-dir.js'
export type { Connections, DirHostStatus, FlowHostFromDirOptions } from './from-dir.js'
