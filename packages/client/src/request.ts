import { clearedError, TokenClientError } from './errors.js'
import type { EmbeddedToken, TokenKind } from './options.js'

const PATHS: Record<TokenKind, string> = {
  recipients: '/v1/tokens/recipients',
  checkout: '/v1/tokens/checkout'
}
const DEFAULT_RETRY_WAIT_S = 1

export interface RequestSettings {
  /** Without a trailing slash. */
  baseUrl: string
  credentials: RequestCredentials
  fetch: typeof fetch
  now: () => number
  /** Undefined: no retry. */
  maxRetryWaitS: number | undefined
}

/** One token call (with its single retry, if enabled): the credential is passed in, never kept. */
export type TokenRequester = (kind: TokenKind, userId: string | undefined, authorization: string | undefined, signal: AbortSignal) => Promise<EmbeddedToken>

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Keeps exactly the SPEC §2 fields, checked; anything else is not a token. */
function tokenFrom (body: unknown): EmbeddedToken | undefined {
  if (!isRecord(body)) return undefined
  const { clientToken, tokenType, expiresIn, expiresAt, scope, clientId, userId, environment } = body
  if (typeof clientToken !== 'string' || clientToken === '' || tokenType !== 'Bearer') return undefined
  if (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn < 0) return undefined
  if (typeof expiresAt !== 'string' || typeof scope !== 'string' || typeof clientId !== 'string' || typeof userId !== 'string') return undefined
  if (environment !== 'SANDBOX' && environment !== 'PRODUCTION') return undefined
  return { clientToken, tokenType, expiresIn, expiresAt, scope, clientId, userId, environment }
}

/** `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
function parseRetryAfter (value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text)
  const date = Date.parse(text)
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - nowMs) / 1000))
}

function headersFor (authorization: string | undefined, userId: string | undefined): Record<string, string> {
  // X-CSRF proves the request comes from script (SPEC §3.4); harmless with an Authorization header.
  const headers: Record<string, string> = { accept: 'application/json', 'x-csrf': '1' }
  if (authorization !== undefined) headers.authorization = authorization
  if (userId !== undefined) headers['content-type'] = 'application/json'
  return headers
}

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    function onAbort (): void {
      clearTimeout(timer)
      reject(clearedError())
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

export function createRequester (settings: RequestSettings): TokenRequester {
  const { baseUrl, credentials, now, maxRetryWaitS } = settings

  async function errorFrom (response: Response): Promise<TokenClientError> {
    let body: unknown
    try {
      body = JSON.parse(await response.text())
    } catch {}
    const status = response.status
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'), now())
    const headerRequestId = response.headers.get('x-request-id') ?? undefined
    if (isRecord(body) && typeof body.code === 'string') {
      const detail = typeof body.detail === 'string' ? body.detail : undefined
      const requestId = typeof body.requestId === 'string' ? body.requestId : headerRequestId
      return new TokenClientError(body.code, detail ?? `The token broker refused the request (${status} ${body.code}).`, { status, retryAfter, requestId, detail })
    }
    return new TokenClientError('http_error', `The token broker answered ${status} without a problem description.`, { status, retryAfter, requestId: headerRequestId })
  }

  async function requestOnce (kind: TokenKind, userId: string | undefined, authorization: string | undefined, signal: AbortSignal): Promise<EmbeddedToken> {
    const init: RequestInit = { method: 'POST', credentials, signal, headers: headersFor(authorization, userId) }
    // No body at all unless a Mangopay user must be named (SPEC §2).
    if (userId !== undefined) init.body = JSON.stringify({ userId })
    try {
      const response = await settings.fetch(`${baseUrl}${PATHS[kind]}`, init)
      if (!response.ok) throw await errorFrom(response)
      let body: unknown
      try {
        body = await response.json()
      } catch {}
      // clear() came while the answer was read (or a fetch that cannot abort ignored it).
      if (signal.aborted) throw clearedError()
      const token = tokenFrom(body)
      const requestId = response.headers.get('x-request-id') ?? undefined
      if (token === undefined) {
        throw new TokenClientError('invalid_response', 'The token broker answered with something that is not a token.', { status: response.status, requestId })
      }
      // The broker checks the user it was asked for; something between it and the page may not.
      if (userId !== undefined && token.userId !== userId) {
        throw new TokenClientError('user_mismatch', 'The token broker\'s answer is for another Mangopay user than the one asked for.', { status: response.status, requestId })
      }
      return token
    } catch (err) {
      if (signal.aborted) throw clearedError()
      if (err instanceof TokenClientError) throw err
      // fetch rejects with a TypeError for network failures and CORS refusals alike.
      throw new TokenClientError('network_error', 'The token broker could not be reached.', { cause: err })
    }
  }

  function retryDelayMs (err: unknown): number | undefined {
    if (maxRetryWaitS === undefined || !(err instanceof TokenClientError) || (err.status !== 429 && err.status !== 503)) return undefined
    const waitS = err.retryAfter ?? DEFAULT_RETRY_WAIT_S
    return waitS <= maxRetryWaitS ? waitS * 1000 : undefined
  }

  // The retry sends the same credential: the request belongs to it (see the client's shared requests).
  return async (kind, userId, authorization, signal) => {
    try {
      return await requestOnce(kind, userId, authorization, signal)
    } catch (err) {
      const delayMs = retryDelayMs(err)
      if (delayMs === undefined) throw err
      await sleep(delayMs, signal)
      return await requestOnce(kind, userId, authorization, signal)
    }
  }
}
