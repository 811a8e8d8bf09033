import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import Fastify, { type FastifyBaseLogger, type FastifyHttpOptions, type FastifyInstance } from 'fastify'
import fastifyCookie from '@fastify/cookie'
import type { Dispatcher } from 'undici'
import type { Logger } from 'pino'
import type { Config } from './config/index.js'
import { systemClock, type Clock } from './clock.js'
import { createLogger } from './observability/logging.js'
import problem, { answerFrameworkError } from './http/problem.js'
import cors from './http/cors.js'
import { handleClientError } from './http/client-error.js'
import { AccessLog } from './observability/access-log.js'
import { createJwtAuthenticator, type Authenticator } from './auth/authenticator.js'
import { createDevAuth, devLoginRoutes } from './auth/dev.js'
import { ForwardAuthenticator } from './auth/forward.js'
import { limitFailedAuthentications } from './limits/failed-auth.js'
import { setUpRateLimits } from './limits/index.js'
import { closeRedisClient, createRedisClient } from './redis/index.js'
import { MangopayClient } from './mangopay/client.js'
import { CONNECT_TIMEOUT_CAP_MS, createMangopayPool } from './mangopay/transport.js'
import { certificateExpiresAt, MangopayConnector } from './mangopay/tls.js'
import { createSecretsReloader, type SecretsReloadResult } from './mangopay/secrets-reload.js'
import metricsPlugin, { BrokerMetrics } from './observability/metrics.js'
import { QuotaTracker } from './mangopay/quota.js'
import { SharedQuotaView } from './mangopay/shared-quota.js'
import { sharedStateScope } from './mangopay/shared-bearer.js'
import { tokenRoutes } from './routes/tokens.js'
import { healthRoutes } from './routes/health.js'
import type { Lifecycle } from './lifecycle.js'
import { clientScriptRoutes } from './routes/client-script.js'

export interface AppDeps {
  /** A pino logger (tests pass one writing to a capture stream). */
  logger?: Logger
  clock?: Clock
  /** The dispatcher for Mangopay calls; by default the app creates and owns a Pool. */
  mangopayDispatcher?: Dispatcher
  /** With REDIS_URL: how often the quota pauses other instances published are read (default 1000 ms). */
  quotaSyncIntervalMs?: number
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Flipped by the server on SIGTERM/SIGINT: readiness turns 503 before connections close. */
    lifecycle: Lifecycle
    mangopay: MangopayClient
    /** SIGHUP: re-reads the secrets given as files (API key, mTLS material). */
    reloadSecrets: () => Promise<SecretsReloadResult>
  }
}

const BODY_LIMIT_BYTES = 4 * 1024
const MAX_HEADER_BYTES = 8 * 1024
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** A caller's X-Request-Id is kept when it is sane (so traces join up); otherwise a new one. */
function requestId (req: { headers: Record<string, string | string[] | undefined> }): string {
  const incoming = req.headers['x-request-id']
  return typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID()
}

function serverOptions (config: Config, logger: Logger): FastifyHttpOptions<Server> {
  return {
    loggerInstance: logger,
    genReqId: requestId,
    logController: new AccessLog({ requestIdLogLabel: 'requestId' }),
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: config.server.trustProxy.length > 0 ? config.server.trustProxy : false,
    // Requests that still reach a route once close() has begun (pipelined behind one in flight)
    // get the SPEC's problem+json 503 from the token routes (lifecycle.closing), not Fastify's own.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Deliberate socket limits: slow-header and slow-body clients are cut off, headers are
    // capped (431 beyond), and expired connections are swept every second rather than 30 s.
    requestTimeout: config.server.requestTimeoutMs,
    keepAliveTimeout: config.server.keepAliveTimeoutMs,
    connectionTimeout: config.server.keepAliveTimeoutMs + 5000,
    http: {
      headersTimeout: config.server.headersTimeoutMs,
      requestTimeout: config.server.requestTimeoutMs,
      maxHeaderSize: MAX_HEADER_BYTES,
      connectionsCheckingInterval: 1000
    },
    clientErrorHandler: handleClientError,
    frameworkErrors: answerFrameworkError,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Unknown fields are an error (SPEC §2), never silently dropped; types are never coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } }
  }
}

function authenticatorFor (config: Config, clock: Clock, log: FastifyBaseLogger): { authenticator: Authenticator, dev?: ReturnType<typeof createDevAuth>, close?: () => Promise<void> } {
  const { auth } = config
  if (auth.mode === 'dev') {
    const dev = createDevAuth(auth.dev?.sessionSecret, auth.cookieName)
    return { authenticator: createJwtAuthenticator(dev.jwt, { userIdClaim: auth.userIdClaim, cookieName: dev.cookieName }), dev }
  }
  if (auth.mode === 'jwt' && auth.jwt !== undefined) {
    return { authenticator: createJwtAuthenticator(auth.jwt, { userIdClaim: auth.userIdClaim, cookieName: auth.cookieName, log }) }
  }
  if (auth.mode === 'forward' && auth.forward !== undefined) {
    const forward = new ForwardAuthenticator({ ...auth.forward, userIdClaim: auth.userIdClaim, clock })
    return { authenticator: forward, close: async () => await forward.close() }
  }
  throw new Error(`AUTH_MODE=${auth.mode} is not available`)
}

