import t from 'tap'
import { buildTestApp, post, tokenFor, USER_A } from './helpers.js'

/** SPEC §3.4: cookie credentials need X-CSRF and an allowed origin; CORS answers listed origins only. */

const APP_ORIGIN = 'https://app.example.com'
const OTHER_ORIGIN = 'http://localhost:5173'
const COOKIE = 'platform_session'
const env = { AUTH_COOKIE_NAME: COOKIE, CORS_ORIGINS: `${APP_ORIGIN},${OTHER_ORIGIN}` }

t.test('cookie credentials: the CSRF matrix, with no Mangopay call on any refusal', async t => {
  const { app, emulator } = await buildTestApp(t, { env })
  const jwt = await tokenFor(USER_A)
  const cookie = `${COOKIE}=${jwt}`
  const cases: Array<{ name: string, headers: Record<string, string>, token?: string, status: number, code?: string }> = [
    { name: 'cookie without X-CSRF', headers: { cookie }, status: 403, code: 'csrf_rejected' },
    { name: 'cookie, X-CSRF: 0', headers: { cookie, 'x-csrf': '0' }, status: 403, code: 'csrf_rejected' },
    { name: 'cookie, X-CSRF, unlisted Origin', headers: { cookie, 'x-csrf': '1', origin: 'https://evil.test' }, status: 403, code: 'csrf_rejected' },
    { name: 'cookie, X-CSRF, look-alike Origin', headers: { cookie, 'x-csrf': '1', origin: 'https://app.example.com.evil.test' }, status: 403, code: 'csrf_rejected' },
    { name: 'cookie, X-CSRF, Origin null', headers: { cookie, 'x-csrf': '1', origin: 'null' }, status: 403, code: 'csrf_rejected' },
    { name: 'cookie, X-CSRF, Sec-Fetch-Site cross-site without Origin', headers: { cookie, 'x-csrf': '1', 'sec-fetch-site': 'cross-site' }, status: 403, code: 'csrf_rejected' },
    { name: 'cookie, X-CSRF, Sec-Fetch-Site cross-site from an unlisted Origin', headers: { cookie, 'x-csrf': '1', 'sec-fetch-site': 'cross-site', origin: 'https://evil.test' }, status: 403, code: 'csrf_rejected' }
  ]
  for (const c of cases) {
    const res = await post(app, '/v1/tokens/recipients', { headers: c.headers })
    t.equal(res.statusCode, c.status, c.name)
    t.equal(res.json().code, c.code, c.name)
    t.match(res.headers['content-type'], /^application\/problem\+json/, c.name)
  }
  t.equal(emulator.control.calls.total, 0, 'no refused request reached Mangopay')

  const allowed: Array<{ name: string, headers: Record<string, string> }> = [
    { name: 'cookie, X-CSRF, listed Origin', headers: { cookie, 'x-csrf': '1', origin: APP_ORIGIN } },
    { name: 'cookie, X-CSRF, listed Origin, cross-site fetch', headers: { cookie, 'x-csrf': '1', origin: OTHER_ORIGIN, 'sec-fetch-site': 'cross-site' } },
    { name: 'cookie, X-CSRF, no Origin (same-origin navigation tooling)', headers: { cookie, 'x-csrf': '1', 'sec-fetch-site': 'same-origin' } },
    { name: 'bearer header without X-CSRF', headers: { authorization: `Bearer ${jwt}` } },
    { name: 'bearer header from any Origin: not a cookie credential', headers: { authorization: `Bearer ${jwt}`, origin: 'https://evil.test' } }
  ]
  for (const c of allowed) {
    const res = await post(app, '/v1/tokens/checkout', { headers: c.headers })
    t.equal(res.statusCode, 200, c.name)
  }
  t.equal(emulator.control.calls.checkout, allowed.length, 'each allowed request minted exactly one token')
})

t.test('a bad cookie is 401, not a CSRF refusal, and never reaches Mangopay', async t => {
  const { app, emulator } = await buildTestApp(t, { env })
  const res = await post(app, '/v1/tokens/recipients', { headers: { cookie: `${COOKIE}=not-a-jwt`, 'x-csrf': '1', origin: APP_ORIGIN } })
  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthenticated')
  t.equal(emulator.control.calls.total, 0)
})

t.test('a cookie without X-CSRF is refused before it is verified, and is no failed sign-in', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { ...env, AUTH_FAILURE_LIMIT_MAX: '2' } })
  for (let i = 0; i < 6; i++) {
    const res = await post(app, '/v1/tokens/recipients', { headers: { cookie: `${COOKIE}=forged-${i}`, origin: 'https://evil.test' } })
    t.equal(res.statusCode, 403, 'a forged cross-site cookie request')
    t.equal(res.json().code, 'csrf_rejected')
  }
  const res = await post(app, '/v1/tokens/recipients', { headers: { cookie: `${COOKIE}=${await tokenFor(USER_A)}`, 'x-csrf': '1', origin: APP_ORIGIN } })
  t.equal(res.statusCode, 200, 'the address is not locked out: none of them counted as a failed sign-in')
  t.equal(emulator.control.minted.length, 1, 'one token, for the one genuine request')
})

