import type { CircuitSettings } from '../mangopay/circuit-breaker.js'
import { checkOrigins, checkTrustProxy, checkUrl, splitList, validateEnv } from './checks.js'
import type { Env } from './schema.js'
import { resolveSecretFiles } from './secret-files.js'
import { loadTlsMaterial, type TlsSettings } from './tls-files.js'

export { readSecretFile } from './secret-files.js'
export { reloadTlsMaterial, type TlsFiles, type TlsMaterial, type TlsSettings } from './tls-files.js'

/**
 * The one place the environment is read. `loadConfig` validates everything at once, so a bad
 * deployment fails at start-up with a single message naming every problem, and hands the rest
 * of the app small slices: only the Mangopay client ever sees the API key.
 */

export const MANGOPAY_BASE_URLS = {
  sandbox: 'https://api.sandbox.mangopay.com',
  production: 'https://api.mangopay.com'
} as const

export type JwtAlgorithm = 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'PS384' | 'PS512' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA' | 'HS256' | 'HS384' | 'HS512'
const ASYMMETRIC_ALGORITHMS: readonly JwtAlgorithm[] = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']
const HMAC_ALGORITHMS: readonly JwtAlgorithm[] = ['HS256', 'HS384', 'HS512']

export interface ServerConfig {
  host: string
  port: number
  shutdownDelayMs: number
  /** A client must finish sending its headers within this (slow-header attacks). */
  headersTimeoutMs: number
  /** A whole request (headers and body) must arrive within this. */
  requestTimeoutMs: number
  /** Idle keep-alive connections close after this; keep it above the load balancer's idle timeout. */
  keepAliveTimeoutMs: number
  /** Addresses/CIDRs whose X-Forwarded-For is believed; empty = none. */
  trustProxy: string[]
}

export interface MangopayConfig {
  environment: 'sandbox' | 'production'
  baseUrl: string
  clientId: string
  apiKey: string
  timeoutMs: number
  quotaReserve: number
  reuseMinTtlS: number
  /** Where the API key was read from, so SIGHUP can read it again; undefined when given inline. */
  apiKeyFile: string | undefined
  /** mTLS material and the files it came from (SIGHUP re-reads them). */
  tls: TlsSettings | undefined
  /** Retries of a failed call (network error or 5xx), 0–2. */
  retries: number
  circuit: CircuitSettings
}

export type JwtKeySource =
  | { kind: 'jwks', url: string }
  | { kind: 'public-key', pem: string }
  | { kind: 'secret', secret: string }

export interface JwtConfig {
  key: JwtKeySource
  algorithms: JwtAlgorithm[]
  issuer: string
  audience: string
  clockToleranceS: number
}

export interface AuthConfig {
  mode: 'jwt' | 'forward' | 'dev'
  userIdClaim: string
  cookieName: string | undefined
  jwt: JwtConfig | undefined
  forward: { url: string, cacheTtlMs: number, timeoutMs: number } | undefined
  dev: { sessionSecret: string | undefined } | undefined
}

export interface Config {
  server: ServerConfig
  logLevel: string
  mangopay: MangopayConfig
  auth: AuthConfig
  cors: { origins: string[] }
  rateLimit: {
    max: number
    windowMs: number
    /** Failed authentications allowed per client address per `failedAuthWindowMs`. */
    failedAuthMax: number
    failedAuthWindowMs: number
  }
  /** Shared state for every instance; the URL may hold a password (it is a secret). */
  redis: { url: string, keyPrefix: string } | undefined
  /** `/metrics` on its own port when set, instead of the public one. */
  metrics: { port: number | undefined }
}

export class ConfigError extends Error {
  readonly problems: string[]

