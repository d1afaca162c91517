/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests: it throws
 * on anything a Prometheus server would reject or that the format forbids: bad metric or label
 * names, bad escapes, a sample before its family's TYPE, a TYPE or HELP given twice, a duplicate
 * series, a sample that belongs to no declared family, and histograms whose buckets are not
 * cumulative, lack `+Inf`, or disagree with `_count`.
 */

/** One sample line. */
export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** One metric family: its TYPE, HELP and samples. */
export interface Family {
  name: string
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped'
  help: string | undefined
  samples: Sample[]
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])
const FLOAT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/

function fail(lineNo: number, line: string, why: string): never {
  throw new Error(`exposition line ${lineNo}: ${why}: ${JSON.stringify(line)}`)
}

function parseValue(text: string, lineNo: number, line: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  if (text === 'NaN') return NaN
  if (!FLOAT.test(text)) fail(lineNo, line, `bad value ${text}`)
  return Number(text)
}

/** Parses `{a="x",b="y"}` starting at `at`; returns the labels and the index after `}`. */
function parseLabels(
  line: string,
  at: number,
  lineNo: number,
): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {}
  let i = at + 1
  for (;;) {
    if (line[i] === '}') return { labels, end: i + 1 }
    const eq = line.indexOf('=', i)
    if (eq === -1) fail(lineNo, line, 'label without =')
    const name = line.slice(i, eq)
    if (!LABEL_NAME.test(name) || name.startsWith('__')) {
      fail(lineNo, line, `bad label name ${name}`)
    }
    if (name in labels) fail(lineNo, line, `label ${name} given twice`)
    if (line[eq + 1] !== '"') fail(lineNo, line, 'label value not quoted')
    let value = ''
    let j = eq + 2
    for (;;) {
      const c = line[j]
      if (c === undefined) fail(lineNo, line, 'unterminated label value')
      if (c === '"') break
      if (c === '\\') {
        const next = line[j + 1]
        if (next === '\\') value += '\\'
        else if (next === '"') value += '"'
        else if (next === 'n') value += '\n'
        else fail(lineNo, line, `bad escape \\${String(next)}`)
        j += 2
        continue
      }
      value += c
      j++
    }
    labels[name] = value
    i = j + 1
    if (line[i] === ',') i++
    else if (line[i] !== '}') fail(lineNo, line, 'expected , or } after a label')
  }
}

/** The family a sample name belongs to, given the declared families. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const exact = families.get(name)
  if (exact !== undefined && exact.type !== 'histogram') return exact
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue
    const family = families.get(name.slice(0, -suffix.length))
    if (family?.type === 'histogram') return family
  }
  return undefined
}

/** Checks every histogram: cumulative buckets ending at `+Inf` equal to `_count`, and a `_sum`. */
function checkHistogram(family: Family): void {
  const groups = new Map<
    string,
    { buckets: Array<[number, number]>; sum?: number; count?: number }
  >()
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels
    const id = JSON.stringify(Object.entries(rest).sort())
    let group = groups.get(id)
    if (group === undefined) {
      group = { buckets: [] }
      groups.set(id, group)
    }
    if (sample.name === `${family.name}_bucket`) {
      if (le === undefined) throw new Error(`${family.name}_bucket without le`)
      group.buckets.push([parseValue(le, 0, le), sample.value])
    } else if (sample.name === `${family.name}_sum`) {
      group.sum = sample.value
    } else if (sample.name === `${family.name}_count`) {
      group.count = sample.value
    } else {
      throw new Error(`histogram ${family.name} has a plain sample ${sample.name}`)
    }
  }
  for (const [id, group] of groups) {
    const bounds = group.buckets.map(([le]) => le)
    const sorted = [...bounds].sort((a, b) => a - b)
    if (bounds.join() !== sorted.join()) throw new Error(`${family.name}${id}: le not ascending`)
    if (bounds.at(-1) !== Infinity) throw new Error(`${family.name}${id}: no le="+Inf" bucket`)
    for (let i = 1; i < group.buckets.length; i++) {
      if ((group.buckets[i] as [number, number])[1] < (group.buckets[i - 1] as [number, number])[1])
        throw new Error(`${family.name}${id}: buckets not cumulative`)
    }
    if (group.count === undefined || group.sum === undefined) {
      throw new Error(`${family.name}${id}: missing _count or _sum`)
    }
    if (group.buckets.at(-1)?.[1] !== group.count) {
      throw new Error(`${family.name}${id}: +Inf bucket differs from _count`)
    }
  }
}

