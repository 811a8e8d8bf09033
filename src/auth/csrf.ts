import type { FastifyRequest } from 'fastify'
import { BrokerError } from '../errors.js'
import type { CredentialSource } from './types.js'

// SPEC §3.4: a browser sends cookies whoever wrote the page, so a cookie credential needs `X-CSRF: 1` and an allowed
// origin. Checked before verification: a forged request costs nothing and is no failed sign-in for its victim.
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
