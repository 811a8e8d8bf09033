import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { Redis } from 'ioredis'
import t from 'tap'
import { request } from 'undici'
import { ManualClock } from './manual-clock.js'
import { assertProblem, buildTestApp, post, tokenFor, USER_A, USER_B, USER_C, type TestContext } from './helpers.js'

/**
 * SPEC §3.5: a per-Mangopay-user budget over both token routes, keyed on the verified
 * identity; a per-address limit on failed authentications; X-Forwarded-For believed only from
 * TRUST_PROXY; with REDIS_URL, one budget for every instance.
 */

const RECIPIENTS = '/v1/tokens/recipients'
const CHECKOUT = '/v1/tokens/checkout'
const REDIS_URL = 'redis://127.0.0.1:6379'

t.test('per user: exactly RATE_LIMIT_MAX tokens per window, then 429 with Retry-After and the standard headers', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '3', RATE_LIMIT_WINDOW_MS: '60000' } })
  const alice = await tokenFor(USER_A)
  for (let i = 1; i <= 3; i++) {
    const res = await post(app, RECIPIENTS, { token: alice })
    t.equal(res.statusCode, 200, `request ${i} is allowed`)
    t.equal(res.headers['x-ratelimit-limit'], '3')
    t.equal(res.headers['x-ratelimit-remaining'], String(3 - i))
    t.ok(Number(res.headers['x-ratelimit-reset']) > 0 && Number(res.headers['x-ratelimit-reset']) <= 60, 'x-ratelimit-reset in seconds')
  }
  const callsBefore = emulator.control.calls.total
  const refused = await post(app, RECIPIENTS, { token: alice })
  const body = assertProblem(t, refused, 429, 'rate_limited')
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After in seconds within the window (${String(refused.headers['retry-after'])})`)
  t.equal(refused.headers['x-ratelimit-limit'], '3')
  t.equal(refused.headers['x-ratelimit-remaining'], '0')
  t.equal(refused.headers['x-ratelimit-reset'], refused.headers['retry-after'])
  t.match(body.detail, /retry in \d+ s/)
  t.equal(emulator.control.calls.total, callsBefore, 'the refusal made no Mangopay call')
  t.equal(emulator.control.minted.filter(m => m.userId === USER_A).length, 3, 'the emulator minted exactly 3')
})

t.test('per user: other users are unaffected; recipients and checkout share one budget', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '3' } })
  const alice = await tokenFor(USER_A)
  const bob = await tokenFor(USER_B)
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200)
  t.equal((await post(app, CHECKOUT, { token: alice })).statusCode, 200)
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200)
  assertProblem(t, await post(app, CHECKOUT, { token: alice }), 429, 'rate_limited')
  assertProblem(t, await post(app, RECIPIENTS, { token: alice }), 429, 'rate_limited')

  for (let i = 0; i < 3; i++) t.equal((await post(app, i % 2 === 0 ? CHECKOUT : RECIPIENTS, { token: bob })).statusCode, 200, 'another user has a budget of their own')
  assertProblem(t, await post(app, CHECKOUT, { token: bob }), 429, 'rate_limited')
  t.same(emulator.control.minted.map(m => m.userId).sort(), [USER_A, USER_A, USER_A, USER_B, USER_B, USER_B].sort())
})

t.test('per user: keyed on the verified, selected Mangopay user, never on what the body names', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '2' } })
  const alice = await tokenFor(USER_A)
  // A session may not spend (or exhaust) a budget it does not own by naming another user.
  for (let i = 0; i < 5; i++) assertProblem(t, await post(app, RECIPIENTS, { token: alice, body: { userId: USER_B } }), 403, 'forbidden_user')
  const bobSession = await tokenFor([USER_B, USER_C], {}, { subject: 'idp|bob' })
  t.equal((await post(app, RECIPIENTS, { token: bobSession, body: { userId: USER_B } })).statusCode, 200, 'USER_B\'s budget was untouched')
  t.equal((await post(app, RECIPIENTS, { token: bobSession, body: { userId: USER_B } })).statusCode, 200)
  assertProblem(t, await post(app, RECIPIENTS, { token: bobSession, body: { userId: USER_B } }), 429, 'rate_limited')
  t.equal((await post(app, RECIPIENTS, { token: bobSession, body: { userId: USER_C } })).statusCode, 200, 'each Mangopay user of a session has its own budget')

  // Two sessions (different subjects) for the same Mangopay user share that user's budget.
  const otherDeviceOfC = await tokenFor(USER_C, {}, { subject: 'idp|bob-phone' })
  t.equal((await post(app, CHECKOUT, { token: otherDeviceOfC })).statusCode, 200)
  assertProblem(t, await post(app, CHECKOUT, { token: otherDeviceOfC }), 429, 'rate_limited')
  t.equal(emulator.control.minted.length, 4)
})

t.test('per user: the window ends on time (injected clock)', async t => {
  const clock = new ManualClock()
  const { app } = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_MS: '10000' }, deps: { clock } })
  const alice = await tokenFor(USER_A)
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200)
  clock.advance(4000)
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200)
  const refused = await post(app, RECIPIENTS, { token: alice })
  t.equal(refused.statusCode, 429)
  t.equal(refused.headers['retry-after'], '6', 'Retry-After: what is left of the window that began with the first request')
  clock.advance(5999)
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 429, 'still limited 1 ms before the window ends')
  clock.advance(1)
  const fresh = await post(app, RECIPIENTS, { token: alice })
  t.equal(fresh.statusCode, 200, 'a new window')
  t.equal(fresh.headers['x-ratelimit-remaining'], '1')
})

t.test('failed authentications: counted per address; past the limit failures get 429, and valid credentials are still served', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { AUTH_FAILURE_LIMIT_MAX: '3', AUTH_FAILURE_LIMIT_WINDOW_MS: '60000' } })
  const alice = await tokenFor(USER_A)
  for (let i = 0; i < 5; i++) t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200, 'successes do not count')
  const bad = [
    await post(app, RECIPIENTS, { token: 'not-a-jwt' }),
    await post(app, RECIPIENTS, { token: await tokenFor(USER_A, {}, { issuer: 'https://other-idp.test/' }) }),
    await post(app, RECIPIENTS, { headers: { authorization: 'Basic YWxpY2U6Z3Vlc3M=' } })
  ]
  for (const res of bad) assertProblem(t, res, 401, 'unauthenticated')

  const refused = await post(app, RECIPIENTS, { token: 'not-a-jwt-either' })
  assertProblem(t, refused, 429, 'rate_limited')
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 60, 'Retry-After within the window')
  t.equal((await post(app, RECIPIENTS, { token: await tokenFor(USER_A, {}, { subject: 'idp|new' }) })).statusCode, 200, 'a new valid credential is served')
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200, 'and one verified before')
  t.equal(emulator.control.minted.length, 7)

  const elsewhere = await app.inject({ method: 'POST', url: RECIPIENTS, remoteAddress: '192.0.2.10', headers: { authorization: 'Bearer not-a-jwt' } })
  assertProblem(t, elsewhere, 401, 'unauthenticated')
})

t.test('failed authentications: a parallel burst of forged JWTs gets exactly AUTH_FAILURE_LIMIT_MAX answers of 401, then 429', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { AUTH_FAILURE_LIMIT_MAX: '3', AUTH_FAILURE_LIMIT_WINDOW_MS: '60000' } })
  const good = await tokenFor(USER_A)
  // A well-formed JWT with a wrong signature: each one costs an RSA verification.
  const forged = good.slice(0, -4) + (good.endsWith('AAAA') ? 'BBBB' : 'AAAA')
  const burst = await Promise.all(Array.from({ length: 50 }, async () => await post(app, RECIPIENTS, { token: forged })))

  const unauthenticated = burst.filter(res => res.statusCode === 401)
  const refused = burst.filter(res => res.statusCode === 429)
  t.equal(unauthenticated.length, 3, 'the count cannot be outrun: three failures within the limit')
  t.equal(refused.length, 47, 'every later failure is answered 429')
  for (const res of unauthenticated) assertProblem(t, res, 401, 'unauthenticated')
  const first = refused[0]
  if (first !== undefined) {
    assertProblem(t, first, 429, 'rate_limited')
    t.ok(Number(first.headers['retry-after']) >= 1, 'with Retry-After')
  }

  t.equal(emulator.control.calls.total, 0)
  t.equal((await post(app, RECIPIENTS, { token: good })).statusCode, 200, 'the valid credential is served afterwards')
})

t.test('failed authentications: a parallel burst of valid credentials from one address is served, none refused', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { AUTH_FAILURE_LIMIT_MAX: '3', RATE_LIMIT_MAX: '1000' } })
  // Distinct JWTs (none verified before), as from a proxy's or a NAT's users signing in at once.
  const tokens = await Promise.all(Array.from({ length: 30 }, async (_, i) => await tokenFor(USER_A, { sub: `user-${i}` })))
  const burst = await Promise.all(tokens.map(async token => await post(app, RECIPIENTS, { token })))
  t.same(burst.map(res => res.statusCode), Array(30).fill(200), 'every one served')
  t.equal(emulator.control.calls.recipient, 30)
})

t.test('failed authentications: requests without any credential do not count against the address', async t => {
  const { app } = await buildTestApp(t, { env: { CORS_ORIGINS: 'https://app.example.com', AUTH_COOKIE_NAME: 'session', AUTH_FAILURE_LIMIT_MAX: '3' } })
  // What any cross-site page can make its visitors' browsers send (fetch with mode 'no-cors',
  // credentials 'omit'), plus a Cookie header without the session cookie.
  const credentialLess: Array<Record<string, string>> = [
    { origin: 'https://evil.test', 'sec-fetch-site': 'cross-site' },
    { origin: 'https://evil.test', 'sec-fetch-site': 'cross-site', cookie: 'theme=dark' },
    { 'x-csrf': '1', cookie: 'session=' }
  ]
  for (let i = 0; i < 20; i++) {
    assertProblem(t, await post(app, RECIPIENTS, { headers: credentialLess[i % credentialLess.length] }), 401, 'unauthenticated')
  }
  t.equal((await post(app, RECIPIENTS, { token: await tokenFor(USER_A) })).statusCode, 200, 'a valid JWT from that address is still served')

  // A credential that is presented and wrong still counts, whether in the header or the cookie.
  assertProblem(t, await post(app, RECIPIENTS, { token: 'not-a-jwt' }), 401, 'unauthenticated')
  assertProblem(t, await post(app, RECIPIENTS, { headers: { authorization: 'Basic YWxpY2U6Z3Vlc3M=' } }), 401, 'unauthenticated')
  assertProblem(t, await post(app, RECIPIENTS, { headers: { cookie: 'session=forged', 'x-csrf': '1' } }), 401, 'unauthenticated')
  assertProblem(t, await post(app, RECIPIENTS, { token: 'not-a-jwt' }), 429, 'rate_limited')
  // Refusing a request without a credential costs nothing: it stays a plain 401.
  assertProblem(t, await post(app, RECIPIENTS, {}), 401, 'unauthenticated')
})

t.test('failed authentications: IPv6 addresses count per /64, IPv4-mapped ones as their IPv4 address', async t => {
  const { app } = await buildTestApp(t, { env: { AUTH_FAILURE_LIMIT_MAX: '2' } })
  const from = async (remoteAddress: string, token: string) => await app.inject({ method: 'POST', url: RECIPIENTS, remoteAddress, headers: { authorization: `Bearer ${token}` } })
  // Two failures spend the budget: a third is answered 429.
  for (const address of ['2001:db8:1:2::1', '2001:db8:1:2:ffff::9']) t.equal((await from(address, 'nope')).statusCode, 401)
  t.equal((await from('2001:db8:1:2:abcd::1', 'nope')).statusCode, 429, 'a new address in the same /64 is the same subscriber')
  t.equal((await from('2001:db8:1:3::1', 'nope')).statusCode, 401, 'the next /64 is not')
  for (let i = 0; i < 2; i++) t.equal((await from('::ffff:198.51.100.7', 'nope')).statusCode, 401)
  t.equal((await from('198.51.100.7', 'nope')).statusCode, 429, 'an IPv4-mapped address is its IPv4 one')
  t.equal((await from('198.51.100.8', 'nope')).statusCode, 401, 'and only that one')
})

/** Two bad attempts from 127.0.0.1 over a real socket, each claiming another client in X-Forwarded-For. */
async function fromBehindProxy (url: string, forwardedFor: string, token: string): Promise<number> {
  const res = await request(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': forwardedFor } })
  await res.body.dump()
  return res.statusCode
}

async function listening (t: TestContext, env: Record<string, string>): Promise<string> {
  const { app } = await buildTestApp(t, { env: { AUTH_FAILURE_LIMIT_MAX: '2', ...env } })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}${RECIPIENTS}`
}

