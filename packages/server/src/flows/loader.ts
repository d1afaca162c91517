/**
 * The flow loader: reads a flow's YAML file, validates it and turns it into a
 * {@link FlowDefinition}. Every problem is reported with its file, line, column and field path
 * (`flows/orders.yaml:7:5 steps[1].cache.ttl: must be a duration like '5m'`), all problems of a
 * file at once, YAML syntax errors included.
 */
import { createHash } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { isMap, isNode, isScalar, LineCounter, parseDocument, Scalar, type Document } from 'yaml'
import { z } from 'zod'
import { describeInput as describe, durationSchema as durationField } from '../schema-text.js'
import { FlowValidationError, type FlowIssue } from './errors.js'
import { parseKeyTemplate } from './key-template.js'
import type { EventSource, FlowDefinition, HttpMethod, StepDefinition, Trigger } from './types.js'

/** Largest flow file accepted, in bytes. */
export const MAX_FLOW_FILE_BYTES = 1024 * 1024

/** File name endings the directory loader picks up. */
const FLOW_FILE = /\.ya?ml$/i

/** Flow, tenant and step names: letters, digits, `_`, `-`, `.`; starting with a letter or digit. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/
const NAME_RULE =
  'must be 1-100 letters, digits, _, - or ., starting with a letter or digit (e.g. orders-sync)'

const HTTP_METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']

/** An error function: "is required" for a missing field, else `problem; got …`. */
function expected(problem: string): (issue: { input?: unknown }) => string {
  return (issue) =>
    issue.input === undefined ? 'is required' : `${problem}; got ${describe(issue.input)}`
}

/** A mapping whose unknown fields are errors that list the known ones. */
function strict<Shape extends z.ZodRawShape>(shape: Shape, what: string) {
  const known = Object.keys(shape).join(', ')
  return z.strictObject(shape, {
    error: (issue) => {
      if (issue.code === 'unrecognized_keys') return `is not a field here (known: ${known})`
      if (issue.input === undefined) return 'is required'
      return `must be ${what}; got ${describe(issue.input)}`
    },
  })
}

const nameSchema = z
  .string({ error: expected('must be a string') })
  .regex(NAME, { error: NAME_RULE })

/** A duration: ms as a number, or a string like '5m'; parsed to ms. */
const durationSchema = durationField('5m')

const httpSchema = strict(
  {
    method: z
      .string({ error: expected(`must be one of ${HTTP_METHODS.join(', ')}`) })
      .transform((method) => method.toUpperCase())
      .refine((method) => (HTTP_METHODS as readonly string[]).includes(method), {
        error: `must be one of ${HTTP_METHODS.join(', ')}`,
      })
      .transform((method) => method as HttpMethod),
    path: z
      .string({ error: expected("must be a string like '/orders/:id'") })
      .regex(/^\/[^\s?#]*$/, {
        error: "must start with '/' and have no spaces, '?' or '#' (e.g. '/orders/:id')",
      }),
  },
  'a mapping with method and path',
)

const natsSchema = strict(
  {
    subject: z
      .string({ error: expected('must be a NATS subject like orders.created') })
      .regex(/^[^\s]+$/, { error: 'must be a NATS subject like orders.created (no spaces)' }),
    url: z
      .string({ error: expected("must be a NATS URL like 'nats://127.0.0.1:4222'") })
      .regex(/^(nats|tls|ws|wss):\/\/\S+$/, {
        error: "must be a NATS URL like 'nats://127.0.0.1:4222'",
      })
      .optional(),
  },
  'a mapping with subject (and url)',
)

const eventsSchema = strict(
  {
    file: z
      .string({ error: expected('must be the path of a JSONL file') })
      .min(1, { error: 'must be the path of a JSONL file' })
      .optional(),
    stdin: z.literal(true, { error: expected('must be true') }).optional(),
    nats: natsSchema.optional(),
  },
  'a mapping with one of file, stdin, nats',
).superRefine((events, ctx) => {
  const given = [events.file, events.stdin, events.nats].filter((value) => value !== undefined)
  if (given.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      message: `must have exactly one of file, stdin, nats; got ${given.length === 0 ? 'none' : 'several'}`,
    })
  }
})