t.test('without AUTH_COOKIE_NAME a cookie is not a credential', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { CORS_ORIGINS: APP_ORIGIN } })
  const res = await post(app, '/v1/tokens/recipients', { headers: { cookie: `${COOKIE}=${await tokenFor(USER_A)}`, 'x-csrf': '1', origin: APP_ORIGIN } })
  t.equal(res.statusCode, 401)
  t.equal(emulator.control.calls.total, 0)
})

function preflight (origin: string, url = '/v1/tokens/recipients') {
  return {
    method: 'OPTIONS' as const,
    url,
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-csrf' }
  }
}

t.test('CORS preflight from a listed origin: exact headers', async t => {
  const { app } = await buildTestApp(t, { env })
  for (const origin of [APP_ORIGIN, OTHER_ORIGIN]) {
    const res = await app.inject(preflight(origin))
    t.equal(res.statusCode, 204, origin)
    t.equal(res.headers['access-control-allow-origin'], origin, 'the origin itself, never *')
    t.equal(res.headers['access-control-allow-credentials'], 'true')
    t.equal(res.headers['access-control-allow-methods'], 'GET, POST')
    t.equal(res.headers['access-control-allow-headers'], 'Authorization, Content-Type, X-CSRF')
    t.equal(res.headers['access-control-max-age'], '600')
    t.match(String(res.headers.vary), /Origin/)
  }
})

t.test('CORS: an OPTIONS without Access-Control-Request-Method never gets a text/plain error', async t => {
  const { app } = await buildTestApp(t, { env })
  const listed = await app.inject({ method: 'OPTIONS', url: '/v1/tokens/recipients', headers: { origin: APP_ORIGIN } })
  t.equal(listed.statusCode, 204, 'from a listed origin: answered like a preflight')
  t.equal(listed.headers['access-control-allow-origin'], APP_ORIGIN)
  const unlisted = await app.inject({ method: 'OPTIONS', url: '/v1/tokens/recipients', headers: { origin: 'https://evil.example' } })
  t.equal(unlisted.statusCode, 404)
  t.match(unlisted.headers['content-type'], /^application\/problem\+json/)
  t.equal(unlisted.headers['access-control-allow-origin'], undefined)
})

t.test('CORS: unlisted, null and look-alike origins get no CORS header at all', async t => {
  const { app, emulator } = await buildTestApp(t, { env })
  const jwt = await tokenFor(USER_A)
  const refused = [
    'https://evil.test',
    'null',
    'https://app.example.com.evil.test',
    'https://evil-app.example.com',
    'https://sub.app.example.com',
    'http://app.example.com',
    'https://app.example.com:8443',
    'https://APP.EXAMPLE.COM',
    'http://localhost:5174',
    'http://localhost'
  ]
  for (const origin of refused) {
    const pre = await app.inject(preflight(origin))
    t.equal(pre.headers['access-control-allow-origin'], undefined, `preflight ${origin}`)
    t.equal(pre.headers['access-control-allow-credentials'], undefined, `preflight ${origin}: no credentials header`)
    t.equal(pre.headers['access-control-allow-headers'], undefined, `preflight ${origin}: no allowed headers`)
    t.not(pre.statusCode, 204, `preflight ${origin} is not a success`)
    const res = await post(app, '/v1/tokens/recipients', { token: jwt, headers: { origin } })
    t.equal(res.headers['access-control-allow-origin'], undefined, `POST ${origin}`)
  }
  t.ok(emulator.control.calls.recipient > 0, 'bearer-authenticated POSTs still work for non-browser callers')
})

t.test('CORS: a simple request from a listed origin is answered with that origin and the exposed headers', async t => {
  const { app } = await buildTestApp(t, { env })
  const res = await post(app, '/v1/tokens/recipients', { token: await tokenFor(USER_A), headers: { origin: APP_ORIGIN } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['access-control-allow-origin'], APP_ORIGIN)
  t.equal(res.headers['access-control-allow-credentials'], 'true')
  t.match(String(res.headers['access-control-expose-headers']), /Retry-After/)
  t.match(String(res.headers.vary), /Origin/)
})

t.test('with no CORS_ORIGINS, no origin is ever allowed', async t => {
  const { app } = await buildTestApp(t)
  const res = await app.inject(preflight(APP_ORIGIN))
  t.equal(res.headers['access-control-allow-origin'], undefined)
})
