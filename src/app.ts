import Fastify, { type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import type { Dispatcher } from 'undici'
import type { Logger } from 'pino'
import { createAuth } from './auth/index.js'
import { systemClock, type Clock } from './clock.js'
import type { Config } from './config/index.js'
import inbound, { serverOptions } from './http/index.js'
import type { Lifecycle } from './lifecycle.js'
import { limitFailedAuthentications, setUpRateLimits } from './limits/index.js'
import { createMangopay, sharedStateScope, type Mangopay } from './mangopay/index.js'
import { BrokerMetrics, createLogger, createTracing, liveSecretsOf, metricsPlugin, requestSpans } from './observability/index.js'
import { closeRedisClient, createRedisClient } from './redis/index.js'
import { clientScriptRoutes } from './routes/client-script.js'
import { createReadiness, healthRoutes } from './routes/health.js'
import { tokenRoutes } from './routes/tokens.js'

export interface AppDeps {
  /** A pino logger (tests pass one writing to a capture stream). */
  logger?: Logger
  clock?: Clock
  /** The dispatcher for Mangopay calls; by default the app creates and owns a Pool. */
  mangopayDispatcher?: Dispatcher
  /** With REDIS_URL: how often the quota pauses other instances published are read (default 1000 ms). */
  quotaSyncIntervalMs?: number
  /** How often the event loop's load is sampled for load shedding (default 1000 ms). */
  loadSampleIntervalMs?: number
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Flipped by the server on SIGTERM/SIGINT: readiness turns 503 before connections close. */
    lifecycle: Lifecycle
    /** For the server's warm-up and SIGHUP reload. */
    mangopay: Mangopay
  }
}

/** Builds the broker; the registration order below is the request's path. `server.ts` listens; tests call this same factory. */
export async function buildApp (config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const clock = deps.clock ?? systemClock
  const logger = deps.logger ?? createLogger(config.logLevel)
  const app = Fastify(serverOptions(config.server, logger))

  const lifecycle: Lifecycle = { shuttingDown: false, closing: false }
  app.decorate('lifecycle', lifecycle)
  // close() called directly (an embedding app, tests) drains like SIGTERM does.
  app.addHook('preClose', done => {
    lifecycle.shuttingDown = true
    lifecycle.closing = true
    done()
  })

  const metrics = new BrokerMetrics()
  // Spans exported when OTEL_* says so; an incoming traceparent is passed on to Mangopay either way.
  const tracing = await createTracing(config.tracing, app.log)
  // With REDIS_URL the rate limits, the bearer and the quota pause are shared (SPEC §5).
  const redis = config.redis === undefined ? undefined : createRedisClient(config.redis, app.log)
  const mangopay = createMangopay(config.mangopay, {
    logger: app.log,
    clock,
    redis,
    dispatcher: deps.mangopayDispatcher,
    observer: metrics,
    tracer: tracing,
    quotaSyncIntervalMs: deps.quotaSyncIntervalMs,
    secrets: liveSecretsOf(logger)
  })
  metrics.watch(mangopay)
  app.decorate('mangopay', mangopay)
  const auth = createAuth(config.auth, { clock, log: app.log })
  app.addHook('onClose', async () => {
    await auth.close()
    await mangopay.close()
    if (redis !== undefined) await closeRedisClient(redis)
    await tracing.close()
  })

  const readiness = createReadiness({
    mangopay,
    lifecycle,
    clock,
    ...(redis === undefined ? {} : { redis }),
    ...(auth.authenticator.ready === undefined ? {} : { identityProvider: { ready: auth.authenticator.ready.bind(auth.authenticator) } })
  })

  await app.register(inbound, { lifecycle, origins: config.cors.origins, loadShedding: { ...config.loadShedding, sampleIntervalMs: deps.loadSampleIntervalMs } })
  await app.register(requestSpans, { tracing })
  // Before the routes, so its hooks see every request.
  await app.register(metricsPlugin, { metrics, port: config.metrics.port, host: config.server.host, readiness })
  if (auth.parsesCookies) await app.register(fastifyCookie)
  const limits = await setUpRateLimits(app, {
    limits: config.rateLimit,
    clock,
    redis,
    quota: () => mangopay.quotaWindows(),
    quotaScope: sharedStateScope(config.mangopay.clientId, config.mangopay.baseUrl),
    onBudgetRefusal: reason => metrics.budgetRefused(reason)
  })

  await app.register(tokenRoutes, {
    mangopay,
    lifecycle,
    authenticator: limitFailedAuthentications(auth.authenticator, limits.failedAuth, {
      clock,
      paceMs: config.rateLimit.failedAuthWindowMs / config.rateLimit.failedAuthMax,
      trustsProxy: config.server.trustProxy.length > 0
    }),
    allowedOrigins: new Set(config.cors.origins),
    clock,
    rateLimit: limits.perUser,
    budgets: limits.budgets,
    settings: { clientId: config.mangopay.clientId, environment: config.mangopay.environment, timeoutMs: config.mangopay.timeoutMs }
  })
  await app.register(healthRoutes, { readiness })
  await app.register(clientScriptRoutes)
  if (auth.routes !== undefined) await app.register(auth.routes)
  return app
}
