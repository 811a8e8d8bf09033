import { errors as joseErrors, type JWTVerifyGetKey } from 'jose'
import type { FastifyBaseLogger } from 'fastify'
import type { Dispatcher } from 'undici'
import type { Clock } from '../clock.js'
import { JWKS_FETCH_TIMEOUT_MS } from '../config/index.js'
import { createPool, FailureCauseLog, hostPort, rootCode } from '../upstream/index.js'
import { DiscoveryFailed, discoverJwksUri } from './discovery.js'
import { KEY_SET_RETRY_MS, KeySetUnavailable, remoteKeySet, type RemoteKeySet } from './jwks.js'
import type { KeysVersion } from './types.js'

// The same schedule as Microsoft.IdentityModel's ConfigurationManager: the document rarely changes, but a key
// from a moved key set must not wait half a day.
/** The discovery document is read again after this long, in the background. */
export const DISCOVERY_MAX_AGE_MS = 12 * 60 * 60_000
/** A token whose key the key set lacks gets the document read again, at most this often. */
export const DISCOVERY_UNKNOWN_KEY_MS = 5 * 60_000

export interface DiscoveredKeySet extends Omit<RemoteKeySet, 'latestVersion'> {
  close: () => Promise<void>
}

interface Discovered { jwksUri: string, keys: RemoteKeySet, readAt: number }

/**
 * AUTH_ISSUER alone: its key set is found by discovery, read on the first sign-in or readiness probe (the broker
 * starts while the identity provider is down), then kept like AUTH_JWKS_URL's.
 */
export function discoveredKeySet (issuer: string, options: { clock: Clock, log?: FastifyBaseLogger | undefined, dispatcher?: Dispatcher }): DiscoveredKeySet {
  const { clock, log } = options
  const dispatcher = options.dispatcher ?? createPool(new URL(issuer).origin, { timeoutMs: JWKS_FETCH_TIMEOUT_MS, connections: 2, keepAliveTimeoutMs: 10_000 })
  let current: Discovered | undefined
  let reading: Promise<Discovered> | undefined
  let failedAt = -Infinity
  let lastFailure: unknown
  const causes = new FailureCauseLog({ upstream: 'identity_provider', label: 'The identity provider\'s discovery document', log })

  const recentlyFailed = (): boolean => clock.now() - failedAt < KEY_SET_RETRY_MS
  const due = (): boolean => current === undefined || clock.now() - current.readAt >= DISCOVERY_MAX_AGE_MS

  async function read (): Promise<Discovered> {
    try {
      const jwksUri = await discoverJwksUri(dispatcher, issuer, JWKS_FETCH_TIMEOUT_MS)
      causes.recovered()
      if (current?.jwksUri === jwksUri) {
        current.readAt = clock.now()
        return current
      }
      const { origin, pathname } = new URL(jwksUri)
      log?.info({ auth: { discovery: 'read', jwksUri: origin + pathname, previous: current === undefined ? undefined : 'replaced' } }, 'The identity provider\'s key set was found by discovery')
      // Versions go on from the set replaced, so nothing verified with it is taken for verified with this one.
      current = { jwksUri, keys: remoteKeySet(jwksUri, log, current?.keys.latestVersion() ?? 0), readAt: clock.now() }
      return current
    } catch (err) {
      failedAt = clock.now()
      lastFailure = err
      const cause = err instanceof DiscoveryFailed ? err : new DiscoveryFailed(`discovery failed (${rootCode(err)})`, { host: hostPort(issuer), code: rootCode(err) }, { cause: err })
      // Once per outage or change of cause, not once per retry.
      causes.failed(cause.failure, {
        level: cause.refused ? 'error' : 'warn',
        fields: { auth: { discovery: cause.refused ? 'refused' : 'unavailable', cause: cause.message, where: cause.failure.host, standingIn: current !== undefined } },
        message: cause.refused
          ? 'The identity provider\'s discovery document is refused; sign-ins fail until it is fixed'
          : 'The identity provider\'s discovery document cannot be read'
      })
      throw cause
    }
  }

  /** One read at a time, whoever asks. */
  async function readOnce (): Promise<Discovered> {
    reading ??= read().finally(() => { reading = undefined })
    return await reading
  }

  function readInBackground (): void {
    if (reading === undefined && !recentlyFailed()) readOnce().catch(() => {})
  }

  async function keySet (): Promise<RemoteKeySet> {
    if (current !== undefined) {
      if (due()) readInBackground()
      return current.keys
    }
    if (recentlyFailed() && reading === undefined) throw new KeySetUnavailable('the discovery document could not be read', { cause: lastFailure })
    try {
      return (await readOnce()).keys
    } catch (err) {
      throw new KeySetUnavailable('the discovery document could not be read', { cause: err })
    }
  }

  const key: JWTVerifyGetKey = async (header, token) => {
    const keys = await keySet()
    try {
      return await keys.key(header, token)
    } catch (err) {
      // The key set may have moved: the document names where it is now.
      const rereadable = current !== undefined && clock.now() - current.readAt >= DISCOVERY_UNKNOWN_KEY_MS && !recentlyFailed()
      if (!(err instanceof joseErrors.JWKSNoMatchingKey) || !rereadable) throw err
      const reread = await readOnce().catch(() => undefined)
      if (reread === undefined || reread.keys === keys) throw err
      return await reread.keys.key(header, token)
    }
  }

  const ready = async (): Promise<boolean> => {
    if (due()) {
      if (recentlyFailed()) return false
      try {
        await readOnce()
      } catch {
        return false
      }
    }
    return await (current as Discovered).keys.ready()
  }

  const keysVersion: KeysVersion = () => {
    if (current === undefined) return undefined
    // Cache hits alone keep the document read on schedule.
    if (due()) readInBackground()
    return current.keys.keysVersion()
  }

  return { key, ready, keysVersion, close: async () => { if (options.dispatcher === undefined) await dispatcher.close() } }
}
