import type { Clock } from '../clock.js'
import { withDeadline, withinDeadline, type Deadline } from '../upstream/index.js'
import type { BearerStore } from './bearer-store.js'
import type { MangopayCaller } from './caller.js'
import { checkEmbeddedTokenResponse } from './schemas.js'
import type { EmbeddedTokenReuse } from './token-reuse.js'
import type { CallSpan } from './trace.js'
import { upstreamTimeout, type UpstreamResponse } from './transport.js'
import { invalidAnswer, parseAnswer, parseUpstreamError, upstreamError } from './upstream-errors.js'
import type { CallOptions, EmbeddedKind, EmbeddedToken, SecretSink } from './types.js'

export interface EmbeddedTokensOptions {
  clientId: string
  timeoutMs: number
  caller: MangopayCaller
  bearers: BearerStore
  clock: Clock
  /** With EMBEDDED_TOKEN_REUSE_MIN_TTL_S: still-valid tokens are handed again. */
  reuse: EmbeddedTokenReuse | undefined
  /** Told of each bearer sent and token minted (log scrubbing). */
  secrets: SecretSink
}

const timedOut = (): Error => upstreamTimeout()

/** The embedded-token exchange (SPEC §1, step 2), with the one re-authentication SPEC §4 allows. */
export class EmbeddedTokens {
  readonly #options: EmbeddedTokensOptions

  constructor (options: EmbeddedTokensOptions) {
    this.#options = options
  }

  mint (kind: EmbeddedKind, userId: string, options: CallOptions): Promise<EmbeddedToken> {
    const { reuse, timeoutMs } = this.#options
    if (reuse === undefined) return this.#traced(kind, userId, options)
    // Shared by every request for this user and kind, so it has its own deadline rather than the
    // first request's; each request waits for it within its own.
    const mintShared = (): Promise<EmbeddedToken> => withDeadline(timeoutMs, deadline => this.#traced(kind, userId, { ...options, deadline }))
    return withinDeadline(reuse.get(kind, userId, mintShared), options.deadline, timedOut)
  }

  /** The mint's span (no user id in it), under the request's; the calls it makes carry it. */
  #traced (kind: EmbeddedKind, userId: string, options: CallOptions): Promise<EmbeddedToken> {
    const span = options.trace?.child('mangopay.embedded_token', { 'mangopay.endpoint': kind, 'http.request.method': 'POST' }, 'client')
    if (span === undefined) return this.#mint(kind, userId, options, undefined)
    return this.#mint(kind, userId, options, span).then(
      token => {
        span.end()
        return token
      },
      (err: unknown) => {
        span.fail(err)
        span.end()
        throw err
      })
  }

  /**
   * A 401 drops the bearer, re-authenticates once and retries once; a second 401 is
   * `upstream_auth_failed`. A 401 on the bearer that replaced a refused one seconds ago is
   * `upstream_auth_failed` at once: another would be refused too (bearer-store.ts, YOUNG_BEARER_MS).
   */
  async #mint (kind: EmbeddedKind, userId: string, options: CallOptions, span: CallSpan | undefined): Promise<EmbeddedToken> {
    const { bearers, clock, clientId } = this.#options
    const body = JSON.stringify({ clientId, claims: { userId } })
    const traceHeaders = span?.headers()
    if (options.beforeMint !== undefined) {
      // A refusal the guards would give anyway must not cost the caller its budget.
      this.#options.caller.assertCallable(kind)
      await options.beforeMint()
    }
    let bearer = bearers.usable() ?? await withinDeadline(bearers.current(span), options.deadline, timedOut)
    let sentAt = clock.now()
    let response = await this.#post(kind, bearer, body, options.deadline, traceHeaders)
    if (response.status === 401) {
      const refusal = { mangopay: parseUpstreamError(kind, 401, response.text) }
      if (bearers.isYoung(bearer, sentAt, kind)) {
        // Kept: dropping it would make the next request fetch another, and so on for each.
        options.log.warn(refusal, 'Mangopay refused the bearer that replaced a refused one seconds ago; not re-authenticating, another would be refused too')
      } else {
        options.log.warn(refusal, 'Mangopay refused the bearer; re-authenticating once')
        bearers.invalidate(bearer, sentAt)
        bearer = await withinDeadline(bearers.current(span), options.deadline, timedOut)
        sentAt = clock.now()
        response = await this.#post(kind, bearer, body, options.deadline, traceHeaders)
      }
    }
    span?.setAttribute('http.response.status_code', response.status)
    if (response.status !== 200) throw upstreamError(kind, response)
    bearers.accepted(bearer, kind)
    const parsed = parseAnswer(kind, response.text)
    if (!checkEmbeddedTokenResponse.Check(parsed)) throw invalidAnswer(kind)
    this.#options.secrets.token(parsed.access_token)
    return { accessToken: parsed.access_token, tokenType: 'Bearer', expiresInS: parsed.expires_in, scope: parsed.scope ?? '', issuedAt: sentAt }
  }

  #post (kind: EmbeddedKind, bearer: string, body: string, deadline: Deadline, traceHeaders: Record<string, string> | undefined): Promise<UpstreamResponse> {
    // A bearer from another instance (REDIS_URL) was never fetched here.
    this.#options.secrets.bearer(bearer)
    return this.#options.caller.post(kind, `/v2.01/oauth/token/embedded/${kind}`, {
      authorization: `Bearer ${bearer}`,
      'content-type': 'application/json',
      accept: 'application/json',
      ...traceHeaders
    }, body, deadline)
  }
}
