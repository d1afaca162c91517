/**
 * How errors become HTTP answers: a status per error code and the body
 * `{ error: { code, message } }`.
 */
import { FlowcacheError } from '../flowcache.js'

/** HTTP status of each error code; codes not listed are 500. */
export const STATUS_BY_CODE: Readonly<Record<string, number>> = {
  E_INVALID_ARGUMENT: 400,
  E_KEY_TOO_LONG: 400,
  E_UNSUPPORTED_VALUE: 400,
  E_BATCH_TOO_LARGE: 400,
  E_NOT_A_NUMBER: 409,
  E_VALUE_TOO_LARGE: 413,
  E_LOCK_TIMEOUT: 409,
  E_LOCK_LOST: 409,
  E_NOT_LEADER: 409,
  E_NOT_FOUND: 404,
  E_UNAUTHORIZED: 401,
  E_FLOW_INVALID: 400,
  E_FLOW_STEP: 500,
  E_STORE_UNAVAILABLE: 503,
  E_CLOSED: 503,
  E_FACTORY_TIMEOUT: 504,
}

/** The JSON body of an error answer. */
export interface ErrorBody {
  error: { code: string; message: string }
}

/** An error the API answers with its own status and code (404, 401…). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = 'HttpError'
  }
}

/** Fastify's own errors carry `statusCode` and `code` (`FST_ERR_CTP_BODY_TOO_LARGE`…). */
interface FrameworkError {
  statusCode?: unknown
  code?: unknown
  message?: unknown
}

/**
 * The status and body of an error: flowcache errors by code, {@link HttpError}s as they are,
 * the framework's client errors (bad JSON, body too large) with their status; anything else is
 * a 500 whose message says no more than that (details go to the log).
 */
export function errorAnswer(error: unknown): { status: number; body: ErrorBody } {
  if (error instanceof HttpError) {
    return { status: error.status, body: { error: { code: error.code, message: error.message } } }
  }
  if (error instanceof FlowcacheError) {
    const status = STATUS_BY_CODE[error.code] ?? 500
    return { status, body: { error: { code: error.code, message: error.message } } }
  }
  const framework = (typeof error === 'object' && error !== null ? error : {}) as FrameworkError
  const status = framework.statusCode
  if (typeof status === 'number' && status >= 400 && status < 500) {
    const code = status === 413 ? 'E_VALUE_TOO_LARGE' : 'E_BAD_REQUEST'
    const message =
      status === 413
        ? 'the request body is larger than the server accepts (server.body_limit); send less'
        : typeof framework.message === 'string'
          ? framework.message
          : 'bad request'
    return { status, body: { error: { code, message } } }
  }
  return {
    status: 500,
    body: { error: { code: 'E_INTERNAL', message: 'internal error; see the server log' } },
  }
}
