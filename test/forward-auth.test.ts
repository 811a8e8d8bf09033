import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { ManualClock } from './manual-clock.js'
import { ForwardAuthenticator } from '../src/auth/forward.js'
import { assertProblem, buildTestApp, opsGet, post, USER_A, USER_C, type TestContext } from './helpers.js'
import { startSessionServer } from './session-server.js'

/**
 * SPEC §3.1 AUTH_MODE=forward against a real session endpoint on 127.0.0.1: only Cookie and
 * Authorization travel, 2xx JSON is the session, anything else is 401, an unreachable or slow
 * endpoint is 503 (never a token), and answers are cached by a hash of the credentials.
 */

const APP_ORIGIN = 'https://app.example.com'
const URL_RECIPIENTS = '/v1/tokens/recipients'

async function forwardApp (t: TestContext, sessionUrl: string, env: Record<string, string> = {}, clock?: ManualClock) {
  return await buildTestApp(t, {
    // A generous deadline (the machine is shared); the slow-endpoint test sets its own.
    env: { AUTH_MODE: 'forward', AUTH_FORWARD_URL: sessionUrl, AUTH_FORWARD_TIMEOUT_MS: '5000', CORS_ORIGINS: APP_ORIGIN, ...env },
    ...(clock === undefined ? {} : { deps: { clock } })
  })
}

/** What a browser on the platform's page sends along with the cookie. */
const browserHeaders = { 'x-csrf': '1', origin: APP_ORIGIN }

t.test('a valid session: a token for the session\'s user, and only Cookie/Authorization were forwarded', async t => {
  const session = await startSessionServer(t)
  const { app, emulator, logs } = await forwardApp(t, session.url)
  const cookie = 'sid=alice; theme=dark'
  const res = await post(app, URL_RECIPIENTS, {
    headers: {
      cookie,
      ...browserHeaders,
      'user-agent': 'Mozilla/5.0 (caller)',
      'x-forwarded-for': '198.51.100.7',
      'x-forwarded-host': 'evil.test',
      'x-request-id': 'req-forward-1',
      'sec-fetch-site': 'same-site',
      'accept-language': 'fr'
    }
  })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.userId, USER_A)
  t.same(emulator.control.minted.map(m => ({ token: m.token, userId: m.userId })), [{ token: body.clientToken, userId: USER_A }])

  t.equal(session.received.length, 1, 'one question to the session endpoint')
  const forwarded = session.received[0] ?? {}
  t.equal(forwarded.cookie, cookie, 'the Cookie header, verbatim')
  t.equal(forwarded.authorization, undefined, 'no Authorization was sent, none is invented')
  const callerHeaders = ['user-agent', 'x-forwarded-for', 'x-forwarded-host', 'x-request-id', 'sec-fetch-site', 'accept-language', 'x-csrf', 'origin', 'content-type', 'content-length']
  for (const name of callerHeaders) t.notOk(name in forwarded, `${name} is not forwarded`)
  t.equal(forwarded.host, new URL(session.url).host, 'Host names the session endpoint, not the broker')
  t.same(Object.keys(forwarded).filter(h => !['host', 'connection', 'accept'].includes(h)), ['cookie'], 'nothing but the credential of the caller\'s')

  const audit = logs.lines().find(l => (l.audit as { event?: string } | undefined)?.event === 'embedded_token_issued')
  t.equal((audit?.audit as { subject?: string } | undefined)?.subject, 'alice', 'the session\'s `id` is the audit subject')
  t.notMatch(logs.text(), /sid=alice/, 'the cookie never reaches the logs')
})

