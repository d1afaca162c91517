// @ts-check
/**
 * The flowcache web console: polls the REST API of the server that serves it and renders
 * namespaces and keys (with a live TTL countdown), an entry editor, live charts, locks, leaders,
 * rate limits and flows. Everything from the API is rendered as text.
 */
import { ApiError, call, getToken, segment, setToken } from './api.js'
import { LineChart } from './charts.js'
import { byId, el, formatBytes, formatMs, formatTime, replace } from './dom.js'

/** Poll periods, in ms. */
const STATS_EVERY = 1000
const LISTS_EVERY = 3000
const TICK_EVERY = 250

const state = {
  /** @type {string | null} */
  ns: null,
  prefix: '',
  /** @type {Array<{ key: string, ttl: number | null, fetchedAt: number }>} */
  entries: [],
  /** @type {Array<{ ns: string, key: string, owner: string, token: string, expiresAt: number | null, offset: number }>} */
  locks: [],
  /** @type {Array<{ ns: string, key: string, expiresAt: number | null, offset: number }>} */
  rateLimits: [],
  /** @type {string | null} */
  flow: null,
  /** @type {{ at: number, ops: number } | null} */
  lastOps: null,
  needsToken: false,
}

const charts = {
  ops: new LineChart(byId('chart-ops', HTMLCanvasElement), byId('chart-ops-value', HTMLElement), {
    format: (value) => `${value < 10 ? value.toFixed(1) : Math.round(value)}/s`,
    color: '#2563eb',
  }),
  hits: new LineChart(
    byId('chart-hits', HTMLCanvasElement),
    byId('chart-hits-value', HTMLElement),
    {
      format: (value) => `${Math.round(value * 100)}%`,
      color: '#16a34a',
      min: 0,
      max: 1,
    },
  ),
  bytes: new LineChart(
    byId('chart-bytes', HTMLCanvasElement),
    byId('chart-bytes-value', HTMLElement),
    { format: (value) => formatBytes(Math.round(value)), color: '#9333ea' },
  ),
  evictions: new LineChart(
    byId('chart-evictions', HTMLCanvasElement),
    byId('chart-evictions-value', HTMLElement),
    { format: (value) => String(Math.round(value)), color: '#dc2626' },
  ),
}

const editor = {
  form: byId('editor-form', HTMLFormElement),
  key: byId('editor-key', HTMLInputElement),
  value: byId('editor', HTMLTextAreaElement),
  error: byId('editor-error', HTMLElement),
  ttl: byId('ttl-input', HTMLInputElement),
  status: byId('editor-status', HTMLElement),
}

/**
 * Shows the outcome of a call in the editor's status line.
 *
 * @param {string} text
 * @param {'ok' | 'error'} kind
 */
function editorStatus(text, kind) {
  editor.status.textContent = text
  editor.status.dataset.kind = kind
}

/**
 * Reports a failed call: asks for the token on 401, else shows the message where it belongs.
 *
 * @param {unknown} error
 * @param {(message: string) => void} [show]
 */
function failed(error, show) {
  if (error instanceof ApiError && error.status === 401) {
    askToken(
      getToken() === null
        ? 'This server requires an API token for its API.'
        : 'The server refused this token (401). Enter the right one.',
    )
  }
  const message = error instanceof Error ? error.message : String(error)
  if (show !== undefined) show(message)
}

/** @param {string} message why the token is asked for */
function askToken(message) {
  state.needsToken = true
  byId('token-message', HTMLElement).textContent = message
  const form = byId('token-form', HTMLFormElement)
  if (form.hidden) {
    form.hidden = false
    byId('token-input', HTMLInputElement).focus()
  }
}

// Stats, health and charts.

