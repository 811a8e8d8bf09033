import type { Redis } from 'ioredis'

/** Every Lua script the broker runs: each is one atomic round trip. */
const SCRIPTS = {
  // Deletes a key only if it still holds what the caller saw: a lock it owns, a bearer it refused.
  brokerCompareAndDelete: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`,
  // Keeps the later of two quota pauses: a shorter one published afterwards must not shorten it.
  brokerQuotaBlock: `
local current = redis.call('GET', KEYS[1])
if current then
  local blocked = tonumber(string.match(current, '^(%d+)'))
  if blocked and blocked >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'PX', ARGV[3])
return 1
`,
  // A key somehow left without expiry gets one, so nothing lives for ever.
  brokerRateLimitIncr: `
local current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return { current, ttl }
`,
  brokerRateLimitRead: `
local current = redis.call('GET', KEYS[1])
if not current then return { 0, 0 } end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = 0 end
return { tonumber(current), ttl }
`
} as const

export interface BrokerScripts {
  brokerCompareAndDelete (key: string, expected: string): Promise<number>
  brokerQuotaBlock (key: string, until: string, reason: string, ttlMs: string): Promise<number>
  brokerRateLimitIncr (key: string, windowMs: number): Promise<[number, number]>
  brokerRateLimitRead (key: string): Promise<[number, number]>
}

export type ScriptedRedis = Redis & BrokerScripts

export function scripted (redis: Redis): ScriptedRedis {
  for (const [name, lua] of Object.entries(SCRIPTS)) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: 1, lua })
  }
  return redis as ScriptedRedis
}
