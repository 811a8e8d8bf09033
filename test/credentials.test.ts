import t from 'tap'
import { SignJWT } from 'jose'
import { assertProblem, buildTestApp, issuedJwts, post, RSA_PRIVATE_KEY, tokenFor, USER_A, USER_B, ISSUER, AUDIENCE } from './helpers.js'
import { startSessionServer } from './session-server.js'

/**
 * SPEC §8 "Credentials": only `Authorization: Bearer` is a header credential, so a browser's
 * cached Basic credentials never switch the CSRF rules off; a session cookie sent twice is
 * refused; the session endpoint sees only the credential the rules were applied to; jwt mode
 * requires `sub` and, with AUTH_JWT_TYP, the header's `typ`.
 */

const APP_ORIGIN = 'https://app.example.com'
const RECIPIENTS = '/v1/tokens/recipients'
const proofs = { 'x-csrf': '1', origin: APP_ORIGIN }
const basic = `Basic ${Buffer.from('alice:cached').toString('base64')}`

t.test('jwt mode: a session cookie with a Basic header follows the cookie rules', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { AUTH_COOKIE_NAME: '__Host-session', CORS_ORIGINS: APP_ORIGIN } })
  const cookie = `__Host-session=${await tokenFor(USER_A)}`
  assertProblem(t, await post(app, RECIPIENTS, { headers: { cookie, authorization: basic } }), 403, 'csrf_rejected')
  assertProblem(t, await post(app, RECIPIENTS, { headers: { cookie, authorization: basic, 'x-csrf': '1', origin: 'https://evil.test' } }), 403, 'csrf_rejected')
  t.equal(emulator.control.calls.total, 0)
  t.equal((await post(app, RECIPIENTS, { headers: { cookie, authorization: basic, ...proofs } })).statusCode, 200, 'with the proofs, the cookie is the credential')
})

t.test('forward mode: a cookie with a Basic header follows the cookie rules, and Basic is never passed on', async t => {
  const session = await startSessionServer(t)
  const { app, emulator } = await buildTestApp(t, { env: { AUTH_MODE: 'forward', AUTH_FORWARD_URL: session.url, AUTH_FORWARD_TIMEOUT_MS: '5000', CORS_ORIGINS: APP_ORIGIN } })
  assertProblem(t, await post(app, RECIPIENTS, { headers: { cookie: 'sid=alice', authorization: basic } }), 403, 'csrf_rejected')
  t.equal(session.received.length, 0, 'refused before the session endpoint is asked')

  t.equal((await post(app, RECIPIENTS, { headers: { cookie: 'sid=alice', authorization: basic, ...proofs } })).statusCode, 200)
  t.equal(session.received[0]?.authorization, undefined, 'the Basic header is not forwarded')
  t.equal(session.received[0]?.cookie, 'sid=alice')

  assertProblem(t, await post(app, RECIPIENTS, { headers: { authorization: basic } }), 401, 'unauthenticated')
  t.equal(session.received.length, 1, 'Basic alone is no credential the session endpoint is asked about')

  t.equal((await post(app, RECIPIENTS, { headers: { authorization: 'Bearer alice-token', cookie: 'sid=bob; theme=dark' } })).statusCode, 200)
  t.equal(session.received[1]?.authorization, 'Bearer alice-token')
  t.equal(session.received[1]?.cookie, undefined, 'with a Bearer header, no cookie is forwarded: the endpoint cannot pick another credential')
  t.same(emulator.control.minted.map(m => m.userId), [USER_A, USER_A])
})

t.test('forward mode with AUTH_COOKIE_NAME: only the session cookie is forwarded', async t => {
  const session = await startSessionServer(t)
  const { app } = await buildTestApp(t, { env: { AUTH_MODE: 'forward', AUTH_FORWARD_URL: session.url, AUTH_COOKIE_NAME: 'sid', CORS_ORIGINS: APP_ORIGIN } })
  t.equal((await post(app, RECIPIENTS, { headers: { cookie: 'theme=dark; sid=alice; tracker=abc', ...proofs } })).statusCode, 200)
  t.equal(session.received[0]?.cookie, 'sid=alice')
  assertProblem(t, await post(app, RECIPIENTS, { headers: { cookie: 'theme=dark', ...proofs } }), 401, 'unauthenticated')
  t.equal(session.received.length, 1, 'without the session cookie, nothing is asked')
})

