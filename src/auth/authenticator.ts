import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Clock } from '../clock.js'
import type { JwtConfig } from '../config/index.js'
import { BrokerError } from '../errors.js'
import { AmbiguousCredential, MissingCredential, presentedCredential } from './credential.js'
import { createJwtVerifier } from './jwt.js'
import { cacheVerifications } from './verify-cache.js'
import { mangopayUserIdsFromClaim } from './session.js'
import type { Authenticator, JwtVerifier } from './types.js'

const BEARER = /^Bearer[ ]+([^ ]+)[ ]*$/i

function tokenFrom (request: FastifyRequest, cookieName: string | undefined): string {
  const credential = presentedCredential(request, cookieName)
  if (credential === undefined) {
    throw new MissingCredential(cookieName === undefined
      ? 'Sign in first: send "Authorization: Bearer <token>".'
      : 'Sign in first: send the session cookie or "Authorization: Bearer <token>".')
  }
  if (credential.ambiguous === true) throw new AmbiguousCredential()
  if (credential.source === 'cookie') return credential.value
  const match = BEARER.exec(credential.value)
  if (match?.[1] === undefined) throw new BrokerError('unauthenticated', 'The Authorization header must be "Bearer <token>".', { logFields: { auth: { reason: 'malformed' } } })
  return match[1]
}

export function createJwtAuthenticator (jwt: JwtConfig, options: { userIdClaim: string, cookieName: string | undefined, clock: Clock, log?: FastifyBaseLogger }): Authenticator & { close: () => Promise<void> } {
  const verifier = createJwtVerifier(jwt, { clock: options.clock, ...(options.log === undefined ? {} : { log: options.log }) })
  const verify: JwtVerifier = cacheVerifications(verifier, { keysVersion: verifier.keysVersion, now: () => options.clock.now() })
  return {
    ...(verifier.ready === undefined ? {} : { ready: verifier.ready }),
    close: async () => { await verifier.close?.() },
    credentialSource: request => presentedCredential(request, options.cookieName)?.source,
    verifiesLocally: true,
    async authenticate (request) {
      const claims = await verify(tokenFrom(request, options.cookieName))
      return {
        // The verifier requires a non-empty string `sub`.
        subject: claims.sub as string,
        mangopayUserIds: mangopayUserIdsFromClaim(claims[options.userIdClaim]),
        userIdClaim: options.userIdClaim
      }
    }
  }
}
