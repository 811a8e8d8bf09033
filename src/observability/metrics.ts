import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { BudgetRefusal } from '../limits/index.js'
import { reserveFloor, type BearerEvent, type CallEvent, type CircuitState, type EmbeddedKind, type Mangopay, type MangopayEndpoint, type MangopayObserver } from '../mangopay/index.js'
import { listenForOperations, type DetailedReadiness } from './ops-listener.js'

/**
 * Prometheus metrics (SPEC §5), in a registry of the app's own (tests run several apps). Labels
 * are low-cardinality by construction: never a user id, a token or a URL as sent.
 */

const TOKEN_ROUTES: Record<string, EmbeddedKind> = {
  '/v1/tokens/recipients': 'recipient',
  '/v1/tokens/checkout': 'checkout'
}

const CIRCUIT_VALUES: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 }

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

/** What the collectors read at scrape time. */
export type MetricsSources = Pick<Mangopay, 'circuitState' | 'quota' | 'certificateExpiresAt'>

export class BrokerMetrics implements MangopayObserver {
  readonly registry = new Registry()
  readonly tokensIssued: Counter<'kind'>
  readonly tokensRefused: Counter<'kind' | 'code'>
  readonly httpDuration: Histogram<'method' | 'route' | 'status_class'>
  readonly mangopayDuration: Histogram<'endpoint' | 'status'>
  readonly retries: Counter<'endpoint' | 'reason'>
  readonly retriesSkipped: Counter<'endpoint' | 'why'>
  readonly bearerRefreshes: Counter<'result' | 'background'>
  readonly bearerInvalidations: Counter
  readonly circuitTransitions: Counter<'to'>
  readonly circuitRejections: Counter<'endpoint'>
  readonly budgetRefusals: Counter<'reason'>
  #sources: MetricsSources | undefined
  /** Where the METRICS_PORT listener ended up (port 0 picks one). */
  listeningOn: AddressInfo | undefined

