import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { Clock } from '../clock.js'
import type { AuthConfig } from '../config/index.js'
import { createJwtAuthenticator } from './authenticator.js'
import { createDevAuth, devLoginRoutes } from './dev.js'
import { ForwardAuthenticator } from './forward.js'
import type { Authenticator } from './types.js'

export { MissingCredential } from './credential.js'
export { checkCsrf } from './csrf.js'
export { selectMangopayUser } from './session.js'
export type { Authenticator, CredentialSource, Session } from './types.js'

/** Who is asking (SPEC §3): the authenticator of the configured AUTH_MODE and what it brings along. */
export interface Auth {
  authenticator: Authenticator
  /** Whether a session can ride on a cookie Fastify must parse (AUTH_COOKIE_NAME, or dev mode's login). */
  parsesCookies: boolean
  routes?: (app: FastifyInstance) => Promise<void>
  close (): Promise<void>
}

export function createAuth (config: AuthConfig, deps: { clock: Clock, log: FastifyBaseLogger }): Auth {
  const { clock, log } = deps
  const { userIdClaim } = config
  // Only a __Host- cookie is sure to come from this host over HTTPS: a sibling subdomain cannot set or shadow it.
  if (config.cookieName !== undefined && !config.cookieName.startsWith('__Host-')) {
    log.warn({ cookieName: config.cookieName }, 'AUTH_COOKIE_NAME lacks the __Host- prefix: another subdomain can set a cookie of that name')
  }
  if (config.mode === 'dev') {
    const dev = createDevAuth(config.dev?.sessionSecret, config.cookieName)
    return {
      authenticator: createJwtAuthenticator(dev.jwt, { userIdClaim, cookieName: dev.cookieName, clock }),
      parsesCookies: true,
      routes: async app => { await devLoginRoutes(app, { dev, userIdClaim }) },
      close: async () => {}
    }
  }
  if (config.mode === 'jwt' && config.jwt !== undefined) {
    const authenticator = createJwtAuthenticator(config.jwt, { userIdClaim, cookieName: config.cookieName, clock, log })
    return { authenticator, parsesCookies: config.cookieName !== undefined, close: authenticator.close }
  }
  if (config.mode === 'forward' && config.forward !== undefined) {
    const forward = new ForwardAuthenticator({ ...config.forward, userIdClaim, cookieName: config.cookieName, clock, log })
    // Forward mode reads the Cookie header itself (credential.ts), so it can tell a cookie sent twice.
    return { authenticator: forward, parsesCookies: config.cookieName !== undefined, close: async () => await forward.close() }
  }
  throw new Error(`AUTH_MODE=${config.mode} is not available`)
}
