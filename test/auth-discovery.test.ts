import t from 'tap'
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose'
import { DISCOVERY_MAX_AGE_MS, DISCOVERY_UNKNOWN_KEY_MS } from '../src/auth/discovered-keys.js'
import { KEY_SET_RETRY_MS } from '../src/auth/jwt.js'
import { USER_A, assertProblem, buildTestApp, opsGet, post, tokenFor, type LogCapture } from './helpers.js'
import { PLATFORM_CLIENT_ID, startOidcProvider, type OidcProvider } from './oidc-provider.js'

/**
 * AUTH_MODE=jwt with AUTH_ISSUER alone (SPEC §8, Credentials): the broker reads the issuer's
 * discovery document, checks that it names exactly AUTH_ISSUER, and verifies with its `jwks_uri`.
 * The identity provider is a real one (oidc-provider) issuing RFC 9068 access tokens.
 */

const RECIPIENTS = '/v1/tokens/recipients'

function discoveryEnv (issuer: string): Record<string, string | undefined> {
  return { AUTH_JWT_PUBLIC_KEY: undefined, AUTH_ISSUER: issuer, RATE_LIMIT_MAX: '1000' }
}

/** The real time plus what the test adds: token lifetimes stay real, the broker's own schedules move. */
function movableClock (): { now: () => number, by: (ms: number) => void } {
  let shift = 0
  return { now: () => Date.now() + shift, by: ms => { shift += ms } }
}

const documentReads = (idp: OidcProvider): string[] => idp.requests.filter(p => p.includes('/.well-known/'))
const keySetReads = (idp: OidcProvider): string[] => idp.requests.filter(p => p.endsWith('jwks'))
const discoveryLines = (logs: LogCapture, outcome: string): Array<Record<string, any>> =>
  logs.lines().filter(l => (l.auth as { discovery?: string } | undefined)?.discovery === outcome)

