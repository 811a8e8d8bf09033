// SPEC §2 as plain types: the server and the browser helper (`import type`) share them, so they cannot drift.

export type MangopayEnvironment = 'SANDBOX' | 'PRODUCTION'

/** `POST /v1/tokens/{recipients,checkout}`: the 200 body, ready to spread into the Mangopay SDK options. */
export interface TokenAnswer {
  clientToken: string
  tokenType: 'Bearer'
  /** Seconds left at the moment of the answer. */
  expiresIn: number
  /** Absolute expiry, ISO 8601 UTC. */
  expiresAt: string
  scope: string
  clientId: string
  userId: string
  environment: MangopayEnvironment
}

/** The optional body: names one of the session's Mangopay users (SPEC §3.3). */
export interface TokenRequest {
  userId?: string
}

export type ErrorCode =
  | 'bad_request'
  | 'user_id_required'
  | 'unauthenticated'
  | 'csrf_rejected'
  | 'forbidden_user'
  | 'no_mangopay_user'
  | 'not_found'
  | 'payload_too_large'
  | 'request_header_fields_too_large'
  | 'request_timeout'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'upstream_error'
  | 'upstream_auth_failed'
  | 'upstream_unavailable'
  | 'upstream_timeout'
  | 'auth_unavailable'
  | 'shared_state_unavailable'
  | 'shutting_down'
  | 'overloaded'
  | 'internal_error'

/** An error answer (RFC 9457 application/problem+json). */
export interface Problem {
  type: 'about:blank'
  title: string
  status: number
  code: ErrorCode
  detail: string
  requestId: string
}