async function refreshStats() {
  /** @type {any} */
  let answer
  try {
    answer = await call('GET', '/v1/stats')
  } catch (error) {
    failed(error)
    setHealth('unknown', error instanceof Error ? error.message : String(error))
    return
  }
  const stats = answer.cache
  const health = answer.health
  byId('store', HTMLElement).textContent = `store: ${health.store}`
  byId('updated', HTMLElement).textContent = `updated ${formatTime(Date.now())}`
  setHealth(health.status, health.reason ?? '', health.since)
  const now = performance.now()
  const ops = stats.hits + stats.misses + stats.sets + stats.deletes
  if (state.lastOps !== null) {
    const seconds = Math.max(0.001, (now - state.lastOps.at) / 1000)
    charts.ops.push(Math.max(0, ops - state.lastOps.ops) / seconds)
  }
  state.lastOps = { at: now, ops }
  charts.hits.push(stats.hitRatio)
  charts.bytes.push(stats.bytes)
  charts.evictions.push(stats.evictions)
}

/**
 * @param {string} status `ok`, `degraded`, `down` or `unknown`
 * @param {string} reason
 * @param {number} [since]
 */
function setHealth(status, reason, since) {
  const pill = byId('health', HTMLElement)
  pill.dataset.status = status
  pill.textContent = status
  const banner = byId('banner', HTMLElement)
  if (status === 'degraded' || status === 'down') {
    const what =
      status === 'degraded'
        ? 'The store is degraded: the cache serves from its in-memory fallback; locks, leaders and rate limits fail until the store is back.'
        : 'The store is down.'
    replace(
      banner,
      el('strong', {}, what),
      ' ',
      reason === '' ? '' : `Reason: ${reason}.`,
      since === undefined ? '' : ` Since ${formatTime(since)}.`,
    )
    banner.dataset.status = status
    banner.hidden = false
  } else {
    banner.hidden = true
    banner.replaceChildren()
  }
}

// Namespaces and keys.

async function refreshNamespaces() {
  /** @type {any} */
  let answer
  try {
    answer = await call('GET', '/v1/namespaces')
  } catch (error) {
    failed(error)
    return
  }
  /** @type {Array<{ ns: string, keys: number, locks: number, rateLimits: number, leases: number }>} */
  const namespaces = answer.namespaces
  const list = byId('namespaces', HTMLElement)
  replace(
    list,
    namespaces.map((entry) => {
      const counts = [
        `${entry.keys} keys`,
        entry.locks > 0 ? `${entry.locks} locks` : '',
        entry.rateLimits > 0 ? `${entry.rateLimits} limits` : '',
        entry.leases > 0 ? `${entry.leases} leases` : '',
      ].filter((part) => part !== '')
      const button = el(
        'button',
        { type: 'button', class: 'ns', 'data-ns': entry.ns, 'aria-current': entry.ns === state.ns },
        el('span', { class: 'ns-name' }, entry.ns),
        el('span', { class: 'muted' }, counts.join(' · ')),
      )
      button.addEventListener('click', () => selectNamespace(entry.ns))
      return el('li', {}, button)
    }),
  )
  if (namespaces.length === 0) list.appendChild(el('li', { class: 'muted' }, 'No namespaces yet.'))
  if (state.ns === null) {
    const first = namespaces.find((entry) => entry.keys > 0)
    if (first !== undefined) selectNamespace(first.ns)
  }
}

/** @param {string} ns */
function selectNamespace(ns) {
  state.ns = ns
  state.entries = []
  byId('keys-ns', HTMLElement).textContent = `in ${ns}`
  for (const button of byId('namespaces', HTMLElement).querySelectorAll('button.ns')) {
    if (button instanceof HTMLElement) {
      button.setAttribute('aria-current', String(button.dataset.ns === ns))
    }
  }
  renderKeys()
  void refreshKeys()
}

async function refreshKeys() {
  const ns = state.ns
  if (ns === null) return
  const query = state.prefix === '' ? '' : `?prefix=${encodeURIComponent(state.prefix)}`
  /** @type {any} */
  let answer
  try {
    answer = await call('GET', `/v1/ns/${segment(ns)}/entries${query}`)
  } catch (error) {
    failed(error, (message) => {
      const empty = byId('keys-empty', HTMLElement)
      empty.textContent = message
      empty.hidden = false
    })
    return
  }
  if (ns !== state.ns) return
  const fetchedAt = performance.now()
  /** @type {Array<{ key: string, ttl: number | null }>} */
  const entries = answer.entries
  state.entries = entries.map((entry) => ({ key: entry.key, ttl: entry.ttl, fetchedAt }))
  renderKeys()
}