t.test('TRUST_PROXY unset: X-Forwarded-For is ignored, the socket address counts', async t => {
  const url = await listening(t, {})
  t.equal(await fromBehindProxy(url, '198.51.100.1', 'bad'), 401)
  t.equal(await fromBehindProxy(url, '198.51.100.2', 'bad'), 401)
  t.equal(await fromBehindProxy(url, '198.51.100.3', 'bad'), 429, 'a fresh X-Forwarded-For does not buy fresh attempts')
})

t.test('TRUST_PROXY=127.0.0.1: X-Forwarded-For from that proxy names the client', async t => {
  const url = await listening(t, { TRUST_PROXY: '127.0.0.1' })
  for (let i = 0; i < 2; i++) t.equal(await fromBehindProxy(url, '198.51.100.1', 'bad'), 401)
  t.equal(await fromBehindProxy(url, '198.51.100.1', 'bad'), 429, 'the client behind the proxy is limited')
  t.equal(await fromBehindProxy(url, '198.51.100.2', 'bad'), 401, 'another client behind the same proxy is not')
  // A client cannot prepend its own X-Forwarded-For: the proxy's appended hop is what is believed.
  t.equal(await fromBehindProxy(url, '198.51.100.9, 198.51.100.1', 'bad'), 429, 'a spoofed leftmost hop changes nothing')
})