const triggerSchema = strict(
  {
    http: httpSchema.optional(),
    schedule: strict({ every: durationSchema }, 'a mapping with every').optional(),
    events: eventsSchema.optional(),
  },
  'a mapping with one of http, schedule, events',
).superRefine((trigger, ctx) => {
  const given = [trigger.http, trigger.schedule, trigger.events].filter((t) => t !== undefined)
  if (given.length !== 1) {
    ctx.addIssue({
      code: 'custom',
      message: `must have exactly one of http, schedule, events; got ${given.length === 0 ? 'none' : 'several'}`,
    })
  }
})

const stepSchema = strict(
  {
    name: nameSchema,
    script: z
      .string({ error: expected('must be the JavaScript source of the step (use script: |)') })
      .refine((script) => script.trim() !== '', { error: 'must not be empty' }),
    cache: strict(
      {
        key: z
          .string({ error: expected("must be a key template like 'customer:{{event.data.id}}'") })
          .min(1, { error: 'must not be empty; leave it out to key by the whole event' })
          .superRefine((key, ctx) => {
            const parsed = parseKeyTemplate(key)
            if ('problems' in parsed) {
              for (const problem of parsed.problems) {
                ctx.addIssue({ code: 'custom', message: problem.message })
              }
            }
          })
          .optional(),
        ttl: durationSchema,
      },
      'a mapping with ttl (and key)',
    ).optional(),
  },
  'a mapping with name and script',
)

const flowSchema = strict(
  {
    name: nameSchema,
    tenant: nameSchema.default('default'),
    description: z.string({ error: expected('must be a string') }).optional(),
    trigger: triggerSchema,
    require_leader_election: z.boolean({ error: expected('must be true or false') }).default(false),
    connections: z
      .array(nameSchema, {
        error: expected('must be a list of connection names (e.g. [crm, billing])'),
      })
      .optional(),
    steps: z
      .array(stepSchema, { error: expected('must be a list of steps (- name: …, script: …)') })
      .min(1, { error: 'must have at least one step' }),
  },
  'a mapping with name, trigger and steps',
).superRefine((flow, ctx) => {
  if (flow.require_leader_election && flow.trigger.http !== undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['require_leader_election'],
      message:
        'cannot be true on an http-triggered flow: every replica serves HTTP requests; use it with schedule or events triggers',
    })
  }
  const declared = new Map<string, number>()
  flow.connections?.forEach((name, index) => {
    const first = declared.get(name)
    if (first === undefined) declared.set(name, index)
    else {
      ctx.addIssue({
        code: 'custom',
        path: ['connections', index],
        message: `'${name}' is already connections[${first}]; list each connection once`,
      })
    }
  })
  const seen = new Map<string, number>()
  flow.steps.forEach((step, index) => {
    const first = seen.get(step.name)
    if (first === undefined) seen.set(step.name, index)
    else {
      ctx.addIssue({
        code: 'custom',
        path: ['steps', index, 'name'],
        message: `'${step.name}' is already the name of steps[${first}]; step names must be unique`,
      })
    }
  })
})

type FlowInput = z.output<typeof flowSchema>

/** `steps[1].cache.ttl` from `['steps', 1, 'cache', 'ttl']`. */
export function fieldPath(path: readonly PropertyKey[]): string {
  let text = ''
  for (const segment of path) {
    if (typeof segment === 'number') text += `[${segment}]`
    else text += text === '' ? String(segment) : `.${String(segment)}`
  }
  return text
}

/** Positions in one parsed file. */
class Positions {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** Line and column (1-based) of a character offset. */
  at(offset: number): { line: number; column: number } {
    const { line, col } = this.lines.linePos(offset)
    return { line, column: col }
  }

  /** Where the node at `path` starts; the nearest existing parent's position when it is missing. */
  of(path: readonly PropertyKey[]): { line: number; column: number } {
    for (let length = path.length; length >= 0; length--) {
      const node: unknown =
        length === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, length), true)
      if (isNode(node) && node.range != null) return this.at(node.range[0])
    }
    return { line: 1, column: 1 }
  }

  /** Where the key `key` of the mapping at `path` is written. */
  ofKey(path: readonly PropertyKey[], key: string): { line: number; column: number } {
    const map: unknown = path.length === 0 ? this.doc.contents : this.doc.getIn(path, true)
    if (isMap(map)) {
      for (const pair of map.items) {
        if (isScalar(pair.key) && pair.key.value === key && pair.key.range != null) {
          return this.at(pair.key.range[0])
        }
      }
    }
    return this.of(path)
  }

  /** The scalar node at `path`, if it is one. */
  scalar(path: readonly PropertyKey[]): Scalar | undefined {
    const node: unknown = this.doc.getIn(path, true)
    return isScalar(node) ? node : undefined
  }
}

