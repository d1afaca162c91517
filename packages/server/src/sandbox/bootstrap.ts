/**
 * The JavaScript that sets up a fresh context inside the isolate before a script runs. It is
 * the script's side of the bridge: it builds `ctx`, turns every `ctx` call into one host call
 * carrying JSON text, and turns the script's result or error into one string for the host.
 *
 * It runs before any script code in the context, so it captures the built-ins it relies on
 * (`JSON.stringify`, `Reflect.apply`, `Promise.prototype.then`…) first: a script that replaces
 * them afterwards cannot change how its result is measured or encoded. Nothing here is trusted
 * by the host, though: the host parses and checks whatever comes back.
 *
 * The source evaluates to `setup(call, log, configJson)`, which returns `{ run, settle }`:
 * - `call(op, argsJson, id)` hands one `ctx` call to the host and returns at once; the host
 *   answers later by calling `settle(id, reply)` with `{ ok: true, value }` or
 *   `{ ok: false, code, name, message }`, which resolves or rejects the script's promise. The
 *   host drives both directions, so the script never holds a reference to anything in the host;
 * - `log(level, text)` hands one log line to the host;
 * - `run(fn, event)` resolves to `<lines>,<answer>`: how many times it called `log`, then
 *   `R<json>` (a result), `N` (null), `U` (undefined), `T<type>` (not an object), `J<message>`
 *   (not JSON), `L<length>` (too large) or `E<json>` (the script threw). `log` calls reach the
 *   host as separate messages, which can arrive after the answer, so the host waits for that
 *   many lines before it reads the answer; nothing is logged after the answer.
 */