function renderKeys() {
  const body = byId('keys', HTMLTableElement).tBodies[0]
  if (body === undefined) return
  replace(
    body,
    state.entries.map((entry) => {
      const button = el('button', { type: 'button', class: 'link key' }, entry.key)
      button.addEventListener('click', () => void openKey(entry.key))
      return el(
        'tr',
        { 'data-key': entry.key, 'aria-selected': entry.key === editor.key.value },
        el('td', {}, button),
        el('td', { class: 'num ttl' }, ''),
      )
    }),
  )
  const empty = byId('keys-empty', HTMLElement)
  empty.textContent = state.ns === null ? 'Choose a namespace.' : 'No keys.'
  empty.hidden = state.entries.length > 0
  tick()
}

/** Updates every countdown on the page (key TTLs, lock leases, limiter states). */
function tick() {
  const now = performance.now()
  const rows = byId('keys', HTMLTableElement).tBodies[0]?.rows
  state.entries.forEach((entry, i) => {
    const cell = rows?.[i]?.cells[1]
    if (cell === undefined) return
    if (entry.ttl === null) {
      cell.textContent = 'no expiry'
      cell.dataset.ms = ''
      return
    }
    const left = Math.max(0, entry.ttl - (now - entry.fetchedAt))
    cell.dataset.ms = String(Math.round(left))
    cell.textContent = left <= 0 ? 'expired' : formatMs(left)
  })
  for (const [table, items] of /** @type {const} */ ([
    ['locks', state.locks],
    ['rate-limits', state.rateLimits],
  ])) {
    const cells = byId(table, HTMLTableElement).querySelectorAll('td.countdown')
    items.forEach((item, i) => {
      const cell = cells[i]
      if (!(cell instanceof HTMLElement)) return
      if (item.expiresAt === null) {
        cell.textContent = 'no expiry'
        return
      }
      const left = Math.max(0, item.expiresAt - (Date.now() + item.offset))
      cell.dataset.ms = String(Math.round(left))
      cell.textContent = left <= 0 ? 'expired' : formatMs(left)
    })
  }
}

// The entry editor.

/** @param {string} key */
async function openKey(key) {
  const ns = state.ns
  if (ns === null) return
  editor.key.value = key
  editor.error.hidden = true
  for (const row of byId('keys', HTMLTableElement).tBodies[0]?.rows ?? []) {
    row.setAttribute('aria-selected', String(row.dataset.key === key))
  }
  try {
    const answer = await call('GET', `/v1/ns/${segment(ns)}/keys/${segment(key)}`)
    editor.value.value = JSON.stringify(answer.value, null, 2)
    const entry = state.entries.find((candidate) => candidate.key === key)
    editor.ttl.value =
      entry === undefined || entry.ttl === null
        ? ''
        : `${Math.max(1, Math.round((entry.ttl - (performance.now() - entry.fetchedAt)) / 1000))}s`
    editorStatus(`Loaded "${key}".`, 'ok')
  } catch (error) {
    failed(error, (message) => editorStatus(message, 'error'))
  }
}

