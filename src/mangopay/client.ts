import type { Dispatcher } from 'undici'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../clock.js'
import type { MangopayConfig } from '../config.js'
import { BrokerError } from '../errors.js'
import { BearerStore, type BearerEvent, type BearerGrant } from './bearer-store.js'
import { postToMangopay, type UpstreamResponse } from './http.js'
import { checkEmbeddedTokenResponse, checkOAuthTokenResponse } from './schemas.js'
import type { QuotaTracker } from './quota.js'
import { errorForUpstreamStatus, parseUpstreamError, type MangopayEndpoint } from './upstream-errors.js'

export type EmbeddedKind = 'recipient' | 'checkout'

export interface EmbeddedToken {
  accessToken: string
  tokenType: 'Bearer'
  expiresInS: number
  scope: string
  /** When the request that minted it left: Mangopay's clock starts no earlier, so expiry is never overstated. */
  issuedAt: number
}

export interface MangopayClientOptions {
  config: MangopayConfig
  pool: Dispatcher
  clock: Clock
  logger: FastifyBaseLogger
  /** Every Mangopay answer, for the quota tracker and metrics. */
  onResponse?: (endpoint: MangopayEndpoint, status: number, headers: IncomingHttpHeaders, durationMs: number) => void
  onBearerEvent?: (event: BearerEvent) => void
  /** Keeps the platform's share of Mangopay's quota: consulted before, and fed after, every call. */
  quota: QuotaTracker
}

export interface CallOptions {
  /** The browser request's overall deadline. */
  signal: AbortSignal
  log: FastifyBaseLogger
}

const USER_AGENT = 'mangopay-token-broker/0.1'

/** Waits for `promise`, but gives up when `signal` aborts (the promise itself goes on for others). */
async function withinDeadline<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw new BrokerError('upstream_timeout', 'Mangopay did not answer in time.')
  let onAbort: () => void = () => {}
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new BrokerError('upstream_timeout', 'Mangopay did not answer in time.'))
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/**
 * The Mangopay side of the broker: the only holder of the API key. It keeps one bearer alive
 * and exchanges it for per-user embedded tokens.
 */
export class MangopayClient {
  readonly bearers: BearerStore
  readonly #config: MangopayConfig
  readonly #pool: Dispatcher
  readonly #clock: Clock
  readonly #logger: FastifyBaseLogger
  readonly #basePath: string
  readonly #onResponse: NonNullable<MangopayClientOptions['onResponse']>
  readonly quota: QuotaTracker
  #basicCredentials: string

  constructor (options: MangopayClientOptions) {
    this.#config = options.config
    this.#pool = options.pool
    this.#clock = options.clock
    this.#logger = options.logger
    this.#basePath = new URL(options.config.baseUrl).pathname.replace(/\/+$/, '')
    this.#onResponse = options.onResponse ?? (() => {})
    this.quota = options.quota
    this.#basicCredentials = Buffer.from(`${options.config.clientId}:${options.config.apiKey}`).toString('base64')
    this.bearers = new BearerStore({
      clock: options.clock,
      fetchBearer: async () => await this.#fetchBearer(),
      onEvent: event => {
        this.#logBearerEvent(event)
        options.onBearerEvent?.(event)
      }
    })
  }

  /** Key rotation: the next bearer is fetched with this key; the current one serves until then. */
  setApiKey (apiKey: string): void {
    this.#basicCredentials = Buffer.from(`${this.#config.clientId}:${apiKey}`).toString('base64')
  }

