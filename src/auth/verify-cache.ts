import { hash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { JWTPayload } from 'jose'
import type { JwtVerifier } from './jwt.js'

/** Bounds the cache: about 0.5 KB per entry. */
export const VERIFY_CACHE_ENTRIES = 10_000
/**
 * A verification is reused for at most this long, so a key withdrawn from the JWKS stops being
 * honoured soon after the key set is fetched again (jose keeps a fetched set for up to 10
 * minutes; while it cannot be fetched, the last one stands in: see jwt.ts).
 */
export const VERIFY_CACHE_MAX_AGE_MS = 60_000
/** Longer tokens are refused by the verifier anyway; they are not hashed for a lookup. */
const MAX_CACHED_TOKEN_LENGTH = 8192

interface Verified { claims: JWTPayload, until: number, notBefore: number }

export interface VerifyCacheOptions {
  /** Milliseconds since the epoch: the same time the verifier checks `exp` and `nbf` against. */
  now?: () => number
  maxEntries?: number
  maxAgeMs?: number
}

/**
 * Remembers successful verifications, so a JWT presented again skips the RSA/EC signature check
 * (the costliest step of a token request). Signature, algorithm, `iss` and `aud` depend only on
 * the exact token and the fixed configuration, so they hold for as long as the entry lives; the
 * time checks are redone on every hit: an entry serves only while now is before `exp` (without
 * the clock tolerance: a token in its grace period is verified in full every time), at or after
 * `nbf`, and within VERIFY_CACHE_MAX_AGE_MS. Failures are never cached. Keys are SHA-256 digests,
 * so the cache holds no credentials.
 */
export function cacheVerifications (verify: JwtVerifier, options: VerifyCacheOptions = {}): JwtVerifier {
  const now = options.now ?? Date.now
  const maxAgeMs = options.maxAgeMs ?? VERIFY_CACHE_MAX_AGE_MS
  const cache = new LRUCache<string, Verified>({ max: options.maxEntries ?? VERIFY_CACHE_ENTRIES })

  return async function verifyCached (token) {
    if (token.length > MAX_CACHED_TOKEN_LENGTH) return await verify(token)
    const key = hash('sha256', token, 'base64')
    const hit = cache.get(key)
    if (hit !== undefined) {
      const at = now()
      if (at < hit.until && at >= hit.notBefore) return hit.claims
      cache.delete(key)
    }
    const claims = Object.freeze(await verify(token))
    const at = now()
    // `exp` is required by the verifier; without a numeric one nothing is cached.
    const until = typeof claims.exp === 'number' ? Math.min(claims.exp * 1000, at + maxAgeMs) : -Infinity
    const notBefore = typeof claims.nbf === 'number' ? claims.nbf * 1000 : -Infinity
    if (at < until && at >= notBefore) cache.set(key, { claims, until, notBefore })
    return claims
  }
}
