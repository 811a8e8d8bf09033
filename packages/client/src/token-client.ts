import { clearedError, TokenClientError } from './errors.js'
import { startKeeper, type Keeper, type Received } from './keep-fresh.js'
import type { EmbeddedToken, TokenClient, TokenClientOptions, TokenKind, TokenRequestOptions } from './options.js'
import { createRequester } from './request.js'

const DEFAULT_REFRESH_BEFORE_EXPIRY_S = 30
const DEFAULT_MAX_RETRY_WAIT_S = 10

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

export function createTokenClient (options: TokenClientOptions): TokenClient {
  const now = options.now ?? (() => Date.now())
  const cacheEnabled = options.cache !== undefined && options.cache !== false
  const refreshBeforeExpiryMs = 1000 * (typeof options.cache === 'object' ? options.cache.refreshBeforeExpiryS ?? DEFAULT_REFRESH_BEFORE_EXPIRY_S : DEFAULT_REFRESH_BEFORE_EXPIRY_S)
  const retryEnabled = options.retry !== undefined && options.retry !== false
  const request = createRequester({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    credentials: options.credentials ?? (options.getAuthorization === undefined ? 'include' : 'same-origin'),
    fetch: options.fetch ?? (async (input, init) => await globalThis.fetch(input, init)),
    now,
    maxRetryWaitS: !retryEnabled ? undefined : typeof options.retry === 'object' ? options.retry.maxWaitS ?? DEFAULT_MAX_RETRY_WAIT_S : DEFAULT_MAX_RETRY_WAIT_S
  })

  // The cache holds one token per kind and Mangopay user (a handful of entries per session at
  // most), and the credential it is for: a new JWT replaces the entry rather than adding one.
  const cache = new Map<string, Cached>()
  // Keyed by the credential too, so two JWTs never share a request; entries leave as they settle.
  const inFlight = new Map<string, Flight>()
  // Bumped by clear(): a request started before it never writes to the cache.
  let generation = 0
  // Running keepFresh loops, so clear() can stop them; each leaves the set when it stops.
  const keepers = new Set<Keeper>()

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

  /**
   * A token for one caller. `newerThanMs` (keepFresh's refreshes) takes a cached token only if it
   * outlives the one the caller holds, so keepers of the same kind and user share one refresh.
   */
  async function acquire (kind: TokenKind, requestOptions: TokenRequestOptions, newerThanMs = 0): Promise<Received> {
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
      if (cached !== undefined && cached.authorization === authorization && !forceRefresh && cached.expiresAtMs > newerThanMs && cached.expiresAtMs - refreshBeforeExpiryMs > now()) return cached
      cache.delete(slot)
    }
    const key = `${slot}\u0000${authorization ?? ''}`
    const flight = inFlight.get(key) ?? start(kind, userId, authorization, slot, key)
    flight.waiters++
    try {
      return await waitFor(flight.promise, signal)
    } finally {
      leave(flight, key)
    }
  }

  async function token (kind: TokenKind, requestOptions: TokenRequestOptions = {}): Promise<EmbeddedToken> {
    return view(await acquire(kind, requestOptions))
  }

  return {
    recipientsToken: async (requestOptions) => await token('recipients', requestOptions),
    checkoutToken: async (requestOptions) => await token('checkout', requestOptions),
    keepFresh (kind, onToken, keepOptions = {}) {
      const keeper = startKeeper({
        onToken,
        options: keepOptions,
        now,
        acquire: async (signal, newerThanMs) => await acquire(kind, { userId: keepOptions.userId, signal }, newerThanMs),
        view,
        stopped: () => keepers.delete(keeper)
      })
      if (keeper.running) keepers.add(keeper)
      return keeper.stop
    },
    clear () {
      generation++
      cache.clear()
      // Before the requests are cancelled: each keeper reports `cleared` once, not once per request.
      for (const keeper of keepers) keeper.cleared()
      for (const flight of inFlight.values()) flight.controller.abort()
      inFlight.clear()
    }
  }
}
