import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { DEV_COOKIE_NAME, SAMPLE_USERS } from '../src/auth/dev.js'
import { USER_A, USER_B, USER_C, assertProblem, buildTestApp, issuedJwts } from './helpers.js'

/**
 * AUTH_MODE=dev (SPEC §3.1, §7): a built-in login issues an HttpOnly session cookie, and the
 * cookie rules of §3.4 apply to it: `X-CSRF: 1` and, when present, an allowed Origin — checked
 * before Mangopay is ever called.
 */

const APP_ORIGIN = 'http://localhost:5173'
const RECIPIENTS = '/v1/tokens/recipients'
const CHECKOUT = '/v1/tokens/checkout'

async function setup (t: Parameters<typeof buildTestApp>[0]) {
  return await buildTestApp(t, { env: { AUTH_MODE: 'dev', CORS_ORIGINS: `${APP_ORIGIN},http://127.0.0.1:8080`, RATE_LIMIT_MAX: '1000' } })
}

function setCookieHeader (res: { headers: Record<string, unknown> }): string {
  const header = res.headers['set-cookie']
  return Array.isArray(header) ? header.join('\n') : String(header ?? '')
}

/** Logs in as a sample user the way the demo page does, and returns the session cookie value. */
async function login (app: FastifyInstance, user: string): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/v1/dev/login', headers: { 'x-csrf': '1', origin: APP_ORIGIN }, payload: { user } })
  if (res.statusCode !== 200) throw new Error(`login as ${user} answered ${res.statusCode}`)
  const cookie = res.cookies.find(c => c.name === DEV_COOKIE_NAME)
  if (cookie === undefined) throw new Error('no session cookie')
  issuedJwts.push(cookie.value) // a session credential: the teardown log check looks for it too
  return cookie.value
}