  constructor () {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    this.tokensIssued = new Counter({ name: 'broker_tokens_issued_total', help: 'Embedded tokens handed to browsers, by kind', labelNames: ['kind'], registers })
    this.tokensRefused = new Counter({ name: 'broker_tokens_refused_total', help: 'Token requests refused, by kind and SPEC error code', labelNames: ['kind', 'code'], registers })
    this.httpDuration = new Histogram({ name: 'broker_http_request_duration_seconds', help: 'Time to answer browser and operations requests, by route pattern', labelNames: ['method', 'route', 'status_class'], buckets: LATENCY_BUCKETS, registers })
    this.mangopayDuration = new Histogram({ name: 'broker_mangopay_request_duration_seconds', help: 'Mangopay call attempts, by endpoint and HTTP status (or network_error / timeout)', labelNames: ['endpoint', 'status'], buckets: LATENCY_BUCKETS, registers })
    this.retries = new Counter({ name: 'broker_mangopay_retries_total', help: 'Mangopay calls retried, by endpoint and reason', labelNames: ['endpoint', 'reason'], registers })
    this.retriesSkipped = new Counter({ name: 'broker_mangopay_retries_skipped_total', help: 'Retryable failures not retried: budget spent, deadline too close, or retries used up', labelNames: ['endpoint', 'why'], registers })
    this.bearerRefreshes = new Counter({ name: 'broker_mangopay_bearer_refreshes_total', help: 'OAuth bearer fetches, by result and whether they ran in the background', labelNames: ['result', 'background'], registers })
    this.bearerInvalidations = new Counter({ name: 'broker_mangopay_bearer_invalidations_total', help: 'Bearers dropped after Mangopay answered 401', registers })
    this.circuitTransitions = new Counter({ name: 'broker_mangopay_circuit_transitions_total', help: 'Circuit breaker state changes, by new state', labelNames: ['to'], registers })
    this.circuitRejections = new Counter({ name: 'broker_mangopay_circuit_rejections_total', help: 'Mangopay calls refused by the open circuit', labelNames: ['endpoint'], registers })
    this.budgetRefusals = new Counter({ name: 'broker_token_budget_refusals_total', help: 'Token mints refused by the fair quota: user_budget, session_budget, first_tokens_first or reserve', labelNames: ['reason'], registers })
    for (const reason of ['user_budget', 'session_budget', 'first_tokens_first', 'reserve'] satisfies BudgetRefusal[]) this.budgetRefusals.inc({ reason }, 0)

    const sources = (): MetricsSources | undefined => this.#sources
    // eslint-disable-next-line no-new -- registered with the registry; read at scrape time
    new Gauge({
      name: 'broker_mangopay_circuit_state',
      help: 'Circuit breaker towards Mangopay: 0 closed, 1 half-open, 2 open',
      registers,
      collect () {
        const state = sources()?.circuitState()
        if (state !== undefined) this.set(CIRCUIT_VALUES[state])
      }
    })
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'broker_mangopay_quota_remaining',
      help: 'Calls left in each Mangopay rate-limit window (window = position in X-RateLimit-Remaining, 0 = 15 min)',
      labelNames: ['window'],
      registers,
      collect () {
        this.reset()
        for (const w of sources()?.quota().windows ?? []) this.set({ window: String(w.index) }, w.remaining)
      }
    })
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'broker_mangopay_quota_limit',
      help: 'Size of each Mangopay rate-limit window, as its headers tell it',
      labelNames: ['window'],
      registers,
      collect () {
        this.reset()
        for (const w of sources()?.quota().windows ?? []) this.set({ window: String(w.index) }, w.limit)
      }
    })
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'broker_mangopay_quota_spent',
      help: 'Calls spent in each Mangopay rate-limit window so far, the whole Client ID\'s (X-RateLimit)',
      labelNames: ['window'],
      registers,
      collect () {
        this.reset()
        for (const w of sources()?.quota().windows ?? []) this.set({ window: String(w.index) }, w.made)
      }
    })
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'broker_mangopay_quota_share',
      help: 'The broker\'s share of each Mangopay rate-limit window: its size less MANGOPAY_QUOTA_RESERVE',
      labelNames: ['window'],
      registers,
      collect () {
        this.reset()
        const snapshot = sources()?.quota()
        for (const w of snapshot?.windows ?? []) this.set({ window: String(w.index) }, w.limit - reserveFloor(w.limit, snapshot?.reserve ?? 0))
      }
    })
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'broker_mangopay_quota_paused',
      help: '1 while the quota guard refuses calls (reserve reached or 429), else 0',
      registers,
      collect () {
        const snapshot = sources()?.quota()
        if (snapshot !== undefined) this.set(snapshot.blocked === undefined ? 0 : 1)
      }
    })
  }

  watch (sources: MetricsSources): void {
    this.#sources = sources
    // Only with mTLS: an absent series is clearer than a zero expiry.
    if (sources.certificateExpiresAt() === undefined) return
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'broker_mangopay_client_certificate_expiry_timestamp_seconds',
      help: 'When the mTLS client certificate expires (Unix seconds); renew it before (Mangopay certificates last 12 months)',
      registers: [this.registry],
      collect () {
        const at = sources.certificateExpiresAt()
        if (at !== undefined) this.set(Math.floor(at / 1000))
      }
    })
  }

  budgetRefused (reason: BudgetRefusal): void {
    this.budgetRefusals.inc({ reason })
  }

  response (endpoint: MangopayEndpoint, status: number, durationMs: number): void {
    this.mangopayDuration.observe({ endpoint, status: String(status) }, durationMs / 1000)
  }

  bearer (event: BearerEvent): void {
    if (event.type === 'invalidated') {
      this.bearerInvalidations.inc()
      return
    }
    this.bearerRefreshes.inc({ result: event.type === 'refreshed' ? 'success' : 'failure', background: String(event.background) })
  }

  call (event: CallEvent): void {
    switch (event.type) {
      case 'failed':
        this.mangopayDuration.observe({ endpoint: event.endpoint, status: event.failure === 'timeout' ? 'timeout' : 'network_error' }, event.durationMs / 1000)
        return
      case 'retry':
        this.retries.inc({ endpoint: event.endpoint, reason: event.reason === 'network' ? 'network' : 'server_error' })
        return
      case 'retry_skipped':
        this.retriesSkipped.inc({ endpoint: event.endpoint, why: event.why })
        return
      case 'circuit':
        this.circuitTransitions.inc({ to: event.transition.to })
        return
      case 'circuit_rejected':
        this.circuitRejections.inc({ endpoint: event.endpoint })
    }
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: BrokerMetrics
  }
}

export interface MetricsPluginOptions {
  metrics: BrokerMetrics
  /** METRICS_PORT: /metrics and the detailed readiness are served there (same host), never on PORT. */
  port: number
  host: string
  readiness: () => Promise<DetailedReadiness>
}

async function metricsPlugin (app: FastifyInstance, options: MetricsPluginOptions): Promise<void> {
  const { metrics } = options
  app.decorate('metrics', metrics)
  app.addHook('onResponse', (request, reply, done) => {
    const route = request.routeOptions.url ?? 'unmatched'
    metrics.httpDuration.observe({ method: request.method, route, status_class: `${Math.floor(reply.statusCode / 100)}xx` }, reply.elapsedTime / 1000)
    const kind = TOKEN_ROUTES[route]
    if (kind !== undefined) {
      if (reply.statusCode === 200) metrics.tokensIssued.inc({ kind })
      // The code the problem answer carried (http/problem.ts sets it), never anything upstream said.
      else if (reply.statusCode >= 400) metrics.tokensRefused.inc({ kind, code: reply.problemCode ?? 'unknown' })
    }
    done()
  })

  listenForOperations(app, { metrics, readiness: options.readiness, port: options.port, host: options.host })
}

export default fp(metricsPlugin, { name: 'metrics', fastify: '5.x', dependencies: ['problem'] })