/** @returns {unknown} the editor's value, or throws with a message saying what is wrong */
function editedValue() {
  try {
    return JSON.parse(editor.value.value)
  } catch (error) {
    throw new Error(
      `The value is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
    )
  }
}

/** @returns {number | string | undefined} the TTL input as ms or a duration string */
function editedTtl() {
  const text = editor.ttl.value.trim()
  if (text === '') return undefined
  return /^\d+$/.test(text) ? Number(text) : text
}

/** @returns {{ ns: string, key: string } | undefined} where the editor writes */
function target() {
  const key = editor.key.value
  if (state.ns === null) {
    editorStatus('Choose or open a namespace first.', 'error')
    return undefined
  }
  if (key === '') {
    editorStatus('Enter a key.', 'error')
    return undefined
  }
  return { ns: state.ns, key }
}

/**
 * Writes `value` with the editor's TTL.
 *
 * @param {unknown} value
 * @param {string} done status text on success
 */
async function write(value, done) {
  const at = target()
  if (at === undefined) return
  const ttl = editedTtl()
  try {
    await call('PUT', `/v1/ns/${segment(at.ns)}/keys/${segment(at.key)}`, {
      value,
      ...(ttl === undefined ? {} : { ttl }),
    })
    editorStatus(done, 'ok')
    await Promise.all([refreshKeys(), refreshNamespaces()])
  } catch (error) {
    failed(error, (message) => editorStatus(`Not saved: ${message}`, 'error'))
  }
}

editor.value.addEventListener('input', () => {
  try {
    editedValue()
    editor.error.hidden = true
  } catch (error) {
    editor.error.textContent = error instanceof Error ? error.message : String(error)
    editor.error.hidden = false
  }
})

editor.form.addEventListener('submit', (event) => {
  event.preventDefault()
  let value
  try {
    value = editedValue()
  } catch (error) {
    editorStatus(error instanceof Error ? error.message : String(error), 'error')
    return
  }
  void write(value, `Saved "${editor.key.value}".`)
})

byId('ttl-button', HTMLButtonElement).addEventListener('click', () => {
  const at = target()
  if (at === undefined) return
  if (editedTtl() === undefined) {
    editorStatus('Enter a TTL, e.g. 30s.', 'error')
    return
  }
  void (async () => {
    try {
      const answer = await call('GET', `/v1/ns/${segment(at.ns)}/keys/${segment(at.key)}`)
      await write(answer.value, `TTL of "${at.key}" set to ${editor.ttl.value.trim()}.`)
    } catch (error) {
      failed(error, (message) => editorStatus(`TTL not set: ${message}`, 'error'))
    }
  })()
})

byId('format-button', HTMLButtonElement).addEventListener('click', () => {
  try {
    editor.value.value = JSON.stringify(editedValue(), null, 2)
  } catch (error) {
    editorStatus(error instanceof Error ? error.message : String(error), 'error')
  }
})

byId('delete-button', HTMLButtonElement).addEventListener('click', () => {
  const at = target()
  if (at === undefined) return
  void (async () => {
    try {
      const answer = await call('DELETE', `/v1/ns/${segment(at.ns)}/keys/${segment(at.key)}`)
      editorStatus(answer.deleted ? `Deleted "${at.key}".` : `"${at.key}" did not exist.`, 'ok')
      editor.value.value = ''
      await Promise.all([refreshKeys(), refreshNamespaces()])
    } catch (error) {
      failed(error, (message) => editorStatus(`Not deleted: ${message}`, 'error'))
    }
  })()
})

byId('ns-form', HTMLFormElement).addEventListener('submit', (event) => {
  event.preventDefault()
  const ns = byId('ns-input', HTMLInputElement).value.trim()
  if (ns !== '') selectNamespace(ns)
})

byId('prefix-form', HTMLFormElement).addEventListener('submit', (event) => {
  event.preventDefault()
  state.prefix = byId('prefix-input', HTMLInputElement).value
  void refreshKeys()
})

// Locks, leaders, rate limits.

/**
 * Counters as `name value` pairs.
 *
 * @param {Record<string, unknown>} counters
 */
function counterText(counters) {
  return Object.entries(counters)
    .map(([name, value]) => `${name} ${String(value)}`)
    .join(' · ')
}

async function refreshLocks() {
  /** @type {any} */
  let answer
  try {
    answer = await call('GET', '/v1/locks')
  } catch (error) {
    failed(error)
    return
  }
  const offset = answer.now - Date.now()
  /** @type {typeof state.locks} */
  const locks = answer.locks
  state.locks = locks.map((lock) => ({ ...lock, offset }))
  const body = byId('locks', HTMLTableElement).tBodies[0]
  if (body !== undefined) {
    replace(
      body,
      locks.length === 0
        ? el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No locks held.'))
        : locks.map((lock) =>
            el(
              'tr',
              {},
              el('td', {}, lock.ns),
              el('td', {}, lock.key),
              el('td', {}, lock.owner),
              el('td', { class: 'num' }, String(lock.token)),
              el('td', { class: 'num countdown' }, ''),
            ),
          ),
    )
  }
  byId('lock-stats', HTMLElement).textContent = counterText(answer.stats)
  tick()
}

async function refreshLeaders() {
  /** @type {any} */
  let answer
  try {
    answer = await call('GET', '/v1/leaders')
  } catch (error) {
    failed(error)
    return
  }
  /** @type {Array<{ flow: string, tenant: string, owner: string, isLeader: boolean }>} */
  const leaders = answer.leaders
  const body = byId('leaders', HTMLTableElement).tBodies[0]
  if (body === undefined) return
  replace(
    body,
    leaders.length === 0
      ? el('tr', {}, el('td', { colspan: 4, class: 'muted' }, 'No leader-elected flows.'))
      : leaders.map((leader) =>
          el(
            'tr',
            {},
            el('td', {}, leader.flow),
            el('td', {}, leader.tenant),
            el('td', {}, leader.owner),
            el(
              'td',
              { 'data-role': leader.isLeader ? 'leader' : 'follower' },
              leader.isLeader ? 'leader' : 'follower',
            ),
          ),
        ),
  )
}

async function refreshRateLimits() {
  /** @type {any} */
  let answer
  try {
    answer = await call('GET', '/v1/rate-limits')
  } catch (error) {
    failed(error)
    return
  }
  const offset = answer.now - Date.now()
  /** @type {typeof state.rateLimits} */
  const limits = answer.rateLimits
  state.rateLimits = limits.map((limit) => ({ ...limit, offset }))
  const body = byId('rate-limits', HTMLTableElement).tBodies[0]
  if (body !== undefined) {
    replace(
      body,
      limits.length === 0
        ? el('tr', {}, el('td', { colspan: 3, class: 'muted' }, 'No rate-limit state.'))
        : limits.map((limit) =>
            el(
              'tr',
              {},
              el('td', {}, limit.ns),
              el('td', {}, limit.key),
              el('td', { class: 'num countdown' }, ''),
            ),
          ),
    )
  }
  byId('rate-limit-stats', HTMLElement).textContent = counterText(answer.stats)
  tick()
}

// Flows and runs.

/**
 * @param {any} trigger
 * @returns {string}
 */
function triggerText(trigger) {
  if (trigger === null || typeof trigger !== 'object') return ''
  if (trigger.kind === 'http') return `http ${trigger.method} ${trigger.path}`
  if (trigger.kind === 'schedule') return `every ${formatMs(trigger.everyMs)}`
  return String(trigger.kind)
}

/**
 * Step cache outcomes as chips: hit, miss (ran and cached) or not memoized.
 *
 * @param {Array<{ name: string, hit: boolean | null, bypassed?: boolean }> | undefined} steps
 */
function stepChips(steps) {
  if (steps === undefined) return ''
  return el(
    'span',
    { class: 'chips' },
    steps.map((step) => {
      const outcome = step.bypassed
        ? 'bypassed'
        : step.hit === null
          ? 'none'
          : step.hit
            ? 'hit'
            : 'miss'
      const label = outcome === 'none' ? step.name : `${step.name}: ${outcome}`
      return el('span', { class: 'chip', 'data-hit': outcome }, label)
    }),
  )
}

/**
 * @param {any} run
 * @returns {string}
 */
function outcomeText(run) {
  if (run === null || run === undefined) return 'never ran'
  if (!run.ok) return `failed: ${run.error?.message ?? 'unknown error'}`
  return run.dropped ? 'dropped' : 'ok'
}

async function refreshFlows() {
  /** @type {any} */
  let answer
  try {
    answer = await call('GET', '/v1/flows')
  } catch (error) {
    failed(error)
    return
  }
  byId('flows-state', HTMLElement).textContent = `host ${answer.state}`
  /** @type {any[]} */
  const flows = answer.flows
  const body = byId('flows', HTMLTableElement).tBodies[0]
  if (body === undefined) return
  replace(
    body,
    flows.length === 0
      ? el('tr', {}, el('td', { colspan: 6, class: 'muted' }, 'No flows loaded.'))
      : flows.map((flow) => {
          const button = el('button', { type: 'button', class: 'link' }, flow.name)
          button.addEventListener('click', () => {
            state.flow = flow.name
            void refreshRuns()
          })
          return el(
            'tr',
            { 'data-flow': flow.name, 'aria-selected': flow.name === state.flow },
            el('td', {}, button),
            el('td', {}, flow.tenant),
            el('td', {}, triggerText(flow.trigger)),
            el('td', { class: 'num' }, flow.runs.total),
            el('td', { class: 'num' }, flow.runs.failed),
            el(
              'td',
              {},
              outcomeText(flow.lastRun),
              ' ',
              flow.lastRun === null ? '' : stepChips(flow.lastRun.steps),
            ),
          )
        }),
  )
  if (state.flow !== null) await refreshRuns()
}

async function refreshRuns() {
  const name = state.flow
  if (name === null) return
  /** @type {any} */
  let answer
  try {
    answer = await call('GET', `/v1/flows/${segment(name)}/runs`)
  } catch (error) {
    failed(error)
    return
  }
  byId('runs', HTMLElement).hidden = false
  byId('runs-flow', HTMLElement).textContent =
    `${name} (${answer.runs.total} runs, ${answer.runs.failed} failed)`
  /** @type {any[]} */
  const recent = [...answer.recent].reverse()
  const body = byId('runs-table', HTMLTableElement).tBodies[0]
  if (body === undefined) return
  replace(
    body,
    recent.length === 0
      ? el('tr', {}, el('td', { colspan: 5, class: 'muted' }, 'No runs yet.'))
      : recent.map((run) =>
          el(
            'tr',
            {},
            el('td', {}, formatTime(run.startedAt)),
            el('td', {}, run.trigger),
            el('td', { class: 'num' }, formatMs(run.ms)),
            el('td', {}, outcomeText(run)),
            el('td', {}, stepChips(run.steps)),
          ),
        ),
  )
}

// The token.

byId('token-button', HTMLButtonElement).addEventListener('click', () => {
  askToken(
    getToken() === null
      ? 'Enter the API token when the server requires one.'
      : 'A token is set for this tab.',
  )
})

byId('token-form', HTMLFormElement).addEventListener('submit', (event) => {
  event.preventDefault()
  const input = byId('token-input', HTMLInputElement)
  setToken(input.value.trim())
  input.value = ''
  byId('token-form', HTMLFormElement).hidden = true
  state.needsToken = false
  void refreshAll()
})

byId('token-forget', HTMLButtonElement).addEventListener('click', () => {
  setToken(null)
  byId('token-message', HTMLElement).textContent = 'Token forgotten.'
})

// Polling.

async function refreshLists() {
  await Promise.all([
    refreshNamespaces(),
    refreshKeys(),
    refreshLocks(),
    refreshLeaders(),
    refreshRateLimits(),
    refreshFlows(),
  ])
}

async function refreshAll() {
  await Promise.all([refreshStats(), refreshLists()])
}

void refreshAll()
setInterval(() => void refreshStats(), STATS_EVERY)
setInterval(() => {
  if (!state.needsToken) void refreshLists()
}, LISTS_EVERY)
setInterval(tick, TICK_EVERY)
window.addEventListener('resize', () => {
  for (const chart of Object.values(charts)) chart.draw()
})