/** Parses exposition text into its families, by name; throws on any violation of the format. */
export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition text must end with a newline')
  const families = new Map<string, Family>()
  const helps = new Set<string>()
  const types = new Set<string>()
  const series = new Set<string>()
  const lines = text.split('\n')
  lines.pop()
  lines.forEach((line, index) => {
    const lineNo = index + 1
    if (line.trim() === '') return
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (match === null) return // a plain comment
      const [, kind, name, rest] = match as unknown as [string, string, string, string]
      if (!METRIC_NAME.test(name)) fail(lineNo, line, `bad metric name ${name}`)
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) fail(lineNo, line, `unknown type ${rest}`)
        const existing = families.get(name)
        if (existing !== undefined && existing.samples.length > 0)
          fail(lineNo, line, 'TYPE after samples')
        if (types.has(name)) fail(lineNo, line, 'TYPE given twice')
        types.add(name)
        families.set(name, {
          name,
          type: rest as Family['type'],
          help: existing?.help,
          samples: [],
        })
      } else {
        if (helps.has(name)) fail(lineNo, line, 'HELP given twice')
        helps.add(name)
        if (/\\(?![\\n])/.test(rest)) fail(lineNo, line, 'bad escape in HELP')
        const existing = families.get(name)
        if (existing !== undefined) existing.help = rest
        else families.set(name, { name, type: 'untyped', help: rest, samples: [] })
      }
      return
    }
    const nameEnd = line.search(/[{ ]/)
    if (nameEnd <= 0) fail(lineNo, line, 'no metric name')
    const name = line.slice(0, nameEnd)
    if (!METRIC_NAME.test(name)) fail(lineNo, line, `bad metric name ${name}`)
    let labels: Record<string, string> = {}
    let rest = nameEnd
    if (line[nameEnd] === '{') {
      const parsed = parseLabels(line, nameEnd, lineNo)
      labels = parsed.labels
      rest = parsed.end
    }
    if (line[rest] !== ' ') fail(lineNo, line, 'no space before the value')
    const parts = line.slice(rest + 1).split(' ')
    if (parts.length > 2 || parts[0] === '') fail(lineNo, line, 'bad value or timestamp')
    const value = parseValue(parts[0] as string, lineNo, line)
    if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) fail(lineNo, line, 'bad timestamp')
    const family = familyOf(name, families)
    if (family === undefined) fail(lineNo, line, `sample of an undeclared family ${name}`)
    const id = `${name}${JSON.stringify(Object.entries(labels).sort())}`
    if (series.has(id)) fail(lineNo, line, 'duplicate series')
    series.add(id)
    if (family.type === 'counter' && !(value >= 0)) fail(lineNo, line, 'negative counter')
    family.samples.push({ name, labels, value })
  })
  for (const family of families.values()) {
    if (family.type === 'histogram') checkHistogram(family)
  }
  return families
}

/** The value of the one sample of `name` whose labels include `labels`; throws unless exactly one. */
export function valueOf(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string>,
): number {
  const all = [...families.values()].flatMap((family) => family.samples)
  const found = all.filter(
    (sample) =>
      sample.name === name &&
      Object.entries(labels).every(([key, value]) => sample.labels[key] === value),
  )
  if (found.length !== 1) {
    throw new Error(`${found.length} samples of ${name} with ${JSON.stringify(labels)}`)
  }
  return (found[0] as Sample).value
}
