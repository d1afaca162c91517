/**
 * Key templates of memoized steps: `customer:{{event.data.id}}`. A placeholder names a path in
 * the step's input event; its value is escaped so that two different events can never produce
 * the same key by putting separators in their data.
 */
import { canonicalize, InvalidArgumentError } from '../flowcache.js'

/** One part of a parsed template: literal text, or a path into the event. */
export type TemplatePart = { text: string } | { path: readonly (string | number)[]; source: string }

/** A problem in a template, with its offset in the template text (0-based). */
export interface TemplateProblem {
  offset: number
  message: string
}

const SEGMENT = /^(?:\.([A-Za-z_$][\w$-]*)|\[(\d+)\])/

/** Parses `event.data.items[0].sku` (without braces) into its segments after `event`. */
function parsePath(source: string): (string | number)[] | undefined {
  if (!source.startsWith('event')) return undefined
  const path: (string | number)[] = []
  let rest = source.slice('event'.length)
  while (rest !== '') {
    const match = SEGMENT.exec(rest)
    if (match === null) return undefined
    if (match[1] !== undefined) path.push(match[1])
    else path.push(Number(match[2]))
    rest = rest.slice(match[0].length)
  }
  return path
}

/**
 * Parses a key template. Returns its parts, or the problems found (an unclosed `{{`, a
 * placeholder that is not a path into `event`, a `}}` without `{{`).
 */
export function parseKeyTemplate(
  template: string,
): { parts: TemplatePart[] } | { problems: TemplateProblem[] } {
  const parts: TemplatePart[] = []
  const problems: TemplateProblem[] = []
  let index = 0
  while (index < template.length) {
    const open = template.indexOf('{{', index)
    const literalEnd = open < 0 ? template.length : open
    const literal = template.slice(index, literalEnd)
    const stray = literal.indexOf('}}')
    if (stray >= 0) {
      problems.push({ offset: index + stray, message: "has '}}' without a matching '{{'" })
    }
    if (literal !== '') parts.push({ text: literal })
    if (open < 0) break
    const close = template.indexOf('}}', open + 2)
    if (close < 0) {
      problems.push({ offset: open, message: "has '{{' without a closing '}}'" })
      break
    }
    const source = template.slice(open + 2, close).trim()
    const path = parsePath(source)
    if (path === undefined) {
      problems.push({
        offset: open,
        message: `has a placeholder {{${source}}} that is not a path into the event; write e.g. {{event.data.id}} or {{event.data.items[0].sku}}`,
      })
    } else {
      parts.push({ path, source })
    }
    index = close + 2
  }
  return problems.length > 0 ? { problems } : { parts }
}

/** Reads `path` in `value`, own properties only. */
function lookup(value: unknown, path: readonly (string | number)[]): unknown {
  let current = value
  for (const segment of path) {
    if (typeof current !== 'object' || current === null) return undefined
    if (!Object.prototype.hasOwnProperty.call(current, segment)) return undefined
    current = (current as Record<string | number, unknown>)[segment]
  }
  return current
}

/**
 * Escapes a placeholder's value: strings are percent-encoded (`encodeURIComponent`, so `:`, `/`,
 * `{` and `%` never appear raw), numbers, booleans and `null` as their JSON text, objects and
 * arrays as their canonical JSON (key order does not matter), percent-encoded.
 */
export function escapeKeyValue(value: unknown): string {
  if (typeof value === 'string') return encodeURIComponent(value)
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) {
    return encodeURIComponent(JSON.stringify(value))
  }
  return encodeURIComponent(canonicalize(value))
}

/**
 * Builds the key of an event from a parsed template. Throws `InvalidArgumentError` when a
 * placeholder's path is missing in the event: a memoized step must not share one entry between
 * events that lack the data its key is made of.
 */
export function renderKeyTemplate(parts: readonly TemplatePart[], event: unknown): string {
  let key = ''
  for (const part of parts) {
    if ('text' in part) {
      key += part.text
      continue
    }
    const value = lookup(event, part.path)
    if (value === undefined) {
      throw InvalidArgumentError.format(
        'cache.key',
        `{{${part.source}}} is not in the event; send events that have it, or change the step's cache.key`,
      )
    }
    key += escapeKeyValue(value)
  }
  return key
}
