import { randomBytes } from 'node:crypto'
import { createServer, type AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildApp } from '../app.js'
import { loadConfig } from '../config/index.js'
import { startEmulator, type Emulator } from '../emulator/index.js'
import { demoPageRoutes, loadDemoAssets, startFrontendServer, type DemoAssets } from './pages.js'

// The embedded default (SPEC §7) in one call, for `npm run demo` and the browser tests.

export interface DemoOptions {
  /** Default 127.0.0.1: both origins must be on the same host for the dev SameSite=Lax cookie. */
  host?: string
  /** Default 3000; 0 picks a free port. */
  brokerPort?: number
  /** Default 3001; 0 picks a free port. */
  frontendPort?: number
  /** Broker log level (default info); ignored when `logger` is given. */
  logLevel?: string
  logger?: Logger
  /** The emulator's credentials; by default a demo client id and a random key for this run. */
  clientId?: string
  apiKey?: string
  /** Extra broker environment (e.g. RATE_LIMIT_MAX); HOST, PORT and CORS_ORIGINS stay the demo's. */
  env?: Record<string, string>
}

export interface Demo {
  brokerUrl: string
  frontendUrl: string
  emulator: Emulator
  app: FastifyInstance
  close (): Promise<void>
}

const MAX_LISTEN_ATTEMPTS = 5

/** The broker must know its own origin (CORS_ORIGINS) before it listens, so a free port is found first. */
async function freePort (host: string): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject)
    probe.listen(0, host, () => resolve())
  })
  const { port } = probe.address() as AddressInfo
  await new Promise<void>(resolve => probe.close(() => resolve()))
  return port
}

function isAddressInUse (err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'EADDRINUSE'
}

interface BrokerSettings {
  host: string
  port: number
  env: Record<string, string>
  logger: Logger | undefined
  assets: DemoAssets
  frontendUrl: string
}

async function listenBroker (settings: BrokerSettings): Promise<{ app: FastifyInstance, url: string }> {
  const { host, assets, frontendUrl } = settings
  for (let attempt = 1; ; attempt++) {
    const port = settings.port === 0 ? await freePort(host) : settings.port
    const url = `http://${host}:${port}`
    const config = loadConfig({
      ...settings.env,
      HOST: host,
      PORT: String(port),
      // A same-origin POST carries Origin too, and a cookie request from an unlisted one is refused (SPEC §3.4).
      CORS_ORIGINS: `${url},${frontendUrl}`
    })
    const app = await buildApp(config, settings.logger === undefined ? {} : { logger: settings.logger })
    await app.register(demoPageRoutes, { assets, frontendUrl: () => frontendUrl })
    try {
      await app.listen({ host, port })
      return { app, url }
    } catch (err) {
      await app.close()
      // Another process took the free port between the probe and listen: pick another.
      if (settings.port === 0 && isAddressInUse(err) && attempt < MAX_LISTEN_ATTEMPTS) continue
      throw err
    }
  }
}

export async function startDemo (options: DemoOptions = {}): Promise<Demo> {
  const host = options.host ?? '127.0.0.1'
  const clientId = options.clientId ?? 'demo-client'
  const apiKey = options.apiKey ?? randomBytes(24).toString('base64url')
  const assets = await loadDemoAssets()

  const closers: Array<() => Promise<void>> = []
  async function close (): Promise<void> {
    for (const closer of closers.splice(0).reverse()) await closer()
  }

  try {
    const emulator = await startEmulator({ host, clientId, apiKey, controlEnabled: true })
    closers.push(async () => await emulator.close())

    let brokerUrl = ''
    const frontend = await startFrontendServer({ assets, host, port: options.frontendPort ?? 3001, brokerUrl: () => brokerUrl })
    closers.push(frontend.close)

    const broker = await listenBroker({
      host,
      port: options.brokerPort ?? 3000,
      logger: options.logger,
      assets,
      frontendUrl: frontend.url,
      env: {
        MANGOPAY_BASE_URL: emulator.url,
        MANGOPAY_CLIENT_ID: clientId,
        MANGOPAY_API_KEY: apiKey,
        AUTH_MODE: 'dev',
        LOG_LEVEL: options.logLevel ?? 'info',
        SHUTDOWN_DELAY_MS: '0',
        // A free port: several demos (and the browser tests) run side by side.
        METRICS_PORT: '0',
        // Someone trying the demo presses the buttons far more often than a page would.
        TOKEN_BUDGET_PER_USER: '30',
        TOKEN_BUDGET_PER_SESSION: '60',
        ...options.env
      }
    })
    brokerUrl = broker.url
    closers.push(async () => await broker.app.close())

    return { brokerUrl, frontendUrl: frontend.url, emulator, app: broker.app, close }
  } catch (err) {
    await close()
    throw err
  }
}
