import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type OutgoingHttpHeaders, type ServerResponse } from 'node:http'

/** An answer computed before it is written, so faults can delay, trickle or cut it. */
export interface Reply { status: number, body: string, headers?: Record<string, string> }

export const JSON_TYPE = 'application/json; charset=utf-8'

export const PARAM_ERROR_MESSAGE =
  'One or several required parameters are missing or incorrect. An incorrect resource ID also raises this kind of error.'

export function jsonReply (status: number, value: unknown, headers?: Record<string, string>): Reply {
  return headers === undefined ? { status, body: JSON.stringify(value) } : { status, body: JSON.stringify(value), headers }
}

export function unixSeconds (ms: number): number {
  return Math.floor(ms / 1000)
}

export function mangopayError (
  status: number, type: string, message: string, now: number, errors: Record<string, string> | null = null
): Reply {
  return jsonReply(status, { Message: message, Type: type, Id: randomUUID(), Date: unixSeconds(now), errors })
}

/** The documented 401 body for a bad or expired bearer: no Id and no errors. */
export function invalidCredentials (now: number): Reply {
  return jsonReply(401, { Message: 'The authorization credentials are not valid', Type: 'invalid_credentials', Date: unixSeconds(now) })
}

export function paramError (now: number, errors: Record<string, string>): Reply {
  return mangopayError(400, 'param_error', PARAM_ERROR_MESSAGE, now, errors)
}

export function notFound (now: number): Reply {
  return mangopayError(404, 'ressource_not_found', 'The ressource does not exist', now)
}

export function rateLimited (now: number): Reply {
  return mangopayError(429, 'rate_limit', 'Rate limit exceeded. Please contact support for more assistance', now)
}

export function payloadTooLarge (now: number): Reply {
  return mangopayError(413, 'other', 'The request body is too large', now)
}

export function genericError (status: number, now: number): Reply {
  return mangopayError(status, 'other', STATUS_CODES[status] ?? 'Error', now)
}

export function oauthError (status: number, error: string, description?: string): Reply {
  return jsonReply(status, description === undefined ? { error } : { error, error_description: description })
}

export function responseHeaders (reply: Reply, length: number, rateHeaders: Record<string, string>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {}
  // Later sources win whatever their casing, so a fault can override Content-Type or a rate header.
  const names = new Map<string, string>()
  for (const source of [{ 'Content-Type': JSON_TYPE }, rateHeaders, reply.headers ?? {}]) {
    for (const [name, value] of Object.entries(source)) {
      const lower = name.toLowerCase()
      const previous = names.get(lower)
      if (previous !== undefined) delete headers[previous]
      names.set(lower, name)
      headers[name] = value
    }
  }
  if (reply.status !== 204 && reply.status !== 304) headers['Content-Length'] = length
  return headers
}

/** False once the client has gone or close() has destroyed the socket. */
export function writable (res: ServerResponse): boolean {
  return !res.destroyed && res.socket?.destroyed !== true
}

export function send (res: ServerResponse, reply: Reply, rateHeaders: Record<string, string> = {}): void {
  if (!writable(res)) return
  const body = Buffer.from(reply.body)
  res.writeHead(reply.status, responseHeaders(reply, body.length, rateHeaders))
  res.end(body)
}
