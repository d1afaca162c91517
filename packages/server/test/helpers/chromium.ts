/**
 * Headless Chromium for the console tests and the screenshot script: Debian's `chromium`
 * driven by playwright-core. {@link ensureChromium} installs the package with apt when it is
 * missing and this process may do so (root with apt-get); otherwise it throws with what to install.
 */
import { execFileSync } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM_PATH = '/usr/bin/chromium'

/** Launch flags: headless, no sandbox (containers), no background network or updates. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

/** Whether `file` exists and is executable. */
function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Where `name` is found on PATH, or `undefined`. */
function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && executable(`${dir}/${name}`)) return `${dir}/${name}`
  }
  return undefined
}

/**
 * Makes sure {@link CHROMIUM_PATH} exists: installs Debian's `chromium` with
 * `apt-get install -y chromium` when running as root with apt-get available, else throws an
 * error that says what to install. Never skips.
 */
export function ensureChromium(): string {
  if (executable(CHROMIUM_PATH)) return CHROMIUM_PATH
  const apt = onPath('apt-get')
  const root = typeof process.getuid === 'function' && process.getuid() === 0
  if (apt !== undefined && root) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    try {
      if (!aptHasChromium(apt, env)) {
        execFileSync(apt, ['update'], { stdio: 'inherit', env, timeout: 300_000 })
      }
      execFileSync(apt, ['install', '-y', 'chromium'], { stdio: 'inherit', env, timeout: 600_000 })
    } catch (error) {
      throw new Error(
        `the console tests need Chromium at ${CHROMIUM_PATH}, and "apt-get install -y chromium" failed: ${error instanceof Error ? error.message : String(error)}`,
      )
    }
    if (executable(CHROMIUM_PATH)) return CHROMIUM_PATH
  }
  throw new Error(
    `the console tests need Chromium at ${CHROMIUM_PATH}: install Debian's "chromium" package (as root: apt-get install -y chromium)`,
  )
}

/** Whether apt already knows a `chromium` package (its lists are present). */
function aptHasChromium(apt: string, env: NodeJS.ProcessEnv): boolean {
  try {
    const policy = execFileSync(apt.replace(/apt-get$/, 'apt-cache'), ['policy', 'chromium'], {
      env,
      encoding: 'utf8',
    })
    return /Candidate: (?!\(none\))/.test(policy)
  } catch {
    return false
  }
}

/** Launches headless Chromium (installing it first when needed, see {@link ensureChromium}). */
export async function launchChromium(): Promise<Browser> {
  const executablePath = ensureChromium()
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true })
}
