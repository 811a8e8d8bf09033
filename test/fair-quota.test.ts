import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { ManualClock } from './manual-clock.js'
import { assertProblem, buildTestApp, post, tokenFor, type TestApp, opsGet } from './helpers.js'

/**
 * SPEC §8 "Fair quota", with the shipped defaults (6 mints per user and 12 per session each
 * 15 minutes, a quarter of the broker's share kept for first tokens, the 20 % platform reserve),
 * against an emulator whose 15-minute window holds 60 calls: 12 for the platform, 48 for the
 * broker, 12 of them kept for first tokens.
 */

const NOW = Date.UTC(2026, 10, 28, 10, 0, 0)
const LIMIT = 60
const RESERVE_CALLS = 12
const RECIPIENTS = '/v1/tokens/recipients'
/** The variables test/helpers.ts sets to keep the fair quota out of other tests' way, unset. */
const SHIPPED_DEFAULTS = { TOKEN_BUDGET_PER_USER: undefined, TOKEN_BUDGET_PER_SESSION: undefined, TOKEN_BUDGET_FIRST_TOKEN_SHARE: undefined }

interface Broker extends TestApp { clock: ManualClock }

async function broker (t: Test, env: Record<string, string | undefined> = {}, quota = [{ limit: LIMIT, periodS: 900 }]): Promise<Broker> {
  const clock = new ManualClock(NOW)
  return { clock, ...await buildTestApp(t, { env: { ...SHIPPED_DEFAULTS, ...env }, emulator: { clock, quota }, deps: { clock } }) }
}

const userId = (n: number): string => `user_m_FAIR${String(n).padStart(4, '0')}`
/** One person, one subject: a session of their own. */
const signIn = async (user: string): Promise<string> => await tokenFor(user, {}, { subject: `idp|${user}` })

/** Why the broker refused, as its log line says (the body only says `rate_limited`). */
function reasons (broker: TestApp): string[] {
  return broker.logs.lines().flatMap(l => {
    const rateLimit = l.rateLimit as { scope?: string, reason?: string } | undefined
    return rateLimit?.scope === 'token_budget' && rateLimit.reason !== undefined ? [rateLimit.reason] : []
  })
}

function metric (text: string, line: string): number | undefined {
  const found = text.split('\n').find(l => l.startsWith(`${line} `))
  return found === undefined ? undefined : Number(found.slice(line.length + 1))
}

/** Ten users, each sending RATE_LIMIT_MAX (10) requests, all ten at once each round. */
async function hammer (app: TestApp['app'], jwts: string[]): Promise<LightMyRequestResponse[]> {
  const answers: LightMyRequestResponse[] = []
  for (let round = 0; round < 10; round++) answers.push(...await Promise.all(jwts.map(async jwt => await post(app, RECIPIENTS, { token: jwt }))))
  return answers
}

