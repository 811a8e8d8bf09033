import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { SignJWT } from 'jose'
import { Type } from 'typebox'
import type { JwtConfig } from '../config/index.js'
import { BrokerError } from '../errors.js'

// AUTH_MODE=dev, refused in production: a demo login setting a JWT cookie, then verified like any other session.

export const DEV_ISSUER = 'urn:mangopay-token-broker:dev'
export const DEV_AUDIENCE = 'urn:mangopay-token-broker:dev'
export const DEV_COOKIE_NAME = 'mp_broker_session'
const SESSION_TTL_S = 3600

export interface SampleUser {
  id: string
  name: string
  mangopayUserIds: string[]
}

export const SAMPLE_USERS: readonly SampleUser[] = [
  { id: 'alice', name: 'Alice — one Mangopay user', mangopayUserIds: ['user_m_01JP2X1PK52W8PYD99Q3CXDMAP'] },
  { id: 'bob', name: 'Bob — two Mangopay users (personal and business)', mangopayUserIds: ['user_m_01JQ7BOBPERSONAL000000000A', 'user_m_01JQ7BOBBUSINESS000000000B'] },
  { id: 'carol', name: 'Carol — signed in, no Mangopay user', mangopayUserIds: [] }
]

export interface DevAuth {
  jwt: JwtConfig
  cookieName: string
}

export function createDevAuth (sessionSecret: string | undefined, cookieName: string | undefined): DevAuth {
  return {
    jwt: {
      key: { kind: 'secret', secret: sessionSecret ?? randomBytes(32).toString('base64url') },
      algorithms: ['HS256'],
      issuer: DEV_ISSUER,
      audience: DEV_AUDIENCE,
      clockToleranceS: 5
    },
    cookieName: cookieName ?? DEV_COOKIE_NAME
  }
}

const LoginBody = Type.Object({ user: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false })

export async function devLoginRoutes (app: FastifyInstance, options: { dev: DevAuth, userIdClaim: string }): Promise<void> {
  const { dev, userIdClaim } = options
  if (dev.jwt.key.kind !== 'secret') throw new Error('dev auth needs an HMAC secret')
  const secret = new TextEncoder().encode(dev.jwt.key.secret)
  const routes = app.withTypeProvider<TypeBoxTypeProvider>()

  routes.get('/v1/dev/users', async () => ({ users: SAMPLE_USERS }))

  routes.post('/v1/dev/login', { schema: { body: LoginBody } }, async (request, reply) => {
    // Login CSRF: only the page's own script can set this header.
    if (request.headers['x-csrf'] !== '1') throw new BrokerError('csrf_rejected', 'Send the header "X-CSRF: 1" to log in.')
    const user = SAMPLE_USERS.find(u => u.id === request.body.user)
    if (user === undefined) throw new BrokerError('unauthenticated', 'Unknown sample user.')
    const jwt = await new SignJWT({ [userIdClaim]: user.mangopayUserIds, name: user.name })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer(DEV_ISSUER)
      .setAudience(DEV_AUDIENCE)
      .setSubject(`dev|${user.id}`)
      .setIssuedAt()
      .setExpirationTime(`${SESSION_TTL_S}s`)
      .sign(secret)
    reply.setCookie(dev.cookieName, jwt, { httpOnly: true, sameSite: 'lax', path: '/', maxAge: SESSION_TTL_S, secure: request.protocol === 'https' })
    return { user: { id: user.id, name: user.name, mangopayUserIds: user.mangopayUserIds } }
  })

  routes.post('/v1/dev/logout', async (request, reply) => {
    // Same attributes as the login's: browsers ignore a clearing cookie without Secure for a __Host- name.
    reply.clearCookie(dev.cookieName, { httpOnly: true, sameSite: 'lax', path: '/', secure: request.protocol === 'https' })
    return { loggedOut: true }
  })
}
