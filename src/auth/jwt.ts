import { createPublicKey, type KeyObject } from 'node:crypto'
import { errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose'
import type { FastifyBaseLogger } from 'fastify'
import { systemClock, type Clock } from '../clock.js'
import type { JwtConfig } from '../config/index.js'
import { BrokerError } from '../errors.js'
import { discoveredKeySet } from './discovered-keys.js'
import { KeySetUnavailable, remoteKeySet } from './jwks.js'
import type { JwtVerifier, KeysVersion } from './types.js'

export { KEY_SET_RETRY_MS, STALE_KEY_SET_MAX_MS } from './jwks.js'

/** Far larger than any sane session JWT; refuses to parse megabytes of attacker input. */
const MAX_JWT_LENGTH = 8192
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

/** Which check failed, for the 401's log line only: the answer says no more than `unauthenticated`. */
export interface FailedCheck { reason: 'malformed' | 'expired' | 'claim' | 'unknown_key' | 'signature' | 'algorithm', claim?: string, check?: string }

function failedCheck (err: unknown): FailedCheck {
  if (err instanceof joseErrors.JWTExpired) return { reason: 'expired', claim: 'exp' }
  if (err instanceof joseErrors.JWTClaimValidationFailed) return { reason: 'claim', claim: err.claim, check: err.reason }
  if (err instanceof joseErrors.JWKSNoMatchingKey) return { reason: 'unknown_key' }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return { reason: 'signature' }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return { reason: 'algorithm' }
  return { reason: 'malformed' }
}

function unauthenticated (detail: string, cause?: unknown): BrokerError {
  return new BrokerError('unauthenticated', detail, { cause, logFields: { auth: failedCheck(cause) } })
}

interface KeySource { key: KeyObject | Uint8Array | JWTVerifyGetKey, ready?: () => Promise<boolean>, keysVersion?: KeysVersion, close?: () => Promise<void> }

function keyFor (config: JwtConfig, log: FastifyBaseLogger | undefined, clock: Clock): KeySource {
  switch (config.key.kind) {
    case 'jwks':
      return remoteKeySet(config.key.url, log)
    case 'discovery':
      return discoveredKeySet(config.key.issuer, { clock, log })
    case 'public-key':
      return { key: createPublicKey(config.key.pem) }
    case 'secret':
      return { key: new TextEncoder().encode(config.key.secret) }
  }
}

// Without `kid` several keys may match (a rotation): as jose documents, the first whose signature checks decides.
async function verifyWith (token: string, key: KeyObject | Uint8Array | JWTVerifyGetKey, options: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    return (await jwtVerify(token, key as KeyObject, options)).payload
  } catch (err) {
    if (!(err instanceof joseErrors.JWKSMultipleMatchingKeys)) throw err
    for await (const candidate of err) {
      try {
        return (await jwtVerify(token, candidate, options)).payload
      } catch (candidateErr) {
        // Signed by this key but failing another check (expired, wrong audience…): that is the answer.
        if (!(candidateErr instanceof joseErrors.JWSSignatureVerificationFailed)) throw candidateErr
      }
    }
    throw new joseErrors.JWSSignatureVerificationFailed()
  }
}

export type KeyedVerifier = JwtVerifier & { ready?: () => Promise<boolean>, keysVersion?: KeysVersion, close?: () => Promise<void> }

export function createJwtVerifier (config: JwtConfig, options: { log?: FastifyBaseLogger, clock?: Clock } = {}): KeyedVerifier {
  const clock = options.clock ?? systemClock
  const { key, ready, keysVersion, close } = keyFor(config, options.log, clock)
  async function verify (token: string): Promise<JWTPayload> {
    if (token.length > MAX_JWT_LENGTH || !JWT_SHAPE.test(token)) throw unauthenticated('The credential is not a well-formed JWT.')
    let claims: JWTPayload
    try {
      claims = await verifyWith(token, key, {
        algorithms: config.algorithms,
        issuer: config.issuer,
        audience: config.audience,
        clockTolerance: config.clockToleranceS,
        // The audit line names the subject; AUTH_JWT_TYP keeps other tokens of the same issuer out.
        requiredClaims: ['exp', 'sub'],
        ...(config.typ === undefined ? {} : { typ: config.typ }),
        currentDate: new Date(clock.now())
      })
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw unauthenticated('The session token has expired.', err)
      // The identity provider is down, not the caller's fault.
      if (err instanceof KeySetUnavailable) {
        throw new BrokerError('auth_unavailable', 'The identity provider\'s keys cannot be fetched right now; try again shortly.', { cause: err, retryAfterS: 5 })
      }
      throw unauthenticated('The session token is invalid.', err)
    }
    if (typeof claims.sub !== 'string' || claims.sub === '') throw unauthenticated('The session token names no subject ("sub").')
    return claims
  }
  return Object.assign(verify, ready === undefined ? {} : { ready }, keysVersion === undefined ? {} : { keysVersion }, close === undefined ? {} : { close })
}