  constructor (problems: string[]) {
    super(`Invalid configuration:\n${problems.map(p => `  - ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

function jwtAlgorithms (env: Env, key: JwtKeySource, problems: string[]): JwtAlgorithm[] {
  const allowedForKey = key.kind === 'secret' ? HMAC_ALGORITHMS : ASYMMETRIC_ALGORITHMS
  const requested = splitList(env.AUTH_JWT_ALGORITHMS)
  if (requested.length === 0) return key.kind === 'secret' ? ['HS256'] : ['RS256', 'PS256', 'ES256', 'EdDSA']
  const algorithms: JwtAlgorithm[] = []
  for (const alg of requested) {
    if ((allowedForKey as readonly string[]).includes(alg)) {
      algorithms.push(alg as JwtAlgorithm)
    } else {
      problems.push(`AUTH_JWT_ALGORITHMS: "${alg}" is not allowed with ${key.kind === 'secret' ? 'an HMAC secret' : 'public keys'} (allowed: ${allowedForKey.join(', ')})`)
    }
  }
  return algorithms
}

function jwtConfig (env: Env, problems: string[]): JwtConfig | undefined {
  const sources: JwtKeySource[] = []
  if (env.AUTH_JWKS_URL !== undefined) {
    const url = checkUrl('AUTH_JWKS_URL', env.AUTH_JWKS_URL, problems)
    if (url !== undefined) sources.push({ kind: 'jwks', url })
  }
  if (env.AUTH_JWT_PUBLIC_KEY !== undefined) {
    if (!/-----BEGIN PUBLIC KEY-----/.test(env.AUTH_JWT_PUBLIC_KEY)) problems.push('AUTH_JWT_PUBLIC_KEY must be a PEM "PUBLIC KEY" (SPKI)')
    else sources.push({ kind: 'public-key', pem: env.AUTH_JWT_PUBLIC_KEY })
  }
  if (env.AUTH_JWT_SECRET !== undefined) {
    if (Buffer.byteLength(env.AUTH_JWT_SECRET) < 32) problems.push('AUTH_JWT_SECRET must be at least 32 bytes')
    else sources.push({ kind: 'secret', secret: env.AUTH_JWT_SECRET })
  }
  const given = [env.AUTH_JWKS_URL, env.AUTH_JWT_PUBLIC_KEY, env.AUTH_JWT_SECRET].filter(v => v !== undefined).length
  if (given === 0) problems.push('AUTH_MODE=jwt needs one of AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY(_FILE) or AUTH_JWT_SECRET(_FILE)')
  if (given > 1) problems.push('set only one of AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY(_FILE), AUTH_JWT_SECRET(_FILE)')
  if (env.AUTH_ISSUER === undefined) problems.push('AUTH_ISSUER is required when AUTH_MODE=jwt')
  if (env.AUTH_AUDIENCE === undefined) problems.push('AUTH_AUDIENCE is required when AUTH_MODE=jwt')
  const key = sources[0]
  if (given !== 1 || key === undefined || env.AUTH_ISSUER === undefined || env.AUTH_AUDIENCE === undefined) return undefined
  return {
    key,
    algorithms: jwtAlgorithms(env, key, problems),
    issuer: env.AUTH_ISSUER,
    audience: env.AUTH_AUDIENCE,
    clockToleranceS: env.AUTH_CLOCK_TOLERANCE_S
  }
}

function authConfig (env: Env, problems: string[]): AuthConfig {
  const auth: AuthConfig = {
    mode: env.AUTH_MODE,
    userIdClaim: env.AUTH_USER_ID_CLAIM,
    cookieName: env.AUTH_COOKIE_NAME,
    jwt: undefined,
    forward: undefined,
    dev: undefined
  }
  if (env.AUTH_MODE === 'jwt') auth.jwt = jwtConfig(env, problems)
  if (env.AUTH_MODE === 'forward') {
    if (env.AUTH_FORWARD_URL === undefined) problems.push('AUTH_FORWARD_URL is required when AUTH_MODE=forward')
    const url = env.AUTH_FORWARD_URL === undefined ? undefined : checkUrl('AUTH_FORWARD_URL', env.AUTH_FORWARD_URL, problems)
    if (url !== undefined) auth.forward = { url, cacheTtlMs: env.AUTH_FORWARD_CACHE_TTL_MS, timeoutMs: env.AUTH_FORWARD_TIMEOUT_MS }
  }
  if (env.AUTH_MODE === 'dev') {
    if (env.MANGOPAY_ENV === 'production') problems.push('AUTH_MODE=dev is refused when MANGOPAY_ENV=production')
    auth.dev = { sessionSecret: env.DEV_SESSION_SECRET }
  }
  return auth
}

/** HTTP Basic (RFC 7617) cannot carry a user id with a colon: Mangopay would read another client id. */
function checkClientId (clientId: string | undefined, problems: string[]): void {
  if (clientId?.includes(':') === true) problems.push('MANGOPAY_CLIENT_ID must not contain ":" (it cannot be sent in HTTP Basic authentication)')
}

/** The checks `loadConfig` makes beyond the schema, for when the schema already failed. */
function crossFieldChecks (env: Env, problems: string[]): void {
  const baseUrl = env.MANGOPAY_BASE_URL === undefined ? MANGOPAY_BASE_URLS[env.MANGOPAY_ENV] : checkUrl('MANGOPAY_BASE_URL', env.MANGOPAY_BASE_URL, problems)
  checkHostEnvironment(env, baseUrl, problems)
  checkClientId(env.MANGOPAY_CLIENT_ID, problems)
  checkTrustProxy(env.TRUST_PROXY, problems)
  authConfig(env, problems)
  checkOrigins(env.CORS_ORIGINS ?? '', problems)
  redisConfig(env, problems)
  mangopayTls(env, undefined, env.MANGOPAY_BASE_URL, problems)
  metricsConfig(env, problems)
}

/** The failure-ratio rule needs this many calls in its window before it judges. */
const CIRCUIT_MINIMUM_CALLS = 20
const PUBLIC_MANGOPAY_HOSTS = new Set(['api.mangopay.com', 'api.sandbox.mangopay.com'])
/** Mangopay's own hosts, standard and mTLS, by the environment they belong to. */
const MANGOPAY_HOST_ENVIRONMENTS: Readonly<Record<string, 'sandbox' | 'production'>> = {
  'api.mangopay.com': 'production',
  'api-mtls.mangopay.com': 'production',
  'api.sandbox.mangopay.com': 'sandbox',
  'api-mtls.sandbox.mangopay.com': 'sandbox'
}

/**
 * A MANGOPAY_BASE_URL on one of Mangopay's own hosts must belong to MANGOPAY_ENV: otherwise
 * answers would name the wrong `environment`, and AUTH_MODE=dev (refused with production) could
 * mint production tokens through a sandbox setting.
 */
function checkHostEnvironment (env: Env, baseUrl: string | undefined, problems: string[]): void {
  let url: URL | undefined
  try {
    url = baseUrl === undefined ? undefined : new URL(baseUrl)
  } catch {}
  if (url === undefined) return
  // The broker adds /v2.01/… itself: a base URL carrying it would call /v2.01/v2.01/….
  if (/\/v2\.01\/?$/i.test(url.pathname)) problems.push('MANGOPAY_BASE_URL must not end with /v2.01: the broker adds the API version itself')
  const host = mangopayHost(url)
  const belongsTo = MANGOPAY_HOST_ENVIRONMENTS[host]
  if (belongsTo !== undefined && belongsTo !== env.MANGOPAY_ENV) {
    problems.push(`MANGOPAY_BASE_URL is Mangopay's ${belongsTo} host but MANGOPAY_ENV=${env.MANGOPAY_ENV}`)
  }
  // Mangopay's mTLS hosts refuse a connection without a client certificate.
  if (host.startsWith('api-mtls.') && belongsTo !== undefined && env.MANGOPAY_TLS_CERT_FILE === undefined) {
    problems.push('MANGOPAY_BASE_URL is an api-mtls host: set MANGOPAY_TLS_CERT_FILE and MANGOPAY_TLS_KEY_FILE (the client certificate it requires)')
  }
}

/** A URL's host name as Mangopay's are listed: `api.mangopay.com.` (the fully qualified form) is `api.mangopay.com`. */
function mangopayHost (url: URL): string {
  return url.hostname.replace(/\.$/, '')
}

/** mTLS files (SPEC §4): read and checked now, so a bad certificate stops start-up. */
function mangopayTls (env: Env, passphraseFile: string | undefined, baseUrl: string | undefined, problems: string[]): TlsSettings | undefined {
  const files = {
    ...(env.MANGOPAY_TLS_CERT_FILE === undefined ? {} : { certFile: env.MANGOPAY_TLS_CERT_FILE }),
    ...(env.MANGOPAY_TLS_KEY_FILE === undefined ? {} : { keyFile: env.MANGOPAY_TLS_KEY_FILE }),
    ...(env.MANGOPAY_TLS_CA_FILE === undefined ? {} : { caFile: env.MANGOPAY_TLS_CA_FILE }),
    ...(passphraseFile === undefined ? {} : { passphraseFile })
  }
  const configured = Object.keys(files).length > 0 || env.MANGOPAY_TLS_PASSPHRASE !== undefined
  if (!configured) return undefined
  let url: URL | undefined
  try {
    url = new URL(baseUrl ?? MANGOPAY_BASE_URLS[env.MANGOPAY_ENV] ?? '')
  } catch {}
  if (url !== undefined && url.protocol !== 'https:') problems.push('MANGOPAY_TLS_* are set but MANGOPAY_BASE_URL is not https')
  if (url !== undefined && files.certFile !== undefined && PUBLIC_MANGOPAY_HOSTS.has(mangopayHost(url))) {
    problems.push(`a client certificate is only presented to the api-mtls hosts: set MANGOPAY_BASE_URL to https://api-mtls.${mangopayHost(url).slice(4)}`)
  }
  const material = loadTlsMaterial(files, env.MANGOPAY_TLS_PASSPHRASE, problems)
  return material === undefined ? undefined : { files, material }
}

function metricsConfig (env: Env, problems: string[]): Config['metrics'] {
  if (env.METRICS_PORT !== undefined && env.METRICS_PORT !== 0 && env.METRICS_PORT === env.PORT) {
    problems.push('METRICS_PORT must differ from PORT')
  }
  return { port: env.METRICS_PORT }
}

/** A redis:// or rediss:// URL. Problems never quote it: it may carry a password. */
function redisConfig (env: Env, problems: string[]): Config['redis'] {
  if (env.REDIS_URL === undefined) return undefined
  let protocol: string | undefined
  try {
    protocol = new URL(env.REDIS_URL).protocol
  } catch {}
  if (protocol !== 'redis:' && protocol !== 'rediss:') {
    problems.push('REDIS_URL must be a redis:// or rediss:// URL')
    return undefined
  }
  return { url: env.REDIS_URL, keyPrefix: env.REDIS_KEY_PREFIX }
}

/**
 * Validates `env` (normally `process.env`) and returns the config, or throws one ConfigError
 * listing every problem found.
 */
export function loadConfig (rawEnv: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = []
  // Empty strings mean "unset": that is how most orchestrators render an absent value.
  const present = Object.fromEntries(Object.entries(rawEnv).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== ''))
  const { values: data, files: secretFiles } = resolveSecretFiles(present, problems)
  const env = validateEnv(data, problems)
  if (env === undefined) {
    // The cross-field checks still run on the raw values, so one start-up lists every problem.
    try {
      crossFieldChecks(data as unknown as Env, problems)
    } catch {}
    throw new ConfigError(problems)
  }

  const baseUrl = env.MANGOPAY_BASE_URL === undefined
    ? MANGOPAY_BASE_URLS[env.MANGOPAY_ENV]
    : checkUrl('MANGOPAY_BASE_URL', env.MANGOPAY_BASE_URL, problems)
  checkHostEnvironment(env, baseUrl, problems)
  checkClientId(env.MANGOPAY_CLIENT_ID, problems)
  const config: Config = {
    server: {
      host: env.HOST,
      port: env.PORT,
      shutdownDelayMs: env.SHUTDOWN_DELAY_MS,
      headersTimeoutMs: env.HTTP_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: Math.max(env.HTTP_REQUEST_TIMEOUT_MS, env.HTTP_HEADERS_TIMEOUT_MS),
      keepAliveTimeoutMs: env.HTTP_KEEP_ALIVE_TIMEOUT_MS,
      trustProxy: checkTrustProxy(env.TRUST_PROXY, problems)
    },
    logLevel: env.LOG_LEVEL,
    mangopay: {
      environment: env.MANGOPAY_ENV,
      baseUrl: (baseUrl ?? '').replace(/\/+$/, ''),
      clientId: env.MANGOPAY_CLIENT_ID,
      apiKey: env.MANGOPAY_API_KEY,
      timeoutMs: env.MANGOPAY_TIMEOUT_MS,
      quotaReserve: env.MANGOPAY_QUOTA_RESERVE,
      reuseMinTtlS: env.EMBEDDED_TOKEN_REUSE_MIN_TTL_S,
      apiKeyFile: secretFiles.MANGOPAY_API_KEY,
      tls: mangopayTls(env, secretFiles.MANGOPAY_TLS_PASSPHRASE, env.MANGOPAY_BASE_URL, problems),
      retries: env.MANGOPAY_RETRIES,
      circuit: {
        failureThreshold: env.MANGOPAY_CIRCUIT_FAILURES,
        failureRatio: env.MANGOPAY_CIRCUIT_FAILURE_RATIO,
        windowMs: env.MANGOPAY_CIRCUIT_WINDOW_MS,
        minimumCalls: CIRCUIT_MINIMUM_CALLS,
        cooldownMs: env.MANGOPAY_CIRCUIT_COOLDOWN_MS
      }
    },
    auth: authConfig(env, problems),
    cors: { origins: checkOrigins(env.CORS_ORIGINS, problems) },
    rateLimit: {
      max: env.RATE_LIMIT_MAX,
      windowMs: env.RATE_LIMIT_WINDOW_MS,
      failedAuthMax: env.AUTH_FAILURE_LIMIT_MAX,
      failedAuthWindowMs: env.AUTH_FAILURE_LIMIT_WINDOW_MS
    },
    redis: redisConfig(env, problems),
    metrics: metricsConfig(env, problems)
  }
  if (problems.length > 0) throw new ConfigError(problems)
  return config
}

/** How long jose may take to fetch AUTH_JWKS_URL's key set. */
export const JWKS_FETCH_TIMEOUT_MS = 3000

/**
 * How long shutdown may take before close-with-grace gives up and exits 1: the drain delay,
 * then the longest a token request already in flight can still run (its deadline, or a
 * forward-mode session call or key-set fetch that outlasts it), and a margin; never under 15 s.
 */
export function shutdownGraceMs (config: Config): number {
  const longestRequestMs = Math.max(config.mangopay.timeoutMs, config.auth.forward?.timeoutMs ?? 0, JWKS_FETCH_TIMEOUT_MS)
  return config.server.shutdownDelayMs + Math.max(15_000, longestRequestMs + 5000)
}
