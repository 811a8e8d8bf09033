import type { Dispatcher } from 'undici'
import type { IncomingHttpHeaders } from 'node:http'
import { BrokerError } from '../errors.js'
import { readBounded, rootCode, type Deadline } from '../upstream/index.js'
import type { MangopayEndpoint } from './types.js'

// One exchange with Mangopay: redirects not followed (undici's `request`), the body always consumed and bounded.

const MAX_BODY_BYTES = 64 * 1024
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])
const TIMED_OUT = 'Mangopay did not answer in time.'

export interface UpstreamResponse {
  status: number
  headers: IncomingHttpHeaders
  text: string
}

export interface UpstreamRequest {
  endpoint: MangopayEndpoint
  path: string
  headers: Record<string, string>
  body: string
  deadline: Deadline
}

export function upstreamTimeout (cause?: unknown): BrokerError {
  return new BrokerError('upstream_timeout', TIMED_OUT, { cause })
}

/** No HTTP answer at all (refused, reset, cut mid-body, TLS, timeout): what retries and the circuit look at. */
export class TransportError extends BrokerError {
  /** The socket or undici error code, e.g. ECONNRESET; for the logs and the retry decision only. */
  readonly transportCode: string

  constructor (code: 'upstream_timeout' | 'upstream_unavailable', detail: string, transportCode: string, options: ConstructorParameters<typeof BrokerError>[2]) {
    super(code, detail, options)
    this.transportCode = transportCode
  }
}

function networkError (endpoint: MangopayEndpoint, err: unknown, deadline: Deadline): BrokerError {
  const network = rootCode(err)
  const logFields = { mangopay: { endpoint, network } }
  if (deadline.timedOut || TIMEOUT_CODES.has(network)) {
    return new TransportError('upstream_timeout', TIMED_OUT, network, { cause: err, logFields })
  }
  return new TransportError('upstream_unavailable', 'Mangopay cannot be reached right now; try again shortly.', network, { cause: err, logFields, retryAfterS: 5 })
}

export async function postToMangopay (pool: Dispatcher, request: UpstreamRequest): Promise<UpstreamResponse> {
  try {
    const response = await pool.request({
      method: 'POST',
      path: request.path,
      headers: request.headers,
      body: request.body,
      signal: request.deadline
    })
    const text = await readBounded(response.body, MAX_BODY_BYTES)
    if (text === undefined) throw new BrokerError('upstream_error', 'Mangopay answered with an oversized response.')
    return { status: response.statusCode, headers: response.headers, text }
  } catch (err) {
    if (err instanceof BrokerError) throw err
    throw networkError(request.endpoint, err, request.deadline)
  }
}