  /**
   * Mints a Recipients or Checkout token for `userId`. A 401 drops the bearer, re-authenticates
   * once and retries once; a second 401 is `upstream_auth_failed`. Never a loop.
   */
  async mintEmbeddedToken (kind: EmbeddedKind, userId: string, options: CallOptions): Promise<EmbeddedToken> {
    const body = JSON.stringify({ clientId: this.#config.clientId, claims: { userId } })
    let bearer = await withinDeadline(this.bearers.current(), options.signal)
    let sentAt = this.#clock.now()
    let response = await this.#postEmbedded(kind, bearer, body, options.signal)
    if (response.status === 401) {
      options.log.warn({ mangopay: parseUpstreamError(kind, 401, response.text) }, 'Mangopay refused the bearer; re-authenticating once')
      this.bearers.invalidate(bearer)
      bearer = await withinDeadline(this.bearers.current(), options.signal)
      sentAt = this.#clock.now()
      response = await this.#postEmbedded(kind, bearer, body, options.signal)
    }
    if (response.status !== 200) {
      throw this.#upstreamError(kind, response)
    }
    const parsed = this.#parseJson(kind, response.text)
    if (!checkEmbeddedTokenResponse.Check(parsed)) {
      throw new BrokerError('upstream_error', 'Mangopay returned an invalid token response.', { logFields: { mangopay: { endpoint: kind, status: 200, invalid: 'schema' } } })
    }
    return {
      accessToken: parsed.access_token,
      tokenType: 'Bearer',
      expiresInS: parsed.expires_in,
      scope: parsed.scope ?? '',
      issuedAt: sentAt
    }
  }

  async #postEmbedded (kind: EmbeddedKind, bearer: string, body: string, signal: AbortSignal): Promise<UpstreamResponse> {
    return await this.#post(kind, `/v2.01/oauth/token/embedded/${kind}`, {
      authorization: `Bearer ${bearer}`,
      'content-type': 'application/json',
      accept: 'application/json'
    }, body, signal)
  }

  async #fetchBearer (): Promise<BearerGrant> {
    // Shared by every waiter, so it has its own deadline rather than any one request's.
    const signal = AbortSignal.timeout(this.#config.timeoutMs)
    const response = await this.#post('oauth', '/v2.01/oauth/token', {
      authorization: `Basic ${this.#basicCredentials}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json'
    }, 'grant_type=client_credentials', signal)
    if (response.status !== 200) {
      const error = this.#upstreamError('oauth', response)
      this.#logger.error({ mangopay: error.logFields?.mangopay }, 'Mangopay OAuth token request failed')
      throw error
    }
    const parsed = this.#parseJson('oauth', response.text)
    if (!checkOAuthTokenResponse.Check(parsed)) {
      throw new BrokerError('upstream_error', 'Mangopay returned an invalid OAuth response.', { logFields: { mangopay: { endpoint: 'oauth', status: 200, invalid: 'schema' } } })
    }
    return { accessToken: parsed.access_token, expiresIn: parsed.expires_in }
  }

  async #post (endpoint: MangopayEndpoint, path: string, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<UpstreamResponse> {
    this.quota.assertCallAllowed()
    const started = performance.now()
    const response = await postToMangopay(this.#pool, {
      endpoint,
      path: this.#basePath + path,
      headers: { ...headers, 'user-agent': USER_AGENT },
      body,
      signal
    })
    this.#onResponse(endpoint, response.status, response.headers, performance.now() - started)
    this.quota.observe(response.status, response.headers)
    // A 429 blocks further calls until Mangopay's window resets; this answer gets the same refusal.
    if (response.status === 429) this.quota.assertCallAllowed()
    return response
  }

  #parseJson (endpoint: MangopayEndpoint, text: string): unknown {
    try {
      return JSON.parse(text)
    } catch {
      throw new BrokerError('upstream_error', 'Mangopay returned a malformed response.', { logFields: { mangopay: { endpoint, status: 200, invalid: 'json' } } })
    }
  }

  #upstreamError (endpoint: MangopayEndpoint, response: UpstreamResponse): BrokerError {
    const info = parseUpstreamError(endpoint, response.status, response.text)
    return errorForUpstreamStatus(info)
  }

  #logBearerEvent (event: BearerEvent): void {
    if (event.type === 'refreshed') {
      this.#logger.info({ bearer: { lifetimeS: event.lifetimeS, background: event.background, clamped: event.clamped } }, 'Mangopay bearer obtained')
    } else if (event.type === 'refresh_failed') {
      const err = event.error as BrokerError
      this.#logger.warn({ bearer: { background: event.background, code: err.code ?? 'error' } }, 'Mangopay bearer refresh failed')
    } else {
      this.#logger.info('Mangopay bearer dropped after a 401')
    }
  }
}
