/**
 * The one logger interface of flowcache. Anything with `warn`, `info` and `error` methods fits,
 * including pino, winston and `console`. flowcache logs rarely: state changes such as falling
 * back to memory or reconnecting, never once per call.
 */
export interface Logger {
  info(message: string, details?: Record<string, unknown>): void
  warn(message: string, details?: Record<string, unknown>): void
  error(message: string, details?: Record<string, unknown>): void
}

function write(level: string, message: string, details?: Record<string, unknown>): void {
  const suffix = details === undefined ? '' : ` ${JSON.stringify(details)}`
  process.stderr.write(`[flowcache] ${level}: ${message}${suffix}\n`)
}

/** Default logger: one line per event on stderr, prefixed `[flowcache]`. */
export const stderrLogger: Logger = {
  info: (message, details) => write('info', message, details),
  warn: (message, details) => write('warn', message, details),
  error: (message, details) => write('error', message, details),
}

/** A logger that drops everything. */
export const silentLogger: Logger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
}