t.test('ten users hammering cannot stop an eleventh user\'s first token, and the platform\'s reserve holds', async t => {
  const b = await broker(t)
  const hammering = await Promise.all(Array.from({ length: 10 }, async (_, i) => await signIn(userId(i))))
  const answers = await hammer(b.app, hammering)
  const served = answers.filter(a => a.statusCode === 200).length
  const refused = answers.filter(a => a.statusCode !== 200)
  t.ok(refused.length > 0, `${served} of 100 requests served`)
  for (const res of refused.slice(0, 5)) assertProblem(t, res, 429, 'rate_limited')
  t.same(new Set(refused.map(a => a.statusCode)), new Set([429]), 'every refusal is a 429, none a 503')
  t.ok(reasons(b).includes('first_tokens_first'), 'repeat users were refused once the share ran low')
  const lowRefusal = refused.find(a => /running low/.test(a.json().detail as string))
  t.equal(lowRefusal?.headers['retry-after'], '900', 'Retry-After: until the Mangopay window resets')
  for (let i = 0; i < 10; i++) t.ok(b.emulator.control.minted.filter(m => m.userId === userId(i)).length <= 6, 'no user beyond its budget')

  const eleventh = await post(b.app, RECIPIENTS, { token: await signIn(userId(10)) })
  t.equal(eleventh.statusCode, 200, 'the eleventh user\'s first token of the window')
  const calls = b.emulator.control.calls.total
  t.ok(LIMIT - calls >= RESERVE_CALLS, `the emulator counted ${calls} calls of ${LIMIT}: ${LIMIT - calls} left, the reserve is ${RESERVE_CALLS}`)
  t.equal(calls, 1 + served + 1, 'one OAuth call, and one call per token served')

  t.comment(`served ${served} of 100 (${reasons(b).filter(r => r === 'first_tokens_first').length} first_tokens_first, ${reasons(b).filter(r => r === 'user_budget').length} user_budget refusals); emulator: ${calls} calls of ${LIMIT}, ${LIMIT - calls} left`)
  const ready = (await opsGet(b.app, '/readyz')).json()
  t.match(ready.checks.quota.share, { window: 0, size: LIMIT - RESERVE_CALLS, spent: calls }, 'readiness shows the broker\'s share used')
  const scraped = (await opsGet(b.app, '/metrics')).body
  t.equal(metric(scraped, 'broker_mangopay_quota_spent{window="0"}'), calls)
  t.equal(metric(scraped, 'broker_mangopay_quota_share{window="0"}'), LIMIT - RESERVE_CALLS)
  t.equal(metric(scraped, 'broker_token_budget_refusals_total{reason="first_tokens_first"}'), reasons(b).filter(r => r === 'first_tokens_first').length)
  t.equal(metric(scraped, 'broker_token_budget_refusals_total{reason="reserve"}'), 0)
  t.notMatch(scraped, /user_m_/, 'no user id in any label')
})

t.test('without the part kept for first tokens, the same hammering starves the eleventh user', async t => {
  // Proves the scenario above can fail: the budgets alone let ten users spend the whole share.
  const b = await broker(t, { TOKEN_BUDGET_FIRST_TOKEN_SHARE: '0' })
  await hammer(b.app, await Promise.all(Array.from({ length: 10 }, async (_, i) => await signIn(userId(i)))))
  assertProblem(t, await post(b.app, RECIPIENTS, { token: await signIn(userId(10)) }), 503, 'upstream_unavailable')
})

t.test('the report: near the reserve, one user\'s twelve requests no longer lock out the next user', async t => {
  // Mangopay's own windows; 470 left of 2300 is 10 above the reserve of 460.
  const b = await broker(t, {}, [{ limit: 2300, periodS: 900 }, { limit: 4500, periodS: 1800 }, { limit: 8800, periodS: 3600 }, { limit: 105600, periodS: 86400 }])
  b.emulator.control.setRemaining([470, 4000, 8000, 100000])
  const attacker = await signIn(userId(1))
  const statuses: number[] = []
  for (let i = 0; i < 12; i++) statuses.push((await post(b.app, RECIPIENTS, { token: attacker })).statusCode)
  t.same(statuses, [200, ...Array(11).fill(429)], 'one token, then refusals (the budget, then RATE_LIMIT_MAX)')
  const next = await post(b.app, RECIPIENTS, { token: await signIn(userId(2)) })
  t.equal(next.statusCode, 200, 'a different user gets a token, not a 503')
  t.equal(b.emulator.control.calls.total, 3, 'one OAuth call and two tokens')
})

t.test('the window\'s reset restores service to users who had tokens in it', async t => {
  const b = await broker(t)
  const jwts = await Promise.all(Array.from({ length: 10 }, async (_, i) => await signIn(userId(i))))
  await hammer(b.app, jwts)
  assertProblem(t, await post(b.app, RECIPIENTS, { token: jwts[0] }), 429, 'rate_limited')
  b.clock.advance(900_000)
  b.emulator.control.reset()
  const again = await post(b.app, RECIPIENTS, { token: jwts[0] })
  t.equal(again.statusCode, 200, 'a new window: the user is served again')
})