export const BOOTSTRAP_SOURCE = String.raw`(function setup(call, log, configJson) {
  'use strict'
  const apply = Reflect.apply
  const defineProperty = Reflect.defineProperty
  const freeze = Object.freeze
  const stringify = JSON.stringify
  const parse = JSON.parse
  const StringOf = String
  const charCodeAt = String.prototype.charCodeAt
  const sliceString = String.prototype.slice
  const PromiseCtor = Promise
  const promiseThen = Promise.prototype.then
  const ErrorCtor = Error
  const TypeErrorCtor = TypeError
  const isArray = Array.isArray
  const isView = ArrayBuffer.isView
  const MapCtor = Map
  const SetCtor = Set

  const config = parse(configJson)
  const limits = config.limits

  // Not needed by scripts; each one only widens what a hostile script can reach for.
  delete globalThis.WebAssembly
  delete globalThis.SharedArrayBuffer
  delete globalThis.Atomics

  function replacer(_key, value) {
    if (typeof value === 'bigint') {
      throw new TypeErrorCtor('a BigInt cannot leave the sandbox; convert it to a string or a number')
    }
    if (typeof value === 'object' && value !== null) {
      if (value instanceof MapCtor) {
        throw new TypeErrorCtor('a Map cannot leave the sandbox; convert it with Object.fromEntries(map)')
      }
      if (value instanceof SetCtor) {
        throw new TypeErrorCtor('a Set cannot leave the sandbox; convert it with Array.from(set)')
      }
      if (isView(value)) {
        throw new TypeErrorCtor('binary data cannot leave the sandbox; encode it as a string first')
      }
    }
    return value
  }

  // Whether text is at most max bytes in UTF-8; stops counting as soon as it is over.
  function fits(text, max) {
    const length = text.length
    if (length > max) return false
    if (length * 3 <= max) return true
    let bytes = 0
    for (let i = 0; i < length; i++) {
      const c = apply(charCodeAt, text, [i])
      if (c < 0x80) bytes += 1
      else if (c < 0x800) bytes += 2
      else if (c >= 0xd800 && c < 0xdc00) {
        bytes += 4
        i++
      } else bytes += 3
      if (bytes > max) return false
    }
    return true
  }

  function cut(text, max) {
    return text.length > max ? apply(sliceString, text, [0, max]) : text
  }

  function textOf(value, max) {
    if (typeof value === 'string') return cut(value, max)
    try {
      return cut(StringOf(value), max)
    } catch (_) {
      return ''
    }
  }

  function codedError(code, message, name) {
    const error = new ErrorCtor(message)
    defineProperty(error, 'code', { value: code, enumerable: true, writable: true, configurable: true })
    if (typeof name === 'string') {
      defineProperty(error, 'name', { value: name, writable: true, configurable: true })
    }
    return error
  }

  function encode(value, max, what) {
    let text
    try {
      text = apply(stringify, undefined, [value, replacer])
    } catch (error) {
      let reason = ''
      try {
        reason = textOf(error && error.message, 300)
      } catch (_) {}
      throw codedError('E_UNSUPPORTED_VALUE', what + ' must be JSON data: ' + reason, 'UnsupportedValueError')
    }
    if (!fits(text, max)) {
      throw codedError('E_VALUE_TOO_LARGE', what + ' are larger than limits.maxCallBytes (' + max + ' bytes)', 'ValueTooLargeError')
    }
    return text
  }

  // Calls waiting for the host's answer, by id. No prototype, so no script can add entries.
  const pending = Object.create(null)
  let nextId = 0

  // An async function, so that an error it throws carries the script's line in its stack.
  async function invoke(op, args) {
    const text = encode(args, limits.maxCallBytes, 'the arguments of ctx.' + op)
    const id = ++nextId
    const reply = await new PromiseCtor((resolve) => {
      pending[id] = resolve
      call(op, text, id)
    })
    if (reply !== null && typeof reply === 'object') {
      if (reply.ok === true) return reply.value
      throw codedError(textOf(reply.code, 200), textOf(reply.message, 2000), textOf(reply.name, 200))
    }
    throw codedError('E_SANDBOX', 'ctx.' + op + ' failed inside the sandbox bridge')
  }

  function settle(id, reply) {
    const resolve = pending[id]
    if (resolve === undefined) return
    delete pending[id]
    resolve(reply)
  }

  function defined(value, what) {
    if (value === undefined) {
      throw codedError('E_UNSUPPORTED_VALUE', what + ' must not be undefined; delete the key instead', 'UnsupportedValueError')
    }
  }

  const cache = freeze({
    get: async (key, fallback) => {
      const value = await invoke('cache.get', [key])
      return value === undefined ? fallback : value
    },
    set: async (key, value, ttl) => {
      defined(value, 'the value')
      return invoke('cache.set', [key, value, ttl])
    },
    add: async (key, value, ttl) => {
      defined(value, 'the value')
      return invoke('cache.add', [key, value, ttl])
    },
    delete: (key) => invoke('cache.delete', [key]),
    has: (key) => invoke('cache.has', [key]),
    increment: (key, by, ttl) => invoke('cache.increment', [key, by, ttl]),
    getMany: (keys) => invoke('cache.getMany', [keys]),
    ttl: (key) => invoke('cache.ttl', [key]),
    keys: (prefix) => invoke('cache.keys', [prefix]),
  })

  const locks = freeze({
    acquire: async (key, options) => {
      const lock = await invoke('locks.acquire', [key, options])
      return lock === null ? null : freeze(lock)
    },
    release: (lock, owner) => invoke('locks.release', [lock, owner]),
    extend: (lock, ttl) => invoke('locks.extend', [lock, ttl]),
    withLock: async (key, fn, options) => {
      const lock = await locks.acquire(key, options)
      if (lock === null) {
        throw codedError('E_LOCK_TIMEOUT', 'lock "' + textOf(key, 200) + '" is held by another owner; retry later or pass a longer wait', 'LockTimeoutError')
      }
      try {
        return await fn(lock)
      } finally {
        await locks.release(lock)
      }
    },
  })

  // Log lines handed to the host so far, and whether the run has produced its answer. The count
  // goes out with the answer, so the host can wait for every line the script wrote before it
  // returned; lines written after that are not sent at all.
  let lines = 0
  let sent = 0
  let finished = false
  function send(level, text) {
    sent++
    log(level, text)
  }
  function format(args) {
    let text = ''
    for (let i = 0; i < args.length && text.length < limits.maxLogBytes; i++) {
      const arg = args[i]
      let part
      if (typeof arg === 'string') part = arg
      else {
        try {
          part = apply(stringify, undefined, [arg])
        } catch (_) {}
        if (typeof part !== 'string') part = textOf(arg, limits.maxLogBytes)
      }
      text += (i === 0 ? '' : ' ') + part
    }
    return cut(text, limits.maxLogBytes)
  }
  function logger(level) {
    return (...args) => {
      if (finished) return
      if (lines >= limits.maxLogLines) {
        if (lines === limits.maxLogLines) send('dropped', '')
        lines = limits.maxLogLines + 1
        return
      }
      lines++
      send(level, format(args))
    }
  }

  function deepFreeze(value) {
    if (typeof value === 'object' && value !== null) {
      for (const key of Reflect.ownKeys(value)) deepFreeze(value[key])
      freeze(value)
    }
    return value
  }

  const ctx = freeze({
    cache,
    locks,
    rateLimit: (key, options) => invoke('rateLimit', [key, options]),
    log: logger('info'),
    flow: deepFreeze(config.flow),
    connections: deepFreeze(config.connections),
  })
  globalThis.console = freeze({
    log: logger('info'),
    info: logger('info'),
    debug: logger('debug'),
    warn: logger('warn'),
    error: logger('error'),
  })

  function success(value) {
    if (value === undefined) return 'U'
    if (value === null) return 'N'
    if (typeof value !== 'object') return 'T' + typeof value
    if (isArray(value)) return 'Tarray'
    let text
    try {
      text = apply(stringify, undefined, [value, replacer])
    } catch (error) {
      let reason = ''
      try {
        reason = textOf(error && error.message, 300)
      } catch (_) {}
      return 'J' + reason
    }
    if (typeof text !== 'string') return 'Tundefined'
    if (!fits(text, limits.maxResultBytes)) return 'L' + text.length
    return 'R' + text
  }

  function failure(error) {
    const out = {}
    try {
      if ((typeof error === 'object' && error !== null) || typeof error === 'function') {
        out.name = textOf(error.name, 200)
        out.message = textOf(error.message, 2000)
        const code = error.code
        if (code !== undefined) out.code = textOf(code, 200)
        out.stack = textOf(error.stack, 4000)
      } else {
        out.message = textOf(error, 2000)
      }
    } catch (_) {
      out.message = out.message || 'the script threw a value that cannot be read'
    }
    return 'E' + apply(stringify, undefined, [out])
  }

  function run(fn, event) {
    return new PromiseCtor((resolve) => {
      let settled = false
      const done = (text) => {
        if (!settled) {
          settled = true
          finished = true
          resolve(sent + ',' + text)
        }
      }
      const ok = (value) => {
        try {
          done(success(value))
        } catch (error) {
          done(failure(error))
        }
      }
      const failed = (error) => {
        try {
          done(failure(error))
        } catch (_) {
          done('E{}')
        }
      }
      try {
        apply(promiseThen, fn(event, ctx), [ok, failed])
      } catch (error) {
        failed(error)
      }
    })
  }

  return freeze({ run, settle })
})`
