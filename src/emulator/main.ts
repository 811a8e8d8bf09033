/** `npm run emulator`: the emulator as a standalone process, configured from the environment. */
import { startEmulator } from './index.js'
import type { QuotaWindow } from './types.js'

function nonNegativeInt (name: string): number | undefined {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return undefined
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 0) {
    process.stderr.write(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}\n`)
    process.exit(1)
  }
  return value
}

/** EMULATOR_QUOTA="limit/periodS,…" replaces Mangopay's windows (the benchmark needs a huge one). */
function quotaWindows (): QuotaWindow[] | undefined {
  const raw = process.env.EMULATOR_QUOTA
  if (raw === undefined || raw === '') return undefined
  const windows = raw.split(',').map((entry) => entry.trim().split('/').map(Number))
  if (!windows.every((w) => w.length === 2 && w.every((n) => Number.isInteger(n) && n > 0))) {
    process.stderr.write(`EMULATOR_QUOTA must look like "2300/900,4500/1800", got ${JSON.stringify(raw)}\n`)
    process.exit(1)
  }
  return windows.map(([limit, periodS]) => ({ limit: limit as number, periodS: periodS as number }))
}

const controlEnabled = process.env.EMULATOR_CONTROL === '1'
const emulator = await startEmulator({
  host: process.env.EMULATOR_HOST ?? '127.0.0.1',
  port: nonNegativeInt('EMULATOR_PORT') ?? 4010,
  clientId: process.env.EMULATOR_CLIENT_ID ?? 'demo-client',
  apiKey: process.env.EMULATOR_API_KEY ?? 'demo-api-key',
  bearerTtlS: nonNegativeInt('EMULATOR_BEARER_TTL_S'),
  quota: quotaWindows(),
  controlEnabled
})
process.stdout.write(`Mangopay emulator listening on ${emulator.url}${controlEnabled ? ' (control API at /__emulator)' : ''}\n`)

function stop (): void {
  emulator.close().then(() => { process.exitCode = 0 }, (err: unknown) => {
    process.stderr.write(`emulator: close failed: ${String(err)}\n`)
    process.exitCode = 1
  })
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
