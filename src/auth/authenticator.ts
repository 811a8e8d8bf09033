import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Clock } from '../clock.js'
import type { JwtConfig } from '../config/index.js'
import { BrokerError } from '../errors.js'
import { createJwtVerifier } from './jwt.js'
import { cacheVerifications } from './verify-cache.js'
import { mangopayUserIdsFromClaim } from './session.js'
import type { Authenticator, CredentialSource, JwtVerifier } from './types.js'

// Not counted as a failed sign-in (limits/failed-auth.ts): any page could make its visitors send these and lock them out.
export class MissingCredential extends BrokerError {
  constructor (detail: string) {
    super('unauthenticated', detail)
  }
}

interface Presented { raw: string, source: CredentialSource }

// The one place that decides where the credential is, for the CSRF check and for verification alike.
function presented (request: FastifyRequest, cookieName: string | undefined): Presented | undefined {
  const header = request.headers.authorization
  if (header !== undefined) return { raw: header, source: 'header' }
  const cookie = cookieName === undefined ? undefined : request.cookies[cookieName]
  return cookie !== undefined && cookie !== '' ? { raw: cookie, source: 'cookie' } : undefined
}

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

export function createJwtAuthenticator (jwt: JwtConfig, options: { userIdClaim: string, cookieName: string | undefined, clock: Clock, log?: FastifyBaseLogger }): Authenticator & { close: () => Promise<void> } {
  const verifier = createJwtVerifier(jwt, { clock: options.clock, ...(options.log === undefined ? {} : { log: options.log }) })
  const verify: JwtVerifier = cacheVerifications(verifier, { keysVersion: verifier.keysVersion, now: () => options.clock.now() })
  return {
    ...(verifier.ready === undefined ? {} : { ready: verifier.ready }),
    close: async () => { await verifier.close?.() },
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