t.test('AUTH_ISSUER alone: an at+jwt access token from the provider\'s token endpoint is served, with keys found by discovery', async t => {
  const idp = await startOidcProvider(t)
  const clock = movableClock()
  const { app, emulator, logs } = await buildTestApp(t, { env: discoveryEnv(idp.issuer), deps: { clock } })
  t.same(idp.requests, [], 'nothing is read before it is needed: the broker starts whatever the provider\'s state')

  const token = await idp.accessToken()
  t.equal(decodeProtectedHeader(token).typ, 'at+jwt', 'an RFC 9068 access token')
  t.match(decodeJwt(token), { iss: idp.issuer, sub: PLATFORM_CLIENT_ID, mangopay_user_id: USER_A })

  const res = await post(app, RECIPIENTS, { token })
  t.equal(res.statusCode, 200)
  t.equal(res.json().userId, USER_A)
  t.same(documentReads(idp), ['/.well-known/openid-configuration'])
  t.same(keySetReads(idp), ['/jwks'], 'the key set named by the document')
  t.match(discoveryLines(logs, 'read'), [{ level: 30, auth: { jwksUri: `${idp.issuer}/jwks` } }])

  t.equal((await post(app, '/v1/tokens/checkout', { token: await idp.accessToken() })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
  t.equal(documentReads(idp).length, 1, 'the document is read once, not per request or probe')

  clock.by(DISCOVERY_MAX_AGE_MS)
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
  t.equal(documentReads(idp).length, 2, 'and again once it is 12 hours old')
  t.same(emulator.control.minted.map(m => [m.kind, m.userId]), [['recipient', USER_A], ['checkout', USER_A]])
})

t.test('a document naming another issuer than AUTH_ISSUER exactly is refused: no key set is fetched', async t => {
  const idp = await startOidcProvider(t)
  // The classic slip: a trailing slash the provider's issuer does not have.
  const { app, emulator, logs } = await buildTestApp(t, { env: discoveryEnv(`${idp.issuer}/`) })

  assertProblem(t, await post(app, RECIPIENTS, { token: await idp.accessToken() }), 503, 'auth_unavailable')
  t.same(keySetReads(idp), [], 'the key set it names is not fetched')
  const refused = discoveryLines(logs, 'refused')
  t.equal(refused.length, 1)
  t.match(refused[0], { level: 50, auth: { where: idp.where, cause: `the discovery document at ${idp.where} names the issuer "${idp.issuer}", not AUTH_ISSUER exactly` } })

  const reads = documentReads(idp).length
  assertProblem(t, await post(app, RECIPIENTS, { token: await idp.accessToken() }), 503, 'auth_unavailable')
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 503)
  t.same(ready.json().failing, ['identityProvider'])
  t.equal((await opsGet(app, '/readyz')).json().checks.identityProvider, 'unavailable')
  t.equal(documentReads(idp).length, reads, 'no read of the document per request while it was refused moments ago')
  t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
})

t.test('RFC 8414: an issuer with a path whose metadata is only at oauth-authorization-server', async t => {
  const idp = await startOidcProvider(t, { path: '/tenant-a', rfc8414Only: true })
  const { app, emulator } = await buildTestApp(t, { env: discoveryEnv(idp.issuer) })

  const res = await post(app, RECIPIENTS, { token: await idp.accessToken() })
  t.equal(res.statusCode, 200)
  t.same(documentReads(idp), ['/tenant-a/.well-known/openid-configuration', '/.well-known/oauth-authorization-server/tenant-a'],
    'OIDC appends the well-known segment to the path; RFC 8414 puts it between host and path')
  t.same(keySetReads(idp), ['/tenant-a/jwks'])
  t.equal(emulator.control.minted.length, 1)
})

t.test('an explicit key source wins: AUTH_JWKS_URL with AUTH_ISSUER reads no discovery document', async t => {
  const idp = await startOidcProvider(t)
  const { app } = await buildTestApp(t, { env: { ...discoveryEnv(idp.issuer), AUTH_JWKS_URL: `${idp.issuer}/jwks` } })

  t.equal((await post(app, RECIPIENTS, { token: await idp.accessToken() })).statusCode, 200)
  t.same(documentReads(idp), [], 'no discovery request')
  t.same(keySetReads(idp), ['/jwks'])
})

t.test('the provider down at start-up: the broker starts, is not ready, and serves once the document can be read', async t => {
  const idp = await startOidcProvider(t)
  idp.canned.set('/.well-known/openid-configuration', { status: 503 })
  const clock = movableClock()
  const { app, emulator, logs } = await buildTestApp(t, { env: discoveryEnv(idp.issuer), deps: { clock } })

  const down = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(down.statusCode, 503)
  t.same(down.json().failing, ['identityProvider'])
  t.equal((await opsGet(app, '/readyz')).json().checks.identityProvider, 'unavailable')
  const res = await post(app, RECIPIENTS, { token: await idp.accessToken() })
  assertProblem(t, res, 503, 'auth_unavailable')
  t.ok(Number(res.headers['retry-after']) >= 1, 'with Retry-After')
  t.equal(documentReads(idp).length, 1, 'a request right after a failed read does not read again')
  t.match(discoveryLines(logs, 'unavailable'), [{ level: 40, auth: { where: idp.where, cause: `the discovery document at ${idp.where} answered 503` } }])

  clock.by(KEY_SET_RETRY_MS)
  assertProblem(t, await post(app, RECIPIENTS, { token: await idp.accessToken() }), 503, 'auth_unavailable')
  t.equal(documentReads(idp).length, 2, 'read again once the retry interval has passed')
  t.equal(discoveryLines(logs, 'unavailable').length, 1, 'the same failure again is not logged again')

  idp.canned.delete('/.well-known/openid-configuration')
  clock.by(KEY_SET_RETRY_MS)
  t.equal((await post(app, RECIPIENTS, { token: await idp.accessToken() })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
  t.equal(documentReads(idp).length, 3)
  t.match(logs.lines().filter(l => l.recovered !== undefined), [{ level: 30, upstream: 'identity_provider', recovered: { host: idp.where, after: 'HTTP 503' } }], 'the recovery is logged')
  t.equal(emulator.control.minted.length, 1)
})

t.test('a jwks_uri over plain http to another host is refused', async t => {
  const idp = await startOidcProvider(t)
  idp.canned.set('/.well-known/openid-configuration', { status: 200, body: { issuer: idp.issuer, jwks_uri: 'http://keys.example.test/jwks' } })
  const { app, logs } = await buildTestApp(t, { env: discoveryEnv(idp.issuer) })

  assertProblem(t, await post(app, RECIPIENTS, { token: await idp.accessToken() }), 503, 'auth_unavailable')
  t.match(discoveryLines(logs, 'refused'), [{ level: 50, auth: { where: idp.where, cause: /its jwks_uri must use https/ } }])
})

t.test('a key the key set lacks gets the document read again: the provider moved its key set', async t => {
  const idp = await startOidcProvider(t)
  const retired = await generateKeyPair('RS256', { extractable: true })
  idp.canned.set('/old-jwks', { status: 200, body: { keys: [{ ...await exportJWK(retired.publicKey), kid: 'retired', alg: 'RS256', use: 'sig' }] } })
  idp.canned.set('/.well-known/openid-configuration', { status: 200, body: { issuer: idp.issuer, jwks_uri: `${idp.issuer}/old-jwks` } })
  const clock = movableClock()
  const { app, emulator } = await buildTestApp(t, { env: discoveryEnv(idp.issuer), deps: { clock } })
  const token = await idp.accessToken()

  assertProblem(t, await post(app, RECIPIENTS, { token }), 401, 'unauthenticated')
  t.equal(documentReads(idp).length, 1, 'a document read moments ago is not read again for an unknown key')

  // The provider's document now names its real key set.
  idp.canned.delete('/.well-known/openid-configuration')
  clock.by(DISCOVERY_UNKNOWN_KEY_MS)
  t.equal((await post(app, RECIPIENTS, { token })).statusCode, 200)
  t.equal(documentReads(idp).length, 2)
  t.same(keySetReads(idp), ['/old-jwks', '/jwks'])
  t.equal(emulator.control.minted.length, 1)
})

t.test('a key set replaced by discovery ends what was verified with the one before', async t => {
  const idp = await startOidcProvider(t)
  const moved = await generateKeyPair('RS256', { extractable: true })
  idp.canned.set('/old-jwks', { status: 200, body: await (await fetch(`${idp.issuer}/jwks`)).json() })
  idp.canned.set('/new-jwks', { status: 200, body: { keys: [{ ...await exportJWK(moved.publicKey), kid: 'moved', alg: 'RS256', use: 'sig' }] } })
  const naming = (path: string) => ({ status: 200, body: { issuer: idp.issuer, jwks_uri: `${idp.issuer}${path}` } })
  idp.canned.set('/.well-known/openid-configuration', naming('/old-jwks'))
  const clock = movableClock()
  const { app } = await buildTestApp(t, { env: discoveryEnv(idp.issuer), deps: { clock } })
  const token = await idp.accessToken()
  // The first look finds no key set yet; the second is remembered as verified with the old one.
  for (let i = 0; i < 2; i++) t.equal((await post(app, RECIPIENTS, { token })).statusCode, 200)

  idp.canned.set('/.well-known/openid-configuration', naming('/new-jwks'))
  clock.by(DISCOVERY_UNKNOWN_KEY_MS)
  const withMovedKey = await tokenFor(USER_A, {}, { key: moved.privateKey, kid: 'moved', issuer: idp.issuer, subject: 'idp|moved' })
  t.equal((await post(app, RECIPIENTS, { token: withMovedKey })).statusCode, 200, 'a key only the new set has: the document is read again')
  t.same(keySetReads(idp).slice(-2), ['/old-jwks', '/new-jwks'])
  assertProblem(t, await post(app, RECIPIENTS, { token }), 401, 'unauthenticated')
})
