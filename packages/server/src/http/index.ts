/**
 * The HTTP server of `flowcache serve`: {@link createServer}.
 */
export {
  API_CONTENT_SECURITY_POLICY,
  CONTENT_SECURITY_POLICY,
  NAMESPACE_SEPARATOR,
  SCAN_LIMIT,
  createServer,
  toJson,
} from './server.js'
export type { FlowcacheServer, RouteInfo, RunFlow, ServerOptions } from './server.js'
export { STATUS_BY_CODE, HttpError, errorAnswer } from './errors.js'
export type { ErrorBody } from './errors.js'
export { TokenCheck } from './auth.js'
