import { LogController, type FastifyBaseLogger, type FastifyReply, type FastifyRequest } from 'fastify'
import { pino } from 'pino'

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

/**
 * The logger an audit line goes through. SPEC §5 asks for one per issued token: an audit
 * record, not a diagnostic a level may silence. So when LOG_LEVEL is above info (warn, error,
 * fatal) the line gets an info-level child of the request's logger; only silent silences it.
 */
function auditLog (log: FastifyBaseLogger): FastifyBaseLogger {
  const level = pino.levels.values[log.level]
  return level === undefined || level <= INFO || log.level === 'silent' ? log : log.child({}, { level: 'info' })
}

/**
 * One line per request, when it is answered, instead of Fastify's two (`incoming request` +
 * `request completed`). A request that was handed a token has no line of its own besides: its
 * line is the audit line (`embedded token issued`, with `audit`), carrying the access fields
 * (`req`, `res`, `responseTime`) as well. One line per token rather than two: writing log lines
 * is the largest cost of a token request after the network.
 */
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
 * Records that `request` was handed a token. The audit goes out with the request's line; a
 * response that never finishes (the browser went away while the token was being minted) has no
 * such line, so there the audit is written on its own, with `delivered: false`, when the
 * response closes. Either way, exactly one audit line per token.
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
