import type { Config } from '../config/index.js'
import { hostPort } from '../upstream/index.js'

// The start-up line: what this instance runs with, to compare with what was meant. Hosts, modes and
// numbers only; never a key, a secret, a password or a URL's path or query.

function identityProvider (auth: Config['auth']): Record<string, string> {
  if (auth.mode === 'forward' && auth.forward !== undefined) return { kind: 'forward', host: hostPort(auth.forward.url) }
  if (auth.mode === 'dev') return { kind: 'dev' }
  const jwt = auth.jwt
  if (jwt === undefined) return { kind: 'none' }
  // Issuer and audience are claims every token carries, not secrets.
  const claims = { issuer: jwt.issuer, audience: jwt.audience }
  if (jwt.key.kind === 'jwks') return { kind: 'jwks', host: hostPort(jwt.key.url), ...claims }
  return { kind: jwt.key.kind === 'secret' ? 'hmac_key' : 'public_key', ...claims }
}

function redisHost (redis: Config['redis']): Record<string, unknown> | null {
  if (redis === undefined) return null
  const url = new URL(redis.url)
  return { host: `${url.hostname}:${url.port === '' ? '6379' : url.port}`, tls: url.protocol === 'rediss:', keyPrefix: redis.keyPrefix }
}

export function effectiveSettings (config: Config): Record<string, unknown> {
  const { mangopay, auth, rateLimit } = config
  return {
    listen: { host: config.server.host, port: config.server.port, metricsPort: config.metrics.port ?? null },
    auth: { mode: auth.mode, identityProvider: identityProvider(auth), userIdClaim: auth.userIdClaim, cookieName: auth.cookieName ?? null },
    mangopay: {
      environment: mangopay.environment,
      host: hostPort(mangopay.baseUrl),
      clientId: mangopay.clientId,
      keyFrom: mangopay.apiKeyFile === undefined ? 'env' : 'file',
      mtls: mangopay.tls?.material.cert !== undefined,
      timeoutMs: mangopay.timeoutMs,
      retries: mangopay.retries,
      quotaReserve: mangopay.quotaReserve
    },
    origins: config.cors.origins,
    redis: redisHost(config.redis),
    limits: {
      perUser: { max: rateLimit.max, windowMs: rateLimit.windowMs },
      failedAuth: { max: rateLimit.failedAuthMax, windowMs: rateLimit.failedAuthWindowMs },
      budget: rateLimit.budget
    },
    reuse: { minTtlS: mangopay.reuseMinTtlS }
  }
}
