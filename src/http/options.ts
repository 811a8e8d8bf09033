import { randomUUID } from 'node:crypto'
import type { Server } from 'node:http'
import type { FastifyHttpOptions } from 'fastify'
import type { Logger } from 'pino'
import type { ServerConfig } from '../config/index.js'
import { AccessLog } from '../fast-paths/index.js'
import { handleClientError } from './client-error.js'
import { answerFrameworkError } from './problem.js'

const BODY_LIMIT_BYTES = 4 * 1024
const MAX_HEADER_BYTES = 8 * 1024
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** A caller's X-Request-Id is kept when it is sane (so traces join up); otherwise a new one. */
function requestId (req: { headers: Record<string, string | string[] | undefined> }): string {
  const incoming = req.headers['x-request-id']
  return typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID()
}

export function serverOptions (server: ServerConfig, logger: Logger): FastifyHttpOptions<Server> {
  return {
    loggerInstance: logger,
    genReqId: requestId,
    logController: new AccessLog({ requestIdLogLabel: 'requestId' }),
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: server.trustProxy.length > 0 ? server.trustProxy : false,
    // Requests still reaching a route once close() has begun get the token routes' problem+json 503.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Slow clients are cut off; expired connections are swept every second rather than every 30 s.
    requestTimeout: server.requestTimeoutMs,
    keepAliveTimeout: server.keepAliveTimeoutMs,
    connectionTimeout: server.keepAliveTimeoutMs + 5000,
    http: {
      headersTimeout: server.headersTimeoutMs,
      requestTimeout: server.requestTimeoutMs,
      maxHeaderSize: MAX_HEADER_BYTES,
      connectionsCheckingInterval: 1000
    },
    clientErrorHandler: (err, socket) => { handleClientError(err, socket, logger) },
    frameworkErrors: answerFrameworkError,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // Unknown fields are an error (SPEC §2), never silently dropped; types are never coerced.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false } }
  }
}
