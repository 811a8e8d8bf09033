import { hash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { JWTPayload } from 'jose'
import type { JwtVerifier, KeysVersion } from './types.js'

export const VERIFY_CACHE_ENTRIES = 10_000
/** Longer tokens are refused by the verifier anyway; they are not hashed for a lookup. */
const MAX_CACHED_TOKEN_LENGTH = 8192

interface Verified { claims: JWTPayload, until: number, notBefore: number, keysVersion: number }

export interface VerifyCacheOptions {
  /** Milliseconds since the epoch: the same time the verifier checks `exp` and `nbf` against. */
  now?: () => number
  maxEntries?: number
  /** Absent: the keys never change while the process runs (a fixed public key or secret). */
  keysVersion?: KeysVersion | undefined
}

// A JWT seen before skips the signature check, but only under the keys' version it was verified with, and only
// before `exp` (no tolerance) and from `nbf`. Keys are SHA-256 digests: the cache holds no credentials.
export function cacheVerifications (verify: JwtVerifier, options: VerifyCacheOptions = {}): JwtVerifier {
  const now = options.now ?? Date.now
  const keysVersion: KeysVersion = options.keysVersion ?? (() => 0)
  const cache = new LRUCache<string, Verified>({ max: options.maxEntries ?? VERIFY_CACHE_ENTRIES })

  return async function verifyCached (token) {
    // Read before verifying: keys that change meanwhile leave the entry stale, never the reverse.
    const version = keysVersion()
    if (token.length > MAX_CACHED_TOKEN_LENGTH || version === undefined) return await verify(token)
    const key = hash('sha256', token, 'base64')
    const hit = cache.get(key)
    if (hit !== undefined) {
      const at = now()
      if (hit.keysVersion === version && at < hit.until && at >= hit.notBefore) return hit.claims
      cache.delete(key)
    }
    const claims = Object.freeze(await verify(token))
    const at = now()
    // `exp` is required by the verifier; without a numeric one nothing is cached.
    const until = typeof claims.exp === 'number' ? claims.exp * 1000 : -Infinity
    const notBefore = typeof claims.nbf === 'number' ? claims.nbf * 1000 : -Infinity
    if (at < until && at >= notBefore) cache.set(key, { claims, until, notBefore, keysVersion: version })
    return claims
  }
}
