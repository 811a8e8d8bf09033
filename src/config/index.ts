import { authConfig, JWKS_FETCH_TIMEOUT_MS } from './auth.js'
import { validateEnv } from './checks.js'
import { mangopayConfig } from './mangopay.js'
import { redisConfig } from './redis.js'
import type { Env } from './schema.js'
import { resolveSecretFiles, type SecretFiles } from './secret-files.js'
import { corsConfig, loadSheddingConfig, metricsConfig, rateLimitConfig, serverConfig } from './server.js'
import { tracingConfig } from './tracing.js'

// The one place the environment is read: every start-up problem in one ConfigError; only `mangopay` holds the API key.

export { JWKS_FETCH_TIMEOUT_MS, type AuthConfig, type JwtAlgorithm, type JwtConfig, type JwtKeySource } from './auth.js'
export { MANGOPAY_BASE_URLS, type CircuitSettings, type MangopayConfig } from './mangopay.js'
export { checkUrl } from './checks.js'
export { readSecretFile } from './secret-files.js'
export type { ServerConfig } from './server.js'
export type { TracingConfig } from './tracing.js'
export { reloadTlsMaterial, type TlsFiles, type TlsMaterial, type TlsSettings } from './tls-files.js'

export class ConfigError extends Error {
  readonly problems: string[]

  constructor (problems: string[]) {
    super(`Invalid configuration:\n${problems.map(p => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

function buildConfig (env: Env, secretFiles: SecretFiles, problems: string[]) {
  return {
    server: serverConfig(env, problems),
    logLevel: env.LOG_LEVEL,
    mangopay: mangopayConfig(env, secretFiles, problems),
    auth: authConfig(env, problems),
    cors: corsConfig(env, problems),
    rateLimit: rateLimitConfig(env),
    /** Shared state for every instance; the URL may hold a password (it is a secret). */
    redis: redisConfig(env, problems),
    /** `/metrics` and the detailed readiness, on their own port (never the public one). */
    metrics: metricsConfig(env, problems),
    loadShedding: loadSheddingConfig(env),
    /** OpenTelemetry: spans exported over OTLP when an endpoint is set; traceparent passed on always. */
    tracing: tracingConfig(env, problems)
  }
}

export type Config = ReturnType<typeof buildConfig>

export function loadConfig (rawEnv: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = []
  // Empty strings mean "unset": that is how most orchestrators render an absent value.
  const present = Object.fromEntries(Object.entries(rawEnv).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''))
  const { values, files } = resolveSecretFiles(present, problems)
  const env = validateEnv(values, problems)
  let config: Config | undefined
  try {
    // Built from the raw values even when the schema refused them, so one start-up lists every problem.
    config = buildConfig(env ?? (values as unknown as Env), files, problems)
  } catch (err) {
    // A raw value may trip a builder written for valid ones; the schema's problems say why.
    if (env !== undefined) throw err
  }
  if (config === undefined || problems.length > 0) throw new ConfigError([...new Set(problems)])
  return config
}

/** Before close-with-grace exits 1: the drain delay, then the longest request can run plus 5 s (15 s at least). */
export function shutdownGraceMs (config: Config): number {
  const longestRequestMs = Math.max(config.mangopay.timeoutMs, config.auth.forward?.timeoutMs ?? 0, JWKS_FETCH_TIMEOUT_MS)
  return config.server.shutdownDelayMs + Math.max(15_000, longestRequestMs + 5000)
}
