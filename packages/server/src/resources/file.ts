/**
 * A refreshing resource read from a JSON or YAML file, e.g. a connections or secrets file. A
 * file that is missing, unreadable or not valid JSON/YAML is a failed load: the last good value
 * stays in use and the error names the file and the line.
 */
import { readFile } from 'node:fs/promises'
import { extname, resolve } from 'node:path'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { InvalidArgumentError } from '../flowcache.js'
import { ResourceParseError } from './errors.js'
import {
  createRefreshingResource,
  type RefreshingResource,
  type RefreshingResourceOptions,
} from './refreshing.js'

/** How a resource file is parsed. */
export type FileFormat = 'json' | 'yaml'

/** Options of {@link fileResource}: those of a refreshing resource, minus `load`. */
export interface FileResourceOptions<T> extends Omit<
  RefreshingResourceOptions<T>,
  'load' | 'name'
> {
  /** Name of the resource in logs, errors and stats. @default the file's absolute path */
  name?: string
  /** How the file is parsed. @default `json` for a `.json` file, else `yaml` */
  format?: FileFormat
}

/** Line and column (1-based) of offset `offset` in `text`. */
function positionOf(text: string, offset: number): { line: number; column: number } {
  let line = 1
  let lineStart = 0
  for (let index = 0; index < offset && index < text.length; index++) {
    if (text[index] === '\n') {
      line++
      lineStart = index + 1
    }
  }
  return { line, column: offset - lineStart + 1 }
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y
const ESCAPE = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/y

/**
 * Offset of the first JSON syntax error in `text`, or `undefined` when none is found (or the
 * nesting is too deep to scan). `JSON.parse` does not always say where it failed; this does.
 */
function jsonErrorOffset(text: string): number | undefined {
  let index = 0
  const fail = (): never => {
    throw new JsonSyntaxAt(index)
  }
  const space = (): void => {
    while (index < text.length && ' \t\n\r'.includes(text[index] as string)) index++
  }
  const string = (): void => {
    index++
    while (index < text.length) {
      const char = text[index] as string
      if (char === '"') {
        index++
        return
      }
      if (char === '\\') {
        ESCAPE.lastIndex = index
        if (!ESCAPE.test(text)) fail()
        index = ESCAPE.lastIndex
      } else if (char < ' ') fail()
      else index++
    }
    fail()
  }
  const value = (): void => {
    space()
    const char = text[index]
    if (char === '{') {
      index++
      space()
      if (text[index] === '}') {
        index++
        return
      }
      for (;;) {
        space()
        if (text[index] !== '"') fail()
        string()
        space()
        if (text[index] !== ':') fail()
        index++
        value()
        space()
        if (text[index] === ',') index++
        else if (text[index] === '}') {
          index++
          return
        } else fail()
      }
    }
    if (char === '[') {
      index++
      space()
      if (text[index] === ']') {
        index++
        return
      }
      for (;;) {
        value()
        space()
        if (text[index] === ',') index++
        else if (text[index] === ']') {
          index++
          return
        } else fail()
      }
    }
    if (char === '"') return string()
    for (const literal of ['true', 'false', 'null']) {
      if (text.startsWith(literal, index)) {
        index += literal.length
        return
      }
    }
    NUMBER.lastIndex = index
    if (NUMBER.test(text)) {
      index = NUMBER.lastIndex
      return
    }
    fail()
  }
  try {
    value()
    space()
    if (index < text.length) fail()
    return undefined
  } catch (error) {
    if (error instanceof JsonSyntaxAt) return error.offset
    return undefined
  }
}

/** Thrown inside {@link jsonErrorOffset} to unwind to the offset of the error. */
class JsonSyntaxAt extends Error {
  constructor(readonly offset: number) {
    super(`JSON syntax error at offset ${offset}`)
  }
}

/** Parses JSON text; a syntax error becomes a {@link ResourceParseError} with its position. */
function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text) as unknown
  } catch (error) {
    const offset = jsonErrorOffset(text)
    if (offset === undefined) {
      const reason = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error)
      throw new ResourceParseError(file, `invalid JSON: ${reason}`, {}, { cause: error })
    }
    const char = text[offset]
    const reason =
      char === undefined ? 'unexpected end of the file' : `unexpected ${JSON.stringify(char)}`
    throw new ResourceParseError(file, `invalid JSON: ${reason}`, positionOf(text, offset), {
      cause: error,
    })
  }
}

/** Parses YAML text; a syntax error becomes a {@link ResourceParseError} with its position. */
function parseYamlText(text: string, file: string): unknown {
  try {
    return parseYaml(text) as unknown
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const at = error.linePos?.[0]
      const reason = (error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')
      throw new ResourceParseError(
        file,
        `invalid YAML: ${reason}`,
        at === undefined ? {} : { line: at.line, column: at.col },
        { cause: error },
      )
    }
    throw new ResourceParseError(
      file,
      `invalid YAML: ${error instanceof Error ? error.message : String(error)}`,
      {},
      { cause: error },
    )
  }
}

/**
 * Reads and parses a resource file. Errors name the file: a missing or unreadable file, a
 * syntax error (with line and column) or a document refused by `parse`.
 */
export async function loadResourceFile<T>(
  file: string,
  format: FileFormat,
  parse: (document: unknown) => T,
): Promise<T> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    const code =
      typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : ''
    throw new ResourceParseError(
      file,
      code === 'ENOENT'
        ? 'the file does not exist; create it or fix the path'
        : `cannot be read: ${error instanceof Error ? error.message : String(error)}`,
      {},
      { cause: error },
    )
  }
  const document = format === 'json' ? parseJson(text, file) : parseYamlText(text, file)
  try {
    return await parse(document)
  } catch (error) {
    throw new ResourceParseError(
      file,
      `is not a valid resource: ${error instanceof Error ? error.message : String(error)}`,
      {},
      { cause: error },
    )
  }
}

/**
 * A refreshing resource read from the JSON or YAML file at `path`: loaded by `start()` or the
 * first `get()`, reloaded every `refreshEvery` (default 5 minutes), the last good value kept
 * while the file is missing or invalid. `parse` turns the parsed document into the resource's
 * value and may refuse it by throwing (a zod schema's `parse` fits); by default the document is
 * the value. Failed loads carry a {@link ResourceParseError} as `cause`, whose message starts
 * with `file:line:column` for a syntax error.
 *
 * @example
 * const connections = fileResource('connections.yaml', (doc) => ConnectionsSchema.parse(doc))
 * await connections.start()
 */
export function fileResource<T = unknown>(
  path: string,
  parse?: (document: unknown) => T,
  options: FileResourceOptions<T> = {},
): RefreshingResource<T> {
  if (typeof path !== 'string' || path === '') {
    throw InvalidArgumentError.format('path', 'must be a non-empty file path')
  }
  if (parse !== undefined && typeof parse !== 'function') {
    throw InvalidArgumentError.format('parse', `must be a function; got ${typeof parse}`)
  }
  if (options.format !== undefined && options.format !== 'json' && options.format !== 'yaml') {
    throw InvalidArgumentError.format(
      'format',
      `must be "json" or "yaml"; got ${JSON.stringify(options.format)}`,
    )
  }
  const file = resolve(path)
  const format = options.format ?? (extname(file).toLowerCase() === '.json' ? 'json' : 'yaml')
  const toValue = parse ?? ((document: unknown) => document as T)
  const { name, format: _format, ...rest } = options
  return createRefreshingResource<T>({
    ...rest,
    name: name ?? file,
    load: () => loadResourceFile(file, format, toValue),
  })
}
