/**
 * Browser helper for the Mangopay token broker: gets a Recipients or Checkout embedded token
 * for the signed-in user, ready to spread into the Mangopay SDK options.
 *
 * Self-contained on purpose (no imports, no runtime dependencies): the broker serves this very
 * module as `GET /v1/client.js` for plain pages, and bundlers import it as
 * `mangopay-token-broker/client`. Nothing touches `window` or `document`, and nothing runs at
 * import time, so it is safe to import during server-side rendering; `fetch` is looked up only
 * when a token is requested.
 */

export type MangopayEnvironment = 'SANDBOX' | 'PRODUCTION'

/** The broker's answer (SPEC §2): spread it into the Mangopay SDK options. */
export interface EmbeddedToken {
  clientToken: string
  tokenType: 'Bearer'
  /** Seconds left at the moment this object was returned. */
  expiresIn: number
  /** Absolute expiry, ISO 8601 UTC, as the broker computed it. */
  expiresAt: string
  scope: string
  clientId: string
  userId: string
  environment: MangopayEnvironment
}

/** The broker's stable problem codes, plus the helper's own for answers it never got. */
export type TokenClientErrorCode =
  | 'bad_request' | 'user_id_required' | 'unauthenticated' | 'csrf_rejected' | 'forbidden_user'
  | 'no_mangopay_user' | 'not_found' | 'payload_too_large' | 'unsupported_media_type' | 'rate_limited'
  | 'upstream_error' | 'upstream_auth_failed' | 'upstream_unavailable' | 'upstream_timeout'
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
  | (string & {})

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

export interface TokenClientOptions {
  /** The broker's origin (plus any path prefix), e.g. `https://broker.example.com`; `''` for the page's own origin. */
  baseUrl: string
  /**
   * Fetch credentials mode. Default `'include'` (the session cookie is sent, cross-origin too),
   * or `'same-origin'` when `getAuthorization` is given.
   */
  credentials?: RequestCredentials
  /**
   * For apps that keep their session JWT in memory: returns `Bearer <jwt>` (or the bare JWT),
   * called at every token call, before the cache is looked up, so a refreshed or swapped JWT is
   * picked up. Cached tokens and shared requests belong to the credential they were obtained with:
   * another JWT (another user's, or a refreshed one) never gets them. Nothing is sent when it
   * returns null or undefined.
   */
  getAuthorization?: () => string | null | undefined | Promise<string | null | undefined>
  /** Defaults to the global `fetch`, looked up at call time. */
  fetch?: typeof fetch
  /**
   * Opt-in: reuse a token until shortly before it expires (default 30 s before), so remounts and
   * page sections share it. Off by default: every call then asks the broker.
   */
  cache?: boolean | { refreshBeforeExpiryS?: number }
  /**
   * Opt-in: after a 429 or 503, wait for `Retry-After` (1 s when absent) and try once more —
   * unless the wait would exceed `maxWaitS` (default 10), in which case the error is thrown at once.
   */
  retry?: boolean | { maxWaitS?: number }
  /** Milliseconds since the epoch; tests inject a fake clock. */
  now?: () => number
}

export interface TokenRequestOptions {
  /** Only when the session is linked to several Mangopay users: which one (SPEC §3.3). */
  userId?: string
  /**
   * Stops this caller waiting; already aborted, nothing is sent. The request itself goes on for
   * the other callers sharing it (a React StrictMode remount picks it up instead of starting
   * another one). When every one of them has stopped, it is cancelled, Retry-After wait included,
   * unless `cache` is on: then it finishes and fills the cache for the next call.
   */
  signal?: AbortSignal
  /** Ignore a cached token (e.g. the SDK reported it expired). Concurrent calls still share one request. */
  forceRefresh?: boolean
}

export interface TokenClient {
  /** A Recipients token (Mangopay Elements). */
  recipientsToken (options?: TokenRequestOptions): Promise<EmbeddedToken>
  /** A Checkout token (Checkout SDK, PayPal One-Click). */
  checkoutToken (options?: TokenRequestOptions): Promise<EmbeddedToken>
  /**
   * Logout or user switch: drops every cached token and cancels requests in flight (their
   * callers get a `cleared` error); nothing started before this call can fill the cache again.
   */
  clear (): void
}

