import { BrokerError } from '../errors.js'
import { checkMangopayErrorBody, checkOAuthErrorBody } from './schemas.js'
import type { UpstreamResponse } from './transport.js'
import type { MangopayEndpoint } from './types.js'

/** What the logs may say about a Mangopay error answer: never its raw body, never a secret. */
export interface UpstreamErrorInfo {
  endpoint: MangopayEndpoint
  status: number
  dialect: 'mangopay' | 'oauth' | 'unknown'
  /** Mangopay's error Id, for support tickets. */
  errorId?: string
  type?: string
  message?: string
  /** Field names Mangopay complained about (names only). */
  fields?: string[]
}

const MAX_LOGGED_TEXT = 300

function clip (text: string): string {
  return text.length > MAX_LOGGED_TEXT ? `${text.slice(0, MAX_LOGGED_TEXT)}…` : text
}

/** Parses either error dialect; anything else is `unknown` and only its status is kept. */
export function parseUpstreamError (endpoint: MangopayEndpoint, status: number, bodyText: string): UpstreamErrorInfo {
  const info: UpstreamErrorInfo = { endpoint, status, dialect: 'unknown' }
  let body: unknown
  try {
    body = JSON.parse(bodyText)
  } catch {
    return info
  }
  if (checkOAuthErrorBody.Check(body)) {
    info.dialect = 'oauth'
    info.type = clip(body.error)
    if (body.error_description !== undefined) info.message = clip(body.error_description)
    return info
  }
  if (checkMangopayErrorBody.Check(body) && (body.Message !== undefined || body.Type !== undefined)) {
    info.dialect = 'mangopay'
    if (body.Id !== undefined) info.errorId = clip(body.Id)
    if (body.Type !== undefined) info.type = clip(body.Type)
    if (body.Message !== undefined) info.message = clip(body.Message)
    const fieldErrors = body.errors ?? body.Errors
    if (fieldErrors !== null && fieldErrors !== undefined) info.fields = Object.keys(fieldErrors).slice(0, 20).map(clip)
  }
  return info
}

// SPEC §2 codes. A 401 from an embedded endpoint gets here after its one re-authentication: the
// credentials are refused. A 429 never gets here: the quota tracker answers it with the window's Retry-After.
export function errorForUpstreamStatus (info: UpstreamErrorInfo): BrokerError {
  const logFields = { mangopay: info }
  const { status } = info
  if (status === 401 || status === 403 || (info.endpoint === 'oauth' && status === 400)) {
    return new BrokerError('upstream_auth_failed', 'Mangopay rejected the broker\'s credentials; the platform must check its Mangopay configuration.', { logFields })
  }
  if (status >= 300 && status < 400) {
    return new BrokerError('upstream_error', 'Mangopay answered with a redirect, which the broker does not follow.', { logFields })
  }
  if (status >= 500) {
    return new BrokerError('upstream_error', 'Mangopay answered with a server error.', { logFields })
  }
  return new BrokerError('upstream_error', 'Mangopay refused to issue the token for this user.', { logFields })
}

export function upstreamError (endpoint: MangopayEndpoint, response: UpstreamResponse): BrokerError {
  return errorForUpstreamStatus(parseUpstreamError(endpoint, response.status, response.text))
}

export function parseAnswer (endpoint: MangopayEndpoint, text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new BrokerError('upstream_error', 'Mangopay returned a malformed response.', { logFields: { mangopay: { endpoint, status: 200, invalid: 'json' } } })
  }
}

export function invalidAnswer (endpoint: MangopayEndpoint): BrokerError {
  const what = endpoint === 'oauth' ? 'OAuth' : 'token'
  return new BrokerError('upstream_error', `Mangopay returned an invalid ${what} response.`, { logFields: { mangopay: { endpoint, status: 200, invalid: 'schema' } } })
}
