import type { ErrorCode } from '../../../src/wire.js'
import type { HelperErrorCode, TokenClientError } from './errors.js'

/** What keepFresh does after an error: try again later, or stop (trying again cannot fix it). */
type Next = 'retry' | 'stop'

// One entry per code of src/wire.ts: a code the broker gains does not compile here until it is sorted.
const BROKER: Record<ErrorCode, Next> = {
  bad_request: 'stop',
  user_id_required: 'stop',
  unauthenticated: 'stop',
  csrf_rejected: 'stop',
  forbidden_user: 'stop',
  no_mangopay_user: 'stop',
  not_found: 'stop',
  payload_too_large: 'stop',
  request_header_fields_too_large: 'stop',
  request_timeout: 'retry',
  unsupported_media_type: 'stop',
  rate_limited: 'retry',
  upstream_error: 'retry',
  upstream_auth_failed: 'retry',
  upstream_unavailable: 'retry',
  upstream_timeout: 'retry',
  auth_unavailable: 'retry',
  shared_state_unavailable: 'retry',
  shutting_down: 'retry',
  overloaded: 'retry',
  internal_error: 'retry'
}

const HELPER: Record<Exclude<HelperErrorCode, 'http_error'>, Next> = {
  network_error: 'retry',
  invalid_response: 'retry',
  cleared: 'stop',
  authorization_failed: 'retry',
  user_mismatch: 'stop'
}

/** Every code the broker can send, as this helper knows them. */
export const BROKER_ERROR_CODES = Object.freeze(Object.keys(BROKER)) as readonly ErrorCode[]

function known<T extends string> (table: Record<T, Next>, code: string): code is T {
  return Object.hasOwn(table, code)
}

/** Whether keepFresh should try again after `error`. */
export function isRetryable (error: TokenClientError): boolean {
  const { code, status } = error
  if (known(BROKER, code)) return BROKER[code] === 'retry'
  if (known(HELPER, code)) return HELPER[code] === 'retry'
  // A proxy's error page, or a code from a newer broker: the status tells.
  return status >= 500 || status === 429 || status === 408
}
