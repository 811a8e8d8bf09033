import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config/index.js'
import { RedisBudgetStore } from '../src/limits/budget-store-redis.js'
import { closeRedisClient, createRedisClient } from '../src/redis/index.js'
import { ManualClock } from './manual-clock.js'
import { assertNoSecrets, assertProblem, baseEnv, buildTestApp, captureLogs, post, tokenFor, type TestApp, type TestContext } from './helpers.js'

/**
 * SPEC §8 "Fair quota" with REDIS_URL: two brokers in front of one emulator, on the real Redis
 * at 127.0.0.1:6379, share the user and session budgets and the decision to keep what is left
 * of the share for first tokens. Shipped defaults; the emulator's window holds 60 calls.
 */

const REDIS_URL = 'redis://127.0.0.1:6379'
const NOW = Date.UTC(2026, 10, 28, 10, 0, 0)
const LIMIT = 60
const RECIPIENTS = '/v1/tokens/recipients'

const userId = (n: number): string => `user_m_FLEET${String(n).padStart(4, '0')}`
const signIn = async (user: string): Promise<string> => await tokenFor(user, {}, { subject: `idp|${user}` })

interface Fleet { a: FastifyInstance, b: FastifyInstance, one: TestApp, bLogs: ReturnType<typeof captureLogs>, redis: Redis, prefix: string }

async function fleet (t: TestContext): Promise<Fleet> {
  const prefix = `broker-test-fair-${randomUUID()}:`
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  })
  const clock = new ManualClock(NOW)
  const env = { REDIS_URL, REDIS_KEY_PREFIX: prefix, TOKEN_BUDGET_PER_USER: undefined, TOKEN_BUDGET_PER_SESSION: undefined, TOKEN_BUDGET_FIRST_TOKEN_SHARE: undefined }
  const one = await buildTestApp(t, { env, emulator: { clock, quota: [{ limit: LIMIT, periodS: 900 }] }, deps: { clock } })
  const bLogs = captureLogs()
  const b = await buildApp(loadConfig(baseEnv(one.emulator.url, env)), { logger: bLogs.logger, clock })
  t.teardown(async () => {
    await b.close()
    assertNoSecrets(bLogs.text(), one.emulator)
  })
  return { a: one.app, b, one, bLogs, redis, prefix }
}

t.test('one user budget and one session bound for the fleet', async t => {
  const { a, b, one } = await fleet(t)
  const jwt = await signIn(userId(1))
  for (let i = 0; i < 6; i++) t.equal((await post(i % 2 === 0 ? a : b, RECIPIENTS, { token: jwt })).statusCode, 200, `token ${i + 1}, from instance ${i % 2 === 0 ? 'a' : 'b'}`)
  const refusedA = await post(a, RECIPIENTS, { token: jwt })
  assertProblem(t, refusedA, 429, 'rate_limited')
  t.equal(refusedA.headers['retry-after'], '900')
  assertProblem(t, await post(b, RECIPIENTS, { token: jwt }), 429, 'rate_limited')

  const ids = Array.from({ length: 20 }, (_, i) => userId(100 + i))
  const greedy = await tokenFor(ids, {}, { subject: 'idp|greedy' })
  for (let i = 0; i < 12; i++) t.equal((await post(i < 6 ? a : b, RECIPIENTS, { token: greedy, body: { userId: ids[i] } })).statusCode, 200)
  assertProblem(t, await post(a, RECIPIENTS, { token: greedy, body: { userId: ids[12] } }), 429, 'rate_limited')
  assertProblem(t, await post(b, RECIPIENTS, { token: greedy, body: { userId: ids[13] } }), 429, 'rate_limited')
  t.equal(one.emulator.control.minted.length, 18, '6 for the user, 12 for the session, across both instances')
})

t.test('the fleet keeps what is left of the share for first tokens, whichever instance sees the answers', async t => {
  const { a, b, one, bLogs } = await fleet(t)
  const jwts = await Promise.all(Array.from({ length: 10 }, async (_, i) => await signIn(userId(i))))
  // Every call goes through instance a: b never reads a Mangopay answer. Six rounds stay under
  // RATE_LIMIT_MAX (10 a minute), which the fleet shares too.
  for (let round = 0; round < 6; round++) await Promise.all(jwts.map(async jwt => await post(a, RECIPIENTS, { token: jwt })))
  t.same(b.mangopay.quota().windows, [], 'instance b has no quota view of its own')

  const repeat = await post(b, RECIPIENTS, { token: jwts[0] })
  assertProblem(t, repeat, 429, 'rate_limited')
  t.equal(repeat.headers['retry-after'], '900', 'until the window that a saw running low resets')
  t.match(bLogs.lines().find(l => l.code === 'rate_limited'), { rateLimit: { scope: 'token_budget', reason: 'first_tokens_first' } })
  t.equal((await post(b, RECIPIENTS, { token: await signIn(userId(10)) })).statusCode, 200, 'a first token through b')
  const calls = one.emulator.control.calls.total
  t.ok(LIMIT - calls >= 12, `the emulator counted ${calls} calls of ${LIMIT}: the reserve of 12 holds`)
})

t.test('the shared counters: under the prefix, expiring, no subject in clear', async t => {
  const { a, redis, prefix } = await fleet(t)
  const jwt = await signIn(userId(1))
  // The first admission precedes any Mangopay answer: the share view is stored from the second.
  t.equal((await post(a, RECIPIENTS, { token: jwt })).statusCode, 200)
  t.equal((await post(a, RECIPIENTS, { token: jwt })).statusCode, 200)
  const keys = (await redis.keys(`${prefix}tb:*`)).sort()
  t.equal(keys.length, 3, 'a user, a session and the share view')
  t.ok(keys.includes(`${prefix}tb:user:${userId(1)}`))
  t.notOk(keys.some(k => k.includes('idp|')), 'the session is named by a hash of its subject')
  for (const key of keys) {
    const ttl = await redis.pttl(key)
    t.ok(ttl > 0 && ttl <= 900_000, `${key} expires (${ttl} ms)`)
  }
})

t.test('Redis unreachable: the admission fails closed', async t => {
  const redis = createRedisClient({ url: 'redis://127.0.0.1:1', keyPrefix: 'broker-test-down:' }, captureLogs().logger)
  t.teardown(async () => await closeRedisClient(redis))
  const store = new RedisBudgetStore({ redis, clock: new ManualClock(NOW), scope: 'test' })
  await t.rejects(store.admit({ userKey: 'u', sessionKey: 's', view: undefined }, { perUser: 6, perSession: 12, windowMs: 900_000 }), { code: 'shared_state_unavailable', retryAfterS: 5 })
})
