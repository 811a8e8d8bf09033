import type { Env } from './schema.js'

/** A redis:// or rediss:// URL. Problems never quote it: it may carry a password. */
export function redisConfig (env: Env, problems: string[]) {
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
