/**
 * The web console in real headless Chromium (Debian's chromium, driven by playwright-core,
 * installed by helpers/chromium.ts when missing): browsing keys, the JSON editor, the TTL
 * countdown, the live charts, the flows view, the degraded banner, escaping of hostile keys, the
 * token and the content security policy.
 */
import { randomUUID } from 'node:crypto'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFaultProxy, type FaultProxy } from '../../flowcache/test/helpers/fault-proxy.js'
import { redisUrl } from '../../flowcache/test/helpers/services.js'
import { redisStore } from '../../flowcache/src/stores/redis/index.js'
import { startConsoleDemo, type ConsoleDemo } from '../scripts/console-demo.js'
import type { ResolvedConfig } from '../src/config/index.js'
import { createCache, silentLogger, type Cache } from '../src/flowcache.js'
import { CONTENT_SECURITY_POLICY, createServer, type FlowcacheServer } from '../src/http/index.js'
import { launchChromium } from './helpers/chromium.js'
import { waitUntil } from './helpers/host.js'

const TOKEN = 'console-token-0123456789abcdef'

let browser: Browser
let demo: ConsoleDemo

beforeAll(async () => {
  browser = await launchChromium()
  demo = await startConsoleDemo()
}, 120_000)

afterAll(async () => {
  await browser?.close()
  await demo?.close()
})

/** What a page did that it should not: script errors, CSP violations, dialogs. */
interface PageTrouble {
  errors: string[]
  dialogs: string[]
  requests: Array<{ url: string; authorization: string | undefined }>
}

/** A new page on `url` (a fresh context: its own sessionStorage), recording trouble. */
async function openConsole(url: string): Promise<{ page: Page; trouble: PageTrouble }> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } })
  const page = await context.newPage()
  const trouble: PageTrouble = { errors: [], dialogs: [], requests: [] }
  page.on('pageerror', (error) => trouble.errors.push(error.message))
  page.on('console', (message) => {
    if (message.type() === 'error' && !/status of 40[14]/.test(message.text())) {
      trouble.errors.push(message.text())
    }
  })
  page.on('dialog', (dialog) => {
    trouble.dialogs.push(dialog.message())
    void dialog.dismiss()
  })
  page.on('request', (request) => {
    trouble.requests.push({ url: request.url(), authorization: request.headers().authorization })
  })
  await page.goto(`${url}/`)
  return { page, trouble }
}

/** Opens namespace `ns` through the console's namespace form. */
async function openNamespace(page: Page, ns: string): Promise<void> {
  await page.locator('#ns-input').fill(ns)
  await page.locator('#ns-form button[type=submit]').click()
  await expect.poll(() => page.locator('#keys-ns').textContent()).toBe(`in ${ns}`)
}

/** Seconds of a shown TTL like `59s`, `1m 05s` or `2h 10m`. */
function shownSeconds(text: string): number {
  const units: Record<string, number> = { d: 86_400, h: 3600, m: 60, s: 1, ms: 0.001 }
  let total = 0
  for (const [, amount, unit] of text.matchAll(/(\d+)(ms|d|h|m|s)/g)) {
    total += Number(amount) * (units[unit as string] ?? Number.NaN)
  }
  return total
}