t.test('TRUST_PROXY naming another address: X-Forwarded-For from 127.0.0.1 is not believed', async t => {
  const url = await listening(t, { TRUST_PROXY: '10.0.0.0/8' })
  for (let i = 1; i <= 2; i++) t.equal(await fromBehindProxy(url, `198.51.100.${i}`, 'bad'), 401)
  t.equal(await fromBehindProxy(url, '198.51.100.3', 'bad'), 429)
})

async function redisCleanup (t: TestContext, prefix: string): Promise<Redis> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  })
  return redis
}

t.test('REDIS_URL: two instances share one per-user budget and one failed-auth count', async t => {
  const prefix = `broker-test-${randomUUID()}:`
  const redis = await redisCleanup(t, prefix)
  const env = { REDIS_URL, REDIS_KEY_PREFIX: prefix, RATE_LIMIT_MAX: '3', AUTH_FAILURE_LIMIT_MAX: '2' }
  const one = await buildTestApp(t, { env })
  const two = await buildTestApp(t, { env })
  const alice = await tokenFor(USER_A)

  t.equal((await post(one.app, RECIPIENTS, { token: alice })).statusCode, 200)
  t.equal((await post(two.app, CHECKOUT, { token: alice })).statusCode, 200)
  const third = await post(one.app, RECIPIENTS, { token: alice })
  t.equal(third.statusCode, 200)
  t.equal(third.headers['x-ratelimit-remaining'], '0')
  assertProblem(t, await post(two.app, RECIPIENTS, { token: alice }), 429, 'rate_limited')
  assertProblem(t, await post(one.app, CHECKOUT, { token: alice }), 429, 'rate_limited')
  t.equal(one.emulator.control.minted.length + two.emulator.control.minted.length, 3, 'three tokens in all, across both instances')
  t.equal((await post(two.app, RECIPIENTS, { token: await tokenFor(USER_B) })).statusCode, 200, 'another user is unaffected')

  t.equal((await post(one.app, RECIPIENTS, { token: 'bad' })).statusCode, 401)
  t.equal((await post(two.app, RECIPIENTS, { token: 'bad' })).statusCode, 401)
  // Spent by the two instances together: a third failure, on either, is answered 429.
  assertProblem(t, await post(one.app, RECIPIENTS, { token: 'bad' }), 429, 'rate_limited')
  t.equal((await post(one.app, RECIPIENTS, { token: await tokenFor(USER_C) })).statusCode, 200, 'a valid credential from that address is served')

  // Only the rate-limit namespace: the shared bearer and quota view live under the prefix too.
  const keys = (await redis.keys(`${prefix}rl:*`)).sort()
  const expected = [`${prefix}rl:auth-failure:127.0.0.1`, ...[USER_A, USER_B, USER_C].map(user => `${prefix}rl:user:${user}`)].sort()
  t.same(keys, expected, 'keys under the prefix, one per user or address')
  for (const key of keys) {
    const ttl = await redis.pttl(key)
    t.ok(ttl > 0 && ttl <= 60_000, `${key} expires with its window`)
  }
})

