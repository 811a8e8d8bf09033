import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type Static } from 'typebox'
import type { Authenticator } from '../auth/authenticator.js'
import { checkCsrf } from '../auth/csrf.js'
import { selectMangopayUser } from '../auth/session.js'
import type { EmbeddedKind, EmbeddedToken, MangopayClient } from '../mangopay/client.js'
import type { Clock } from '../clock.js'

/** SPEC §2: the token routes. The response schema is an allow-list: nothing else leaves. */

export const TokenRequestBody = Type.Union([
  Type.Null(),
  Type.Object({
    userId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 }))
  }, { additionalProperties: false })
])

export const TokenResponse = Type.Object({
  clientToken: Type.String(),
  tokenType: Type.Literal('Bearer'),
  expiresIn: Type.Integer(),
  expiresAt: Type.String(),
  scope: Type.String(),
  clientId: Type.String(),
  userId: Type.String(),
  environment: Type.Union([Type.Literal('SANDBOX'), Type.Literal('PRODUCTION')])
}, { additionalProperties: false })
export type TokenResponseBody = Static<typeof TokenResponse>

export interface TokenRoutesOptions {
  client: MangopayClient
  authenticator: Authenticator
  allowedOrigins: ReadonlySet<string>
  clock: Clock
  /** The public part of the Mangopay settings: never the API key. */
  mangopay: { clientId: string, environment: 'sandbox' | 'production', timeoutMs: number }
}

/** Enough to correlate a token across logs and support tickets; useless to an attacker. */
export function tokenFingerprint (token: string): string {
  return createHash('sha256').update(token).digest('base64url').slice(0, 12)
}

export async function tokenRoutes (app: FastifyInstance, options: TokenRoutesOptions): Promise<void> {
  const { client, authenticator, allowedOrigins, clock, mangopay } = options
  const environment = mangopay.environment === 'production' ? 'PRODUCTION' : 'SANDBOX'
  const routes = app.withTypeProvider<TypeBoxTypeProvider>()

  function toResponse (token: EmbeddedToken, userId: string): TokenResponseBody {
    const expiresAtMs = token.issuedAt + token.expiresInS * 1000
    return {
      clientToken: token.accessToken,
      tokenType: token.tokenType,
      expiresIn: Math.max(0, Math.floor((expiresAtMs - clock.now()) / 1000)),
      expiresAt: new Date(expiresAtMs).toISOString(),
      scope: token.scope,
      clientId: mangopay.clientId,
      userId,
      environment
    }
  }

  async function issue (kind: EmbeddedKind, request: FastifyRequest, body: Static<typeof TokenRequestBody> | undefined): Promise<TokenResponseBody> {
    const session = await authenticator.authenticate(request)
    checkCsrf(request, session, allowedOrigins)
    const userId = selectMangopayUser(session, body?.userId)
    const token = await client.mintEmbeddedToken(kind, userId, {
      signal: AbortSignal.timeout(mangopay.timeoutMs),
      log: request.log
    })
    const response = toResponse(token, userId)
    request.log.info({
      audit: {
        event: 'embedded_token_issued',
        kind,
        mangopayUserId: userId,
        subject: session.subject,
        expiresAt: response.expiresAt,
        fingerprint: tokenFingerprint(token.accessToken)
      }
    }, 'embedded token issued')
    return response
  }

  const schema = { body: TokenRequestBody, response: { 200: TokenResponse } }
  routes.post('/v1/tokens/recipients', { schema }, async request => await issue('recipient', request, request.body))
  routes.post('/v1/tokens/checkout', { schema }, async request => await issue('checkout', request, request.body))
}
