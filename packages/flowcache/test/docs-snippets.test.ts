/**
 * Every code snippet in the docs runs, so the docs cannot rot.
 *
 * The test reads `README.md` and every `docs/**\/*.md` page and collects the fenced code blocks.
 * What happens to a block depends on its fence info string:
 *
 *   ```ts / ```typescript / ```js / ```javascript
 *       Run as its own ES module: written to a temporary `.mts` file inside the repository (so
 *       `ioredis`, `@flowcache/server` and the other workspace dependencies resolve), with imports
 *       of `flowcache` and `flowcache/<subpath>` rewritten to the library's source files, then
 *       executed with `node --import tsx` against the real Redis and NATS JetStream servers of
 *       this test run (their URLs are passed as `FLOWCACHE_REDIS_URL` / `FLOWCACHE_NATS_URL`).
 *       The block passes when the process exits with code 0 within the time limit; a snippet
 *       checks its own claims with `node:assert`. `REDIS_URL` is the test run's Redis too.
 *       Deployments a page shows are started for the run only when a block uses their variable:
 *       `REDIS_SENTINELS` (a master and a Sentinel watching it as `mymaster`, `host:port`) and
 *       `REDIS_CLUSTER_NODES` (a private three-master Redis Cluster, `host:port,…`).
 *   ```ts vitest
 *       A vitest test file: written as `<name>.test.mts` (imports rewritten as above) into a
 *       folder of its own with a minimal vitest config, and run with `vitest run` in a child
 *       process. It passes when vitest exits with code 0, that is when every test in it passed.
 *   ```js script
 *       A flow step script: run once in the flow host's sandbox (`createSandbox` of
 *       `@flowcache/server`) with `ctx.cache` on a fresh memory cache and the event
 *       `{ data: { id: 42, customer: 'c-7', total: 1200 } }`. It passes when the run resolves
 *       (with the event or `null`); a script error or a wrong result fails it.
 *   ```ts fragment (or any language followed by `fragment`)
 *       A fragment that cannot run on its own (it needs a platform, or a package that cannot be
 *       installed next to flowcache's dependencies). It is listed as a skipped test whose name
 *       gives the reason, so fragments stay visible. Keep these rare: prefer adding the setup
 *       lines, or a deployment the test starts (see `REDIS_SENTINELS` above).
 *   ```yaml whose first line is a `# <relative path>` comment (e.g. `# flows/orders.yaml`)
 *       Written to that path in the working directory of the snippets (shared by all pages), so
 *       the snippets that load it run on the very file the page shows; a flow file that does
 *       not load makes its snippet fail. Two blocks naming one path must have the same content.
 *   ```yaml holding a flow (a top-level `steps:` key)
 *       Validated with the flow loader's `parseFlow` (of `@flowcache/server`), so a flow example
 *       with a wrong field fails.
 *   ```yaml holding a `flowcache.yaml` (a top-level `cache:`, `server:`, `flows:` or `quotas:`)
 *       Validated with the configuration loader's `loadConfig`, without environment variables,
 *       so a configuration example with a wrong key or value fails.
 *   ```sh, other ```yaml, ```text, ```json, other languages and unlabelled blocks
 *       Not executed: shell commands need a running server and change the machine, other YAML
 *       and JSON blocks are configuration of other programs (Prometheus) or shown next to a
 *       snippet that loads it, and text blocks are output.
 *
 * A fragment's reason is the rest of its info string: ```ts fragment needs Redis Sentinel.
 * Each test is named `<file>:<line>` after the line of the opening fence.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startRedisSentinel, type RedisSentinelHandle } from './helpers/sentinel.js'
import { startRedisCluster, type RedisClusterHandle } from './helpers/servers.js'
import { natsUrl, redisUrl } from './helpers/services.js'

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
const sourceDir = join(repoRoot, 'packages', 'flowcache', 'src')

/** Languages whose blocks are executed. */
const RUNNABLE = new Set(['ts', 'typescript', 'js', 'javascript'])

/** How long one snippet may run, including the tsx start-up. */
const SNIPPET_TIMEOUT_MS = 60_000