t.test('a Bearer header is forwarded alone, and makes the request a header credential (no CSRF rules)', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url)
  const res = await post(app, URL_RECIPIENTS, { headers: { authorization: 'Bearer alice-token', cookie: 'theme=dark' } })
  t.equal(res.statusCode, 200, 'no X-CSRF needed with an Authorization header')
  t.equal(session.received[0]?.authorization, 'Bearer alice-token')
  t.equal(session.received[0]?.cookie, undefined, 'the caller\'s cookies stay behind')
  t.equal(emulator.control.minted[0]?.userId, USER_A)

  const numeric = await post(app, '/v1/tokens/checkout', { headers: { cookie: 'sid=numeric-id', ...browserHeaders } })
  t.equal(numeric.statusCode, 200, 'a numeric `id` is a subject too')
})

t.test('a cookie session follows the CSRF rules; several and no Mangopay users follow SPEC §3.3', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url)
  assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice' } }), 403, 'csrf_rejected')
  assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice', 'x-csrf': '1', origin: 'https://evil.test' } }), 403, 'csrf_rejected')
  assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=bob', ...browserHeaders } }), 400, 'user_id_required')
  assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=bob', ...browserHeaders }, body: { userId: USER_A } }), 403, 'forbidden_user')
  assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=carol', ...browserHeaders } }), 403, 'no_mangopay_user')
  t.equal(emulator.control.calls.total, 0, 'no refusal reached Mangopay')

  const res = await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=bob', ...browserHeaders }, body: { userId: USER_C } })
  t.equal(res.statusCode, 200)
  t.equal(emulator.control.minted[0]?.userId, USER_C)
})

t.test('anything but a 2xx JSON object is 401, and Mangopay is never called', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url)
  for (const sid of ['nobody', 'forbidden', 'redirect', 'html', 'array', 'huge']) {
    const res = await post(app, URL_RECIPIENTS, { headers: { cookie: `sid=${sid}`, ...browserHeaders } })
    assertProblem(t, res, 401, 'unauthenticated')
    t.equal(res.headers.location, undefined, `${sid}: a redirect is never passed on`)
  }
  t.equal(session.received.length, 6, 'each was asked once (redirects are not followed)')
  t.equal(emulator.control.calls.total, 0)
})

t.test('no credentials at all: 401 without asking the session endpoint', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url)
  assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { 'x-csrf': '1' } }), 401, 'unauthenticated')
  t.equal(session.received.length, 0)
  t.equal(emulator.control.calls.total, 0)
})

t.test('a slow session endpoint: 503 auth_unavailable at the forward timeout, never a token', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url, { AUTH_FORWARD_TIMEOUT_MS: '300', AUTH_FORWARD_CACHE_TTL_MS: '60000' })
  const started = Date.now()
  const res = await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=slow', ...browserHeaders } })
  const elapsed = Date.now() - started
  assertProblem(t, res, 503, 'auth_unavailable')
  t.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After')
  t.ok(elapsed < 5000, `cut off near the 300 ms deadline, not at the endpoint's 10 s (${elapsed} ms)`)
  t.equal(emulator.control.calls.total, 0)

  await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=slow', ...browserHeaders } })
  t.equal(session.received.length, 2, 'a timeout is not cached: the next request asks again')
})

t.test('a session endpoint answering 5xx: 503, not cached', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url, { AUTH_FORWARD_CACHE_TTL_MS: '60000' })
  for (const sid of ['broken', 'unavailable', 'broken']) {
    assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: `sid=${sid}`, ...browserHeaders } }), 503, 'auth_unavailable')
  }
  t.equal(session.received.length, 3, 'every 5xx was asked again')
  t.equal(emulator.control.calls.total, 0)
})

t.test('a session endpoint that is down: 503, not 401', async t => {
  const session = await startSessionServer(t)
  await session.close()
  const { app, emulator, logs } = await forwardApp(t, session.url)
  const res = await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice', ...browserHeaders } })
  const body = assertProblem(t, res, 503, 'auth_unavailable')
  t.notMatch(body.detail, /127\.0\.0\.1|ECONNREFUSED/, 'the detail names no internal address or error')
  t.equal(emulator.control.calls.total, 0)
  t.ok(logs.lines().some(l => (l.authForward as { network?: string } | undefined)?.network === 'ECONNREFUSED'), 'the cause is in the logs')
})

