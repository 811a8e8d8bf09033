// `npm run demo`: emulator, broker (AUTH_MODE=dev) and a second origin, all local; PORT and FRONTEND_PORT pick ports.
import closeWithGrace from 'close-with-grace'
import { ConfigError } from '../config/index.js'
import { startDemo, type Demo } from './start.js'

function port (name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    process.stderr.write(`${name} must be a port number, got ${JSON.stringify(raw)}\n`)
    process.exit(1)
  }
  return value
}

let demo: Demo
try {
  demo = await startDemo({
    brokerPort: port('PORT', 3000),
    frontendPort: port('FRONTEND_PORT', 3001),
    logLevel: process.env.LOG_LEVEL ?? 'info'
  })
} catch (err) {
  const message = err instanceof ConfigError
    ? err.message
    : (err as NodeJS.ErrnoException).code === 'EADDRINUSE'
        ? `${(err as Error).message}: set PORT / FRONTEND_PORT to free ports`
        : String((err as Error).stack ?? err)
  process.stderr.write(`The demo could not start.\n${message}\n`)
  process.exit(1)
}

closeWithGrace({ delay: 10_000 }, async ({ err }) => {
  if (err !== undefined) process.stderr.write(`demo: stopping after an error: ${String(err)}\n`)
  await demo.close()
})

process.stdout.write(`
  Mangopay token broker demo — everything runs locally, no Mangopay account needed.

    Demo page                   ${demo.brokerUrl}/
    Same page, another origin   ${demo.frontendUrl}/   (calls the broker cross-origin)
    Mangopay emulator           ${demo.emulator.url}
    Metrics, detailed readiness http://127.0.0.1:${String(demo.app.metrics.listeningOn?.port)}/metrics, /readyz

  Pick a sample user, log in, press "Recipients token" / "Checkout token". Ctrl+C stops.

`)
