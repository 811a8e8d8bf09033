import type { ErrorCode } from '../../../src/wire.js'

/** The helper's own codes: for answers it never got, or got and could not use. */
export type HelperErrorCode =
  /** The broker could not be reached (offline, DNS, refused, or blocked by CORS). */
  | 'network_error'
  /** An error status without a problem+json body (a proxy's HTML page, for example). */
  | 'http_error'
  /** A 2xx answer that is not a token. */
  | 'invalid_response'
  /** `clear()` was called while this call was in progress (reading the credential or waiting for the broker). */
  | 'cleared'
  /** `getAuthorization` threw or rejected: its error is the `cause`. */
  | 'authorization_failed'
  /** A token for another Mangopay user than the `userId` asked for (a proxy cache keyed by URL, for example). */
  | 'user_mismatch'

/**
 * Every problem code of the broker (its own type, so none can be missing here) and the helper's.
 * Open-ended on purpose: a page's bundled helper and the deployed broker are upgraded apart, so a
 * newer broker's code can reach an older helper; the known codes still autocomplete.
 */
export type TokenClientErrorCode = ErrorCode | HelperErrorCode | (string & {})

export class TokenClientError extends Error {
  readonly code: TokenClientErrorCode
  /** The HTTP status, or 0 when no answer was received. */
  readonly status: number
  /** Seconds to wait before trying again (from `Retry-After`), when the broker said so. */
  readonly retryAfter: number | undefined
  /** Quote it to the platform's support: it joins the broker's logs. */
  readonly requestId: string | undefined
  /** The broker's explanation, written for the frontend developer. */
  readonly detail: string | undefined

  constructor (code: TokenClientErrorCode, message: string, details: { status?: number, retryAfter?: number, requestId?: string, detail?: string, cause?: unknown } = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.name = 'TokenClientError'
    this.code = code
    this.status = details.status ?? 0
    this.retryAfter = details.retryAfter
    this.requestId = details.requestId
    this.detail = details.detail
  }
}

export function clearedError (): TokenClientError {
  return new TokenClientError('cleared', 'The token request was cancelled by clear() (logout or user switch).')
}