async function withCookie (app: FastifyInstance, url: string, session: string, headers: Record<string, string> = {}, body?: unknown) {
  return await app.inject({
    method: 'POST',
    url,
    headers: { cookie: `${DEV_COOKIE_NAME}=${session}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) })
  })
}

t.test('GET /v1/dev/users lists the sample users', async t => {
  const { app } = await setup(t)
  const res = await app.inject({ method: 'GET', url: '/v1/dev/users' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'no-store')
  const users = res.json().users as Array<{ id: string, mangopayUserIds: string[] }>
  t.same(users.map(u => u.id), ['alice', 'bob', 'carol'])
  t.same(users.map(u => u.mangopayUserIds), [[USER_A], [USER_B, USER_C], []])
  t.same(users, SAMPLE_USERS)
})

t.test('login: refused without X-CSRF, otherwise an HttpOnly SameSite=Lax cookie', async t => {
  const { app, emulator } = await setup(t)
  const refused = await app.inject({ method: 'POST', url: '/v1/dev/login', payload: { user: 'alice' } })
  assertProblem(t, refused, 403, 'csrf_rejected')
  t.equal(refused.headers['set-cookie'], undefined, 'no cookie without X-CSRF')

  const unknown = await app.inject({ method: 'POST', url: '/v1/dev/login', headers: { 'x-csrf': '1' }, payload: { user: 'mallory' } })
  assertProblem(t, unknown, 401, 'unauthenticated')
  t.equal(unknown.headers['set-cookie'], undefined)

  const res = await app.inject({ method: 'POST', url: '/v1/dev/login', headers: { 'x-csrf': '1' }, payload: { user: 'alice' } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { user: { id: 'alice', mangopayUserIds: [USER_A] } })
  const header = setCookieHeader(res)
  t.match(header, new RegExp(`^${DEV_COOKIE_NAME}=[A-Za-z0-9_.-]+;`), 'the session cookie')
  t.match(header, /;\s*HttpOnly/i, 'HttpOnly')
  t.match(header, /;\s*SameSite=Lax/i, 'SameSite=Lax')
  t.match(header, /;\s*Path=\/(;|$)/, 'Path=/')
  const session = res.cookies.find(c => c.name === DEV_COOKIE_NAME)?.value ?? ''
  issuedJwts.push(session)
  t.notOk(res.body.includes(session), 'the session token is not in the body')
  t.equal(emulator.control.calls.total, 0, 'logging in does not call Mangopay')
})

t.test('the cookie works for token requests that send X-CSRF: 1 from an allowed origin', async t => {
  const { app, emulator } = await setup(t)
  const session = await login(app, 'alice')

  const sameOrigin = await withCookie(app, RECIPIENTS, session, { 'x-csrf': '1' })
  t.equal(sameOrigin.statusCode, 200, 'no Origin (same-origin fetch)')
  t.equal(sameOrigin.json().userId, USER_A)

  const allowed = await withCookie(app, CHECKOUT, session, { 'x-csrf': '1', origin: APP_ORIGIN, 'sec-fetch-site': 'same-site' })
  t.equal(allowed.statusCode, 200, 'an allowed Origin')
  t.equal(allowed.json().userId, USER_A)
  t.same(emulator.control.minted.map(m => [m.kind, m.userId]), [['recipient', USER_A], ['checkout', USER_A]])
})

t.test('cookie requests without the anti-forgery proofs are 403 csrf_rejected, before Mangopay', async t => {
  const { app, emulator } = await setup(t)
  const session = await login(app, 'alice')
  const cases: Array<[string, Record<string, string>]> = [
    ['no X-CSRF', {}],
    ['no X-CSRF, allowed Origin', { origin: APP_ORIGIN }],
    ['X-CSRF with another value', { 'x-csrf': 'true' }],
    ['an unlisted Origin', { 'x-csrf': '1', origin: 'https://evil.example' }],
    ['a look-alike Origin', { 'x-csrf': '1', origin: `${APP_ORIGIN}.evil.example` }],
    ['the Origin "null"', { 'x-csrf': '1', origin: 'null' }],
    ['cross-site without Origin', { 'x-csrf': '1', 'sec-fetch-site': 'cross-site' }]
  ]
  for (const [name, headers] of cases) {
    for (const url of [RECIPIENTS, CHECKOUT]) {
      await t.test(`${name} on ${url}`, async t => {
        assertProblem(t, await withCookie(app, url, session, headers), 403, 'csrf_rejected')
        t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
      })
    }
  }
})

t.test('who gets a token: carol has no Mangopay user, bob must choose', async t => {
  const { app, emulator } = await setup(t)
  const carol = await login(app, 'carol')
  assertProblem(t, await withCookie(app, RECIPIENTS, carol, { 'x-csrf': '1' }), 403, 'no_mangopay_user')
  t.equal(emulator.control.calls.total, 0, 'carol: zero Mangopay calls')

  const bob = await login(app, 'bob')
  assertProblem(t, await withCookie(app, CHECKOUT, bob, { 'x-csrf': '1' }), 400, 'user_id_required')
  assertProblem(t, await withCookie(app, CHECKOUT, bob, { 'x-csrf': '1' }, { userId: USER_A }), 403, 'forbidden_user')
  t.equal(emulator.control.calls.total, 0, 'bob without a valid choice: zero Mangopay calls')

  const chosen = await withCookie(app, CHECKOUT, bob, { 'x-csrf': '1' }, { userId: USER_C })
  t.equal(chosen.statusCode, 200)
  t.equal(chosen.json().userId, USER_C)
  t.same(emulator.control.minted.map(m => m.userId), [USER_C])
})

t.test('logout clears the cookie', async t => {
  const { app } = await setup(t)
  await login(app, 'alice')
  const res = await app.inject({ method: 'POST', url: '/v1/dev/logout' })
  t.equal(res.statusCode, 200)
  const header = setCookieHeader(res)
  t.match(header, new RegExp(`^${DEV_COOKIE_NAME}=;`), 'an empty value')
  t.match(header, /Expires=Thu, 01 Jan 1970|Max-Age=0/i, 'already expired')
  t.match(header, /;\s*Path=\/(;|$)/, 'on the same path, so the browser drops the right cookie')
})

t.test('a forged session cookie is 401', async t => {
  const { app, emulator } = await setup(t)
  const session = await login(app, 'alice')
  const [header, , signature] = session.split('.')
  const forgedPayload = Buffer.from(JSON.stringify({ mangopay_user_id: [USER_B], sub: 'dev|alice', exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url')
  const forged = `${header}.${forgedPayload}.${signature}`
  assertProblem(t, await withCookie(app, RECIPIENTS, forged, { 'x-csrf': '1' }), 401, 'unauthenticated')
  t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
})

t.test('over HTTPS (a trusted proxy says so) the session cookie is Secure, when set and when cleared', async t => {
  const { app } = await buildTestApp(t, { env: { AUTH_MODE: 'dev', CORS_ORIGINS: APP_ORIGIN, TRUST_PROXY: '127.0.0.1' } })
  for (const [proto, secure] of [['https', true], ['http', false]] as const) {
    const headers = { 'x-csrf': '1', origin: APP_ORIGIN, 'x-forwarded-proto': proto }
    const login = await app.inject({ method: 'POST', url: '/v1/dev/login', headers, payload: { user: 'alice' } })
    issuedJwts.push(login.cookies.find(c => c.name === DEV_COOKIE_NAME)?.value ?? '')
    const logout = await app.inject({ method: 'POST', url: '/v1/dev/logout', headers })
    for (const [name, res] of [['login', login], ['logout', logout]] as const) {
      t.equal(/;\s*Secure/i.test(setCookieHeader(res)), secure, `${proto}: ${name} cookie ${secure ? 'is' : 'is not'} Secure`)
    }
  }
})
