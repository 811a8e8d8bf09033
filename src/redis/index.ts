import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config/index.js'
import { scripted, type ScriptedRedis } from './scripts.js'

export { RedisLock } from './lock.js'
export { scripted, type ScriptedRedis } from './scripts.js'

// Fails fast while Redis is down rather than queue past a request's deadline. The URL may hold a password: never logged.
export function createRedisClient (config: NonNullable<Config['redis']>, log: FastifyBaseLogger): ScriptedRedis {
  const redis = new Redis(config.url, {
    keyPrefix: config.keyPrefix,
    connectTimeout: 2000,
    commandTimeout: 1000,
    maxRetriesPerRequest: 1,
    retryStrategy: attempt => Math.min(attempt * 200, 2000)
  })
  let reported = false
  // Without a listener ioredis prints every failed reconnection; one warning per outage is enough.
  redis.on('error', (err: NodeJS.ErrnoException) => {
    if (reported) return
    reported = true
    log.warn({ redis: { error: err.code ?? err.name } }, 'Redis is unreachable; shared limits fail closed until it is back')
  })
  redis.on('ready', () => {
    if (reported) log.info('Redis is reachable again')
    reported = false
  })
  return scripted(redis)
}

export async function closeRedisClient (redis: Redis): Promise<void> {
  try {
    await redis.quit()
  } catch {
    redis.disconnect()
  }
}
