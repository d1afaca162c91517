// @ts-check
/**
 * DOM helpers of the flowcache console. Data only ever reaches the page as text (`textContent`)
 * or as attribute values set with `setAttribute`; markup is never built from strings.
 */

/**
 * @typedef {string | number | Node | null | undefined | false} Child
 */

/**
 * Creates an element with attributes and children. Strings and numbers become text nodes.
 *
 * @param {string} tag
 * @param {Record<string, string | number | boolean | undefined>} [attributes]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElement}
 */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue
    element.setAttribute(name, value === true ? '' : String(value))
  }
  append(element, children)
  return element
}

/**
 * Appends children (nested lists allowed) as nodes or text.
 *
 * @param {Node} parent
 * @param {Array<Child | Child[]>} children
 */
function append(parent, children) {
  for (const child of children) {
    if (Array.isArray(child)) append(parent, child)
    else if (child === null || child === undefined || child === false) continue
    else if (typeof child === 'string' || typeof child === 'number') {
      parent.appendChild(document.createTextNode(String(child)))
    } else parent.appendChild(child)
  }
}

/**
 * Replaces the children of `parent`.
 *
 * @param {Element} parent
 * @param {...(Child | Child[])} children
 */
export function replace(parent, ...children) {
  parent.replaceChildren()
  append(parent, children)
}

/**
 * The element with id `id`; throws when the page lacks it.
 *
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
export function byId(id, type) {
  const found = document.getElementById(id)
  if (!(found instanceof type)) throw new Error(`the console page has no ${type.name} #${id}`)
  return found
}

/**
 * A duration in ms as short text: `950ms`, `42s`, `3m 05s`, `2h 10m`, `4d 3h`.
 *
 * @param {number} ms
 * @returns {string}
 */
export function formatMs(ms) {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`
  const seconds = Math.floor(ms / 1000)
  if (seconds < 60) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, '0')}s`
  const hours = Math.floor(minutes / 60)
  if (hours < 24) return `${hours}h ${String(minutes % 60).padStart(2, '0')}m`
  return `${Math.floor(hours / 24)}d ${hours % 24}h`
}

/**
 * A byte count as short text: `512 B`, `1.5 KiB`, `3.2 MiB`.
 *
 * @param {number} bytes
 * @returns {string}
 */
export function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

/**
 * A moment (ms since the epoch) as local time of day, or an empty string.
 *
 * @param {number | null | undefined} at
 * @returns {string}
 */
export function formatTime(at) {
  if (typeof at !== 'number') return ''
  return new Date(at).toLocaleTimeString()
}
