import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..')
const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as {
  exports: Record<string, string | { types: string; import: string }>
  peerDependencies: Record<string, string>
  peerDependenciesMeta: Record<string, { optional?: boolean }>
  dependencies?: Record<string, string>
}

describe('package manifest', () => {
  it('every export subpath is built from a source file that exists', () => {
    for (const [subpath, target] of Object.entries(manifest.exports)) {
      if (typeof target === 'string') continue
      const source = target.import.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts')
      expect(existsSync(join(packageDir, source)), `${subpath} → ${source}`).toBe(true)
      expect(target.types).toBe(target.import.replace(/\.js$/, '.d.ts'))
    }
  })

  it('store clients are optional peer dependencies, never hard dependencies', () => {
    for (const client of ['ioredis', 'better-sqlite3', '@nats-io/transport-node', '@nats-io/kv']) {
      expect(manifest.peerDependencies[client], client).toBeDefined()
      expect(manifest.peerDependenciesMeta[client]?.optional, client).toBe(true)
      expect(manifest.dependencies?.[client], client).toBeUndefined()
    }
  })

  it('the core entry point does not import any store client', () => {
    const seen = new Set<string>()
    const visit = (file: string): void => {
      if (seen.has(file)) return
      seen.add(file)
      const text = readFileSync(file, 'utf8')
      for (const match of text.matchAll(/from '([^']+)'/g)) {
        const specifier = match[1] as string
        expect(specifier, `${file} imports ${specifier}`).not.toMatch(
          /^(ioredis|better-sqlite3|@nats-io\/)/,
        )
        if (specifier.startsWith('.')) visit(join(dirname(file), specifier.replace(/\.js$/, '.ts')))
      }
    }
    visit(join(packageDir, 'src/index.ts'))
    expect(seen.size).toBeGreaterThan(5)
  })
})
