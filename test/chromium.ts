import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/** Debian's `chromium` package, driven by playwright-core: never a downloaded browser build. */
export const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
  '--no-first-run', '--disable-sync', '--disable-quic'
]

/** Why the browser tests are skipped here, or undefined when they run (under CI=true they always run). */
export function chromiumMissing (): string | undefined {
  if (existsSync(CHROMIUM) || process.env.CI === 'true') return undefined
  return `Chromium is not installed at ${CHROMIUM}: the real-browser tests are skipped. Install Debian's package ("apt-get install -y chromium") to run them; under CI=true they always run.`
}

export async function launchChromium (): Promise<Browser> {
  return await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
}
