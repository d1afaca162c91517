/**
 * Writes docs/images/console.png: the web console of a `flowcache serve` with the example flows
 * and example data (see console-demo.ts), in headless Chromium.
 *
 *   npm run screenshot --workspace @flowcache/server
 */
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { launchChromium } from '../test/helpers/chromium.js'
import { startConsoleDemo } from './console-demo.js'

const output = fileURLToPath(new URL('../../../docs/images/console.png', import.meta.url))

const demo = await startConsoleDemo()
const browser = await launchChromium()
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } })
  await page.goto(`${demo.url}/`)
  await page.locator('#namespaces button.ns', { hasText: 'tenant:acme/app' }).click()
  await page.locator('#keys tbody tr', { hasText: 'feature-flags' }).locator('button').click()
  await page.locator('#editor-status', { hasText: 'Loaded' }).waitFor()
  await page.locator('#flows button', { hasText: 'shipping-quote' }).click()
  await page.locator('#runs-table tbody tr').first().waitFor()
  // Let the charts collect a minute of points.
  const chart = page.locator('#chart-ops')
  while (Number(await chart.getAttribute('data-points')) < 60) await page.waitForTimeout(500)
  mkdirSync(dirname(output), { recursive: true })
  await page.screenshot({ path: output, fullPage: true })
  process.stdout.write(`wrote ${output}\n`)
} finally {
  await browser.close()
  await demo.close()
}
