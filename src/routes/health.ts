import type { FastifyInstance } from 'fastify'
import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'
import { sendProblem } from '../http/problem.js'
import type { Lifecycle } from '../lifecycle.js'
import type { Mangopay } from '../mangopay/index.js'

export interface HealthRoutesOptions {
  mangopay: Pick<Mangopay, 'readiness' | 'circuitState' | 'quota'>
  lifecycle: Lifecycle
  clock: Clock
  redis?: { ping: () => Promise<unknown> }
  /** The identity provider the auth mode depends on (a JWKS, a session endpoint), if any. */
  identityProvider?: { ready: () => Promise<boolean> }
}

/** After a failed check of the identity provider, readiness answers from memory for this long. */
const READINESS_RETRY_MS = 5000

// SPEC §2. Ready: not shutting down, every configured dependency answers, Mangopay's circuit and bearer ready.
export async function healthRoutes (app: FastifyInstance, options: HealthRoutesOptions): Promise<void> {
  const { mangopay, lifecycle, clock, redis, identityProvider } = options

  async function redisCheck (): Promise<'ok' | 'unavailable' | undefined> {
    if (redis === undefined) return undefined
    try {
      await redis.ping()
      return 'ok'
    } catch {
      return 'unavailable'
    }
  }

  let identityProviderFailedAt = -Infinity
  /** Asked at most every READINESS_RETRY_MS while it fails: a probe every few seconds must not become a load on it. */
  async function identityProviderCheck (): Promise<'ok' | 'unavailable' | undefined> {
    if (identityProvider === undefined) return undefined
    if (clock.now() - identityProviderFailedAt < READINESS_RETRY_MS) return 'unavailable'
    if (await identityProvider.ready()) return 'ok'
    identityProviderFailedAt = clock.now()
    return 'unavailable'
  }

  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_request, reply) => {
    const notReady = (detail: string, checks: Record<string, unknown>, retryAfterS = 5) =>
      sendProblem(reply, new BrokerError(lifecycle.shuttingDown ? 'shutting_down' : 'upstream_unavailable', detail, { retryAfterS }), { checks })
    // Not checked beyond this point: the Mangopay side as it stands, the quota as information.
    const skipped = () => ({ circuit: mangopay.circuitState(), bearer: 'skipped', quota: mangopay.quota() })
    if (lifecycle.shuttingDown) return notReady('The broker is shutting down.', { shutdown: true, ...skipped() })
    const redisState = await redisCheck()
    if (redisState === 'unavailable') return notReady('Redis (shared state) is unreachable.', { shutdown: false, redis: redisState, ...skipped() })
    const identityProviderState = await identityProviderCheck()
    if (identityProviderState === 'unavailable') {
      return notReady('The identity provider cannot be reached.', { shutdown: false, redis: redisState, identityProvider: identityProviderState, ...skipped() })
    }
    const upstream = await mangopay.readiness()
    if (!upstream.ready) return notReady(upstream.detail, { shutdown: false, ...upstream.checks }, upstream.retryAfterS)
    return { status: 'ready', checks: { shutdown: false, redis: redisState, identityProvider: identityProviderState, ...upstream.checks } }
  })
}
