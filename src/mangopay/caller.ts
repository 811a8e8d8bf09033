import type { FastifyBaseLogger } from 'fastify'
import type { Dispatcher } from 'undici'
import type { Clock } from '../clock.js'
import type { CircuitSettings } from '../config/index.js'
import { BrokerError } from '../errors.js'
import { FailureCauseLog, hostPort, type Deadline } from '../upstream/index.js'
import { CircuitBreaker, type CircuitPermit, type CircuitTransition } from './circuit-breaker.js'
import type { QuotaTracker } from './quota.js'
import { MIN_ATTEMPT_MS, RetryBudget, RetryPolicy } from './retry.js'
import { postToMangopay, TransportError, upstreamTimeout, type UpstreamResponse } from './transport.js'
import { parseUpstreamError } from './upstream-errors.js'
import type { MangopayEndpoint, MangopayObserver } from './types.js'

const USER_AGENT = 'mangopay-token-broker/0.1'

export interface CallerOptions {
  pool: Dispatcher
  baseUrl: string
  timeoutMs: number
  retries: number
  circuit: CircuitSettings
  quota: QuotaTracker
  clock: Clock
  logger: FastifyBaseLogger
  observer: MangopayObserver
}

/**
 * The one way to Mangopay: every call gets the retry policy, and every attempt the guards
 * (deadline, quota reserve, circuit breaker) before anything is sent.
 */
export class MangopayCaller {
  readonly circuit: CircuitBreaker
  readonly #pool: Dispatcher
  readonly #basePath: string
  readonly #timeoutMs: number
  readonly #quota: QuotaTracker
  readonly #retry: RetryPolicy
  readonly #logger: FastifyBaseLogger
  readonly #observer: MangopayObserver
  readonly #host: string
  /** Why Mangopay fails, logged once per change; an opening circuit names the last cause. */
  readonly #causes: FailureCauseLog

  constructor (options: CallerOptions) {
    this.#pool = options.pool
    this.#basePath = new URL(options.baseUrl).pathname.replace(/\/+$/, '')
    this.#host = hostPort(options.baseUrl)
    this.#causes = new FailureCauseLog({ upstream: 'mangopay', label: 'Mangopay', log: options.logger })
    this.#timeoutMs = options.timeoutMs
    this.#quota = options.quota
    this.#logger = options.logger
    this.#observer = options.observer
    this.#retry = new RetryPolicy({ maxRetries: options.retries, budget: new RetryBudget() })
    this.circuit = new CircuitBreaker({
      ...options.circuit,
      clock: options.clock,
      onTransition: transition => {
        this.#logCircuitTransition(transition, options.circuit.cooldownMs)
        this.#observer.call({ type: 'circuit', transition })
      }
    })
  }

  post (endpoint: MangopayEndpoint, path: string, headers: Record<string, string>, body: string, deadline: Deadline): Promise<UpstreamResponse> {
    return this.#retry.run(() => this.#attempt(endpoint, path, headers, body, deadline), {
      deadline,
      onRetry: (retry, reason, delayMs) => {
        this.#logger.warn({ mangopay: { endpoint, retry, reason, delayMs } }, 'retrying a failed Mangopay call')
        this.#observer.call({ type: 'retry', endpoint, reason })
      },
      onSkipped: (why, reason) => {
        if (why === 'budget') this.#logger.warn({ mangopay: { endpoint, reason } }, 'Mangopay call not retried: the retry budget is spent')
        this.#observer.call({ type: 'retry_skipped', endpoint, why })
      }
    })
  }

  /** The guards' refusal, if any, before anything is spent on a call (a user's budget, a bearer fetch). */
  assertCallable (endpoint: MangopayEndpoint): void {
    this.#quota.assertCallAllowed()
    if (this.circuit.state === 'open') throw this.#circuitRefusal(endpoint)
  }

  /** Not started when too little of the caller's budget is left to finish: it could only spend quota. */
  async #attempt (endpoint: MangopayEndpoint, path: string, headers: Record<string, string>, body: string, deadline: Deadline): Promise<UpstreamResponse> {
    const started = performance.now()
    const budgetMs = deadline.at - started
    if (deadline.aborted || budgetMs < MIN_ATTEMPT_MS) throw upstreamTimeout()
    this.#quota.assertCallAllowed()
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
      // A timeout counts against Mangopay only when the attempt had at least half of
      // MANGOPAY_TIMEOUT_MS: one cut short by the caller's budget says nothing of its health.
      const failure = transport && (err.code !== 'upstream_timeout' || budgetMs >= this.#timeoutMs / 2)
      // Noted first: settling may open the circuit, whose line names this cause.
      if (failure) this.#causes.failed({ code: err.code === 'upstream_timeout' && !err.transportCode.startsWith('UND_ERR_') ? 'timeout' : err.transportCode, host: this.#host })
      permit.settle(failure ? 'failure' : 'ignored')
      if (transport) this.#observer.call({ type: 'failed', endpoint, failure: err.code === 'upstream_timeout' ? 'timeout' : 'network', durationMs: performance.now() - started })
      throw err
    }
    // Any answer but a 5xx shows Mangopay is up (a 4xx is about the request, a 429 about the quota).
    this.#noteAnswer(endpoint, response.status)
    permit.settle(response.status >= 500 ? 'failure' : 'success')
    this.#observer.response(endpoint, response.status, performance.now() - started)
    this.#quota.observe(response.status, response.headers)
    if (response.status === 429) {
      // Its error Id is for support (SPEC §4); this answer gets the pause's refusal.
      this.#logger.warn({ mangopay: parseUpstreamError(endpoint, 429, response.text) }, 'Mangopay answered 429: its rate limit is reached')
      this.#quota.assertCallAllowed()
    }
    return response
  }

  // A 5xx, or OAuth refusing the credentials, is a cause to fix; any other answer shows Mangopay is back.
  #noteAnswer (endpoint: MangopayEndpoint, status: number): void {
    const refused = endpoint === 'oauth' && (status === 400 || status === 401 || status === 403)
    if (status >= 500 || refused) this.#causes.failed({ status, host: this.#host })
    else this.#causes.recovered()
  }

  #admit (endpoint: MangopayEndpoint): CircuitPermit {
    const permit = this.circuit.tryAcquire()
    if (permit !== undefined) return permit
    this.#observer.call({ type: 'circuit_rejected', endpoint })
    throw this.#circuitRefusal(endpoint)
  }

  #circuitRefusal (endpoint: MangopayEndpoint): BrokerError {
    return new BrokerError('upstream_unavailable', 'Mangopay is failing; the broker is not calling it for a short while. Try again later.', {
      retryAfterS: Math.max(1, this.circuit.retryAfterMs() / 1000),
      logFields: { mangopay: { endpoint, circuit: this.circuit.state } }
    })
  }

  #logCircuitTransition (transition: CircuitTransition, cooldownMs: number): void {
    const lastCause = this.#causes.last
    const circuit = { ...transition, cooldownMs, ...(transition.to === 'open' && lastCause !== undefined ? { lastCause } : {}) }
    if (transition.to === 'open') this.#logger.error({ circuit }, 'Mangopay circuit opened: token requests fail fast until a probe succeeds')
    else if (transition.to === 'half_open') this.#logger.warn({ circuit }, 'Mangopay circuit half-open: the next call probes Mangopay')
    else this.#logger.info({ circuit }, 'Mangopay circuit closed: calls flow again')
  }
}
