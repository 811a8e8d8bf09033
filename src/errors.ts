import type { ErrorCode } from './wire.js'

export type { ErrorCode }

// Everything the broker refuses is a BrokerError with a stable `code` (SPEC §2); exported for
// the test that checks the browser helper knows every code.
export const STATUS: Readonly<Record<ErrorCode, number>> = {
  bad_request: 400,
  user_id_required: 400,
  unauthenticated: 401,
  csrf_rejected: 403,
  forbidden_user: 403,
  no_mangopay_user: 403,
  not_found: 404,
  payload_too_large: 413,
  request_header_fields_too_large: 431,
  request_timeout: 408,
  unsupported_media_type: 415,
  rate_limited: 429,
  upstream_error: 502,
  upstream_auth_failed: 502,
  upstream_unavailable: 503,
  upstream_timeout: 504,
  auth_unavailable: 503,
  shared_state_unavailable: 503,
  shutting_down: 503,
  overloaded: 503,
  internal_error: 500
}

export interface BrokerErrorOptions {
  retryAfterS?: number
  /** Internal detail for the logs only (never sent to the client). */
  cause?: unknown
  /** Extra fields for the log line (Mangopay error Id, upstream status…). Never sent. */
  logFields?: Record<string, unknown>
}

export class BrokerError extends Error {
  readonly code: ErrorCode
  readonly statusCode: number
  /** Written for the frontend developer; never a secret, a token or an upstream body. */
  readonly detail: string
  readonly retryAfterS: number | undefined
  readonly logFields: Record<string, unknown> | undefined

  constructor (code: ErrorCode, detail: string, options: BrokerErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'BrokerError'
    this.code = code
    this.statusCode = STATUS[code]
    this.detail = detail
    this.retryAfterS = options.retryAfterS === undefined ? undefined : Math.max(1, Math.ceil(options.retryAfterS))
    this.logFields = options.logFields
  }
}

export function isBrokerError (err: unknown): err is BrokerError {
  return err instanceof BrokerError
}
