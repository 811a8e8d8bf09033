import { isLoopbackHost } from './checks.js'
import type { Env } from './schema.js'

/** A redis:// or rediss:// URL. Problems never quote it: it may carry a password. */
export function redisConfig (env: Env, problems: string[]) {
  if (env.REDIS_URL === undefined) return undefined
  let url: URL | undefined
  try {
    url = new URL(env.REDIS_URL)
  } catch {}
  if (url?.protocol !== 'redis:' && url?.protocol !== 'rediss:') {
    problems.push('REDIS_URL must be a redis:// or rediss:// URL')
    return undefined
  }
  // Rate-limit keys, budgets and the password itself would cross the network in clear.
  if (url.protocol === 'redis:' && !isLoopbackHost(url.hostname) && env.REDIS_TRUSTED_NETWORK !== 'true') {
    problems.push('REDIS_URL must use rediss:// (TLS) for a host that is not loopback, or set REDIS_TRUSTED_NETWORK=true if the network is private and trusted')
    return undefined
  }
  return { url: env.REDIS_URL, keyPrefix: env.REDIS_KEY_PREFIX }
}
