/**
 * Vitest reporter that ends the run with one line of its own: `N passed, M failed[, K skipped]`.
 *
 * Counts test cases, not files. Anything that makes the run fail without a failed test case
 * (a module that fails to load, a failing beforeAll/afterAll, an unhandled error, a module that
 * never ran, a non-zero exit code) adds to `failed`, so a failed run never reports `0 failed`.
 *
 * In `vitest run` the line is written from the process 'exit' handler so that it is the very
 * last line, after anything vitest itself prints late (global setup errors, hanging-process
 * notes). In watch mode it is printed at the end of every run.
 */
import type { SerializedError } from 'vitest'
import type { Reporter, TestModule, TestRunEndReason, TestSuite, Vitest } from 'vitest/node'

export interface RunCounts {
  passed: number
  failed: number
  skipped: number
}

export function countRun(
  testModules: ReadonlyArray<TestModule>,
  unhandledErrors: ReadonlyArray<SerializedError>,
  reason: TestRunEndReason,
): RunCounts {
  const counts: RunCounts = { passed: 0, failed: 0, skipped: 0 }
  for (const testModule of testModules) {
    let failedTests = 0
    for (const test of testModule.children.allTests()) {
      switch (test.result().state) {
        case 'passed':
          counts.passed++
          break
        case 'failed':
          counts.failed++
          failedTests++
          break
        case 'skipped':
        case 'pending': // never ran (run interrupted); a failed module is counted below
          counts.skipped++
          break
      }
    }
    // Errors outside test cases: collection/import errors and beforeAll/afterAll failures.
    const suites: Array<TestModule | TestSuite> = [testModule, ...testModule.children.allSuites()]
    const suiteErrors = suites.filter((suite) => suite.errors().length > 0).length
    counts.failed += suiteErrors
    const state = testModule.state()
    const moduleFailed =
      state === 'failed' || state === 'queued' || state === 'pending' || !testModule.ok()
    if (moduleFailed && failedTests === 0 && suiteErrors === 0) counts.failed++
  }
  counts.failed += unhandledErrors.length
  if (reason !== 'passed' && counts.failed === 0) counts.failed = 1
  return counts
}

export function formatCounts({ passed, failed, skipped }: RunCounts): string {
  return `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`
}

export default class SummaryReporter implements Reporter {
  private watchMode = false
  private counts: RunCounts | undefined

  onInit(vitest: Vitest): void {
    this.watchMode = vitest.config.watch
    if (!this.watchMode) process.once('exit', (code) => this.printFinal(code))
  }

  onTestRunEnd(
    testModules: ReadonlyArray<TestModule>,
    unhandledErrors: ReadonlyArray<SerializedError>,
    reason: TestRunEndReason,
  ): void {
    this.counts = countRun(testModules, unhandledErrors, reason)
    if (this.watchMode) process.stdout.write(`\n${formatCounts(this.counts)}\n`)
  }

  private printFinal(exitCode: number): void {
    const counts = this.counts ?? { passed: 0, failed: 0, skipped: 0 }
    if (this.counts === undefined && exitCode === 0) return // nothing ran (e.g. `vitest list`)
    const failedRun =
      exitCode !== 0 || (typeof process.exitCode === 'number' && process.exitCode !== 0)
    if (failedRun && counts.failed === 0) counts.failed = 1
    process.stdout.write(`\n${formatCounts(counts)}\n`)
  }
}
