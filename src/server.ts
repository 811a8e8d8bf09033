import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, shutdownGraceMs, type Config } from './config/index.js'
import { createLogger } from './observability/logging.js'

/**
 * The thin edge: the only module that reads process.env, listens, handles signals and exits.
 * On SIGTERM/SIGINT readiness turns 503 at once, then after SHUTDOWN_DELAY_MS (time for load
 * balancers to notice) the server stops accepting, lets in-flight requests finish, and exits 0.
 * SIGHUP re-reads the secrets given as files (key rotation) and keeps serving.
 */
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
    if (config.server.shutdownDelayMs > 0) await new Promise(resolve => setTimeout(resolve, config.server.shutdownDelayMs))
    await app.close()
  })

  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading secrets from their files')
    app.mangopay.reloadSecrets().then(
      result => logger.info({ reload: result }, 'secrets reloaded'),
      (err: unknown) => logger.error({ err }, 'reloading secrets failed')
    )
  })

  await app.listen({ host: config.server.host, port: config.server.port })
  // Warm the bearer so the first browser request does not wait for it; a failure is logged
  // and retried on the first need.
  app.mangopay.warmUp().catch(() => {})
}

await main()
