import type { FastifyRequest } from 'fastify'
import { BrokerError, type ErrorCode } from '../errors.js'

// SPEC §8 "Logs": a refusal of a signed-in caller is a security event; its log line says who asked for which
// Mangopay user, from where, on which route. Never the credential.

const SECURITY_EVENTS: ReadonlySet<ErrorCode> = new Set(['forbidden_user', 'csrf_rejected', 'rate_limited', 'no_mangopay_user'])

export interface Asked {
  /** The session's subject, once authenticated (a CSRF refusal comes before). */
  subject?: string | undefined
  /** The Mangopay user named in the body, or the one the session was authorised for. */
  mangopayUserId?: string | undefined
}

/** The same refusal, its log line carrying the security event; anything else unchanged. */
export function withSecurityEvent (err: unknown, request: FastifyRequest, asked: Asked): unknown {
  if (!(err instanceof BrokerError) || !SECURITY_EVENTS.has(err.code)) return err
  const securityEvent = {
    ...(asked.subject === undefined ? {} : { subject: asked.subject }),
    ...(asked.mangopayUserId === undefined ? {} : { mangopayUserId: asked.mangopayUserId }),
    ip: request.ip,
    route: request.routeOptions.url
  }
  return new BrokerError(err.code, err.detail, {
    ...(err.retryAfterS === undefined ? {} : { retryAfterS: err.retryAfterS }),
    ...(err.cause === undefined ? {} : { cause: err.cause }),
    logFields: { ...err.logFields, securityEvent }
  })
}