/** Turns zod's issues into flow issues with positions, in file order. */
function toIssues(error: z.ZodError, file: string, positions: Positions): FlowIssue[] {
  const issues: FlowIssue[] = []
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const path = [...issue.path, key]
        issues.push({
          file,
          ...positions.ofKey(issue.path, key),
          path: fieldPath(path),
          message: issue.message,
        })
      }
      continue
    }
    issues.push({
      file,
      ...positions.of(issue.path),
      path: fieldPath(issue.path),
      message: issue.message,
    })
  }
  return issues.sort((a, b) => a.line - b.line || a.column - b.column)
}

/**
 * Line in the file of the first line of a step's script, when a script line maps to exactly
 * one file line: a literal block (`script: |`) or a one-line scalar.
 */
function scriptLineOf(positions: Positions, index: number): number | undefined {
  const node = positions.scalar(['steps', index, 'script'])
  if (node?.range == null) return undefined
  const start = positions.at(node.range[0]).line
  if (node.type === Scalar.BLOCK_LITERAL) return start + 1
  const end = positions.at(Math.max(node.range[0], node.range[1] - 1)).line
  return end === start ? start : undefined
}

/** Builds the trigger from the validated mapping. */
function toTrigger(trigger: FlowInput['trigger']): Trigger {
  if (trigger.http !== undefined) {
    return { kind: 'http', method: trigger.http.method, path: trigger.http.path }
  }
  if (trigger.schedule !== undefined) return { kind: 'schedule', everyMs: trigger.schedule.every }
  const events = trigger.events
  let source: EventSource
  if (events?.file !== undefined) source = { kind: 'file', path: events.file }
  else if (events?.nats !== undefined) {
    source = { kind: 'nats', subject: events.nats.subject }
    if (events.nats.url !== undefined) source.url = events.nats.url
  } else source = { kind: 'stdin' }
  return { kind: 'events', source }
}

/** Sha256 of a file's content, hex: the flow's revision. */
export function revisionOf(content: string | Uint8Array): string {
  return createHash('sha256').update(content).digest('hex')
}

/** What {@link parseFlow} knows beyond the definition: where the name is, for duplicate errors. */
export interface ParsedFlow {
  flow: FlowDefinition
  /** Where the flow's `name` value is written. */
  namePosition: { line: number; column: number }
}

/**
 * Parses and validates the text of a flow file. `file` is the path shown in messages (as given);
 * `absolutePath` the one stored in the definition (default: `file` resolved against the current
 * directory). Throws {@link FlowValidationError} with every problem found.
 */
export function parseFlow(
  text: string,
  file: string,
  absolutePath: string = resolve(file),
): ParsedFlow {
  const lines = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true })
  if (doc.errors.length > 0) {
    const issues = doc.errors.map((error): FlowIssue => {
      const position = lines.linePos(error.pos[0])
      const message = error.message.split('\n')[0] ?? error.message
      return {
        file,
        line: position.line,
        column: position.col,
        path: '',
        message: `YAML syntax error: ${message}`,
      }
    })
    throw new FlowValidationError(file, issues)
  }
  const positions = new Positions(doc, lines)
  const result = flowSchema.safeParse(doc.toJS({ maxAliasCount: 100 }))
  if (!result.success) throw new FlowValidationError(file, toIssues(result.error, file, positions))
  const input = result.data
  const steps = input.steps.map((step, index): StepDefinition => {
    const definition: StepDefinition = {
      name: step.name,
      script: step.script,
      line: positions.of(['steps', index]).line,
    }
    if (step.cache !== undefined) {
      definition.cache = { ttlMs: step.cache.ttl }
      if (step.cache.key !== undefined) definition.cache.key = step.cache.key
    }
    const scriptLine = scriptLineOf(positions, index)
    if (scriptLine !== undefined) definition.scriptLine = scriptLine
    return definition
  })
  const flow: FlowDefinition = {
    name: input.name,
    tenant: input.tenant,
    file: absolutePath,
    revision: revisionOf(text),
    trigger: toTrigger(input.trigger),
    requireLeaderElection: input.require_leader_election,
    steps,
  }
  if (input.connections !== undefined && input.connections.length > 0) {
    flow.connections = input.connections
  }
  return { flow, namePosition: positions.of(['name']) }
}

