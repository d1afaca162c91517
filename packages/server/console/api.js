// @ts-check
/**
 * Calls to the flowcache REST API from the console. The token, when the server requires one, is
 * kept in `sessionStorage` (gone when the tab closes) and sent only in the `Authorization`
 * header, never in a URL.
 */

const TOKEN_KEY = 'flowcache.token'

/** An answer of the API that is not 2xx. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
  }
}

/** @returns {string | null} the token of this tab, if one was given */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY)
}

/** @param {string | null} token the token to keep for this tab; `null` forgets it */
export function setToken(token) {
  if (token === null || token === '') sessionStorage.removeItem(TOKEN_KEY)
  else sessionStorage.setItem(TOKEN_KEY, token)
}

/**
 * Calls the API and returns its JSON answer.
 *
 * @param {string} method
 * @param {string} path starting with `/v1/`
 * @param {unknown} [body] sent as JSON
 * @returns {Promise<any>}
 */
export async function call(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' }
  const token = getToken()
  if (token !== null) headers.authorization = `Bearer ${token}`
  if (body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  })
  const text = await response.text()
  /** @type {any} */
  let answer = null
  try {
    answer = text === '' ? null : JSON.parse(text)
  } catch {
    answer = null
  }
  if (!response.ok) {
    const error = answer?.error
    throw new ApiError(
      response.status,
      typeof error?.code === 'string' ? error.code : `HTTP_${response.status}`,
      typeof error?.message === 'string' ? error.message : `${method} ${path}: ${response.status}`,
    )
  }
  return answer
}

/**
 * A `:ns` or `:key` path segment.
 *
 * @param {string} part
 * @returns {string}
 */
export function segment(part) {
  return encodeURIComponent(part)
}
