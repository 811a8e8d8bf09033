import type { Dispatcher } from 'undici'
import type { Redis } from 'ioredis'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../clock.js'
import type { MangopayConfig } from '../config/index.js'
import { BrokerError } from '../errors.js'
import { BearerStore, type BearerEvent, type BearerGrant } from './bearer-store.js'
import { postToMangopay, TransportError, upstreamTimeout, withinDeadline, type UpstreamResponse } from './transport.js'
import { CircuitBreaker, type CircuitPermit, type CircuitTransition } from './circuit-breaker.js'
import { MIN_ATTEMPT_MS, RetryBudget, RetryPolicy, type RetryReason, type RetrySkipped } from './retry.js'
import { EmbeddedTokenReuse } from './token-reuse.js'
import { checkEmbeddedTokenResponse, checkOAuthTokenResponse } from './schemas.js'
import type { QuotaTracker } from './quota.js'
import { RedisSharedBearers } from './shared-bearer.js'
import { errorForUpstreamStatus, parseUpstreamError, type MangopayEndpoint } from './upstream-errors.js'
import { withDeadline, type Deadline } from '../upstream/deadline.js'

export type EmbeddedKind = 'recipient' | 'checkout'

export interface EmbeddedToken {
  accessToken: string
  tokenType: 'Bearer'
  expiresInS: number
  scope: string
  /** When the request that minted it left: Mangopay's clock starts no earlier, so expiry is never overstated. */
  issuedAt: number
  /** Set when reuse is on: true when this token was handed out before (or minted by a concurrent request). */
  reused?: boolean
}

/** What the resilience policy did, for metrics (the client logs it too). */
export type CallEvent =
  | { type: 'failed', endpoint: MangopayEndpoint, failure: 'timeout' | 'network', durationMs: number }
  | { type: 'retry', endpoint: MangopayEndpoint, reason: RetryReason }
  | { type: 'retry_skipped', endpoint: MangopayEndpoint, why: RetrySkipped }
  | { type: 'circuit', transition: CircuitTransition }
  | { type: 'circuit_rejected', endpoint: MangopayEndpoint }

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
  onCallEvent?: (event: CallEvent) => void
  /** REDIS_URL: the bearer (encrypted with a key derived from the API key) is shared by every instance. */
  redis?: Redis | undefined
}

export interface CallOptions {
  /** The browser request's overall deadline: no retry starts that cannot finish before it. */
  deadline: Deadline
  log: FastifyBaseLogger
}

