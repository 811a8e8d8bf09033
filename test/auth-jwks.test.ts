import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import type { FastifyInstance } from 'fastify'
import { ManualClock } from './manual-clock.js'
import { createJwtVerifier, STALE_KEY_SET_MAX_MS, KEY_SET_RETRY_MS } from '../src/auth/jwt.js'
import { AUDIENCE, ISSUER, USER_A, USER_B, assertProblem, buildTestApp, tokenFor, until, opsGet } from './helpers.js'

/**
 * AUTH_MODE=jwt with AUTH_JWKS_URL: keys come from the identity provider's key set, which is
 * cached, refetched when a new `kid` shows up (key rotation), and whose unavailability is the
 * provider's fault (503 auth_unavailable), not the caller's (401).
 */

const RECIPIENTS = '/v1/tokens/recipients'
const CHECKOUT = '/v1/tokens/checkout'

interface SigningKey { kid: string, privateKey: CryptoKey, jwk: JWK }

async function keyWithoutKid (): Promise<Omit<SigningKey, 'kid'>> {
  const pair = await generateKeyPair('RS256', { extractable: true })
  return { privateKey: pair.privateKey, jwk: { ...await exportJWK(pair.publicKey), alg: 'RS256', use: 'sig' } }
}

async function signingKey (kid: string): Promise<SigningKey> {
  const pair = await generateKeyPair('RS256', { extractable: true })
  return { kid, privateKey: pair.privateKey, jwk: { ...await exportJWK(pair.publicKey), kid, alg: 'RS256', use: 'sig' } }
}

/** The identity provider's JWKS endpoint: serves whatever keys it holds, fails, or holds its answers, on demand. */
async function startJwksServer (t: Test, keys: JWK[]) {
  const state = { keys, fetches: 0, failWith: undefined as number | undefined, hold: false, held: [] as ServerResponse[] }
  const server = createServer((req, res) => {
    state.fetches++
    if (state.hold) {
      state.held.push(res)
      return
    }
    if (state.failWith !== undefined) {
      res.writeHead(state.failWith, { 'content-type': 'text/plain' }).end('identity provider error')
      return
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  /** Answers the held fetches with the keys held now, and stops holding. */
  const release = (): void => {
    state.hold = false
    for (const res of state.held.splice(0)) res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }))
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`, state, release }
}

function jwksEnv (url: string): Record<string, string | undefined> {
  return { AUTH_JWT_PUBLIC_KEY: undefined, AUTH_JWKS_URL: url, RATE_LIMIT_MAX: '1000' }
}

async function ask (app: FastifyInstance, url: string, token: string) {
  return await app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${token}` } })
}

/** The real time, whatever a test does to Date.now: the apps here check token lifetimes with it. */
const wallClock = { now: Date.now.bind(Date) }

/**
 * Date.now, moved by hand: jose's cache age and refetch cooldown and the stand-in key set's age
 * read it. Token lifetimes are checked against the app's clock (wallClock), which this does not touch.
 */
function moveDateNow (t: Test): { by: (ms: number) => void, to: (ms: number) => void } {
  const realNow = Date.now.bind(Date)
  let shift = 0
  t.capture(Date, 'now', () => realNow() + shift)
  return { by: ms => { shift += ms }, to: ms => { shift = ms } }
}

/** The warnings that the key set cannot be fetched (one per outage). */
function outageWarnings (logs: { lines: () => Array<Record<string, unknown>> }): Array<Record<string, unknown>> {
  return logs.lines().filter(l => (l.auth as { jwks?: string } | undefined)?.jwks === 'unavailable')
}

t.test('a token whose kid is in the key set is accepted; the set is fetched once and cached', async t => {
  const key = await signingKey('key-2026-01')
  const jwks = await startJwksServer(t, [key.jwk])
  const { app, emulator } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })

  const token = await tokenFor(USER_A, {}, { key: key.privateKey, kid: key.kid })
  const first = await ask(app, RECIPIENTS, token)
  t.equal(first.statusCode, 200)
  t.equal(first.json().userId, USER_A)
  const second = await ask(app, CHECKOUT, token)
  t.equal(second.statusCode, 200)
  t.equal(jwks.state.fetches, 1, 'the key set is cached between requests')
  t.same(emulator.control.minted.map(m => [m.kind, m.userId]), [['recipient', USER_A], ['checkout', USER_A]])
})

