import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, shutdownGraceMs, type Config } from './config/index.js'
import { createLogger, effectiveSettings } from './observability/index.js'

// The thin edge: the only module that reads process.env, listens, handles signals and exits.
async function main (): Promise<void> {
  let config: Config
  try {
    config = loadConfig(process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`)
      process.exit(1)
    }
    throw err
  }

  const logger = createLogger(config.logLevel)
  const app = await buildApp(config, { logger })

  // SIGHUP is a reload here, not one of close-with-grace's shutdown signals.
  closeWithGrace({ delay: shutdownGraceMs(config), logger, skip: ['SIGHUP'] }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err }, 'shutting down after an error')
    else logger.info({ signal }, 'shutting down')
    app.lifecycle.shuttingDown = true
    // Readiness is 503 from now on: time for load balancers to notice.
    if (config.server.shutdownDelayMs > 0) await new Promise(resolve => setTimeout(resolve, config.server.shutdownDelayMs))
    await app.close()
  })

  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading secrets from their files')
    // The reload logs its own outcome.
    app.mangopay.reloadSecrets().catch((err: unknown) => { logger.error({ err }, 'reloading secrets failed') })
  })

  await app.listen({ host: config.server.host, port: config.server.port })
  logger.info({ settings: { ...effectiveSettings(config), addresses: app.addresses().map(a => typeof a === 'string' ? a : `${a.address}:${a.port}`) } }, 'broker started')
  // So the first browser request does not wait for a bearer; a failure is retried on the first need.
  app.mangopay.warmUp().catch(() => {})
}

await main()
