import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { ErrorCode } from '../errors.js'
import { commonHeaders, problemBody } from './problem.js'

// Errors Node's parser raises before Fastify sees a request: problem+json like any refusal, then the socket closes.
const BY_PARSER_CODE: Record<string, [number, ErrorCode, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'request_header_fields_too_large', 'The request headers are too large.'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'request_timeout', 'The request was not received in time.']
}

export function handleClientError (err: NodeJS.ErrnoException, socket: Socket, log: Logger): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy()
    return
  }
  const [status, code, detail] = BY_PARSER_CODE[err.code ?? ''] ?? [400, 'bad_request', 'The request is not valid HTTP.']
  const problem = problemBody(status, code, detail, randomUUID())
  // One line, like any refusal: the parser's code says what was wrong, never the bytes that were sent.
  log.info({ requestId: problem.requestId, code, clientError: err.code ?? 'unknown', ip: socket.remoteAddress }, `refused: ${code} (client error)`)
  const body = JSON.stringify(problem)
  const headers = {
    'content-type': 'application/problem+json; charset=utf-8',
    'content-length': String(Buffer.byteLength(body)),
    ...commonHeaders(problem.requestId),
    connection: 'close'
  }
  socket.end([`HTTP/1.1 ${status} ${problem.title}`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), '', body].join('\r\n'))
}
