/**
 * The shell blocks of README.md and docs/ (```sh) are commands for a person to type; they are not
 * run here (they start servers, install packages or run the whole suite). This test keeps them
 * from rotting all the same: every `npm start` / `npm test` / `npm run <script>` names a script
 * that exists (in the workspace it names), every `flowcache …` command (also through
 * `npm run flowcache -- …`) names a command and options the CLI has, and every file a
 * `npx vitest run` names exists.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { buildProgram } from '../src/cli/index.js'

const root = fileURLToPath(new URL('../../../', import.meta.url))

/** Workspaces by the name `--workspace` takes. */
const workspaces = new Map<string, string>([
  ['flowcache', 'packages/flowcache'],
  ['@flowcache/server', 'packages/server'],
  ['@flowcache/bench', 'bench'],
])

function scriptsOf(dir: string): Record<string, string> {
  const manifest = JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as {
    scripts?: Record<string, string>
  }
  return manifest.scripts ?? {}
}

/** Markdown files of the documentation: README.md and docs/ (one level of folders). */
function pages(): string[] {
  const found = ['README.md']
  for (const entry of readdirSync(join(root, 'docs'), { withFileTypes: true })) {
    if (entry.isFile() && entry.name.endsWith('.md')) found.push(`docs/${entry.name}`)
    if (entry.isDirectory()) {
      for (const name of readdirSync(join(root, 'docs', entry.name))) {
        if (name.endsWith('.md')) found.push(`docs/${entry.name}/${name}`)
      }
    }
  }
  return found
}

interface ShellLine {
  where: string
  text: string
}

/** The commands of every ```sh block: continuation lines joined, comments dropped. */
function shellLines(): ShellLine[] {
  const lines: ShellLine[] = []
  for (const page of pages()) {
    const text = readFileSync(join(root, page), 'utf8')
    for (const block of text.matchAll(/^```sh[^\n]*\n([\s\S]*?)^```/gm)) {
      const start = text.slice(0, block.index).split('\n').length + 1
      const raw = (block[1] ?? '').replace(/\\\n\s*/g, ' ').split('\n')
      raw.forEach((line, i) => {
        const command = line.replace(/\s+#\s.*$/, '').trim()
        if (command !== '' && !command.startsWith('#')) {
          lines.push({ where: `${page}:${start + i}`, text: command })
        }
      })
    }
  }
  return lines
}

/** Splits a command line into words, honouring single and double quotes. */
function words(line: string): string[] {
  const out: string[] = []
  for (const match of line.matchAll(/'([^']*)'|"((?:[^"\\]|\\.)*)"|(\S+)/g)) {
    out.push(match[1] ?? match[2] ?? match[3] ?? '')
  }
  return out
}

/** What is wrong with `flowcache <args>`, or undefined. */
function checkCli(args: string[]): string | undefined {
  const program = buildProgram(
    { stdout: () => undefined, stderr: () => undefined, readStdin: () => Promise.resolve('') },
    () => undefined,
  )
  const [name, ...rest] = args
  const command = program.commands.find((c) => c.name() === name)
  if (command === undefined) return `flowcache has no command "${name}"`
  for (const word of rest) {
    if (!word.startsWith('--')) continue
    const flag = word.split('=')[0] ?? word
    if (flag === '--help') continue
    if (!command.options.some((option) => option.long === flag)) {
      return `flowcache ${name} has no option ${flag}`
    }
  }
  return undefined
}

/** What is wrong with one simple command, or undefined (commands not checked pass). */
function check(command: string[]): string | undefined {
  while (/^[A-Z_][A-Z0-9_]*=/.test(command[0] ?? '')) command.shift()
  const [program, ...args] = command
  if (program === 'flowcache') return checkCli(args)
  if (program === 'npm') {
    const [verb, ...rest] = args
    if (verb === 'start' || verb === 'test') {
      return verb in scriptsOf('.') ? undefined : `package.json has no "${verb}" script`
    }
    if (verb !== 'run') return undefined
    const name = rest[0] ?? ''
    const at = rest.indexOf('--workspace')
    const dir = at >= 0 ? workspaces.get(rest[at + 1] ?? '') : '.'
    if (dir === undefined) return `unknown workspace ${rest[at + 1]}`
    if (!(name in scriptsOf(dir))) return `${dir}/package.json has no "${name}" script`
    if (name === 'flowcache') {
      const dash = rest.indexOf('--')
      return dash < 0
        ? 'npm run flowcache needs -- before its arguments'
        : checkCli(rest.slice(dash + 1))
    }
    return undefined
  }
  if (program === 'npx' && args[0] === 'vitest') {
    for (let i = 1; i < args.length; i++) {
      const word = args[i] ?? ''
      if (word === '-t' || word === '--project') i++
      else if (!word.startsWith('-') && word !== 'run' && !existsSync(join(root, word))) {
        return `no file or folder ${word}`
      }
    }
  }
  return undefined
}

const all = shellLines()

describe('shell blocks of the docs', () => {
  it('are found', () => {
    expect(all.length).toBeGreaterThan(20)
  })

  for (const line of all) {
    it(`${line.where}: ${line.text.slice(0, 80)}`, () => {
      for (const part of line.text.split(/&&|\||;/)) {
        const problem = check(words(part.trim()))
        expect(problem, `${line.where}: ${line.text}`).toBeUndefined()
      }
    })
  }

  it('catch a command, an option and a script that do not exist', () => {
    expect(check(words('flowcache serv'))).toContain('no command')
    expect(check(words('flowcache run f.yaml --evnt x'))).toContain('no option --evnt')
    expect(check(words('npm run bench:nothing --workspace @flowcache/bench'))).toContain(
      'no "bench:nothing"',
    )
    expect(check(words('npx vitest run packages/flowcache/test/missing.test.ts'))).toContain(
      'no file',
    )
    expect(check(words("npm run flowcache -- run x.yaml --event '{}'"))).toBeUndefined()
  })
})