t.test('key rotation: a new kid is picked up by refetching the key set', async t => {
  const oldKey = await signingKey('key-old')
  const newKey = await signingKey('key-new')
  const jwks = await startJwksServer(t, [oldKey.jwk])
  const { app, emulator } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })

  t.equal((await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: oldKey.privateKey, kid: oldKey.kid }))).statusCode, 200)
  t.equal(jwks.state.fetches, 1)

  // The identity provider publishes the new key and starts signing with it. The broker's key
  // cache refetches on an unknown kid at most every 30 s (so a stream of made-up kids cannot
  // make it hammer the provider); the test moves Date.now past that cooldown rather than sleeping.
  jwks.state.keys = [oldKey.jwk, newKey.jwk]
  moveDateNow(t).by(31_000)

  const rotated = await ask(app, CHECKOUT, await tokenFor(USER_A, {}, { key: newKey.privateKey, kid: newKey.kid }))
  t.equal(rotated.statusCode, 200, 'a token signed with the new key is accepted')
  t.equal(jwks.state.fetches, 2, 'after one refetch of the key set')
  t.equal((await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: oldKey.privateKey, kid: oldKey.kid }))).statusCode, 200, 'the old key still works while published')
  t.equal(jwks.state.fetches, 2)
  t.same(emulator.control.minted.map(m => m.kind), ['recipient', 'checkout', 'recipient'])
})

t.test('unknown kids right after a fetch are refused without hammering the identity provider', async t => {
  const key = await signingKey('key-1')
  const jwks = await startJwksServer(t, [key.jwk])
  const { app, emulator } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })
  t.equal((await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: key.privateKey, kid: key.kid }))).statusCode, 200)
  const calls = emulator.control.calls.total

  const stranger = await signingKey('key-1-impostor')
  for (let i = 0; i < 5; i++) {
    const res = await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: stranger.privateKey, kid: `made-up-${i}` }))
    assertProblem(t, res, 401, 'unauthenticated')
  }
  t.ok(jwks.state.fetches <= 2, `at most one refetch for a burst of unknown kids (saw ${jwks.state.fetches} fetches)`)
  t.equal(emulator.control.calls.total, calls, 'zero Mangopay calls')
})

t.test('a token signed by a key that is not in the set is 401', async t => {
  const published = await signingKey('key-published')
  const jwks = await startJwksServer(t, [published.jwk])
  const { app, emulator } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })
  const impostor = await signingKey('key-published')

  // Claims the published kid, but the signature is by another key.
  assertProblem(t, await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: impostor.privateKey, kid: impostor.kid })), 401, 'unauthenticated')
  // A kid the set does not have at all.
  assertProblem(t, await ask(app, CHECKOUT, await tokenFor(USER_A, {}, { key: impostor.privateKey, kid: 'not-in-the-set' })), 401, 'unauthenticated')
  // No kid at all, with a key outside the set.
  assertProblem(t, await ask(app, CHECKOUT, await tokenFor(USER_A, {}, { key: impostor.privateKey })), 401, 'unauthenticated')
  t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
})

t.test('several keys match a token without kid: the one whose signature checks is used, other checks unchanged', async t => {
  // Key sets without `kid`s exist (e.g. an old and a new key published during a rotation).
  const [one, two, outsider] = await Promise.all([keyWithoutKid(), keyWithoutKid(), keyWithoutKid()])
  const jwks = await startJwksServer(t, [one.jwk, two.jwk])
  const { app, emulator } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })

  const first = await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: one.privateKey }))
  t.equal(first.statusCode, 200, 'signed by the first key')
  t.equal(first.json().userId, USER_A)
  t.equal((await ask(app, CHECKOUT, await tokenFor(USER_A, {}, { key: two.privateKey }))).statusCode, 200, 'signed by the second key')

  assertProblem(t, await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: outsider.privateKey })), 401, 'unauthenticated')
  // A good signature does not excuse the claims.
  assertProblem(t, await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: two.privateKey, expiresIn: Math.floor(Date.now() / 1000) - 600 })), 401, 'unauthenticated')
  assertProblem(t, await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: two.privateKey, audience: 'another-service' })), 401, 'unauthenticated')
  assertProblem(t, await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: two.privateKey, issuer: 'https://other-idp.test/' })), 401, 'unauthenticated')
  t.equal(jwks.state.fetches, 1)
  t.same(emulator.control.minted.map(m => m.kind), ['recipient', 'checkout'])
})

