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
`,
  // The fair quota's admission (limits/budget-store.ts has the same steps): KEYS user, session and
  // share view; ARGV now, windowMs, perUser, perSession, observedAt, then left, kept, resetAt per window.
  // Times are the app's clock, so windows end with it; PEXPIRE only collects what is left over.
  brokerTokenBudgetAdmit: `
local now = tonumber(ARGV[1])
local function window (key)
  local held = redis.call('HMGET', key, 'n', 'end')
  local count, ends = tonumber(held[1]), tonumber(held[2])
  if count == nil or ends == nil or ends <= now then return 0, now + tonumber(ARGV[2]) end
  return count, ends
end
local userCount, userEnds = window(KEYS[1])
if userCount >= tonumber(ARGV[3]) then return { 'user_budget', userEnds - now } end
local sessionCount, sessionEnds = window(KEYS[2])
if sessionCount >= tonumber(ARGV[4]) then return { 'session_budget', sessionEnds - now } end
local view = {}
local stored = redis.call('GET', KEYS[3])
if stored then for n in string.gmatch(stored, '%S+') do view[#view + 1] = tonumber(n) end end
local observedAt = tonumber(ARGV[5])
if observedAt > 0 and (#view < 2 or observedAt > view[1]) then
  view = { observedAt, 0 }
  for i = 6, #ARGV do view[#view + 1] = tonumber(ARGV[i]) end
end
local reserveUntil, lowUntil, lastReset = 0, 0, 0
for i = 3, #view - 2, 3 do
  local left, kept, resetAt = view[i] - view[2], view[i + 1], view[i + 2]
  lastReset = math.max(lastReset, resetAt)
  if resetAt > now then
    if left <= 0 then reserveUntil = math.max(reserveUntil, resetAt)
    elseif left <= kept then lowUntil = math.max(lowUntil, resetAt) end
  end
end
if reserveUntil > 0 then return { 'reserve', reserveUntil - now } end
if lowUntil > 0 and userCount > 0 then return { 'first_tokens_first', lowUntil - now } end
redis.call('HSET', KEYS[1], 'n', userCount + 1, 'end', string.format('%d', userEnds))
redis.call('PEXPIRE', KEYS[1], userEnds - now)
redis.call('HSET', KEYS[2], 'n', sessionCount + 1, 'end', string.format('%d', sessionEnds))
redis.call('PEXPIRE', KEYS[2], sessionEnds - now)
if #view >= 2 and lastReset > now then
  view[2] = view[2] + 1
  local parts = {}
  for i, n in ipairs(view) do parts[i] = string.format('%d', n) end
  redis.call('SET', KEYS[3], table.concat(parts, ' '), 'PX', lastReset - now)
end
if userCount == 0 then return { 'ok', 1 } end
return { 'ok', 0 }
`
} as const

/** Scripts that take more than one key. */
const KEY_COUNTS: Partial<Record<keyof typeof SCRIPTS, number>> = { brokerTokenBudgetAdmit: 3 }

export interface BrokerScripts {
  brokerCompareAndDelete (key: string, expected: string): Promise<number>
  brokerQuotaBlock (key: string, until: string, reason: string, ttlMs: string): Promise<number>
  brokerRateLimitIncr (key: string, windowMs: number): Promise<[number, number]>
  brokerRateLimitRead (key: string): Promise<[number, number]>
  brokerTokenBudgetAdmit (userKey: string, sessionKey: string, viewKey: string, ...args: string[]): Promise<[string, number]>
}

export type ScriptedRedis = Redis & BrokerScripts

export function scripted (redis: Redis): ScriptedRedis {
  for (const [name, lua] of Object.entries(SCRIPTS)) {
    if (!(name in redis)) redis.defineCommand(name, { numberOfKeys: KEY_COUNTS[name as keyof typeof SCRIPTS] ?? 1, lua })
  }
  return redis as ScriptedRedis
}