/** `flowcache` subpath exports and the source file each one is built from. */
const SUBPATHS: Record<string, string> = {
  flowcache: 'index.ts',
  'flowcache/testing': 'testing/index.ts',
  'flowcache/sqlite': 'stores/sqlite/index.ts',
  'flowcache/redis': 'stores/redis/index.ts',
  'flowcache/nats': 'stores/nats/index.ts',
  'flowcache/keyv': 'keyv/index.ts',
  'flowcache/prometheus': 'prometheus/index.ts',
}

/** One fenced code block of a markdown page. */
interface Snippet {
  /** Path relative to the repository root. */
  file: string
  /** 1-based line of the opening fence. */
  line: number
  /** First word of the info string, lower-cased. */
  lang: string
  /** The remaining words of the info string, e.g. `fragment`. */
  flags: string[]
  code: string
}

/** Markdown pages whose snippets are checked: README.md and docs/**\/*.md. */
function markdownFiles(): string[] {
  const files = [join(repoRoot, 'README.md')]
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.md')) files.push(path)
    }
  }
  walk(join(repoRoot, 'docs'))
  return files.sort()
}

/** Splits a page into its fenced code blocks (``` fences; nested fences are not supported). */
export function extractSnippets(markdown: string, file: string): Snippet[] {
  const snippets: Snippet[] = []
  const lines = markdown.split('\n')
  let open: { line: number; info: string; body: string[] } | undefined
  lines.forEach((text, index) => {
    if (open === undefined) {
      const fence = /^```(.*)$/.exec(text)
      if (fence) open = { line: index + 1, info: (fence[1] ?? '').trim(), body: [] }
    } else if (/^```\s*$/.test(text)) {
      const [lang = '', ...flags] = open.info.split(/\s+/).filter((word) => word !== '')
      snippets.push({
        file,
        line: open.line,
        lang: lang.toLowerCase(),
        flags,
        code: open.body.join('\n'),
      })
      open = undefined
    } else {
      open.body.push(text)
    }
  })
  if (open !== undefined) throw new Error(`${file}:${open.line}: code fence is never closed`)
  return snippets
}

