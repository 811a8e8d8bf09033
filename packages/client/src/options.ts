import type { MangopayEnvironment, TokenAnswer } from '../../../src/wire.js'
import type { TokenClientError } from './errors.js'

export type { MangopayEnvironment }

/** The broker's answer (SPEC §2), its own type: spread it into the Mangopay SDK options. */
export type EmbeddedToken = TokenAnswer

export type TokenKind = 'recipients' | 'checkout'

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

export interface KeepFreshOptions {
  /** Only when the session is linked to several Mangopay users: which one (SPEC §3.3). */
  userId?: string
  /** Stops it, like the returned function. Already aborted: nothing is fetched. */
  signal?: AbortSignal
  /**
   * No valid token now, or none before the current one expires. `stopped` is true when retrying
   * cannot fix it (signed out, forbidden user, `clear()`…); otherwise it goes on trying.
   */
  onError?: (error: TokenClientError, state: { stopped: boolean }) => void
}

export interface TokenClient {
  /** A Recipients token (Mangopay Elements). */
  recipientsToken (options?: TokenRequestOptions): Promise<EmbeddedToken>
  /** A Checkout token (Checkout SDK, PayPal One-Click). */
  checkoutToken (options?: TokenRequestOptions): Promise<EmbeddedToken>
  /**
   * Gets a token, hands it to `onToken`, and hands a new one before it expires: 60 s ahead, but
   * never before half its life. Failures are retried with backoff (Retry-After honoured). After a
   * sleep or a hidden tab, a token that is due is fetched at once. Returns the function that stops it.
   */
  keepFresh (kind: TokenKind, onToken: (token: EmbeddedToken) => void, options?: KeepFreshOptions): () => void
  /**
   * Logout or user switch: drops every cached token, cancels requests in flight (their callers
   * get a `cleared` error) and stops every keepFresh (each told once through `onError`); nothing
   * started before this call can fill the cache again.
   */
  clear (): void
}