async function api(url: string, method: string, path: string, body?: unknown, token?: string) {
  const headers: Record<string, string> = {}
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (token !== undefined) headers.authorization = `Bearer ${token}`
  const response = await fetch(`${url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  return { status: response.status, body: (await response.json()) as any }
}

describe('console on the example flows', () => {
  it('browses namespaces and keys and shows a value', async () => {
    const ns = `browse-${randomUUID().slice(0, 8)}`
    const view = demo.handle.cache.namespace(ns)
    await view.set('alpha', { n: 1, tags: ['a', 'b'] }, '10m')
    await view.set('beta', 'two')
    const { page, trouble } = await openConsole(demo.url)
    const entry = page.locator('#namespaces button.ns', { hasText: ns })
    await expect.poll(() => entry.count(), { timeout: 15_000 }).toBe(1)
    await expect.poll(() => entry.textContent()).toContain('2 keys')
    await entry.click()
    const rows = page.locator('#keys tbody tr')
    await expect.poll(() => rows.locator('button.key').allTextContents()).toEqual(['alpha', 'beta'])
    await expect.poll(() => rows.nth(1).locator('td').nth(1).textContent()).toBe('no expiry')
    await rows.nth(0).locator('button').click()
    await expect
      .poll(() => page.locator('#editor').inputValue())
      .toBe(JSON.stringify({ n: 1, tags: ['a', 'b'] }, null, 2))
    expect(await page.locator('#editor-key').inputValue()).toBe('alpha')
    expect(trouble.errors).toEqual([])
    await page.context().close()
  })

  it('edits a value in the JSON editor, sets its TTL and deletes it', async () => {
    const ns = `edit-${randomUUID().slice(0, 8)}`
    const view = demo.handle.cache.namespace(ns)
    await view.set('order:1', { status: 'paid' })
    const { page, trouble } = await openConsole(demo.url)
    await openNamespace(page, ns)
    await page.locator('#keys button.key', { hasText: 'order:1' }).click()
    await expect.poll(() => page.locator('#editor').inputValue()).toContain('paid')

    // Invalid JSON is refused in the page; nothing is written.
    await page.locator('#editor').fill('{"status": ')
    await expect.poll(() => page.locator('#editor-error').isVisible()).toBe(true)
    await page.locator('#save-button').click()
    await expect
      .poll(() => page.locator('#editor-status').textContent())
      .toContain('not valid JSON')
    expect(await view.get('order:1')).toEqual({ status: 'paid' })

    await page.locator('#editor').fill('{"status": "shipped", "items": [1, 2, 3], "note": null}')
    await page.locator('#ttl-input').fill('1h')
    await page.locator('#save-button').click()
    await expect.poll(() => page.locator('#editor-status').textContent()).toBe('Saved "order:1".')
    const read = await api(demo.url, 'GET', `/v1/ns/${ns}/keys/order%3A1`)
    expect(read.status).toBe(200)
    expect(read.body.value).toEqual({ status: 'shipped', items: [1, 2, 3], note: null })
    const ttl = await api(demo.url, 'GET', `/v1/ns/${ns}/keys/order%3A1/ttl`)
    expect(ttl.body.ttl).toBeGreaterThan(0)
    expect(ttl.body.ttl).toBeLessThanOrEqual(3_600_000)

    // Set TTL keeps the stored value and replaces the TTL.
    await page.locator('#ttl-input').fill('90s')
    await page.locator('#ttl-button').click()
    await expect.poll(() => page.locator('#editor-status').textContent()).toContain('TTL of')
    const shorter = await api(demo.url, 'GET', `/v1/ns/${ns}/keys/order%3A1/ttl`)
    expect(shorter.body.ttl).toBeLessThanOrEqual(90_000)
    expect(await view.get('order:1')).toEqual({ status: 'shipped', items: [1, 2, 3], note: null })

    // A new key written from the editor.
    await page.locator('#editor-key').fill('order:2')
    await page.locator('#editor').fill('[true, "x"]')
    await page.locator('#ttl-input').fill('')
    await page.locator('#save-button').click()
    await expect.poll(() => page.locator('#editor-status').textContent()).toBe('Saved "order:2".')
    expect(await view.get('order:2')).toEqual([true, 'x'])
    expect(await view.ttl('order:2')).toBeNull()
    await expect
      .poll(() => page.locator('#keys button.key').allTextContents())
      .toEqual(['order:1', 'order:2'])

    await page.locator('#delete-button').click()
    await expect.poll(() => page.locator('#editor-status').textContent()).toBe('Deleted "order:2".')
    expect((await api(demo.url, 'GET', `/v1/ns/${ns}/keys/order%3A2`)).status).toBe(404)
    await expect.poll(() => page.locator('#keys button.key').allTextContents()).toEqual(['order:1'])
    expect(trouble.errors).toEqual([])
    await page.context().close()
  })

  it('counts a TTL down', async () => {
    const ns = `ttl-${randomUUID().slice(0, 8)}`
    await demo.handle.cache.namespace(ns).set('session', { user: 'u1' }, '90s')
    const { page } = await openConsole(demo.url)
    await openNamespace(page, ns)
    const cell = page.locator('#keys tbody tr', { hasText: 'session' }).locator('td.ttl')
    await expect.poll(() => cell.textContent()).toMatch(/\d+m \d+s|\d+s/)
    const first = (await cell.textContent()) ?? ''
    await expect.poll(() => cell.textContent(), { timeout: 10_000 }).not.toBe(first)
    const later = (await cell.textContent()) ?? ''
    expect(shownSeconds(first)).toBeGreaterThan(0)
    expect(shownSeconds(later)).toBeLessThan(shownSeconds(first))
    expect(shownSeconds(later)).toBeGreaterThan(0)
    expect(Number(await cell.getAttribute('data-ms'))).toBeLessThanOrEqual(90_000)
    await page.context().close()
  })

  it('updates the live charts as operations happen', async () => {
    const { page } = await openConsole(demo.url)
    const points = page.locator('#chart-bytes')
    const bytes = page.locator('#chart-bytes-value')
    await expect
      .poll(async () => Number(await points.getAttribute('data-points')))
      .toBeGreaterThan(0)
    const before = Number(await points.getAttribute('data-points'))
    const shownBefore = await bytes.textContent()
    const ns = demo.handle.cache.namespace(`chart-${randomUUID().slice(0, 8)}`)
    for (let i = 0; i < 50; i++) await ns.set(`blob:${i}`, 'x'.repeat(2000), '10m')
    await expect.poll(() => bytes.textContent(), { timeout: 10_000 }).not.toBe(shownBefore)
    expect(Number(await points.getAttribute('data-points'))).toBeGreaterThan(before)
    await expect
      .poll(async () => Number(await page.locator('#chart-ops').getAttribute('data-points')))
      .toBeGreaterThan(1)
    expect(await page.locator('#chart-ops-value').textContent()).toMatch(/^\d+(\.\d)?\/s$/)
    await page.context().close()
  })

  it('lists flows with their runs and per-step cache hits, leaders, locks and rate limits', async () => {
    const { page } = await openConsole(demo.url)
    const flow = page.locator('#flows tbody tr[data-flow="shipping-quote"]')
    await expect.poll(() => flow.count(), { timeout: 15_000 }).toBe(1)
    await flow.locator('button').click()
    const runs = page.locator('#runs-table tbody tr')
    await expect.poll(() => runs.count()).toBeGreaterThanOrEqual(4)
    const chips = await page.locator('#runs-table .chip').allTextContents()
    expect(chips).toContain('quote: hit')
    expect(chips).toContain('quote: miss')
    const leader = page.locator('#leaders tbody tr', { hasText: 'hourly-report' })
    await expect.poll(() => leader.count()).toBe(1)
    expect(await leader.locator('td[data-role]').textContent()).toBe('leader')
    await expect.poll(() => page.locator('#locks tbody').textContent()).toContain('nightly-export')
    expect(await page.locator('#locks tbody').textContent()).toContain('worker-7')
    await expect
      .poll(() => page.locator('#rate-limits tbody').textContent())
      .toContain('partner-api')
    await page.context().close()
  })

  it('renders hostile keys, namespaces and values as text', async () => {
    const ns = `xss-<img src=x onerror=alert(2)>-${randomUUID().slice(0, 8)}`
    const key = '<script>alert(1)</script>'
    const value = { html: '<b>bold</b><script>alert(3)</script>', '<i>k</i>': 1 }
    await demo.handle.cache.namespace(ns).set(key, value, '10m')
    const { page, trouble } = await openConsole(demo.url)
    const scriptsBefore = await page.locator('script').count()
    const entry = page.locator('#namespaces button.ns', { hasText: ns })
    await expect.poll(() => entry.count(), { timeout: 15_000 }).toBe(1)
    expect(await entry.locator('.ns-name').textContent()).toBe(ns)
    await entry.click()
    const button = page.locator('#keys button.key')
    await expect.poll(() => button.count()).toBe(1)
    expect(await button.textContent()).toBe(key)
    expect(await button.locator('*').count()).toBe(0)
    await button.click()
    await expect
      .poll(() => page.locator('#editor').inputValue())
      .toBe(JSON.stringify(value, null, 2))
    expect(await page.locator('script').count()).toBe(scriptsBefore)
    expect(await page.locator('img, b, i').count()).toBe(0)
    expect(trouble.dialogs).toEqual([])
    expect(trouble.errors).toEqual([])
    await page.context().close()
  })

  it('serves its files with the content security policy and no inline code', async () => {
    const root = await fetch(`${demo.url}/`, { redirect: 'manual' })
    expect(root.status).toBe(302)
    expect(root.headers.get('location')).toBe('/console/')
    for (const [path, type] of [
      ['/console/', 'text/html'],
      ['/console/app.js', 'text/javascript'],
      ['/console/console.css', 'text/css'],
    ] as const) {
      const answer = await fetch(`${demo.url}${path}`)
      expect(answer.status, path).toBe(200)
      expect(answer.headers.get('content-type'), path).toContain(type)
      expect(answer.headers.get('content-security-policy'), path).toBe(CONTENT_SECURITY_POLICY)
      expect(answer.headers.get('x-content-type-options'), path).toBe('nosniff')
      const text = await answer.text()
      if (path === '/console/') {
        // Every script has a src; no inline styles or event handlers.
        expect(text.match(/<script\b[^>]*>/g)).toEqual([
          '<script type="module" src="/console/app.js">',
        ])
        expect(text).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i)
      }
    }
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'")
    expect(CONTENT_SECURITY_POLICY).not.toContain('unsafe')
    const { page, trouble } = await openConsole(demo.url)
    const response = await page.goto(`${demo.url}/console/`)
    expect(response?.headers()['content-security-policy']).toBe(CONTENT_SECURITY_POLICY)
    await expect.poll(() => page.locator('#health').textContent()).toBe('ok')
    expect(trouble.errors).toEqual([])
    expect((await fetch(`${demo.url}/console/nothing.js`)).status).toBe(404)
    await page.context().close()
  })
})

describe('console on a server that requires the token', () => {
  let server: FlowcacheServer
  let cache: Cache
  let url: string

  beforeAll(async () => {
    cache = createCache()
    const config: ResolvedConfig = {
      cache: { enabled: true, type: 'memory', path: ':memory:', fallback: 'memory' },
      server: { host: '127.0.0.1', port: 0, bodyLimit: 1024 * 1024, token: TOKEN },
      flows: { tenant: 'default' },
    }
    server = createServer({ config, cache })
    url = await server.listen()
    await cache.namespace('guarded').set('secret', { level: 3 })
  })

  afterAll(async () => {
    await server?.close()
    await cache?.close()
  })

  it('asks for the token, refuses mutations without it and sends it only in a header', async () => {
    expect(server.authRequired).toBe(true)
    const { page, trouble } = await openConsole(url)
    await expect.poll(() => page.locator('#token-form').isVisible()).toBe(true)
    expect(await page.locator('#token-message').textContent()).toContain('requires an API token')
    expect(await page.locator('#namespaces button.ns').count()).toBe(0)

    // A write without the token is refused by the server; nothing changes.
    await openNamespace(page, 'guarded')
    await page.locator('#editor-key').fill('secret')
    await page.locator('#editor').fill('{"level": 0}')
    await page.locator('#save-button').click()
    await expect.poll(() => page.locator('#editor-status').textContent()).toContain('Not saved')
    await page.locator('#delete-button').click()
    await expect.poll(() => page.locator('#editor-status').textContent()).toContain('Not deleted')
    expect(await cache.namespace('guarded').get('secret')).toEqual({ level: 3 })

    // A wrong token is refused too.
    await page.locator('#token-input').fill('wrong-token')
    await page.locator('#token-form button[type=submit]').click()
    await expect
      .poll(() => page.locator('#token-message').textContent())
      .toContain('refused this token')
    await page.locator('#editor').fill('{"level": 1}')
    await page.locator('#save-button').click()
    await expect.poll(() => page.locator('#editor-status').textContent()).toContain('Not saved')
    expect(await cache.namespace('guarded').get('secret')).toEqual({ level: 3 })

    // With the token: the data shows and the write goes through.
    await page.locator('#token-input').fill(TOKEN)
    await page.locator('#token-form button[type=submit]').click()
    await expect.poll(() => page.locator('#token-form').isVisible()).toBe(false)
    await expect
      .poll(() => page.locator('#namespaces button.ns').allTextContents())
      .toEqual(['guarded1 keys'])
    await page.locator('#editor').fill('{"level": 4}')
    await page.locator('#save-button').click()
    await expect.poll(() => page.locator('#editor-status').textContent()).toBe('Saved "secret".')
    expect(await cache.namespace('guarded').get('secret')).toEqual({ level: 4 })

    expect(trouble.requests.some((request) => request.authorization === `Bearer ${TOKEN}`)).toBe(
      true,
    )
    for (const request of trouble.requests) {
      expect(request.url).not.toContain(TOKEN)
      expect(request.url).not.toContain('wrong-token')
    }
    expect(page.url()).toBe(`${url}/console/`)
    expect(trouble.errors).toEqual([])
    await page.context().close()
  })

  it('serves only the console files and /healthz without the token', async () => {
    const open = server
      .routes()
      .filter((route) => route.public)
      .map((route) => `${route.method} ${route.url}`)
    expect(open).toContain('GET /healthz')
    expect(open).toContain('GET /console/')
    for (const route of open) {
      expect(route).toMatch(
        /^(GET|HEAD) (\/|\/healthz|\/console|\/console\/[a-z0-9-]*(\.[a-z]+)?)$/,
      )
    }
    for (const path of [
      '/v1/namespaces',
      '/v1/locks',
      '/v1/rate-limits',
      '/v1/ns/guarded/entries',
    ]) {
      expect((await fetch(`${url}${path}`)).status, path).toBe(401)
      expect((await api(url, 'GET', path, undefined, TOKEN)).status, path).toBe(200)
    }
  })
})

describe('console when the store is cut off', () => {
  let proxy: FaultProxy
  let cache: Cache
  let server: FlowcacheServer
  let url: string

  beforeAll(async () => {
    const target = new URL(redisUrl())
    proxy = await startFaultProxy({
      target: { host: target.hostname, port: Number(target.port || 6379) },
    })
    await proxy.refuse()
    cache = createCache({
      store: redisStore({
        url: proxy.url(redisUrl()),
        connectTimeoutMs: 300,
        commandTimeoutMs: 500,
        reconnectBaseMs: 50,
        reconnectMaxMs: 200,
      }),
      prefix: `console${randomUUID().replace(/-/g, '').slice(0, 12)}`,
      fallback: 'memory',
      fallbackRetry: { baseMs: 100, maxMs: 300 },
      logger: silentLogger,
    })
    const config: ResolvedConfig = {
      cache: { enabled: true, type: 'memory', path: ':memory:', fallback: 'memory' },
      server: { host: '127.0.0.1', port: 0, bodyLimit: 1024 * 1024 },
      flows: { tenant: 'default' },
    }
    server = createServer({ config, cache })
    url = await server.listen()
  })

  afterAll(async () => {
    await server?.close()
    await cache?.close()
    await proxy?.close()
  })

  it('shows the degraded banner while the store is unreachable and hides it when it is back', async () => {
    await cache
      .namespace('fallback')
      .set('k', 1)
      .catch(() => undefined)
    await waitUntil(() => cache.health().status === 'degraded', 'a degraded cache', 15_000)
    const { page } = await openConsole(url)
    const banner = page.locator('#banner')
    await expect.poll(() => banner.isVisible(), { timeout: 10_000 }).toBe(true)
    expect(await banner.textContent()).toContain('The store is degraded')
    expect(await page.locator('#health').textContent()).toBe('degraded')
    expect(await banner.getAttribute('role')).toBe('alert')

    await proxy.pass()
    await waitUntil(() => cache.health().status === 'ok', 'the store back', 20_000)
    await expect.poll(() => banner.isVisible(), { timeout: 10_000 }).toBe(false)
    expect(await page.locator('#health').textContent()).toBe('ok')
    await page.context().close()
  })
})