/** Builds the broker. `server.ts` listens; tests call this same factory. */
export async function buildApp (config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const logger = deps.logger ?? createLogger(config.logLevel)
  const clock = deps.clock ?? systemClock
  const app = Fastify(serverOptions(config, logger))

  const ownsPool = deps.mangopayDispatcher === undefined
  // Always TLS 1.2+ with verification; the connector lets SIGHUP swap the mTLS material.
  const connector = ownsPool ? new MangopayConnector(config.mangopay.tls?.material, Math.min(CONNECT_TIMEOUT_CAP_MS, config.mangopay.timeoutMs)) : undefined
  const pool = deps.mangopayDispatcher ?? createMangopayPool({ origin: new URL(config.mangopay.baseUrl).origin, timeoutMs: config.mangopay.timeoutMs, connector: connector?.connect })
  const metrics = new BrokerMetrics()
  // Created before the Mangopay client: with REDIS_URL the bearer and the quota view are shared (SPEC §5).
  const redis = config.redis === undefined ? undefined : createRedisClient(config.redis, app.log)
  if (redis !== undefined) app.addHook('onClose', async () => await closeRedisClient(redis))
  const sharedQuota = redis === undefined
    ? undefined
    : new SharedQuotaView({ redis, clock, log: app.log, scope: sharedStateScope(config.mangopay.clientId, config.mangopay.baseUrl), intervalMs: deps.quotaSyncIntervalMs })
  const quota = new QuotaTracker({
    reserve: config.mangopay.quotaReserve,
    clock,
    onEvent: event => {
      if (event.type === 'blocked') app.log.warn({ quota: { until: new Date(event.until).toISOString(), reason: event.reason, windows: event.windows } }, 'Mangopay quota guard: calls paused until the window resets')
      if (event.type === 'blocked' || event.type === 'extended') sharedQuota?.publish(event.until, event.reason)
    }
  })
  if (sharedQuota !== undefined) {
    sharedQuota.follow(quota)
    app.addHook('onClose', async () => sharedQuota.stop())
  }
  const client = new MangopayClient({
    config: config.mangopay,
    pool,
    clock,
    logger: app.log,
    quota,
    onResponse: metrics.observeMangopayResponse,
    onBearerEvent: metrics.observeBearerEvent,
    onCallEvent: metrics.observeCallEvent,
    redis
  })
  metrics.watch({
    circuitState: () => client.circuit.state,
    quota: () => client.quota.snapshot(),
    certificateExpiresAt: () => certificateExpiresAt(connector?.material)
  })
  app.decorate('reloadSecrets', createSecretsReloader({ config: config.mangopay, client, connector, logger: app.log }))
  const lifecycle: Lifecycle = { shuttingDown: false, closing: false }
  app.decorate('lifecycle', lifecycle)
  // close() called directly (an embedding app, tests) drains like SIGTERM does.
  app.addHook('preClose', done => {
    lifecycle.shuttingDown = true
    lifecycle.closing = true
    done()
  })
  app.decorate('mangopay', client)
  app.addHook('onClose', async () => {
    if (ownsPool) await pool.close()
  })

  // Only JSON bodies: text/plain and the rest get 415. An empty body with a JSON content type
  // counts as "no body" (SPEC §2 allows none). Prototype-poisoning keys are refused (400).
  app.removeAllContentTypeParsers()
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, null)
    parseJson(request, body as string, done)
  })

  // The access line writes a token request's audit with it (http/access-log.ts).
  app.decorateRequest('tokenAudit', null)

  // One callback-style hook for the headers every answer carries: no promise per request for
  // work that never waits.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id)
    // Only GET /v1/client.js (a public script) sets its own caching; everything else is no-store.
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store')
    reply.header('x-content-type-options', 'nosniff')
    // While draining, a finished response must not leave its keep-alive connection open:
    // close() waits for every connection, and one idle for the keep-alive timeout would outlast it.
    if (lifecycle.shuttingDown) reply.header('connection', 'close')
    done(null, payload)
  })

  await app.register(problem)
  // Before the routes, so its hooks see every request.
  await app.register(metricsPlugin, { metrics, port: config.metrics.port, host: config.server.host })
  await app.register(cors, { origins: config.cors.origins })
  // Cookies are parsed only where a session can ride on one (AUTH_COOKIE_NAME, or dev mode's
  // login); forward mode passes the raw Cookie header on untouched.
  if (config.auth.mode === 'dev' || config.auth.cookieName !== undefined) await app.register(fastifyCookie)

  const limits = await setUpRateLimits(app, { limits: config.rateLimit, clock, redis })

  const { authenticator: verifier, dev, close: closeAuthenticator } = authenticatorFor(config, clock, app.log)
  if (closeAuthenticator !== undefined) app.addHook('onClose', closeAuthenticator)
  const authenticator = limitFailedAuthentications(verifier, limits.failedAuth)
  const allowedOrigins = new Set(config.cors.origins)
  await app.register(tokenRoutes, {
    client,
    lifecycle,
    authenticator,
    allowedOrigins,
    clock,
    rateLimit: limits.perUser,
    mangopay: { clientId: config.mangopay.clientId, environment: config.mangopay.environment, timeoutMs: config.mangopay.timeoutMs }
  })
  await app.register(healthRoutes, {
    client,
    lifecycle,
    clock,
    timeoutMs: config.mangopay.timeoutMs,
    ...(redis === undefined ? {} : { redis }),
    ...(verifier.ready === undefined ? {} : { identityProvider: { ready: verifier.ready.bind(verifier) } })
  })
  await app.register(clientScriptRoutes)
  if (dev !== undefined) await app.register(devLoginRoutes, { dev, userIdClaim: config.auth.userIdClaim })

  return app
}
