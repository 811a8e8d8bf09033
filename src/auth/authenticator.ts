import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Clock } from '../clock.js'
import type { JwtConfig } from '../config/index.js'
import { BrokerError } from '../errors.js'
import { createJwtVerifier } from './jwt.js'
import { cacheVerifications } from './verify-cache.js'
import { mangopayUserIdsFromClaim } from './session.js'
import type { Authenticator, CredentialSource, JwtVerifier } from './types.js'

/**
 * 401 for a request that presented no credential at all. Unlike a wrong credential it is not a
 * failed sign-in (see failed-auth-limit.ts): any page on the web can make its visitors' browsers
 * send such requests, and counting them would let it lock those visitors out.
 */
export class MissingCredential extends BrokerError {
  constructor (detail: string) {
    super('unauthenticated', detail)
  }
}

interface Presented { raw: string, source: CredentialSource }

/**
 * Where a request's credential is, as sent: the Authorization header first, else the session
 * cookie. The one place that decides it, for the CSRF check before verification and for the
 * verification itself.
 */
function presented (request: FastifyRequest, cookieName: string | undefined): Presented | undefined {
  const header = request.headers.authorization
  if (header !== undefined) return { raw: header, source: 'header' }
  const cookie = cookieName === undefined ? undefined : request.cookies[cookieName]
  return cookie !== undefined && cookie !== '' ? { raw: cookie, source: 'cookie' } : undefined
}

/** The JWT a request presents, from where `presented` says; 401 when there is none or the header is not `Bearer <token>`. */
function tokenFrom (request: FastifyRequest, cookieName: string | undefined): string {
  const credential = presented(request, cookieName)
  if (credential === undefined) {
    throw new MissingCredential(cookieName === undefined
      ? 'Sign in first: send "Authorization: Bearer <token>".'
      : 'Sign in first: send the session cookie or "Authorization: Bearer <token>".')
  }
  if (credential.source === 'cookie') return credential.raw
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(credential.raw)
  if (match?.[1] === undefined) throw new BrokerError('unauthenticated', 'The Authorization header must be "Bearer <token>".')
  return match[1]
}

/** JWT sessions, from the Authorization header or (when configured) a cookie. Dev mode uses it too. */
export function createJwtAuthenticator (jwt: JwtConfig, options: { userIdClaim: string, cookieName: string | undefined, clock: Clock, log?: FastifyBaseLogger }): Authenticator {
  const verifier = createJwtVerifier(jwt, { clock: options.clock, ...(options.log === undefined ? {} : { log: options.log }) })
  // Each distinct JWT is verified once and remembered until its `exp` while the keys are unchanged.
  const verify: JwtVerifier = cacheVerifications(verifier, { keysVersion: verifier.keysVersion, now: () => options.clock.now() })
  return {
    ...(verifier.ready === undefined ? {} : { ready: verifier.ready }),
    credentialSource: request => presented(request, options.cookieName)?.source,
    async authenticate (request) {
      const claims = await verify(tokenFrom(request, options.cookieName))
      return {
        subject: typeof claims.sub === 'string' ? claims.sub : 'unknown',
        mangopayUserIds: mangopayUserIdsFromClaim(claims[options.userIdClaim])
      }
    }
  }
}