/** Points `flowcache` and `flowcache/<subpath>` imports at the library's source files. */
function rewriteImports(code: string): string {
  return code.replace(
    /(from\s+|import\s*\(\s*|import\s+)'(flowcache(?:\/[a-z]+)?)'/g,
    (all, lead, name) => {
      const target = SUBPATHS[name as string]
      if (target === undefined) throw new Error(`unknown flowcache subpath '${name as string}'`)
      return `${lead as string}'${join(sourceDir, target)}'`
    },
  )
}

/** A module that runs a step script once in the flow host's sandbox. */
function scriptModule(source: string): string {
  return [
    `import { createCache } from '${join(sourceDir, 'index.ts')}'`,
    `import { createSandbox } from '@flowcache/server'`,
    `const cache = createCache()`,
    `const sandbox = await createSandbox()`,
    `try {`,
    `  await sandbox.run(${JSON.stringify(source)}, {`,
    `    event: { data: { id: 42, customer: 'c-7', total: 1200 } },`,
    `    ctx: {`,
    `      cache: cache.namespace('tenant:docs').namespace('flow:orders'),`,
    `      flow: { name: 'orders', runId: 'run-1', tenant: 'docs' },`,
    `    },`,
    `  })`,
    `} finally {`,
    `  await sandbox.close()`,
    `  await cache.close()`,
    `}`,
  ].join('\n')
}

/** Whether a YAML block is a flow file: it has a top-level `steps:` key. */
function isFlow(snippet: Snippet): boolean {
  return snippet.lang === 'yaml' && /^steps:/m.test(snippet.code)
}

/** A module that validates a flow file's text with the flow loader. */
function flowModule(snippet: Snippet): string {
  return [
    `import { parseFlow } from '@flowcache/server'`,
    `parseFlow(${JSON.stringify(snippet.code)}, ${JSON.stringify(`${snippet.file}:${snippet.line}`)})`,
  ].join('\n')
}

/** Whether a YAML block is a `flowcache.yaml`: a top-level `cache:`, `server:`, `flows:` or `quotas:` key. */
function isConfig(snippet: Snippet): boolean {
  return (
    snippet.lang === 'yaml' &&
    !isFlow(snippet) &&
    /^(cache|server|flows|quotas):/m.test(snippet.code)
  )
}

/** A module that validates a `flowcache.yaml` block with the configuration loader (no environment). */
function configModule(snippet: Snippet): string {
  return [
    `import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'`,
    `import { tmpdir } from 'node:os'`,
    `import { dirname, join } from 'node:path'`,
    `import { loadConfig } from '@flowcache/server'`,
    `const dir = mkdtempSync(join(tmpdir(), 'flowcache-docs-config-'))`,
    `writeFileSync(join(dir, 'flowcache.yaml'), ${JSON.stringify(snippet.code)})`,
    // A relative token_file is provided with a token, as a mounted secret would be.
    `for (const [, file] of ${JSON.stringify(snippet.code)}.matchAll(/^\\s*token_file:\\s*(\\.[^\\s#]+)/gm)) {`,
    `  mkdirSync(dirname(join(dir, file)), { recursive: true })`,
    `  writeFileSync(join(dir, file), 'docs-example-token-0123456789abcdef')`,
    `}`,
    `await loadConfig({ file: 'flowcache.yaml', cwd: dir, env: {} })`,
  ].join('\n')
}

/** Result of running one snippet in a child process. */
interface RunResult {
  code: number | null
  output: string
  timedOut: boolean
}

/**
 * Files the pages show as YAML blocks headed by a `# <relative path>` comment, by path. Throws
 * when two blocks give one path different contents.
 */
function declaredFiles(all: Snippet[]): Map<string, string> {
  const files = new Map<string, string>()
  for (const snippet of all) {
    if (snippet.lang !== 'yaml') continue
    const header = /^# ([\w./-]+\.ya?ml)\s*$/.exec(snippet.code.split('\n')[0] ?? '')
    if (!header?.[1] || header[1].startsWith('/')) continue
    const known = files.get(header[1])
    if (known !== undefined && known !== snippet.code) {
      throw new Error(`${snippet.file}:${snippet.line}: ${header[1]} differs from another page's`)
    }
    files.set(header[1], snippet.code)
  }
  return files
}

/** Environment variables of the deployments started for this run (see the file comment). */
const deploymentEnv: Record<string, string> = {}

/**
 * Runs `args` with this Node in `cwd` (a module with `--import tsx`, or vitest), with the
 * servers of this run in the environment, killing it after `SNIPPET_TIMEOUT_MS`.
 */
function runNode(args: string[], cwd: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: {
        ...process.env,
        FLOWCACHE_REDIS_URL: redisUrl(),
        FLOWCACHE_NATS_URL: natsUrl(),
        REDIS_URL: redisUrl(),
        ...deploymentEnv,
        NODE_NO_WARNINGS: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, SNIPPET_TIMEOUT_MS)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output, timedOut })
    })
  })
}

/** Runs a module file with `node --import tsx` in `cwd`. */
function runModule(path: string, cwd: string): Promise<RunResult> {
  return runNode(['--no-node-snapshot', '--import', 'tsx', path], cwd)
}

/** vitest's command-line entry. */
const vitestBin = join(repoRoot, 'node_modules', 'vitest', 'vitest.mjs')

/**
 * Writes `code` as a vitest test file into `dir` with a config of its own (so the repository's
 * projects are not picked up) and runs `vitest run` there.
 */
function runVitestFile(code: string, dir: string): Promise<RunResult> {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'snippet.test.mts'), code)
  const config = join(dir, 'vitest.config.mts')
  writeFileSync(
    config,
    `export default { test: { include: ['snippet.test.mts'], watch: false, reporters: ['dot'] } }\n`,
  )
  return runNode([vitestBin, 'run', '--config', config, '--root', dir], dir)
}

