import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify'
import { pino } from 'pino'

// Speed: one log line per request, the audit line for a token, instead of Fastify's two and a
// third for the audit; see docs/benchmark.md#fast-paths.

/** SPEC §5's audit record of one token handed out: who, what, until when, and a fingerprint (never the token). */
export interface TokenAudit {
  event: 'embedded_token_issued'
  kind: string
  mangopayUserId: string
  subject: string
  expiresAt: string
  fingerprint: string
  reused?: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set once a token is handed out; written with the request's line, then cleared. */
    tokenAudit: TokenAudit | null
  }
}

const AUDIT_MESSAGE = 'embedded token issued'
const INFO = pino.levels.values.info as number

/** An audit line (SPEC §5) is a record, not a diagnostic: LOG_LEVEL above info does not silence it; only `silent` does. */
function auditLog (log: FastifyBaseLogger): FastifyBaseLogger {
  const level = pino.levels.values[log.level]
  return level === undefined || level <= INFO || log.level === 'silent' ? log : log.child({}, { level: 'info' })
}

/** One line per request, when it is answered; for a token, that line is the audit line (`audit` beside `req`, `res`). */
export class AccessLog extends LogController {
  override incomingRequest (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    // pino leaves out a field whose value is undefined: no `audit` on other requests' lines.
    const audit = request.tokenAudit ?? undefined
    if (audit !== undefined) request.tokenAudit = null
    if (error) reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime, audit }, 'request errored')
    else if (audit === undefined) reply.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
    else auditLog(reply.log).info({ req: request, res: reply, responseTime: reply.elapsedTime, audit }, AUDIT_MESSAGE)
  }
}

/** The audit of a token whose request has no line of its own (its answer was never finished). */
function auditAlone (request: FastifyRequest, reply: FastifyReply, audit: TokenAudit): void {
  auditLog(request.log).info({ req: request, audit, delivered: reply.raw.writableFinished }, AUDIT_MESSAGE)
}

/**
 * Exactly one audit line per token: with the request's line, or, when the answer never finishes
 * (the browser went away), on its own with `delivered: false` once the response closes.
 */
export function auditTokenIssued (request: FastifyRequest, reply: FastifyReply, audit: TokenAudit): void {
  if (reply.raw.closed) {
    auditAlone(request, reply, audit)
    return
  }
  request.tokenAudit = audit
  reply.raw.once('close', () => {
    if (request.tokenAudit === null) return
    request.tokenAudit = null
    auditAlone(request, reply, audit)
  })
}
