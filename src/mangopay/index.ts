import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { Dispatcher } from 'undici'
import type { Clock } from '../clock.js'
import type { MangopayConfig } from '../config/index.js'
import type { BrokerError } from '../errors.js'
import { connectTimeoutMs, createPool, withDeadline, withinDeadline } from '../upstream/index.js'
import { BearerStore, type Bearer, type BearerEvent } from './bearer-store.js'
import { MangopayCaller } from './caller.js'
import type { CircuitState } from './circuit-breaker.js'
import { EmbeddedTokens } from './embedded.js'
import { OAuthClient } from './oauth.js'
import { QuotaTracker, type QuotaSnapshot, type QuotaWindows } from './quota.js'
import { createSecretsReloader, type SecretsReloadResult } from './secrets-reload.js'
import { RedisSharedBearers, sharedStateScope } from './shared-bearer.js'
import { SharedQuotaView } from './shared-quota.js'
import { certificateExpiresAt, MangopayConnector } from './tls.js'
import { EmbeddedTokenReuse } from './token-reuse.js'
import type { CallTracer } from './trace.js'
import { upstreamTimeout } from './transport.js'
import type { CallOptions, EmbeddedKind, EmbeddedToken, MangopayObserver, SecretSink } from './types.js'

export type { CallEvent, CallOptions, EmbeddedKind, EmbeddedToken, MangopayEndpoint, MangopayObserver, SecretSink } from './types.js'
export type { CallSpan, CallTracer } from './trace.js'
export type { Bearer, BearerEvent } from './bearer-store.js'
export type { CircuitState } from './circuit-breaker.js'
export { reserveFloor, type QuotaShare, type QuotaSnapshot, type QuotaWindow, type QuotaWindows } from './quota.js'
export { sharedStateScope } from './shared-bearer.js'
export type { SecretsReloadResult } from './secrets-reload.js'

export interface MangopayDeps {
  logger: FastifyBaseLogger
  clock: Clock
  /** REDIS_URL: the bearer and the quota pause are shared by every instance. */
  redis?: Redis | undefined
  /** Tests may pass their own; by default a Pool is created, and closed by `close()`. */
  dispatcher?: Dispatcher | undefined
  observer?: MangopayObserver
  /** Spans for the calls no request made (bearers fetched ahead of need); a request's come with its CallOptions. */
  tracer?: CallTracer | undefined
  /** How often pauses other instances published are read (default 1000 ms). */
  quotaSyncIntervalMs?: number | undefined
  /** Told of the API key, the Basic value, each bearer and each minted token (log scrubbing). */
  secrets?: SecretSink | undefined
}

/** What readiness (SPEC §2) learns from the Mangopay side. */
export type MangopayReadiness =
  | { ready: true, checks: MangopayChecks }
  | { ready: false, detail: string, retryAfterS: number, checks: MangopayChecks }

export interface MangopayChecks {
  circuit: CircuitState
  /** `credentials_refused`: Mangopay's OAuth endpoint refused MANGOPAY_CLIENT_ID and the API key. */
  bearer: 'held' | 'obtained' | 'unavailable' | 'credentials_refused' | 'skipped'
  quota: QuotaSnapshot
}

/** The Mangopay side of the broker, the only holder of the API key. */
export interface Mangopay {
  /** A Recipients or Checkout token for `userId` (reused when EMBEDDED_TOKEN_REUSE_MIN_TTL_S allows). */
  mintEmbeddedToken (kind: EmbeddedKind, userId: string, options: CallOptions): Promise<EmbeddedToken>
  /** Obtains a bearer now (at boot, so the first browser request does not wait for one). */
  warmUp (): Promise<void>
  readiness (): Promise<MangopayReadiness>
  /** SIGHUP: re-reads the secrets given as files; a new API key is checked with Mangopay first. */
  reloadSecrets (): Promise<SecretsReloadResult>
  circuitState (): CircuitState
  quota (): QuotaSnapshot
  /** The same windows, raw: cheap enough for every mint (the fair quota). */
  quotaWindows (): QuotaWindows
  /** The usable bearer held now, if any (tests, diagnostics); never logged. */
  heldBearer (): Bearer | undefined
  /** When the mTLS client certificate expires (epoch ms), if one is configured. */
  certificateExpiresAt (): number | undefined
  close (): Promise<void>
}

/** After a failed bearer attempt, readiness answers from memory for this long (spares Mangopay). */
const READINESS_RETRY_MS = 5000
const READINESS_BEARER_WAIT_MS = 3000

const noObserver: MangopayObserver = { response () {}, bearer () {}, call () {} }
const noSecretSink: SecretSink = { credential () {}, bearer () {}, token () {} }

