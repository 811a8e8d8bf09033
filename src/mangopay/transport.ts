import { Pool, type buildConnector, type Dispatcher } from 'undici'
import type { IncomingHttpHeaders } from 'node:http'
import { BrokerError } from '../errors.js'
import type { MangopayEndpoint } from './upstream-errors.js'
import { readBounded } from '../upstream/read-bounded.js'
import type { Deadline } from '../upstream/deadline.js'

/**
 * The one connection pool to Mangopay, owned by the app (never the global dispatcher), and
 * the single function every Mangopay call goes through: explicit deadlines, no redirects
 * (undici's `request` never follows them), bodies always consumed and size-bounded, and
 * network failures turned into SPEC §2 codes.
 */

export interface PoolOptions {
  origin: string
  timeoutMs: number
  /** undici `connect` options (mTLS certificates go here). */
  tls?: Record<string, unknown>
  /** A connector of its own instead (tls.ts: mTLS material swapped on SIGHUP); it carries its own timeout. */
  connector?: buildConnector.connector
}

const MAX_BODY_BYTES = 64 * 1024
export const CONNECT_TIMEOUT_CAP_MS = 3000

export function createMangopayPool ({ origin, timeoutMs, tls, connector }: PoolOptions): Pool {
  return new Pool(origin, {
    connections: 64,
    pipelining: 1,
    // Explicit timeouts: undici's 300 s defaults would hold a browser request far past its deadline.
    connect: connector ?? { timeout: Math.min(CONNECT_TIMEOUT_CAP_MS, timeoutMs), ...tls },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 60_000
  })
}

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

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])
const TIMED_OUT = 'Mangopay did not answer in time.'

/** `upstream_timeout`: the browser request's deadline passed before Mangopay answered. */
export function upstreamTimeout (cause?: unknown): BrokerError {
  return new BrokerError('upstream_timeout', TIMED_OUT, { cause })
}

/** Waits for `promise` (a Mangopay call), but gives up with `upstream_timeout` when `deadline` aborts (the promise itself goes on for others). */
export async function withinDeadline<T> (promise: Promise<T>, deadline: Deadline): Promise<T> {
  if (deadline.aborted) throw upstreamTimeout()
  let onAbort: () => void = () => {}
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(upstreamTimeout())
    deadline.once('abort', onAbort)
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    deadline.removeListener('abort', onAbort)
  }
}

/** Sleeps `ms`; rejects with `upstream_timeout` as soon as `deadline` aborts. */
export async function sleepWithin (ms: number, deadline: Deadline): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await withinDeadline(new Promise<void>(resolve => { timer = setTimeout(resolve, ms) }), deadline)
  } finally {
    clearTimeout(timer)
  }
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

/** Turns a transport failure into the code the browser sees; the cause stays in the logs only. */
export function networkError (endpoint: MangopayEndpoint, err: unknown, deadline: Deadline): BrokerError {
  const code = (err as { code?: string }).code
  const logFields = { mangopay: { endpoint, network: code ?? (err as Error).name } }
  if (deadline.timedOut || (code !== undefined && TIMEOUT_CODES.has(code))) {
    return new TransportError('upstream_timeout', TIMED_OUT, logFields.mangopay.network, { cause: err, logFields })
  }
  return new TransportError('upstream_unavailable', 'Mangopay cannot be reached right now; try again shortly.', logFields.mangopay.network, { cause: err, logFields, retryAfterS: 5 })
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
