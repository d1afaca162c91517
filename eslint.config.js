// @ts-check
import js from '@eslint/js'
import { defineConfig, globalIgnores } from 'eslint/config'
import tseslint from 'typescript-eslint'

/** Files outside the published library: tests, benchmarks, examples, tooling. */
const nonLibraryFiles = [
  'packages/*/test/**/*.ts',
  'packages/*/src/**/*.test.ts',
  'bench/**/*.ts',
  'examples/**/*.ts',
  'scripts/**/*.ts',
  'vitest.config.ts',
]

/**
 * TypeScript files that are not under a package: they have no tsconfig.json of their own, so they
 * are type-checked with tsconfig.tools.json instead of the project service.
 */
const toolFiles = [
  'bench/**/*.ts',
  'examples/**/*.ts',
  'scripts/**/*.ts',
  'test/**/*.ts',
  'vitest.config.ts',
]

export default defineConfig(
  globalIgnores([
    '**/dist/',
    '**/node_modules/',
    '**/coverage/',
    '**/.flowcache/',
    '**/.vitest-results/',
  ]),

  js.configs.recommended,

  {
    name: 'flowcache/typescript',
    files: ['**/*.ts', '**/*.mts', '**/*.cts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        // packages/*/tsconfig.json covers each package's src and test
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      // Stores implement an async contract; an in-process store has nothing to await.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { prefer: 'type-imports', fixStyle: 'inline-type-imports' },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },

  {
    name: 'flowcache/tool-files',
    files: toolFiles,
    languageOptions: {
      parserOptions: {
        projectService: false,
        project: ['./tsconfig.tools.json'],
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },

  {
    // The web console: plain ES modules run by the browser (type-checked with
    // packages/server/console/tsconfig.json through `// @ts-check` and JSDoc).
    name: 'flowcache/console',
    files: ['packages/server/console/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        [
          'window',
          'document',
          'sessionStorage',
          'fetch',
          'performance',
          'getComputedStyle',
          'setInterval',
          'clearInterval',
          'setTimeout',
          'clearTimeout',
          'encodeURIComponent',
          'Node',
          'Element',
          'HTMLElement',
          'HTMLButtonElement',
          'HTMLCanvasElement',
          'HTMLFormElement',
          'HTMLInputElement',
          'HTMLTableElement',
          'HTMLTextAreaElement',
        ].map((name) => [name, 'readonly']),
      ),
    },
  },

  {
    // Still type-checked and linted, but tests and tooling may poke at untyped values.
    name: 'flowcache/relaxed-non-library',
    files: nonLibraryFiles,
    rules: {
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
)