export function createMangopay (config: MangopayConfig, deps: MangopayDeps): Mangopay {
  const { logger, clock, redis } = deps
  const observer = deps.observer ?? noObserver
  const secrets = deps.secrets ?? noSecretSink
  // Always TLS 1.2+ with verification; the connector lets SIGHUP swap the mTLS material.
  const connector = deps.dispatcher === undefined ? new MangopayConnector(config.tls?.material, connectTimeoutMs(config.timeoutMs)) : undefined
  const pool = deps.dispatcher ?? createPool(new URL(config.baseUrl).origin, { timeoutMs: config.timeoutMs, connections: 64, keepAliveTimeoutMs: 30_000, connector: connector?.connect })

  const scope = sharedStateScope(config.clientId, config.baseUrl)
  const sharedQuota = redis === undefined ? undefined : new SharedQuotaView({ redis, clock, log: logger, scope, intervalMs: deps.quotaSyncIntervalMs })
  const quota = new QuotaTracker({
    reserve: config.quotaReserve,
    clock,
    onEvent: event => {
      if (event.type === 'blocked') logger.warn({ quota: { until: new Date(event.until).toISOString(), reason: event.reason, windows: event.windows } }, 'Mangopay quota guard: calls paused until the window resets')
      sharedQuota?.publish(event.until, event.reason)
    }
  })
  sharedQuota?.follow(quota)

  const caller = new MangopayCaller({ pool, baseUrl: config.baseUrl, timeoutMs: config.timeoutMs, retries: config.retries, circuit: config.circuit, quota, clock, logger, observer })
  const oauth = new OAuthClient({ clientId: config.clientId, apiKey: config.apiKey, caller, timeoutMs: config.timeoutMs, logger, secrets, tracer: deps.tracer })
  const sharedBearers = redis === undefined
    ? undefined
    : new RedisSharedBearers({ redis, clock, log: logger, clientId: config.clientId, baseUrl: config.baseUrl, apiKey: config.apiKey, timeoutMs: config.timeoutMs })
  const bearers = new BearerStore({
    clock,
    shared: sharedBearers,
    fetchBearer: async trace => await oauth.requestBearer(trace),
    onEvent: event => {
      logBearerEvent(logger, event)
      observer.bearer(event)
    }
  })
  const reuse = config.reuseMinTtlS > 0 ? new EmbeddedTokenReuse({ clock, minTtlS: config.reuseMinTtlS }) : undefined
  const embedded = new EmbeddedTokens({ clientId: config.clientId, timeoutMs: config.timeoutMs, caller, bearers, clock, reuse, secrets })
  const reloadSecrets = createSecretsReloader({
    config,
    connector,
    logger,
    bearers,
    setApiKey: apiKey => {
      oauth.setApiKey(apiKey)
      sharedBearers?.setApiKey(apiKey)
    }
  })

  let bearerFailure: { at: number, readiness: MangopayReadiness } | undefined
  async function readiness (): Promise<MangopayReadiness> {
    const checks = (bearer: MangopayChecks['bearer']): MangopayChecks => ({ circuit: caller.circuit.state, bearer, quota: quota.snapshot() })
    // An open circuit turns half-open by itself after the cool-down, so readiness comes back and traffic can probe.
    if (caller.circuit.state === 'open') {
      return { ready: false, detail: 'Mangopay is failing; the circuit is open.', retryAfterS: caller.circuit.retryAfterMs() / 1000, checks: checks(bearers.peek() === undefined ? 'skipped' : 'held') }
    }
    if (bearers.peek() !== undefined) return { ready: true, checks: checks('held') }
    if (bearerFailure !== undefined && clock.now() - bearerFailure.at < READINESS_RETRY_MS) return { ...bearerFailure.readiness, checks: checks(bearerFailure.readiness.checks.bearer) }
    try {
      await withDeadline(Math.min(config.timeoutMs, READINESS_BEARER_WAIT_MS), deadline => withinDeadline(bearers.refresh(), deadline, upstreamTimeout))
      return { ready: true, checks: checks('obtained') }
    } catch (err) {
      const refused = (err as BrokerError | null)?.code === 'upstream_auth_failed'
      const readiness: MangopayReadiness = refused
        ? { ready: false, detail: 'Mangopay refused the broker\'s credentials: check MANGOPAY_CLIENT_ID and the API key.', retryAfterS: 5, checks: checks('credentials_refused') }
        : { ready: false, detail: 'No Mangopay bearer could be obtained.', retryAfterS: 5, checks: checks('unavailable') }
      bearerFailure = { at: clock.now(), readiness }
      return readiness
    }
  }

  return {
    mintEmbeddedToken: (kind, userId, options) => embedded.mint(kind, userId, options),
    warmUp: async () => { await bearers.refresh() },
    readiness,
    reloadSecrets,
    circuitState: () => caller.circuit.state,
    quota: () => quota.snapshot(),
    quotaWindows: () => quota.windows(),
    heldBearer: () => bearers.peek(),
    certificateExpiresAt: () => certificateExpiresAt(connector?.material),
    async close () {
      sharedQuota?.stop()
      if (deps.dispatcher === undefined) await pool.close()
    }
  }
}

function logBearerEvent (logger: FastifyBaseLogger, event: BearerEvent): void {
  if (event.type === 'refreshed') {
    logger.info({ bearer: { lifetimeS: event.lifetimeS, background: event.background, clamped: event.clamped } }, 'Mangopay bearer obtained')
  } else if (event.type === 'refresh_failed') {
    logger.warn({ bearer: { background: event.background, code: (event.error as BrokerError).code ?? 'error' } }, 'Mangopay bearer refresh failed')
  } else {
    logger.info('Mangopay bearer dropped after a 401')
  }
}