type TokenKind = 'recipients' | 'checkout'

const PATHS: Record<TokenKind, string> = {
  recipients: '/v1/tokens/recipients',
  checkout: '/v1/tokens/checkout'
}
const DEFAULT_REFRESH_BEFORE_EXPIRY_S = 30
const DEFAULT_MAX_RETRY_WAIT_S = 10
const DEFAULT_RETRY_WAIT_S = 1

interface Received {
  token: EmbeddedToken
  /** Local clock: the broker's expiresIn counted from receipt, so client clock skew does not matter. */
  expiresAtMs: number
}

interface Cached extends Received {
  /** The Authorization header the token was obtained with (undefined for cookie sessions). */
  authorization: string | undefined
}

interface Flight {
  promise: Promise<Received>
  controller: AbortController
  /** Callers still waiting for it: when the last one gives up before the answer, nobody wants the token. */
  waiters: number
  settled: boolean
}

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

function clearedError (): TokenClientError {
  return new TokenClientError('cleared', 'The token request was cancelled by clear() (logout or user switch).')
}

/** Waits for a shared promise, but lets one caller stop waiting without cancelling it for others. */
async function waitFor<T> (promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return await promise
  signal.throwIfAborted()
  let onAbort = (): void => {}
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason)
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
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

export function createTokenClient (options: TokenClientOptions): TokenClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, '')
  const now = options.now ?? (() => Date.now())
  const doFetch: typeof fetch = options.fetch ?? (async (input, init) => await globalThis.fetch(input, init))
  const credentials = options.credentials ?? (options.getAuthorization === undefined ? 'include' : 'same-origin')
  const cacheEnabled = options.cache !== undefined && options.cache !== false
  const refreshBeforeExpiryMs = 1000 * (typeof options.cache === 'object' ? options.cache.refreshBeforeExpiryS ?? DEFAULT_REFRESH_BEFORE_EXPIRY_S : DEFAULT_REFRESH_BEFORE_EXPIRY_S)
  const retryEnabled = options.retry !== undefined && options.retry !== false
  const maxRetryWaitS = typeof options.retry === 'object' ? options.retry.maxWaitS ?? DEFAULT_MAX_RETRY_WAIT_S : DEFAULT_MAX_RETRY_WAIT_S

  // The cache holds one token per kind and Mangopay user (a handful of entries per session at
  // most), and the credential it is for: a new JWT replaces the entry rather than adding one.
  const cache = new Map<string, Cached>()
  // Keyed by the credential too, so two JWTs never share a request; entries leave as they settle.
  const inFlight = new Map<string, Flight>()
  // Bumped by clear(): a request started before it never writes to the cache.
  let generation = 0

  /**
   * The Authorization header for one token call. Read before the cache and shared requests are
   * looked up, since they are per credential. The credential stays in this closure: it is never
   * logged, and never put on a returned object or an error.
   */
  async function authorizationFor (startedIn: number): Promise<string | undefined> {
    let value: string | null | undefined
    try {
      value = await options.getAuthorization?.()
    } catch (err) {
      if (startedIn !== generation) throw clearedError()
      throw new TokenClientError('authorization_failed', 'getAuthorization() failed: there was no credential to send to the token broker.', { cause: err })
    }
    // clear() came while the credential was read: it may be the signed-out user's.
    if (startedIn !== generation) throw clearedError()
    if (typeof value !== 'string' || value === '') return undefined
    return /^bearer /i.test(value) ? value : `Bearer ${value}`
  }

  function headersFor (authorization: string | undefined, userId: string | undefined): Record<string, string> {
    // X-CSRF proves the request comes from script (SPEC §3.4); harmless with an Authorization header.
    const headers: Record<string, string> = { accept: 'application/json', 'x-csrf': '1' }
    if (authorization !== undefined) headers.authorization = authorization
    if (userId !== undefined) headers['content-type'] = 'application/json'
    return headers
  }

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
      const response = await doFetch(`${baseUrl}${PATHS[kind]}`, init)
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
    if (!retryEnabled || !(err instanceof TokenClientError) || (err.status !== 429 && err.status !== 503)) return undefined
    const waitS = err.retryAfter ?? DEFAULT_RETRY_WAIT_S
    return waitS <= maxRetryWaitS ? waitS * 1000 : undefined
  }

  // The retry sends the same credential: the request belongs to it (see `inFlight`).
  async function request (kind: TokenKind, userId: string | undefined, authorization: string | undefined, signal: AbortSignal): Promise<EmbeddedToken> {
    try {
      return await requestOnce(kind, userId, authorization, signal)
    } catch (err) {
      const delayMs = retryDelayMs(err)
      if (delayMs === undefined) throw err
      await sleep(delayMs, signal)
      return await requestOnce(kind, userId, authorization, signal)
    }
  }

  function start (kind: TokenKind, userId: string | undefined, authorization: string | undefined, slot: string, key: string): Flight {
    const controller = new AbortController()
    const startedIn = generation
    const promise = request(kind, userId, authorization, controller.signal).then((token) => {
      const received: Received = { token, expiresAtMs: now() + token.expiresIn * 1000 }
      if (cacheEnabled && startedIn === generation && received.expiresAtMs - refreshBeforeExpiryMs > now()) {
        cache.set(slot, { ...received, authorization })
      }
      return received
    }).finally(() => {
      flight.settled = true
      if (inFlight.get(key) === flight) inFlight.delete(key)
    })
    // Every caller may have stopped waiting; the outcome must not become an unhandled rejection.
    promise.catch(() => {})
    const flight: Flight = { promise, controller, waiters: 0, settled: false }
    inFlight.set(key, flight)
    return flight
  }

  /**
   * A caller stopped waiting. If it was the last one and no answer came yet, the request (or its
   * Retry-After wait) is cancelled: nobody would use the token. With the cache on it is left
   * to finish instead: the token is then kept for the next call (typically the same component
   * mounted again), so the request is not wasted, and the wait it may hold is capped by maxWaitS.
   * The check runs a task later, so a caller arriving in the same task (a remount right after the
   * unmount) still joins the request rather than starting another one.
   */
  function leave (flight: Flight, key: string): void {
    flight.waiters--
    if (cacheEnabled || flight.settled || flight.waiters > 0) return
    setTimeout(() => {
      if (flight.settled || flight.waiters > 0) return
      if (inFlight.get(key) === flight) inFlight.delete(key)
      flight.controller.abort()
    }, 0)
  }

  /** A copy, with the seconds left now: callers cannot alter what others get from the cache. */
  function view (received: Received): EmbeddedToken {
    return { ...received.token, expiresIn: Math.max(0, Math.floor((received.expiresAtMs - now()) / 1000)) }
  }

  async function token (kind: TokenKind, requestOptions: TokenRequestOptions = {}): Promise<EmbeddedToken> {
    const { userId, signal, forceRefresh = false } = requestOptions
    // Like fetch: a caller that has already given up gets nothing read, sent or minted.
    signal?.throwIfAborted()
    let authorization: string | undefined
    if (options.getAuthorization !== undefined) {
      const reading = authorizationFor(generation)
      // This caller may stop waiting first; the outcome must not become an unhandled rejection.
      reading.catch(() => {})
      authorization = await waitFor(reading, signal)
    }
    const slot = `${kind}\u0000${userId ?? ''}`
    if (cacheEnabled) {
      const cached = cache.get(slot)
      if (cached !== undefined && cached.authorization === authorization && !forceRefresh && cached.expiresAtMs - refreshBeforeExpiryMs > now()) return view(cached)
      cache.delete(slot)
    }
    const key = `${slot}\u0000${authorization ?? ''}`
    const flight = inFlight.get(key) ?? start(kind, userId, authorization, slot, key)
    flight.waiters++
    try {
      return view(await waitFor(flight.promise, signal))
    } finally {
      leave(flight, key)
    }
  }

  return {
    recipientsToken: async (requestOptions) => await token('recipients', requestOptions),
    checkoutToken: async (requestOptions) => await token('checkout', requestOptions),
    clear () {
      generation++
      cache.clear()
      for (const flight of inFlight.values()) flight.controller.abort()
      inFlight.clear()
    }
  }
}