t.test('answers are cached per credential for AUTH_FORWARD_CACHE_TTL_MS (injected clock)', async t => {
  const session = await startSessionServer(t)
  const clock = new ManualClock()
  const { app, emulator } = await forwardApp(t, session.url, { AUTH_FORWARD_CACHE_TTL_MS: '5000' }, clock)
  const ask = async (cookie: string) => await post(app, URL_RECIPIENTS, { headers: { cookie, ...browserHeaders } })

  t.equal((await ask('sid=alice')).statusCode, 200)
  t.equal((await ask('sid=alice')).statusCode, 200)
  t.equal(session.received.length, 1, 'the second request was answered from the cache')

  t.equal((await ask('sid=alice; theme=dark')).statusCode, 200)
  t.equal(session.received.length, 2, 'different credentials are a different entry')

  t.equal((await ask('sid=nobody')).statusCode, 401)
  t.equal((await ask('sid=nobody')).statusCode, 401)
  t.equal(session.received.length, 3, 'a 401 is cached too')

  t.equal((await ask('sid=forbidden')).statusCode, 401)
  t.equal((await ask('sid=forbidden')).statusCode, 401)
  t.equal(session.received.length, 5, 'a 403 (more likely misconfiguration) is not')

  clock.advance(4999)
  t.equal((await ask('sid=alice')).statusCode, 200)
  t.equal(session.received.length, 5, 'still fresh just before the TTL')
  clock.advance(2)
  t.equal((await ask('sid=alice')).statusCode, 200)
  t.equal(session.received.length, 6, 'asked again once the TTL has passed')
  t.equal(emulator.control.minted.length, 5, 'every allowed request still minted its own token')
})

t.test('with AUTH_FORWARD_CACHE_TTL_MS=0 every request asks, but concurrent identical ones share one call', async t => {
  const session = await startSessionServer(t)
  const forward = new ForwardAuthenticator({ url: session.url, timeoutMs: 5000, cacheTtlMs: 0, userIdClaim: 'mangopay_user_id', clock: new ManualClock() })
  t.teardown(async () => await forward.close())
  const asking = (cookie: string) => ({ headers: { cookie } }) as unknown as FastifyRequest

  // Started in the same tick: the first starts the call, the other seven join it.
  const concurrent = await Promise.all(Array.from({ length: 8 }, async () => await forward.authenticate(asking('sid=alice'))))
  t.same(concurrent.map(s => s.mangopayUserIds), Array(8).fill([USER_A]))
  t.equal(session.received.length, 1, 'single flight per credential')
  const different = await Promise.all([forward.authenticate(asking('sid=alice')), forward.authenticate(asking('sid=bob'))])
  t.same(different.map(s => s.subject), ['alice', 'bob'])
  t.equal(session.received.length, 3, 'different credentials never share a call; nothing was cached')

  await forward.authenticate(asking('sid=alice'))
  t.equal(session.received.length, 4, 'a later request asks again (no cache)')
  t.equal(forward.cacheSize, 0)
})

