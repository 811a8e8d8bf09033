import { checkUrl, splitList } from './checks.js'
import type { Env } from './schema.js'

/** Who may ask for a token (SPEC §3.1): one of three modes, each with its own settings. */

const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const
const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const
export type JwtAlgorithm = typeof ASYMMETRIC_ALGORITHMS[number] | typeof HMAC_ALGORITHMS[number]

export type JwtKeySource =
  | { kind: 'jwks', url: string }
  | { kind: 'public-key', pem: string }
  | { kind: 'secret', secret: string }
  /** OIDC discovery (or RFC 8414) from the issuer itself, which the document must name exactly. */
  | { kind: 'discovery', issuer: string }

export const JWKS_FETCH_TIMEOUT_MS = 3000

/** The issuer as written (the document must name it exactly); its URL rules are those of OpenID Connect Discovery §3. */
function discoveryIssuer (issuer: string, problems: string[]): string | undefined {
  const url = checkUrl('AUTH_ISSUER', issuer, problems)
  if (url === undefined) return undefined
  if (url.includes('?') || url.includes('#')) {
    problems.push('AUTH_ISSUER must have no query or fragment (it is the base of the discovery document\'s URL)')
    return undefined
  }
  return issuer
}

/** Algorithms that fit the key: never HMAC with a public key, never `none`. */
function jwtAlgorithms (env: Env, key: JwtKeySource, problems: string[]): JwtAlgorithm[] {
  const allowedForKey: readonly JwtAlgorithm[] = key.kind === 'secret' ? HMAC_ALGORITHMS : ASYMMETRIC_ALGORITHMS
  const requested = splitList(env.AUTH_JWT_ALGORITHMS)
  if (requested.length === 0) return key.kind === 'secret' ? ['HS256'] : ['RS256', 'PS256', 'ES256', 'EdDSA']
  const algorithms: JwtAlgorithm[] = []
  for (const name of requested) {
    const alg = allowedForKey.find(a => a === name)
    if (alg !== undefined) {
      algorithms.push(alg)
    } else {
      problems.push(`AUTH_JWT_ALGORITHMS: "${name}" is not allowed with ${key.kind === 'secret' ? 'an HMAC secret' : 'public keys'} (allowed: ${allowedForKey.join(', ')})`)
    }
  }
  return algorithms
}

function jwtConfig (env: Env, problems: string[]) {
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
  if (given === 0 && env.AUTH_ISSUER === undefined) problems.push('AUTH_MODE=jwt needs one of AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY(_FILE) or AUTH_JWT_SECRET(_FILE), or AUTH_ISSUER alone (OIDC discovery)')
  if (given === 0 && env.AUTH_ISSUER !== undefined) {
    const issuer = discoveryIssuer(env.AUTH_ISSUER, problems)
    if (issuer !== undefined) sources.push({ kind: 'discovery', issuer })
  }
  if (given > 1) problems.push('set only one of AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY(_FILE), AUTH_JWT_SECRET(_FILE)')
  if (env.AUTH_ISSUER === undefined) problems.push('AUTH_ISSUER is required when AUTH_MODE=jwt')
  if (env.AUTH_AUDIENCE === undefined) problems.push('AUTH_AUDIENCE is required when AUTH_MODE=jwt')
  const key = sources[0]
  if (given > 1 || key === undefined || env.AUTH_ISSUER === undefined || env.AUTH_AUDIENCE === undefined) return undefined
  return {
    key,
    algorithms: jwtAlgorithms(env, key, problems),
    issuer: env.AUTH_ISSUER,
    audience: env.AUTH_AUDIENCE,
    clockToleranceS: env.AUTH_CLOCK_TOLERANCE_S,
    /** The JWT header's `typ` that must match (e.g. `at+jwt`); unset: not checked. */
    ...(env.AUTH_JWT_TYP === undefined ? {} : { typ: env.AUTH_JWT_TYP })
  }
}

function forwardConfig (env: Env, problems: string[]) {
  if (env.AUTH_FORWARD_URL === undefined) {
    problems.push('AUTH_FORWARD_URL is required when AUTH_MODE=forward')
    return undefined
  }
  const url = checkUrl('AUTH_FORWARD_URL', env.AUTH_FORWARD_URL, problems)
  if (url === undefined) return undefined
  return {
    url,
    /** How long the platform's answer for the same credentials is reused; 0 = always ask. */
    cacheTtlMs: env.AUTH_FORWARD_CACHE_TTL_MS,
    timeoutMs: env.AUTH_FORWARD_TIMEOUT_MS
  }
}

function devConfig (env: Env, problems: string[]) {
  if (env.MANGOPAY_ENV === 'production') problems.push('AUTH_MODE=dev is refused when MANGOPAY_ENV=production')
  if (env.NODE_ENV === 'production') problems.push('AUTH_MODE=dev is refused when NODE_ENV=production')
  return { sessionSecret: env.DEV_SESSION_SECRET }
}

export function authConfig (env: Env, problems: string[]) {
  return {
    mode: env.AUTH_MODE,
    userIdClaim: env.AUTH_USER_ID_CLAIM,
    /** Also read the JWT from this cookie (the CSRF rules then apply). */
    cookieName: env.AUTH_COOKIE_NAME,
    jwt: env.AUTH_MODE === 'jwt' ? jwtConfig(env, problems) : undefined,
    forward: env.AUTH_MODE === 'forward' ? forwardConfig(env, problems) : undefined,
    dev: env.AUTH_MODE === 'dev' ? devConfig(env, problems) : undefined
  }
}

export type AuthConfig = ReturnType<typeof authConfig>
export type JwtConfig = NonNullable<AuthConfig['jwt']>
