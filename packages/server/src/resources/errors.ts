/**
 * Errors of the flow host's resource caches. All are `FlowcacheError`s with a stable `code`.
 */
import { FlowcacheError, type FlowcacheErrorOptions } from '../flowcache.js'

/**
 * An artifact's content does not have the sha256 digest the caller expected. Nothing was stored:
 * check the digest the caller pinned, or the source the artifact was fetched from.
 */
export class ArtifactDigestError extends FlowcacheError {
  static override readonly code: string = 'E_ARTIFACT_DIGEST'
  /** The digest the caller expected (lowercase hex). */
  readonly expected: string
  /** The digest of the content that was fetched (lowercase hex). */
  readonly actual: string

  constructor(message: string, expected: string, actual: string, options?: FlowcacheErrorOptions) {
    super(message, options)
    this.expected = expected
    this.actual = actual
  }
}

/**
 * An artifact could not be fetched: the fetch function threw, or returned something that is not
 * bytes. `cause` holds the underlying error. Nothing was stored; the next `get` fetches again.
 */
export class ArtifactFetchError extends FlowcacheError {
  static override readonly code: string = 'E_ARTIFACT_FETCH'
}

/**
 * A refreshing resource could not be loaded and there is no earlier value to serve instead (the
 * first load, a load after `clear()`, a debug load or a manual `refresh()`). `cause` holds the
 * loader's error; for a file resource the message names the file and, for a parse error, the line.
 */
export class ResourceLoadError extends FlowcacheError {
  static override readonly code: string = 'E_RESOURCE_LOAD'
  /** The resource's name. */
  readonly resource: string

  constructor(resource: string, message: string, options?: FlowcacheErrorOptions) {
    super(message, options)
    this.resource = resource
  }
}

/**
 * A resource file could not be parsed, or its content was refused by the resource's `parse`
 * function. The message starts with `file:line:column` when the position is known.
 */
export class ResourceParseError extends FlowcacheError {
  static override readonly code: string = 'E_RESOURCE_PARSE'
  /** The file that was read. */
  readonly file: string
  /** Line of the problem (1-based), when known. */
  readonly line: number | undefined
  /** Column of the problem (1-based), when known. */
  readonly column: number | undefined

  constructor(
    file: string,
    problem: string,
    position: { line?: number; column?: number } = {},
    options?: FlowcacheErrorOptions,
  ) {
    const where =
      position.line === undefined
        ? file
        : `${file}:${position.line}${position.column === undefined ? '' : `:${position.column}`}`
    super(`${where}: ${problem}`, options)
    this.file = file
    this.line = position.line
    this.column = position.column
  }
}
