import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors as joseErrors, jwksCache, type JSONWebKeySet, type JWKSCacheInput, type JWTVerifyGetKey } from 'jose'
import type { FastifyBaseLogger } from 'fastify'
import { JWKS_FETCH_TIMEOUT_MS } from '../config/index.js'
import { FailureCauseLog, hostPort, rootCode, type FailureCause } from '../upstream/index.js'
import type { KeysVersion } from './types.js'

/** The identity provider's key set could not be fetched (down, an error status, not a key set). */
export class KeySetUnavailable extends Error {}

export interface RemoteKeySet {
  key: JWTVerifyGetKey
  ready: () => Promise<boolean>
  keysVersion: KeysVersion
  /** The version counter as it stands, for a key set that replaces this one to count on from. */
  latestVersion: () => number
}

/** jose stamps each key set it fetches with `Date.now()`; their ages are read on the same clock. */
const joseNow = (): number => Date.now()

// While the identity provider is down, the last set fetched keeps verifying this long after its fetch,
// rather than every sign-in failing once jose's 10-minute cache age has passed.
export const STALE_KEY_SET_MAX_MS = 24 * 60 * 60_000
// While fetches fail, one is tried at most this often; requests in between use the last set without waiting.
export const KEY_SET_RETRY_MS = 30_000

// Where jose writes each set it fetches. Versioned on each write, not when next looked at, so the verify
// cache also drops what was verified with a key that came and went between two looks.
class FetchedKeySet {
  uat: number | undefined = undefined
  version: number
  #jwks: JSONWebKeySet | undefined = undefined
  #text: string | undefined = undefined
  #keys: JWTVerifyGetKey | undefined = undefined
  readonly #onFetched: () => void

  constructor (onFetched: () => void, firstVersion: number) {
    this.#onFetched = onFetched
    this.version = firstVersion
  }

  get jwks (): JSONWebKeySet | undefined {
    return this.#jwks
  }

  set jwks (jwks: JSONWebKeySet | undefined) {
    const text = JSON.stringify(jwks)
    if (text !== this.#text) {
      this.#text = text
      this.version++
    }
    this.#jwks = jwks
    this.#keys = undefined
    this.#onFetched()
  }

  keys (): JWTVerifyGetKey | undefined {
    if (this.#keys === undefined && this.#jwks !== undefined) this.#keys = createLocalJWKSet(this.#jwks)
    return this.#keys
  }
}

export function remoteKeySet (url: string, log: FastifyBaseLogger | undefined, firstVersion = 0): RemoteKeySet {
  const host = hostPort(url)
  const causes = new FailureCauseLog({ upstream: 'identity_provider', label: 'The identity provider\'s key set', log })
  const fetched = new FetchedKeySet(() => { causes.recovered() }, firstVersion)
  // jose's error for a non-200 answer does not carry its status: kept here for the log line.
  let answeredStatus: number | undefined
  const fetchKeySet: typeof fetch = async (input, init) => {
    answeredStatus = undefined
    const response = await fetch(input, init)
    answeredStatus = response.status
    return response
  }
  // Cached; an unknown `kid` triggers a refetch (at most every 30 s), so rotated keys are picked up.
  const keySet = createRemoteJWKSet(new URL(url), { timeoutDuration: JWKS_FETCH_TIMEOUT_MS, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000, [jwksCache]: fetched as unknown as JWKSCacheInput, [customFetch]: fetchKeySet })
  let failedAt = -Infinity
  const recentlyFailed = (): boolean => joseNow() - failedAt < KEY_SET_RETRY_MS

  function lastKnownKeys (): JWTVerifyGetKey | undefined {
    const { uat } = fetched
    return uat === undefined || joseNow() - uat >= STALE_KEY_SET_MAX_MS ? undefined : fetched.keys()
  }

  function fetchFailed (err: unknown): JWTVerifyGetKey | undefined {
    const keys = lastKnownKeys()
    const cause: FailureCause = answeredStatus !== undefined && answeredStatus !== 200
      ? { status: answeredStatus, host }
      : { code: err instanceof joseErrors.JWKSTimeout ? 'timeout' : rootCode(err), host }
    const fetchedAt = fetched.uat === undefined ? undefined : new Date(fetched.uat).toISOString()
    causes.failed(cause, {
      level: 'warn',
      fields: { auth: { jwks: 'unavailable', lastFetchedAt: fetchedAt } },
      message: keys === undefined
        ? 'The identity provider\'s key set cannot be fetched; sign-ins fail until it can'
        : 'The identity provider\'s key set cannot be fetched; verifying with the last one fetched meanwhile'
    })
    failedAt = joseNow()
    return keys
  }

  /** Verified with the last key set fetched: a `kid` it lacks may be a new key the provider could not tell of. */
  async function withLastKnown (keys: JWTVerifyGetKey, header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]): Promise<Awaited<ReturnType<JWTVerifyGetKey>>> {
    try {
      return await keys(header, token)
    } catch (err) {
      if (err instanceof joseErrors.JWKSNoMatchingKey) throw new KeySetUnavailable('no key for the token in the last key set fetched', { cause: err })
      throw err
    }
  }

  // Not ready while the last set only stands in (SPEC §2): an outage is news even while the broker rides it out.
  const ready = async () => {
    if (keySet.fresh) return true
    try {
      await keySet.reload()
      return true
    } catch (err) {
      fetchFailed(err)
      return false
    }
  }
  // Stale-while-revalidate: no request waits on the identity provider for a key the broker already has.
  function refreshInBackground (): void {
    if (keySet.reloading || recentlyFailed()) return
    keySet.reload().catch((err: unknown) => { fetchFailed(err) })
  }
  const key: JWTVerifyGetKey = async (header, token) => {
    const standIn = keySet.fresh ? undefined : lastKnownKeys()
    if (standIn !== undefined) {
      refreshInBackground()
      // A fetch failed moments ago: waiting would only be for another failure.
      if (recentlyFailed()) return await withLastKnown(standIn, header, token)
      try {
        return await standIn(header, token)
      } catch (err) {
        // A `kid` the last set lacks may be a new key: wait for the set below.
        if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err
      }
    }
    try {
      return await keySet(header, token)
    } catch (err) {
      // No usable key in a fetched set is the token's fault; any other failure is the fetch's.
      if (err instanceof joseErrors.JWKSNoMatchingKey || err instanceof joseErrors.JWKSMultipleMatchingKeys || err instanceof joseErrors.JOSENotSupported) throw err
      const keys = fetchFailed(err)
      if (keys !== undefined) return await withLastKnown(keys, header, token)
      throw new KeySetUnavailable('the JWKS could not be fetched', { cause: err })
    }
  }
  // A refetch with the same keys keeps the version, so cached verifications outlive it; other keys end them all.
  const keysVersion: KeysVersion = () => {
    if (fetched.uat === undefined) return undefined
    if (!keySet.fresh) {
      // Too old to stand in: nothing verified with it is honoured.
      if (lastKnownKeys() === undefined) return undefined
      // Past its cache age: fetched again even when every request is answered from the cache.
      refreshInBackground()
    }
    return fetched.version
  }
  return { key, ready, keysVersion, latestVersion: () => fetched.version }
}