const USER_AGENT = 'mangopay-token-broker/0.1'

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
  readonly circuit: CircuitBreaker
  readonly #retry: RetryPolicy
  readonly #reuse: EmbeddedTokenReuse | undefined
  readonly #onCallEvent: NonNullable<MangopayClientOptions['onCallEvent']>
  #basicCredentials: string
  /** An embedded token request's body up to the user id: the same for every request. */
  readonly #embeddedBodyStart: string
  readonly #sharedBearers: RedisSharedBearers | undefined

  constructor (options: MangopayClientOptions) {
    this.#config = options.config
    this.#pool = options.pool
    this.#clock = options.clock
    this.#logger = options.logger
    this.#basePath = new URL(options.config.baseUrl).pathname.replace(/\/+$/, '')
    this.#onResponse = options.onResponse ?? (() => {})
    this.quota = options.quota
    this.#onCallEvent = options.onCallEvent ?? (() => {})
    this.circuit = new CircuitBreaker({
      ...options.config.circuit,
      clock: options.clock,
      onTransition: transition => {
        this.#logCircuitTransition(transition)
        this.#onCallEvent({ type: 'circuit', transition })
      }
    })
    this.#retry = new RetryPolicy({ maxRetries: options.config.retries, budget: new RetryBudget() })
    this.#reuse = options.config.reuseMinTtlS > 0 ? new EmbeddedTokenReuse({ clock: options.clock, minTtlS: options.config.reuseMinTtlS }) : undefined
    this.#basicCredentials = Buffer.from(`${options.config.clientId}:${options.config.apiKey}`).toString('base64')
    this.#embeddedBodyStart = `{"clientId":${JSON.stringify(options.config.clientId)},"claims":{"userId":`
    this.#sharedBearers = options.redis === undefined
      ? undefined
      : new RedisSharedBearers({ redis: options.redis, clock: options.clock, log: options.logger, clientId: options.config.clientId, baseUrl: options.config.baseUrl, apiKey: options.config.apiKey, timeoutMs: options.config.timeoutMs })
    this.bearers = new BearerStore({
      clock: options.clock,
      shared: this.#sharedBearers,
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
    this.#sharedBearers?.setApiKey(apiKey)
  }

  /**
   * A Recipients or Checkout token for `userId`: minted now, or, with reuse on, one still valid
   * long enough or being minted for the same user and kind.
   */
  mintEmbeddedToken (kind: EmbeddedKind, userId: string, options: CallOptions): Promise<EmbeddedToken> {
    // Not async: the promise of #mint (or of withinDeadline) is handed on, without one more
    // promise and tick per token on the hot path. Neither call can throw synchronously.
    if (this.#reuse === undefined) return this.#mint(kind, userId, options)
    // Shared by every request for this user and kind, so it has its own deadline rather than the
    // first request's (which may be nearly spent); each request waits for it within its own.
    const mintShared = (): Promise<EmbeddedToken> => withDeadline(this.#config.timeoutMs, deadline => this.#mint(kind, userId, { ...options, deadline }))
    return withinDeadline(this.#reuse.get(kind, userId, mintShared), options.deadline)
  }

  /**
   * A 401 drops the bearer, re-authenticates once and retries once; a second 401 is
   * `upstream_auth_failed`. Never a loop: a 401 on the bearer that replaced a refused one,
   * obtained seconds ago, is `upstream_auth_failed` at once, since another would be refused too
   * (YOUNG_BEARER_MS).
   */
  async #mint (kind: EmbeddedKind, userId: string, options: CallOptions): Promise<EmbeddedToken> {
    // JSON.stringify({ clientId, claims: { userId } }), with only the user id left to encode.
    const body = `${this.#embeddedBodyStart}${JSON.stringify(userId)}}}`
    // Nearly always a bearer is held: no waiting, no race with the deadline.
    let bearer = this.bearers.usable() ?? await withinDeadline(this.bearers.current(), options.deadline)
    let sentAt = this.#clock.now()
    let response = await this.#postEmbedded(kind, bearer, body, options)
    if (response.status === 401) {
      const refusal = { mangopay: parseUpstreamError(kind, 401, response.text) }
      if (this.bearers.isYoung(bearer, sentAt, kind)) {
        // Kept: dropping it would make the next request fetch another, and so on for each.
        options.log.warn(refusal, 'Mangopay refused the bearer that replaced a refused one seconds ago; not re-authenticating, another would be refused too')
      } else {
        options.log.warn(refusal, 'Mangopay refused the bearer; re-authenticating once')
        this.bearers.invalidate(bearer, sentAt)
        bearer = await withinDeadline(this.bearers.current(), options.deadline)
        sentAt = this.#clock.now()
        response = await this.#postEmbedded(kind, bearer, body, options)
      }
    }
    if (response.status !== 200) {
      throw this.#upstreamError(kind, response)
    }
    this.bearers.accepted(bearer, kind)
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

  #postEmbedded (kind: EmbeddedKind, bearer: string, body: string, options: CallOptions): Promise<UpstreamResponse> {
    return this.#post(kind, `/v2.01/oauth/token/embedded/${kind}`, {
      authorization: `Bearer ${bearer}`,
      'content-type': 'application/json',
      accept: 'application/json'
    }, body, options.deadline)
  }

  async #fetchBearer (): Promise<BearerGrant> {
    // Shared by every waiter, so it has its own deadline rather than any one request's.
    const response = await withDeadline(this.#config.timeoutMs, deadline => this.#post('oauth', '/v2.01/oauth/token', {
      authorization: `Basic ${this.#basicCredentials}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json'
    }, 'grant_type=client_credentials', deadline))
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

  /** The one way to Mangopay: every call gets the retry policy, and every attempt the guards. */
  #post (endpoint: MangopayEndpoint, path: string, headers: Record<string, string>, body: string, deadline: Deadline): Promise<UpstreamResponse> {
    return this.#retry.run(() => this.#attempt(endpoint, path, headers, body, deadline), {
      deadline,
      onRetry: (retry, reason, delayMs) => {
        this.#logger.warn({ mangopay: { endpoint, retry, reason, delayMs } }, 'retrying a failed Mangopay call')
        this.#onCallEvent({ type: 'retry', endpoint, reason })
      },
      onSkipped: (why, reason) => {
        if (why === 'budget') this.#logger.warn({ mangopay: { endpoint, reason } }, 'Mangopay call not retried: the retry budget is spent')
        this.#onCallEvent({ type: 'retry_skipped', endpoint, why })
      }
    })
  }

  /**
   * One attempt. It is not started when too little of the caller's budget is left for it to
   * finish (say, after a slow bearer fetch): it could only spend quota. The quota guard and the
   * circuit may refuse it too before Mangopay is called.
   */
  async #attempt (endpoint: MangopayEndpoint, path: string, headers: Record<string, string>, body: string, deadline: Deadline): Promise<UpstreamResponse> {
    const started = performance.now()
    const budgetMs = deadline.at - started
    if (deadline.aborted || budgetMs < MIN_ATTEMPT_MS) throw upstreamTimeout()
    this.quota.assertCallAllowed()
    const permit = this.#admit(endpoint)
    let response: UpstreamResponse
    try {
      response = await postToMangopay(this.#pool, {
        endpoint,
        path: this.#basePath + path,
        headers: { ...headers, 'user-agent': USER_AGENT },
        body,
        deadline
      })
    } catch (err) {
      const transport = err instanceof TransportError
      // A timeout is held against Mangopay only when the attempt had at least half of
      // MANGOPAY_TIMEOUT_MS: one cut short by what was left of the caller's budget says nothing
      // of Mangopay's health, and must not open the circuit for everyone.
      const failure = transport && (err.code !== 'upstream_timeout' || budgetMs >= this.#config.timeoutMs / 2)
      permit.settle(failure ? 'failure' : 'ignored')
      if (transport) this.#onCallEvent({ type: 'failed', endpoint, failure: err.code === 'upstream_timeout' ? 'timeout' : 'network', durationMs: performance.now() - started })
      throw err
    }
    // Any answer but a 5xx shows Mangopay is up (a 4xx is about the request, a 429 about the quota).
    permit.settle(response.status >= 500 ? 'failure' : 'success')
    this.#onResponse(endpoint, response.status, response.headers, performance.now() - started)
    this.quota.observe(response.status, response.headers)
    // A 429 blocks further calls until Mangopay's window resets; this answer gets the same refusal.
    if (response.status === 429) {
      // Its error Id is for support (SPEC §4); 429s are rare, since none follows until the reset.
      this.#logger.warn({ mangopay: parseUpstreamError(endpoint, 429, response.text) }, 'Mangopay answered 429: its rate limit is reached')
      this.quota.assertCallAllowed()
    }
    return response
  }

  #admit (endpoint: MangopayEndpoint): CircuitPermit {
    const permit = this.circuit.tryAcquire()
    if (permit !== undefined) return permit
    this.#onCallEvent({ type: 'circuit_rejected', endpoint })
    throw new BrokerError('upstream_unavailable', 'Mangopay is failing; the broker is not calling it for a short while. Try again later.', {
      retryAfterS: Math.max(1, this.circuit.retryAfterMs() / 1000),
      logFields: { mangopay: { endpoint, circuit: this.circuit.state } }
    })
  }

  #logCircuitTransition (transition: CircuitTransition): void {
    const circuit = { ...transition, cooldownMs: this.#config.circuit.cooldownMs }
    if (transition.to === 'open') this.#logger.error({ circuit }, 'Mangopay circuit opened: token requests fail fast until a probe succeeds')
    else if (transition.to === 'half_open') this.#logger.warn({ circuit }, 'Mangopay circuit half-open: the next call probes Mangopay')
    else this.#logger.info({ circuit }, 'Mangopay circuit closed: calls flow again')
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