t.test('REDIS_URL unreachable: token requests fail closed, no token is minted', async t => {
  const { app, emulator, logs } = await buildTestApp(t, { env: { REDIS_URL: 'redis://127.0.0.1:1', REDIS_KEY_PREFIX: 'broker-test-down:' } })
  const jwt = await tokenFor(USER_A)
  const res = await post(app, RECIPIENTS, { token: jwt })
  assertProblem(t, res, 503, 'shared_state_unavailable')
  t.equal(res.headers['retry-after'], '5', 'a dependency\'s outage: retry later')
  t.equal(emulator.control.calls.total, 0)
  for (let i = 0; i < 4; i++) assertProblem(t, await post(app, RECIPIENTS, { token: jwt }), 503, 'shared_state_unavailable')
  const refusals = logs.lines().filter(l => l.code === 'shared_state_unavailable')
  t.equal(refusals.length, 5, 'each refusal is logged, under its request id')
  for (const line of refusals) {
    t.match(line, { level: 50, requestId: String, rateLimitStore: 'redis', cause: { type: String, message: String } }, 'with what failed underneath')
    t.notOk('err' in line, 'but no stack trace: five outage lines repeat none')
  }
  t.notMatch(logs.text(), /\n\s+at /, 'no stack frame anywhere in the logs')
})
