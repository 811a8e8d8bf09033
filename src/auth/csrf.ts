import type { FastifyRequest } from 'fastify'
import { BrokerError } from '../errors.js'
import type { CredentialSource } from './types.js'

/**
 * SPEC §3.4: a cookie is sent by the browser whoever wrote the page, so a cookie-credentialed
 * request must prove it was made by script from an allowed origin: the custom `X-CSRF: 1`
 * header (a cross-site form cannot set it, and CORS stops cross-site scripts from sending it
 * without a preflight), plus an `Origin` / `Sec-Fetch-Site` check. Header credentials are
 * never sent automatically, so they are exempt. Checked on where the credential comes from,
 * before it is verified: a forged cross-site request costs no verification and no session
 * endpoint call, and does not count as a failed sign-in against its victim's address.
 */
export function checkCsrf (request: FastifyRequest, credential: CredentialSource | undefined, allowedOrigins: ReadonlySet<string>): void {
  if (credential !== 'cookie') return
  if (request.headers['x-csrf'] !== '1') {
    throw new BrokerError('csrf_rejected', 'Cookie-authenticated requests must send the header "X-CSRF: 1".')
  }
  const origin = request.headers.origin
  if (origin !== undefined && !allowedOrigins.has(origin)) {
    throw new BrokerError('csrf_rejected', 'This origin is not allowed to use the session cookie.')
  }
  if (origin === undefined && request.headers['sec-fetch-site'] === 'cross-site') {
    throw new BrokerError('csrf_rejected', 'Cross-site requests must come from an allowed origin.')
  }
}