t.test('a session cookie whose name appears twice is 401, in jwt and forward mode', async t => {
  const jwtApp = await buildTestApp(t, { env: { AUTH_COOKIE_NAME: 'session', CORS_ORIGINS: APP_ORIGIN } })
  const alice = await tokenFor(USER_A)
  const bob = await tokenFor(USER_B, {}, { subject: 'idp|bob' })
  for (const cookie of [`session=${alice}; session=${bob}`, `session=${alice}; other=1; session=`]) {
    const res = await post(jwtApp.app, RECIPIENTS, { headers: { cookie, ...proofs } })
    const body = assertProblem(t, res, 401, 'unauthenticated')
    t.match(body.detail, /more than once/)
  }
  t.equal(jwtApp.emulator.control.calls.total, 0)
  t.equal((await post(jwtApp.app, RECIPIENTS, { headers: { cookie: `session=${alice}; sessionx=1`, ...proofs } })).statusCode, 200, 'once is fine')

  const session = await startSessionServer(t)
  const forward = await buildTestApp(t, { env: { AUTH_MODE: 'forward', AUTH_FORWARD_URL: session.url, AUTH_COOKIE_NAME: 'sid', CORS_ORIGINS: APP_ORIGIN } })
  assertProblem(t, await post(forward.app, RECIPIENTS, { headers: { cookie: 'sid=bob; sid=alice', ...proofs } }), 401, 'unauthenticated')
  t.equal(session.received.length, 0, 'the session endpoint is not asked to pick one')
})

t.test('a session cookie sent twice is no failed sign-in: a sibling subdomain cannot lock the address out', async t => {
  const limit = { CORS_ORIGINS: APP_ORIGIN, AUTH_FAILURE_LIMIT_MAX: '2' }
  const jwtApp = await buildTestApp(t, { env: { ...limit, AUTH_COOKIE_NAME: 'session' } })
  const planted = `session=${await tokenFor(USER_A)}; session=planted`
  for (let i = 0; i < 4; i++) assertProblem(t, await post(jwtApp.app, RECIPIENTS, { headers: { cookie: planted, ...proofs } }), 401, 'unauthenticated')
  // Counted, the third would have been 429.
  for (let i = 0; i < 2; i++) assertProblem(t, await post(jwtApp.app, RECIPIENTS, { token: 'not-a-jwt' }), 401, 'unauthenticated')
  assertProblem(t, await post(jwtApp.app, RECIPIENTS, { token: 'not-a-jwt' }), 429, 'rate_limited')

  const session = await startSessionServer(t)
  const forward = await buildTestApp(t, { env: { ...limit, AUTH_MODE: 'forward', AUTH_FORWARD_URL: session.url, AUTH_COOKIE_NAME: 'sid' } })
  for (let i = 0; i < 4; i++) assertProblem(t, await post(forward.app, RECIPIENTS, { headers: { cookie: 'sid=alice; sid=planted', ...proofs } }), 401, 'unauthenticated')
  t.equal((await post(forward.app, RECIPIENTS, { headers: { cookie: 'sid=alice', ...proofs } })).statusCode, 200, 'the address still has its turns')
  t.equal(session.received.length, 1, 'only the single cookie was asked about')
})

t.test('start-up warns when AUTH_COOKIE_NAME lacks the __Host- prefix', async t => {
  const warned = (lines: Array<Record<string, unknown>>) => lines.filter(l => l.level === 40 && /__Host-/.test(String(l.msg))).length
  t.equal(warned((await buildTestApp(t, { env: { AUTH_COOKIE_NAME: 'session' } })).logs.lines()), 1, 'session: one warning')
  t.equal(warned((await buildTestApp(t, { env: { AUTH_COOKIE_NAME: '__Host-session' } })).logs.lines()), 0, '__Host-session: none')
  t.equal(warned((await buildTestApp(t)).logs.lines()), 0, 'no cookie: none')
})

async function signTyped (typ: string): Promise<string> {
  const token = await new SignJWT({ mangopay_user_id: USER_A })
    .setProtectedHeader({ alg: 'RS256', typ })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject('idp|alice')
    .setExpirationTime('10m')
    .sign(RSA_PRIVATE_KEY)
  issuedJwts.push(token)
  return token
}

t.test('AUTH_JWT_TYP: only tokens whose header names that type are sessions', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { AUTH_JWT_TYP: 'at+jwt' } })
  assertProblem(t, await post(app, RECIPIENTS, { token: await signTyped('JWT') }), 401, 'unauthenticated')
  assertProblem(t, await post(app, RECIPIENTS, { token: await tokenFor(USER_A) }), 401, 'unauthenticated')
  t.equal(emulator.control.calls.total, 0, 'an ID token of the same issuer and audience gets nothing')
  t.equal((await post(app, RECIPIENTS, { token: await signTyped('at+jwt') })).statusCode, 200)
  t.equal((await post(app, RECIPIENTS, { token: await signTyped('application/at+jwt') })).statusCode, 200, 'the media-type spelling too (RFC 9068)')
})