t.test('JWKS server down on a cold broker → 503 auth_unavailable, not 401', async t => {
  // A port that was just free: nothing listens there.
  const probe = createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const deadUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/jwks.json`
  probe.close()
  await once(probe, 'close')

  const { app, emulator } = await buildTestApp(t, { env: jwksEnv(deadUrl) })
  const key = await signingKey('key-1')
  for (const url of [RECIPIENTS, CHECKOUT]) {
    const res = await ask(app, url, await tokenFor(USER_A, {}, { key: key.privateKey, kid: key.kid }))
    assertProblem(t, res, 503, 'auth_unavailable')
    t.ok(Number(res.headers['retry-after']) >= 1, 'with Retry-After')
  }
  t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
})

t.test('JWKS server answering an error → 503 auth_unavailable, then recovers', async t => {
  const key = await signingKey('key-1')
  const jwks = await startJwksServer(t, [key.jwk])
  jwks.state.failWith = 500
  const { app, emulator } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })
  const token = await tokenFor(USER_A, {}, { key: key.privateKey, kid: key.kid })

  assertProblem(t, await ask(app, RECIPIENTS, token), 503, 'auth_unavailable')
  t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')

  jwks.state.failWith = undefined
  const res = await ask(app, RECIPIENTS, token)
  t.equal(res.statusCode, 200, 'a failed fetch is not cached: the next request fetches again')
  t.equal(jwks.state.fetches, 2)
})

t.test('the key set cannot be fetched past its cache age: the last one fetched stands in for verification, for up to 24 h', async t => {
  const key = await signingKey('key-1')
  const jwks = await startJwksServer(t, [key.jwk])
  // The app's clock: real time, moved apart from Date.now where readiness needs its retry interval to pass.
  let appShift = 0
  const { app, emulator, logs } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: { now: () => wallClock.now() + appShift } } })
  // Each token distinct (a JWT seen before would be answered by the verify cache, no key needed).
  let serial = 0
  const signed = async (user: string, signer = key, kid = key.kid) => await tokenFor(user, { jti: `t${serial++}` }, { key: signer.privateKey, kid })
  t.equal((await ask(app, RECIPIENTS, await signed(USER_A))).statusCode, 200)
  t.equal(jwks.state.fetches, 1)

  // The identity provider goes down; jose's 10-minute cache age passes.
  jwks.state.failWith = 503
  const clock = moveDateNow(t)
  clock.by(11 * 60_000)
  const unavailable = (): Array<Record<string, unknown>> => outageWarnings(logs)
  t.equal((await ask(app, RECIPIENTS, await signed(USER_A))).statusCode, 200, 'a user signed in before is served')
  await until('the background fetch to fail', () => unavailable().length === 1)
  t.equal(jwks.state.fetches, 2, 'after one failed fetch')
  const signedInDuringOutage = await signed(USER_B)
  t.equal((await ask(app, CHECKOUT, signedInDuringOutage)).statusCode, 200, 'and so is a new sign-in with a known key')
  t.equal(jwks.state.fetches, 2, 'the next requests do not each try a fetch')
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 503, 'not ready (SPEC §2: every configured dependency answers), though tokens are still served')
  t.same(ready.json().failing, ['identityProvider'])
  t.equal(jwks.state.fetches, 3, 'readiness asked the provider itself')
  const warnings = unavailable()
  t.equal(warnings.length, 1, 'one warning for the outage')
  t.match(warnings[0], { level: 40, msg: /verifying with the last one fetched/, auth: { lastFetchedAt: String } })

  const stranger = await signingKey('key-1')
  assertProblem(t, await ask(app, RECIPIENTS, await signed(USER_A, stranger)), 401, 'unauthenticated')
  const rotated = await signingKey('key-2')
  assertProblem(t, await ask(app, RECIPIENTS, await signed(USER_A, rotated, rotated.kid)), 503, 'auth_unavailable')
  t.equal(jwks.state.fetches, 3, 'an unknown kid is not the caller\'s fault while the set cannot be fetched')

  clock.by(KEY_SET_RETRY_MS)
  t.equal((await ask(app, RECIPIENTS, await signed(USER_B))).statusCode, 200)
  await until('the next fetch', () => jwks.state.fetches === 4)
  t.pass('a fetch is tried again every 30 s')

  clock.to(STALE_KEY_SET_MAX_MS + 1000)
  assertProblem(t, await ask(app, RECIPIENTS, await signed(USER_A)), 503, 'auth_unavailable')
  t.equal(jwks.state.fetches, 5, 'once the last set is too old to stand in, requests are refused')
  assertProblem(t, await ask(app, RECIPIENTS, signedInDuringOutage), 503, 'auth_unavailable')
  t.equal(jwks.state.fetches, 6, 'a token verified with it earlier too: its verification is not reused, and with no keys left each request tries a fetch')
  t.match(logs.lines().findLast(l => l.code === 'auth_unavailable'), { cause: { message: 'the JWKS could not be fetched', cause: { message: String } } }, 'logged with the fetch\'s own failure')

  jwks.state.failWith = undefined
  clock.by(KEY_SET_RETRY_MS)
  t.equal((await ask(app, RECIPIENTS, await signed(USER_A))).statusCode, 200, 'served again once the set can be fetched')
  t.equal(jwks.state.fetches, 7)
  appShift += KEY_SET_RETRY_MS
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, 'and ready again')
  t.equal(emulator.control.minted.length, 5, 'a token for each request served, none for the refused')
  t.equal(unavailable().length, 1, 'still one warning: the outage never ended')
})

t.test('past its cache age the key set is fetched again in the background: no sign-in with a known key waits for the identity provider', async t => {
  const key = await signingKey('key-1')
  const jwks = await startJwksServer(t, [key.jwk])
  const { app, emulator, logs } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })
  let serial = 0
  const signed = async (user: string, signer = key) => await tokenFor(user, { jti: `t${serial++}` }, { key: signer.privateKey, kid: signer.kid })
  t.equal((await ask(app, RECIPIENTS, await signed(USER_A))).statusCode, 200)
  t.equal(jwks.state.fetches, 1)

  // The provider stops answering (no error, no timeout yet); jose's 10-minute cache age passes.
  jwks.state.hold = true
  moveDateNow(t).by(11 * 60_000)
  t.equal((await ask(app, RECIPIENTS, await signed(USER_A))).statusCode, 200, 'answered with the set it has')
  await until('the background fetch to reach the provider', () => jwks.state.held.length === 1)
  t.equal((await ask(app, CHECKOUT, await signed(USER_B))).statusCode, 200, 'and so is the next sign-in, while the fetch is unanswered')

  // A key the set lacks may be a new one: that request waits for the fetch, and the new set verifies it.
  const rotated = await signingKey('key-2')
  jwks.state.keys = [key.jwk, rotated.jwk]
  let settled = false
  const pending = ask(app, RECIPIENTS, await signed(USER_B, rotated)).finally(() => { settled = true })
  await sleep(200)
  t.equal(settled, false, 'a kid the set lacks waits for the fetch')
  jwks.release()
  t.equal((await pending).statusCode, 200, 'a new kid is verified with the set fetched')
  t.equal(jwks.state.fetches, 2, 'one fetch for all of them')
  t.same(emulator.control.minted.map(m => m.userId), [USER_A, USER_A, USER_B, USER_B])
  t.equal(outageWarnings(logs).length, 0, 'no outage was reported')
})

t.test('cache hits alone get a stale key set fetched again; a key withdrawn stops being honoured once the set without it is fetched', async t => {
  const kept = await signingKey('key-kept')
  const withdrawn = await signingKey('key-withdrawn')
  const jwks = await startJwksServer(t, [kept.jwk, withdrawn.jwk])
  const { app, emulator } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })
  const keptToken = await tokenFor(USER_A, {}, { key: kept.privateKey, kid: kept.kid })
  const withdrawnToken = await tokenFor(USER_B, {}, { key: withdrawn.privateKey, kid: withdrawn.kid })
  t.equal((await ask(app, RECIPIENTS, keptToken)).statusCode, 200)
  t.equal((await ask(app, RECIPIENTS, withdrawnToken)).statusCode, 200)
  t.equal(jwks.state.fetches, 1)

  // The identity provider withdraws a key. Past the set's cache age, requests whose tokens were
  // verified before are still answered, and they alone get the set fetched again.
  jwks.state.keys = [kept.jwk]
  moveDateNow(t).by(11 * 60_000)
  t.equal((await ask(app, CHECKOUT, withdrawnToken)).statusCode, 200, 'answered while the set is fetched again')
  await until('the key set to be fetched again', () => jwks.state.fetches === 2)
  // Readiness joins the fetch under way: once it answers, the new set is the one in use.
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
  t.equal(jwks.state.fetches, 2, 'readiness asked for no fetch of its own')

  assertProblem(t, await ask(app, CHECKOUT, withdrawnToken), 401, 'unauthenticated')
  t.equal((await ask(app, CHECKOUT, keptToken)).statusCode, 200, 'a token signed with a key still published is served')
  t.equal(jwks.state.fetches, 2, 'no fetch per request')
  t.same(emulator.control.minted.map(m => [m.kind, m.userId]), [['recipient', USER_A], ['recipient', USER_B], ['checkout', USER_B], ['checkout', USER_A]])
})

t.test('a key added, used and withdrawn again between two requests: its token is refused once the set without it is fetched', async t => {
  const first = await signingKey('key-1')
  const added = await signingKey('key-2')
  const jwks = await startJwksServer(t, [first.jwk])
  const { app } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock: wallClock } })
  t.equal((await ask(app, RECIPIENTS, await tokenFor(USER_A, {}, { key: first.privateKey, kid: first.kid }))).statusCode, 200)

  // The provider publishes a key and signs with it: its first token gets the set fetched again.
  jwks.state.keys = [first.jwk, added.jwk]
  const clock = moveDateNow(t)
  clock.by(31_000) // past jose's 30 s cooldown between refetches for an unknown kid
  const addedToken = await tokenFor(USER_B, {}, { key: added.privateKey, kid: added.kid })
  t.equal((await ask(app, RECIPIENTS, addedToken)).statusCode, 200)
  t.equal(jwks.state.fetches, 2)

  // It withdraws the key: the set is the first one again, fetched by a readiness probe alone.
  jwks.state.keys = [first.jwk]
  clock.by(11 * 60_000)
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
  t.equal(jwks.state.fetches, 3)
  assertProblem(t, await ask(app, RECIPIENTS, addedToken), 401, 'unauthenticated')
})

t.test('the key set\'s version: a refetch of the same keys keeps it, any change of keys ends it', async t => {
  const key = await signingKey('key-1')
  const other = await signingKey('key-2')
  const jwks = await startJwksServer(t, [key.jwk])
  const verifier = createJwtVerifier({ key: { kind: 'jwks', url: jwks.url }, algorithms: ['RS256'], issuer: ISSUER, audience: AUDIENCE, clockToleranceS: 30 })
  const { keysVersion, ready } = verifier
  if (keysVersion === undefined || ready === undefined) throw new Error('a key set has a version and a readiness')
  t.equal(keysVersion(), undefined, 'nothing fetched yet: nothing to reuse')
  const clock = moveDateNow(t)
  const fetchAfterCacheAge = async (): Promise<void> => {
    clock.by(11 * 60_000)
    const fetches = jwks.state.fetches
    t.equal(await ready(), true)
    t.equal(jwks.state.fetches, fetches + 1)
  }

  t.equal(await ready(), true)
  const initial = keysVersion()
  t.type(initial, 'number')
  await fetchAfterCacheAge()
  t.equal(keysVersion(), initial, 'the same keys fetched again: what was verified with them stands')
  jwks.state.keys = [key.jwk, other.jwk]
  await fetchAfterCacheAge()
  const withOther = keysVersion()
  t.not(withOther, initial, 'a key added')
  jwks.state.keys = [key.jwk]
  await fetchAfterCacheAge()
  t.not(keysVersion(), withOther, 'a key withdrawn')
  t.not(keysVersion(), initial, 'back to the first keys is a change too: what was verified in between no longer stands')
})

t.test('readiness: the key set is a configured dependency', async t => {
  const key = await signingKey('k1')
  const jwks = await startJwksServer(t, [key.jwk])
  jwks.state.failWith = 503
  const clock = new ManualClock()
  const { app } = await buildTestApp(t, { env: jwksEnv(jwks.url), deps: { clock } })
  const ready = async () => await app.inject({ method: 'GET', url: '/readyz' })

  const down = await ready()
  assertProblem(t, down, 503, 'upstream_unavailable')
  t.same(down.json().failing, ['identityProvider'])
  const fetches = jwks.state.fetches
  t.equal((await ready()).statusCode, 503)
  t.equal(jwks.state.fetches, fetches, 'while it fails, asked at most every 5 s')

  jwks.state.failWith = undefined
  clock.advance(5000)
  const up = await ready()
  t.equal(up.statusCode, 200)
  t.equal((await opsGet(app, '/readyz')).json().checks.identityProvider, 'ok')
  const fetched = jwks.state.fetches
  t.equal((await ready()).statusCode, 200)
  t.equal(jwks.state.fetches, fetched, 'a fresh key set needs no fetch')
})

t.test('readiness: a fixed public key needs no identity provider', async t => {
  const { app } = await buildTestApp(t)
  const res = await opsGet(app, '/readyz')
  t.equal(res.statusCode, 200)
  t.equal(res.json().checks.identityProvider, undefined)
})
