import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { BrokerError, type ErrorCode } from '../errors.js'
import type { Problem } from '../wire.js'

// The one error handler: RFC 9457 problem+json with a stable `code`; only BrokerError details are shown.

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout'
}

declare module 'fastify' {
  interface FastifyReply {
    /** The SPEC error code of a problem answer (for metrics); null for any other answer. */
    problemCode: ErrorCode | null
  }
}

export const JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
/** One year; no includeSubDomains: the broker does not speak for its parent domain's other hosts. */
export const HSTS = 'max-age=31536000'

// Routed answers get these from onSend; this is for JSON written where no hook runs (frameworkErrors, the parser's
// refusals, METRICS_PORT).
export function commonHeaders (requestId: string): Record<string, string> {
  return {
    'x-request-id': requestId,
    'cache-control': 'no-store',
    pragma: 'no-cache',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'content-security-policy': JSON_CSP
  }
}

export function problemBody (status: number, code: ErrorCode, detail: string, requestId: string): Problem {
  return { type: 'about:blank', title: TITLES[status] ?? 'Error', status, code, detail, requestId }
}

export function sendProblem (reply: FastifyReply, error: BrokerError, extensions: Record<string, unknown> = {}): FastifyReply {
  if (error.retryAfterS !== undefined) reply.header('retry-after', String(error.retryAfterS))
  reply.problemCode = error.code
  return reply
    .code(error.statusCode)
    .type('application/problem+json')
    .send({ ...problemBody(error.statusCode, error.code, error.detail, reply.request.id), ...extensions })
}

function fromFastifyError (err: FastifyError): BrokerError {
  if (err.validation !== undefined) {
    // A union schema reports every branch's miss: the object branch's helps the caller, not "must be null".
    const useful = err.validation.filter(v => v.keyword !== 'anyOf' && !(v.keyword === 'type' && v.params.type === 'null'))
    const first = useful[0] ?? err.validation[0]
    const where = first?.instancePath === '' || first?.instancePath === undefined ? 'body' : `body${first.instancePath.replace(/\//g, '.')}`
    const what = first?.keyword === 'additionalProperties'
      ? `unknown field "${String(first.params.additionalProperty)}"`
      : (first?.message ?? 'is invalid')
    return new BrokerError('bad_request', `Invalid request ${where}: ${what}.`)
  }
  const byCode: Record<string, [ErrorCode, string]> = {
    FST_ERR_CTP_BODY_TOO_LARGE: ['payload_too_large', 'The request body is too large.'],
    FST_ERR_CTP_INVALID_MEDIA_TYPE: ['unsupported_media_type', 'Send the body as application/json.'],
    FST_ERR_CTP_INVALID_CONTENT_LENGTH: ['bad_request', 'The Content-Length header does not match the body.'],
    FST_ERR_CTP_EMPTY_JSON_BODY: ['bad_request', 'The JSON body is empty.'],
    FST_ERR_CTP_INVALID_JSON_BODY: ['bad_request', 'The body is not valid JSON.']
  }
  const mapped = err.code === undefined ? undefined : byCode[err.code]
  if (mapped !== undefined) return new BrokerError(mapped[0], mapped[1])
  if (err instanceof SyntaxError || err.statusCode === 400) {
    // JSON syntax errors and secure-json-parse's prototype-poisoning refusals.
    return new BrokerError('bad_request', 'The body is not acceptable JSON.')
  }
  if (err.statusCode === 413) return new BrokerError('payload_too_large', 'The request body is too large.')
  if (err.statusCode === 415) return new BrokerError('unsupported_media_type', 'Send the body as application/json.')
  if (err.statusCode === 429) return new BrokerError('rate_limited', 'Too many requests; slow down.')
  if (err.statusCode === 503) return new BrokerError('shutting_down', 'The broker is shutting down.')
  return new BrokerError('internal_error', 'The broker failed unexpectedly.', { cause: err })
}

// Refusals before routing: no hook runs here, so the answer sets the common headers and logs itself.
export function answerFrameworkError (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const error = err.code === 'FST_ERR_ASYNC_CONSTRAINT'
    ? new BrokerError('internal_error', 'The broker failed unexpectedly.', { cause: err })
    : new BrokerError('bad_request', 'The request URL is malformed.')
  request.log.info({ req: request, code: error.code, fastify: err.code }, `refused: ${error.code}`)
  reply.headers(commonHeaders(request.id))
  if (request.protocol === 'https') reply.header('strict-transport-security', HSTS)
  sendProblem(reply, error)
}

interface BriefCause { type: string, code?: string, message?: string, cause?: BriefCause }

/** What failed underneath, without a stack, a few causes deep. */
function briefCause (cause: unknown, depth = 0): BriefCause {
  if (!(cause instanceof Error)) return { type: typeof cause }
  const code = (cause as NodeJS.ErrnoException).code
  const deeper = cause.cause !== undefined && depth < 2 ? { cause: briefCause(cause.cause, depth + 1) } : {}
  return { type: cause.name, ...(typeof code === 'string' ? { code } : {}), message: cause.message, ...deeper }
}

async function problemPlugin (app: FastifyInstance): Promise<void> {
  app.decorateReply('problemCode', null)
  app.setErrorHandler(function handleError (err: FastifyError | BrokerError, request: FastifyRequest, reply: FastifyReply) {
    const error = err instanceof BrokerError ? err : fromFastifyError(err)
    if (error.code === 'internal_error') {
      // Unexpected: the whole cause, stack and all, is what finds the bug.
      request.log.error({ err: error.cause ?? error, code: error.code, ...error.logFields }, error.detail)
    } else if (error.statusCode >= 500) {
      // A dependency's state or a shutdown: a stack trace per refused request would say no more than the cause.
      request.log.error({ code: error.code, ...error.logFields, ...(error.cause === undefined ? {} : { cause: briefCause(error.cause) }) }, error.detail)
    } else {
      request.log.info({ code: error.code, ...error.logFields }, `refused: ${error.code}`)
    }
    return sendProblem(reply, error)
  })

  app.setNotFoundHandler(function notFound (request, reply) {
    // The path is not echoed: whatever a caller put in a URL stays out of the answer.
    return sendProblem(reply, new BrokerError('not_found', `No such route for ${request.method}.`))
  })
}

export default fp(problemPlugin, { name: 'problem', fastify: '5.x' })