/** Reads a flow file, refusing one larger than {@link MAX_FLOW_FILE_BYTES}. */
export async function readFlowFile(file: string): Promise<string> {
  let size: number
  try {
    size = (await stat(file)).size
  } catch (cause) {
    throw new FlowValidationError(
      file,
      [
        {
          file,
          line: 1,
          column: 1,
          path: '',
          message: `cannot be read: ${(cause as Error).message}`,
        },
      ],
      { cause },
    )
  }
  if (size > MAX_FLOW_FILE_BYTES) {
    throw new FlowValidationError(file, [
      {
        file,
        line: 1,
        column: 1,
        path: '',
        message: `is ${size} bytes; a flow file may have at most ${MAX_FLOW_FILE_BYTES}: move large data out of the scripts`,
      },
    ])
  }
  return readFile(file, 'utf8')
}

/**
 * Loads one flow file: reads, parses and validates it. Throws {@link FlowValidationError} (code
 * `E_FLOW_INVALID`) listing every problem with `file:line:col field: message`.
 */
export async function loadFlowFile(file: string): Promise<FlowDefinition> {
  return parseFlow(await readFlowFile(file), file).flow
}

/** Loads one file; {@link loadFlowsDir} can be given another one (the definition cache's). */
export type FlowFileLoader = (file: string) => Promise<ParsedFlow>

/** Options of {@link loadFlowsDir}. */
export interface LoadFlowsDirOptions {
  /** Loads one file. @default read and {@link parseFlow} it */
  load?: FlowFileLoader
}

/** What {@link loadFlowsDir} found: the valid flows, and one error per file that is not. */
export interface LoadedFlows {
  /** Valid flows, in file name order. */
  flows: FlowDefinition[]
  /** One `FlowValidationError` per invalid file (a duplicate flow name is one too). */
  errors: FlowValidationError[]
}

/**
 * Loads every `*.yaml` / `*.yml` file of `dir` (not its subfolders), in file name order. A bad
 * file does not hide the good ones: it becomes an entry of `errors`. A flow whose name another
 * file already used is an error naming both files; the first file (by name) keeps the flow.
 * Throws `FlowValidationError` only when the folder itself cannot be read.
 */
export async function loadFlowsDir(
  dir: string,
  options: LoadFlowsDirOptions = {},
): Promise<LoadedFlows> {
  const load = options.load ?? (async (file: string) => parseFlow(await readFlowFile(file), file))
  let names: string[]
  try {
    const entries = await readdir(dir, { withFileTypes: true })
    names = entries
      .filter((entry) => entry.isFile() && FLOW_FILE.test(entry.name))
      .map((entry) => entry.name)
      .sort()
  } catch (cause) {
    throw new FlowValidationError(
      dir,
      [
        {
          file: dir,
          line: 1,
          column: 1,
          path: '',
          message: `is not a readable folder of flow files: ${(cause as Error).message}`,
        },
      ],
      { cause },
    )
  }
  const flows: FlowDefinition[] = []
  const errors: FlowValidationError[] = []
  const byName = new Map<string, { file: string; position: { line: number; column: number } }>()
  for (const name of names) {
    const file = join(dir, name)
    let parsed: ParsedFlow
    try {
      parsed = await load(file)
    } catch (error) {
      if (error instanceof FlowValidationError) {
        errors.push(error)
        continue
      }
      throw error
    }
    const first = byName.get(parsed.flow.name)
    if (first !== undefined) {
      const where = `${first.file}:${first.position.line}:${first.position.column}`
      errors.push(
        new FlowValidationError(file, [
          {
            file,
            ...parsed.namePosition,
            path: 'name',
            message: `flow '${parsed.flow.name}' is already defined in ${where}; flow names must be unique, rename one of them`,
          },
        ]),
      )
      continue
    }
    byName.set(parsed.flow.name, { file, position: parsed.namePosition })
    flows.push(parsed.flow)
  }
  return { flows, errors }
}
