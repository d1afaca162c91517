import { defineConfig } from 'vitest/config'
import SummaryReporter from './scripts/summary-reporter.ts'

export default defineConfig({
  test: {
    // Finds or starts Redis and NATS JetStream; see packages/flowcache/test/helpers/services.ts.
    globalSetup: ['packages/flowcache/test/helpers/global-setup.ts'],
    // The summary reporter prints the final `N passed, M failed` line that CI greps for.
    reporters: ['default', new SummaryReporter()],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    teardownTimeout: 20_000,
    retry: 0,
    projects: [
      {
        extends: true,
        test: {
          name: 'flowcache',
          include: ['packages/*/test/**/*.test.ts', 'packages/*/src/**/*.test.ts'],
          exclude: ['packages/server/**', '**/node_modules/**'],
        },
      },
      {
        // The flow host's script sandbox uses isolated-vm, which needs this flag on Node >= 20.
        extends: true,
        test: {
          name: 'server',
          include: ['packages/server/test/**/*.test.ts', 'packages/server/src/**/*.test.ts'],
          execArgv: ['--no-node-snapshot'],
        },
      },
    ],
  },
})