t.test('failed forward authentications count against the address: past the limit the endpoint is asked one at a time', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url, { AUTH_FAILURE_LIMIT_MAX: '3' })
  for (let i = 0; i < 3; i++) {
    assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: `sid=guess-${i}`, ...browserHeaders } }), 401, 'unauthenticated')
  }
  t.equal(session.received.length, 3)
  t.equal((await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice', ...browserHeaders } })).statusCode, 200, 'a genuine session is still served')
  assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=guess-3', ...browserHeaders } }), 401, 'unauthenticated')
  t.equal(session.received.length, 5)
  const res = await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=guess-4', ...browserHeaders } })
  assertProblem(t, res, 429, 'rate_limited')
  t.ok(Number(res.headers['retry-after']) >= 1)
  t.equal(session.received.length, 5, 'after a failure in the lane, no verification work until it reopens')
  t.equal((await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice', ...browserHeaders } })).statusCode, 200, 'the session verified before is served meanwhile')
  t.equal(emulator.control.minted.length, 2)
})

t.test('a parallel burst of guessed sessions reaches the session endpoint at most AUTH_FAILURE_LIMIT_MAX + 1 times', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url, { AUTH_FAILURE_LIMIT_MAX: '3' })
  const burst = await Promise.all(Array.from({ length: 50 }, async (_, i) => await post(app, URL_RECIPIENTS, { headers: { cookie: `sid=guess-${i}`, ...browserHeaders } })))

  const asked = session.received.length
  t.ok(asked >= 1 && asked <= 4, `the session endpoint was asked at most 3 times, then once in the lane (saw ${asked})`)
  t.equal(burst.filter(res => res.statusCode === 401).length, asked, 'one 401 per question asked')
  t.equal(burst.filter(res => res.statusCode === 429).length, 50 - asked, 'every other guess was refused first')
  t.equal(emulator.control.calls.total, 0)
  t.equal((await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice', ...browserHeaders } })).statusCode, 200, 'a genuine session is still served afterwards')
  t.equal(session.received.length, asked + 1)
})

t.test('requests without Cookie or Authorization do not count as failed sign-ins', async t => {
  const session = await startSessionServer(t)
  const { app } = await forwardApp(t, session.url, { AUTH_FAILURE_LIMIT_MAX: '3' })
  for (let i = 0; i < 20; i++) {
    // What a cross-site page's fetch(url, { mode: 'no-cors', credentials: 'omit' }) sends.
    assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { origin: 'https://evil.test', 'sec-fetch-site': 'cross-site' } }), 401, 'unauthenticated')
  }
  t.equal(session.received.length, 0)
  t.equal((await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice', ...browserHeaders } })).statusCode, 200, 'the address is not locked out')
})

t.test('a cookie without X-CSRF is refused before the session endpoint is asked, and is no failed sign-in', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await forwardApp(t, session.url, { AUTH_FAILURE_LIMIT_MAX: '3' })
  for (let i = 0; i < 10; i++) {
    // What a cross-site page's form or no-cors fetch sends when the browser attaches the cookie.
    assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: `sid=guess-${i}`, origin: 'https://evil.test', 'sec-fetch-site': 'cross-site' } }), 403, 'csrf_rejected')
  }
  assertProblem(t, await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice', 'x-csrf': '1', origin: 'https://evil.test' } }), 403, 'csrf_rejected')
  t.equal(session.received.length, 0, 'no forged request reached the session endpoint')
  t.equal((await post(app, URL_RECIPIENTS, { headers: { cookie: 'sid=alice', ...browserHeaders } })).statusCode, 200, 'the victim\'s address is not locked out')
  t.equal(emulator.control.minted.length, 1, 'one token, for the one genuine request')
})

t.test('readiness: the session endpoint is a configured dependency', async t => {
  const session = await startSessionServer(t)
  const clock = new ManualClock()
  const { app } = await forwardApp(t, session.url, {}, clock)
  const ready = async () => await app.inject({ method: 'GET', url: '/readyz' })

  const up = await ready()
  t.equal(up.statusCode, 200)
  t.equal(session.received.length, 1, 'asked once, without credentials')
  t.equal(session.received[0]?.cookie, undefined)
  t.equal(session.received[0]?.authorization, undefined)
  t.equal((await ready()).statusCode, 200)
  t.equal((await opsGet(app, '/readyz')).json().checks.identityProvider, 'ok', 'the detailed readiness names it')
  t.equal(session.received.length, 1, 'an answer within the last 30 s is trusted: not asked again')

  await session.close()
  clock.advance(30_000)
  const down = await ready()
  assertProblem(t, down, 503, 'upstream_unavailable')
  t.same(down.json().failing, ['identityProvider'])
  t.ok(down.headers['retry-after'])
})
