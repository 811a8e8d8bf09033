import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'
import type { Lifecycle } from '../lifecycle.js'
import type { Mangopay } from '../mangopay/index.js'

export interface ReadinessOptions {
  mangopay: Pick<Mangopay, 'readiness' | 'circuitState' | 'quota'>
  lifecycle: Lifecycle
  clock: Clock
  redis?: { ping: () => Promise<unknown> }
  /** The identity provider the auth mode depends on (a JWKS, a session endpoint), if any. */
  identityProvider?: { ready: () => Promise<boolean> }
}

/** What readiness found: `checks` holds the figures (metrics port only), `failing` the names the public port may tell. */
export type ReadinessReport =
  | { ready: true, checks: Record<string, unknown> }
  | { ready: false, failing: string[], error: BrokerError, checks: Record<string, unknown> }

/** After a failed check of the identity provider, readiness answers from memory for this long. */
const READINESS_RETRY_MS = 5000

// SPEC §2. Ready: not shutting down, every configured dependency answers, Mangopay's circuit and bearer ready.
export function createReadiness (options: ReadinessOptions): () => Promise<ReadinessReport> {
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

  return async function readiness (): Promise<ReadinessReport> {
    const notReady = (failing: string[], detail: string, checks: Record<string, unknown>, retryAfterS = 5): ReadinessReport => ({
      ready: false,
      failing,
      error: new BrokerError(lifecycle.shuttingDown ? 'shutting_down' : 'upstream_unavailable', detail, { retryAfterS }),
      checks
    })
    // Not checked beyond this point: the Mangopay side as it stands, the quota as information.
    const skipped = () => ({ circuit: mangopay.circuitState(), bearer: 'skipped', quota: mangopay.quota() })
    if (lifecycle.shuttingDown) return notReady(['shutdown'], 'The broker is shutting down.', { shutdown: true, ...skipped() })
    const redisState = await redisCheck()
    if (redisState === 'unavailable') return notReady(['redis'], 'Redis (shared state) is unreachable.', { shutdown: false, redis: redisState, ...skipped() })
    const identityProviderState = await identityProviderCheck()
    if (identityProviderState === 'unavailable') {
      return notReady(['identityProvider'], 'The identity provider cannot be reached.', { shutdown: false, redis: redisState, identityProvider: identityProviderState, ...skipped() })
    }
    const upstream = await mangopay.readiness()
    const checks = { shutdown: false, redis: redisState, identityProvider: identityProviderState, ...upstream.checks }
    if (!upstream.ready) {
      const failing = upstream.checks.circuit === 'open' ? ['circuit'] : ['bearer']
      return notReady(failing, upstream.detail, checks, upstream.retryAfterS)
    }
    return { ready: true, checks }
  }
}
