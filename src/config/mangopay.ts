import { checkUrl } from './checks.js'
import type { Env } from './schema.js'
import type { SecretFiles } from './secret-files.js'
import { loadTlsMaterial, type TlsFiles, type TlsSettings } from './tls-files.js'

/** How the broker reaches Mangopay (SPEC §4): where, with which credentials, and how carefully. */

export const MANGOPAY_BASE_URLS = {
  sandbox: 'https://api.sandbox.mangopay.com',
  production: 'https://api.mangopay.com'
} as const

const PUBLIC_MANGOPAY_HOSTS = new Set(['api.mangopay.com', 'api.sandbox.mangopay.com'])
const MANGOPAY_HOST_ENVIRONMENTS: Readonly<Record<string, 'sandbox' | 'production'>> = {
  'api.mangopay.com': 'production',
  'api-mtls.mangopay.com': 'production',
  'api.sandbox.mangopay.com': 'sandbox',
  'api-mtls.sandbox.mangopay.com': 'sandbox'
}

/** `api.mangopay.com.` (fully qualified) is `api.mangopay.com`. */
function mangopayHost (url: URL): string {
  return url.hostname.replace(/\.$/, '')
}

// A host of the other environment would make answers name the wrong one, and dev mode mint production tokens.
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

/** HTTP Basic (RFC 7617) cannot carry a user id with a colon: Mangopay would read another client id. */
function checkClientId (clientId: string | undefined, problems: string[]): void {
  if (clientId?.includes(':') === true) problems.push('MANGOPAY_CLIENT_ID must not contain ":" (it cannot be sent in HTTP Basic authentication)')
}

function mangopayTls (env: Env, passphraseFile: string | undefined, problems: string[]): TlsSettings | undefined {
  const files: TlsFiles = {
    ...(env.MANGOPAY_TLS_CERT_FILE === undefined ? {} : { certFile: env.MANGOPAY_TLS_CERT_FILE }),
    ...(env.MANGOPAY_TLS_KEY_FILE === undefined ? {} : { keyFile: env.MANGOPAY_TLS_KEY_FILE }),
    ...(env.MANGOPAY_TLS_CA_FILE === undefined ? {} : { caFile: env.MANGOPAY_TLS_CA_FILE }),
    ...(passphraseFile === undefined ? {} : { passphraseFile })
  }
  const configured = Object.keys(files).length > 0 || env.MANGOPAY_TLS_PASSPHRASE !== undefined
  if (!configured) return undefined
  let url: URL | undefined
  try {
    url = new URL(env.MANGOPAY_BASE_URL ?? MANGOPAY_BASE_URLS[env.MANGOPAY_ENV] ?? '')
  } catch {}
  if (url !== undefined && url.protocol !== 'https:') problems.push('MANGOPAY_TLS_* are set but MANGOPAY_BASE_URL is not https')
  if (url !== undefined && files.certFile !== undefined && PUBLIC_MANGOPAY_HOSTS.has(mangopayHost(url))) {
    problems.push(`a client certificate is only presented to the api-mtls hosts: set MANGOPAY_BASE_URL to https://api-mtls.${mangopayHost(url).slice(4)}`)
  }
  const material = loadTlsMaterial(files, env.MANGOPAY_TLS_PASSPHRASE, problems)
  return material === undefined ? undefined : { files, material }
}

export function mangopayConfig (env: Env, secretFiles: SecretFiles, problems: string[]) {
  const baseUrl = env.MANGOPAY_BASE_URL === undefined
    ? MANGOPAY_BASE_URLS[env.MANGOPAY_ENV]
    : checkUrl('MANGOPAY_BASE_URL', env.MANGOPAY_BASE_URL, problems)
  checkHostEnvironment(env, baseUrl, problems)
  checkClientId(env.MANGOPAY_CLIENT_ID, problems)
  return {
    environment: env.MANGOPAY_ENV,
    baseUrl: (baseUrl ?? '').replace(/\/+$/, ''),
    clientId: env.MANGOPAY_CLIENT_ID,
    apiKey: env.MANGOPAY_API_KEY,
    /** The whole deadline of one token request, counted from its arrival. */
    timeoutMs: env.MANGOPAY_TIMEOUT_MS,
    /** Fraction of every Mangopay rate-limit window left to the rest of the platform. */
    quotaReserve: env.MANGOPAY_QUOTA_RESERVE,
    /** A user's embedded token is handed again while it has this many seconds left; 0 = always mint. */
    reuseMinTtlS: env.EMBEDDED_TOKEN_REUSE_MIN_TTL_S,
    /** Where the API key was read from, so SIGHUP can read it again; undefined when given inline. */
    apiKeyFile: secretFiles.MANGOPAY_API_KEY,
    tls: mangopayTls(env, secretFiles.MANGOPAY_TLS_PASSPHRASE, problems),
    retries: env.MANGOPAY_RETRIES,
    circuit: {
      /** Consecutive failures that open the circuit; 0 turns this rule off. */
      failureThreshold: env.MANGOPAY_CIRCUIT_FAILURES,
      /** Failure ratio over `windowMs` that opens the circuit; 0 turns this rule off. */
      failureRatio: env.MANGOPAY_CIRCUIT_FAILURE_RATIO,
      windowMs: env.MANGOPAY_CIRCUIT_WINDOW_MS,
      /** The ratio rule ignores windows with fewer calls than this. */
      minimumCalls: 20,
      cooldownMs: env.MANGOPAY_CIRCUIT_COOLDOWN_MS
    }
  }
}

export type MangopayConfig = ReturnType<typeof mangopayConfig>
export type CircuitSettings = MangopayConfig['circuit']
