import { hash } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type Static } from 'typebox'
import { checkCsrf, selectMangopayUser, type Authenticator, type Session } from '../auth/index.js'
import type { EmbeddedKind, EmbeddedToken, Mangopay } from '../mangopay/index.js'
import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'
import { withDeadline } from '../upstream/index.js'
import { auditTokenIssued, isoFormatter } from '../fast-paths/index.js'
import type { Lifecycle } from '../lifecycle.js'
import type { TokenBudgets } from '../limits/index.js'
import type { TokenAnswer, TokenRequest } from '../wire.js'
import { withSecurityEvent, type Asked } from './security-events.js'

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

type Same<A, B> = [A] extends [B] ? [B] extends [A] ? true : false : false
type Assert<T extends true> = T
/** Compiles only while the schemas describe exactly the wire types the browser helper imports. */
export type SchemasMatchWire = Assert<Same<TokenResponseBody, TokenAnswer>> | Assert<Same<NonNullable<Static<typeof TokenRequestBody>>, TokenRequest>>

/** Who the token is for, established by the preHandler before the per-user rate limit runs. */
export interface TokenContext {
  session: Session
  /** The verified Mangopay user this request was authorised for (the rate-limit key). */
  userId: string
}

declare module 'fastify' {
  interface FastifyRequest {
    tokenContext: TokenContext | null
  }
}

export interface TokenRoutesOptions {
  mangopay: Pick<Mangopay, 'mintEmbeddedToken'>
  lifecycle: Pick<Lifecycle, 'closing'>
  authenticator: Authenticator
  allowedOrigins: ReadonlySet<string>
  clock: Clock
  /** The per-Mangopay-user limit (limits/); runs after authorization, before any Mangopay call. */
  rateLimit: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>
  /** The fair quota (limits/): charged only when a token is minted, not when one is handed again. */
  budgets: TokenBudgets
  /** The public part of the Mangopay settings: never the API key. */
  settings: { clientId: string, environment: 'sandbox' | 'production', timeoutMs: number }
}

/** Enough to correlate a token across logs and support tickets; useless to an attacker. */
export function tokenFingerprint (token: string): string {
  return hash('sha256', token, 'base64url').slice(0, 12)
}

export async function tokenRoutes (app: FastifyInstance, options: TokenRoutesOptions): Promise<void> {
  const { mangopay, lifecycle, authenticator, allowedOrigins, clock, settings, rateLimit, budgets } = options
  const environment = settings.environment === 'production' ? 'PRODUCTION' : 'SANDBOX'
  const routes = app.withTypeProvider<TypeBoxTypeProvider>()
  const toIso = isoFormatter()

  function toResponse (token: EmbeddedToken, userId: string): TokenResponseBody {
    const expiresAtMs = token.issuedAt + token.expiresInS * 1000
    return {
      clientToken: token.accessToken,
      tokenType: token.tokenType,
      expiresIn: Math.max(0, Math.floor((expiresAtMs - clock.now()) / 1000)),
      expiresAt: toIso(expiresAtMs),
      scope: token.scope,
      clientId: settings.clientId,
      userId,
      environment
    }
  }

  app.decorateRequest('tokenContext', null)

  /** In a span of its own when the request is traced: the identity provider's share of the time. */
  async function authenticate (request: FastifyRequest, source: string | undefined): Promise<Session> {
    const span = request.traceSpan?.child('authenticate', { 'broker.credential': source ?? 'none' })
    if (span === undefined) return await authenticator.authenticate(request)
    try {
      return await authenticator.authenticate(request)
    } catch (err) {
      span.fail(err)
      throw err
    } finally {
      span.end()
    }
  }

  /** preHandler: authentication, CSRF and user selection, so the rate limit can key on the result. */
  async function authorize (request: FastifyRequest): Promise<void> {
    // Its answer would most likely be lost with its connection: no quota is spent on it.
    if (lifecycle.closing) throw new BrokerError('shutting_down', 'The broker is shutting down; retry shortly.', { retryAfterS: 1 })
    // The body has passed the route schema by the time preHandlers run.
    const body = request.body as Static<typeof TokenRequestBody> | undefined
    let session: Session | undefined
    try {
      // SPEC §3.4: before any upstream call, the session endpoint's or the key set's included.
      const source = authenticator.credentialSource(request)
      checkCsrf(request, source, allowedOrigins)
      session = await authenticate(request, source)
      request.tokenContext = { session, userId: selectMangopayUser(session, body?.userId) }
    } catch (err) {
      throw withSecurityEvent(err, request, { subject: session?.subject, mangopayUserId: body?.userId })
    }
  }

  function asked (request: FastifyRequest): Asked {
    return { subject: request.tokenContext?.session.subject, mangopayUserId: request.tokenContext?.userId }
  }

  async function limitPerUser (request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    try {
      return await rateLimit(request, reply)
    } catch (err) {
      throw withSecurityEvent(err, request, asked(request))
    }
  }

  async function issue (kind: EmbeddedKind, request: FastifyRequest, reply: FastifyReply): Promise<TokenResponseBody> {
    if (request.tokenContext === null) throw new BrokerError('internal_error', 'The request was not authorised.')
    const { session, userId } = request.tokenContext
    // SPEC §4: MANGOPAY_TIMEOUT_MS is the whole request's deadline, counted from its arrival:
    // authentication (a forward-mode session call, a key-set fetch) has already spent some of it.
    const budgetMs = Math.max(1, settings.timeoutMs - reply.elapsedTime)
    const beforeMint = async (): Promise<void> => {
      try {
        await budgets.admit({ userId, session }, request.log)
      } catch (err) {
        throw withSecurityEvent(err, request, asked(request))
      }
    }
    const token = await withDeadline(budgetMs, deadline => mangopay.mintEmbeddedToken(kind, userId, { deadline, log: request.log, beforeMint, trace: request.traceSpan ?? undefined }))
    const response = toResponse(token, userId)
    auditTokenIssued(request, reply, {
      event: 'embedded_token_issued',
      kind,
      mangopayUserId: userId,
      subject: session.subject,
      expiresAt: response.expiresAt,
      fingerprint: tokenFingerprint(token.accessToken),
      ...(token.reused === undefined ? {} : { reused: token.reused })
    })
    return response
  }

  const schema = { body: TokenRequestBody, response: { 200: TokenResponse } }
  // Order matters: who is asking first, then their budget, then (in the handler) Mangopay.
  const preHandler = [authorize, limitPerUser]
  routes.post('/v1/tokens/recipients', { schema, preHandler }, (request, reply) => issue('recipient', request, reply))
  routes.post('/v1/tokens/checkout', { schema, preHandler }, (request, reply) => issue('checkout', request, reply))
}
