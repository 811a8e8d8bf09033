import { checkOrigins, checkTrustProxy } from './checks.js'
import type { Env } from './schema.js'

export function serverConfig (env: Env, problems: string[]) {
  return {
    host: env.HOST,
    port: env.PORT,
    shutdownDelayMs: env.SHUTDOWN_DELAY_MS,
    /** A client must finish sending its headers within this (slow-header attacks). */
    headersTimeoutMs: env.HTTP_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: Math.max(env.HTTP_REQUEST_TIMEOUT_MS, env.HTTP_HEADERS_TIMEOUT_MS),
    /** Idle keep-alive connections close after this; keep it above the load balancer's idle timeout. */
    keepAliveTimeoutMs: env.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    /** Addresses/CIDRs whose X-Forwarded-For is believed; empty = none. */
    trustProxy: checkTrustProxy(env.TRUST_PROXY, problems)
  }
}

export type ServerConfig = ReturnType<typeof serverConfig>

export function corsConfig (env: Env, problems: string[]) {
  return { origins: checkOrigins(env.CORS_ORIGINS, problems) }
}

export function rateLimitConfig (env: Env) {
  return {
    max: env.RATE_LIMIT_MAX,
    windowMs: env.RATE_LIMIT_WINDOW_MS,
    /** Failed authentications allowed per client address per `failedAuthWindowMs`. */
    failedAuthMax: env.AUTH_FAILURE_LIMIT_MAX,
    failedAuthWindowMs: env.AUTH_FAILURE_LIMIT_WINDOW_MS,
    /** Mangopay calls for embedded tokens per user and per session each window (SPEC §8 "Fair quota"). */
    budget: {
      perUser: env.TOKEN_BUDGET_PER_USER,
      perSession: env.TOKEN_BUDGET_PER_SESSION,
      windowMs: env.TOKEN_BUDGET_WINDOW_MS,
      /** Part of the broker's share of each Mangopay window kept for users' first tokens; 0 turns it off. */
      firstTokenShare: env.TOKEN_BUDGET_FIRST_TOKEN_SHARE
    }
  }
}

export function metricsConfig (env: Env, problems: string[]) {
  if (env.METRICS_PORT !== 0 && env.METRICS_PORT === env.PORT) {
    problems.push('METRICS_PORT must differ from PORT')
  }
  return { port: env.METRICS_PORT }
}

/** Past either bound the broker answers 503 `overloaded` rather than queue (0 turns a bound off). */
export function loadSheddingConfig (env: Env) {
  return {
    maxEventLoopDelayMs: env.LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS,
    maxEventLoopUtilization: env.LOAD_SHED_MAX_EVENT_LOOP_UTILIZATION
  }
}