t.test('a session listing many Mangopay users is bounded as a whole', async t => {
  const b = await broker(t)
  const ids = Array.from({ length: 20 }, (_, i) => userId(i))
  const greedy = await tokenFor(ids, {}, { subject: 'idp|greedy' })
  for (let i = 0; i < 12; i++) t.equal((await post(b.app, RECIPIENTS, { token: greedy, body: { userId: ids[i] } })).statusCode, 200, `user ${i + 1} of the session`)
  const refused = await post(b.app, RECIPIENTS, { token: greedy, body: { userId: ids[12] } })
  assertProblem(t, refused, 429, 'rate_limited')
  t.equal(refused.headers['retry-after'], '900', 'until the session\'s window ends')
  t.same(reasons(b), ['session_budget'])
  t.equal(b.emulator.control.minted.length, 12, 'TOKEN_BUDGET_PER_SESSION, whatever the number of users')
  const owner = await tokenFor(ids[12] as string, {}, { subject: 'idp|owner-of-12' })
  t.equal((await post(b.app, RECIPIENTS, { token: owner, body: { userId: ids[12] } })).statusCode, 200, 'another session for that user is not bounded by the first')
})

t.test('a user\'s budget counts both kinds and every session, and ends with its window', async t => {
  const b = await broker(t)
  const phone = await tokenFor(userId(1), {}, { subject: 'idp|phone' })
  const laptop = await tokenFor(userId(1), {}, { subject: 'idp|laptop' })
  for (let i = 0; i < 6; i++) t.equal((await post(b.app, i % 2 === 0 ? RECIPIENTS : '/v1/tokens/checkout', { token: i < 3 ? phone : laptop })).statusCode, 200)
  const refused = await post(b.app, RECIPIENTS, { token: laptop })
  assertProblem(t, refused, 429, 'rate_limited')
  t.equal(refused.headers['retry-after'], '900')
  t.same(reasons(b), ['user_budget'])
  b.clock.advance(899_000)
  t.equal((await post(b.app, RECIPIENTS, { token: phone })).headers['retry-after'], '1')
  b.clock.advance(1000)
  t.equal((await post(b.app, RECIPIENTS, { token: phone })).statusCode, 200, 'a new window')
})

t.test('a token handed again costs no budget, and is handed even while the share is low', async t => {
  const b = await broker(t, { EMBEDDED_TOKEN_REUSE_MIN_TTL_S: '300' }, [{ limit: 2300, periodS: 900 }])
  b.emulator.control.setRemaining([470])
  const jwt = await signIn(userId(1))
  const first = await post(b.app, RECIPIENTS, { token: jwt })
  t.equal(first.statusCode, 200)
  for (let i = 0; i < 8; i++) {
    const again = await post(b.app, RECIPIENTS, { token: jwt })
    t.equal(again.json().clientToken, first.json().clientToken, 'the held token, not a refusal')
  }
  t.equal(b.emulator.control.calls.recipient, 1)
  t.same(reasons(b), [])
  assertProblem(t, await post(b.app, '/v1/tokens/checkout', { token: jwt }), 429, 'rate_limited')
  t.same(reasons(b), ['first_tokens_first'], 'a new mint for a user who had a token is what waits')
})

t.test('while the quota guard refuses calls, refused requests cost no budget', async t => {
  // An hour's budget window outlasts the 15-minute pause: what the pause charged would still count after it.
  const b = await broker(t, { TOKEN_BUDGET_WINDOW_MS: '3600000' }, [{ limit: 20, periodS: 900 }])
  const jwt = await signIn(userId(1))
  b.emulator.control.setRemaining([5])
  // Charged: nothing told the broker yet; the OAuth call's answer is at the reserve.
  assertProblem(t, await post(b.app, RECIPIENTS, { token: jwt }), 503, 'upstream_unavailable')
  for (let i = 0; i < 8; i++) assertProblem(t, await post(b.app, RECIPIENTS, { token: jwt }), 503, 'upstream_unavailable')
  b.clock.advance(900_000)
  b.emulator.control.reset()
  for (let i = 0; i < 5; i++) t.equal((await post(b.app, RECIPIENTS, { token: jwt })).statusCode, 200, `token ${i + 1} after the pause`)
  assertProblem(t, await post(b.app, RECIPIENTS, { token: jwt }), 429, 'rate_limited')
  t.same(reasons(b), ['user_budget'], 'six charged in all: one before the pause was known, none during it')
})