const scratch = mkdtempSync(join(repoRoot, '.docs-snippets-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

describe('extractSnippets', () => {
  it('finds fenced blocks with their language, flags and opening line', () => {
    const page = [
      '# Title',
      '',
      '```ts fragment',
      'const a = 1',
      '```',
      'text',
      '```sh',
      'ls',
      '```',
    ]
    expect(extractSnippets(page.join('\n'), 'x.md')).toEqual([
      { file: 'x.md', line: 3, lang: 'ts', flags: ['fragment'], code: 'const a = 1' },
      { file: 'x.md', line: 7, lang: 'sh', flags: [], code: 'ls' },
    ])
  })

  it('rejects a page whose last fence is never closed', () => {
    expect(() => extractSnippets('```ts\nconst a = 1\n', 'y.md')).toThrow(/y\.md:1/)
  })
})

const snippets = markdownFiles().flatMap((path) =>
  extractSnippets(readFileSync(path, 'utf8'), relative(repoRoot, path)),
)
const runnable = snippets.filter(
  (snippet) => RUNNABLE.has(snippet.lang) || isFlow(snippet) || isConfig(snippet),
)
const workDir = join(scratch, 'work')
for (const [path, content] of declaredFiles(snippets)) {
  mkdirSync(dirname(join(workDir, path)), { recursive: true })
  writeFileSync(join(workDir, path), content)
}
mkdirSync(workDir, { recursive: true })

/** Whether a block that runs reads the environment variable `name`. */
function used(name: string): boolean {
  return runnable.some(
    (snippet) => !snippet.flags.includes('fragment') && snippet.code.includes(name),
  )
}

let sentinel: RedisSentinelHandle | undefined
let cluster: RedisClusterHandle | undefined
beforeAll(async () => {
  const [sentinelStarted, clusterStarted] = await Promise.all([
    used('REDIS_SENTINELS') ? startRedisSentinel() : undefined,
    used('REDIS_CLUSTER_NODES') ? startRedisCluster({ nodes: 3 }) : undefined,
  ])
  sentinel = sentinelStarted
  cluster = clusterStarted
  if (sentinel) {
    deploymentEnv.REDIS_SENTINELS = sentinel.sentinels.map((s) => `${s.host}:${s.port}`).join(',')
  }
  if (cluster) {
    deploymentEnv.REDIS_CLUSTER_NODES = cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',')
  }
}, 120_000)
afterAll(async () => {
  await Promise.all([sentinel?.stop(), cluster?.stop()])
})

describe.concurrent('docs snippets', () => {
  it('the docs contain runnable snippets', () => {
    expect(
      runnable.filter((snippet) => !snippet.flags.includes('fragment')).length,
    ).toBeGreaterThan(20)
  })

  for (const snippet of runnable) {
    const name = `${snippet.file}:${snippet.line}`
    const fragment = snippet.flags.indexOf('fragment')
    if (fragment >= 0) {
      const reason = snippet.flags.slice(fragment + 1).join(' ') || 'not meant to run on its own'
      it.skip(`${name} (fragment: ${reason})`, () => {})
      continue
    }
    it(name, { timeout: SNIPPET_TIMEOUT_MS + 10_000 }, async () => {
      const base = name.replace(/[^a-zA-Z0-9]+/g, '_')
      if (snippet.flags.includes('vitest')) {
        const result = await runVitestFile(rewriteImports(snippet.code), join(scratch, base))
        expect(result.timedOut, `${name} did not finish within ${SNIPPET_TIMEOUT_MS} ms`).toBe(
          false,
        )
        expect(result.code, `${name} failed:\n${result.output}`).toBe(0)
        return
      }
      const path = join(scratch, `${base}.mts`)
      const isScript = snippet.flags.includes('script')
      const code = isFlow(snippet)
        ? flowModule(snippet)
        : isConfig(snippet)
          ? configModule(snippet)
          : isScript
            ? scriptModule(snippet.code)
            : rewriteImports(snippet.code)
      writeFileSync(path, code)
      const result = await runModule(path, workDir)
      expect(result.timedOut, `${name} did not finish within ${SNIPPET_TIMEOUT_MS} ms`).toBe(false)
      expect(result.code, `${name} failed:\n${result.output}`).toBe(0)
    })
  }
})
