import type { FastifyInstance } from 'fastify'
import { BrokerError } from '../errors.js'
import { sendProblem } from '../http/problem.js'
import type { MangopayClient } from '../mangopay/client.js'
import type { Clock } from '../clock.js'
import type { Lifecycle } from '../lifecycle.js'

export interface HealthRoutesOptions {
  client: MangopayClient
  lifecycle: Lifecycle
  clock: Clock
  timeoutMs: number
  /** The shared-state store when REDIS_URL is set: a configured dependency readiness checks. */
  redis?: { ping: () => Promise<unknown> }
  /** The identity provider the auth mode depends on (a JWKS, a session endpoint), if any. */
  identityProvider?: { ready: () => Promise<boolean> }
}

/** After a failed bearer attempt, readiness answers from memory for this long (spares Mangopay). */
const READINESS_RETRY_MS = 5000

/**
 * SPEC §2 operations routes. Liveness says only that the process serves; readiness says
 * whether a token request would work now: the broker is not shutting down, every configured
 * dependency answers (Redis, the identity provider), the circuit towards Mangopay is not open,
 * and a usable bearer is held or can be obtained.
 */
export async function healthRoutes (app: FastifyInstance, options: HealthRoutesOptions): Promise<void> {
  const { client, lifecycle, clock, timeoutMs, redis, identityProvider } = options

  async function redisCheck (): Promise<'ok' | 'unavailable' | undefined> {
    if (redis === undefined) return undefined
    try {
      await redis.ping()
      return 'ok'
    } catch {
      return 'unavailable'
    }
  }
  let lastFailureAt = -Infinity
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
    // The quota view is information, not a readiness condition: a paused broker recovers by itself.
    const quota = client.quota.snapshot()
    // An open circuit turns half-open by itself after the cool-down, so readiness comes back and traffic can probe.
    const circuit = client.circuit.state
    if (lifecycle.shuttingDown) return notReady('The broker is shutting down.', { shutdown: true, circuit, bearer: 'skipped', quota })
    const redisState = await redisCheck()
    if (redisState === 'unavailable') return notReady('Redis (shared state) is unreachable.', { shutdown: false, circuit, redis: redisState, bearer: 'skipped', quota })
    const identityProviderState = await identityProviderCheck()
    if (identityProviderState === 'unavailable') {
      return notReady('The identity provider cannot be reached.', { shutdown: false, circuit, redis: redisState, identityProvider: identityProviderState, bearer: 'skipped', quota })
    }
    if (circuit === 'open') {
      return notReady('Mangopay is failing; the circuit is open.', { shutdown: false, circuit, bearer: client.bearers.peek() === undefined ? 'skipped' : 'held', quota }, client.circuit.retryAfterMs() / 1000)
    }
    if (client.bearers.peek() !== undefined) return { status: 'ready', checks: { shutdown: false, circuit, redis: redisState, identityProvider: identityProviderState, bearer: 'held', quota } }
    if (clock.now() - lastFailureAt < READINESS_RETRY_MS) return notReady('No Mangopay bearer could be obtained.', { shutdown: false, circuit, bearer: 'unavailable', quota })
    try {
      await Promise.race([
        client.bearers.refresh(),
        new Promise((_resolve, reject) => setTimeout(reject, Math.min(timeoutMs, 3000), new Error('timeout')).unref())
      ])
      return { status: 'ready', checks: { shutdown: false, circuit: client.circuit.state, redis: redisState, identityProvider: identityProviderState, bearer: 'obtained', quota } }
    } catch {
      lastFailureAt = clock.now()
      return notReady('No Mangopay bearer could be obtained.', { shutdown: false, circuit: client.circuit.state, bearer: 'unavailable', quota })
    }
  })
}
