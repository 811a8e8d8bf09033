import t from 'tap'
import { exportJWK, generateKeyPair, SignJWT, type JWTPayload } from 'jose'
import type { FastifyInstance } from 'fastify'
import {
  API_KEY, AUDIENCE, ISSUER, RSA_PRIVATE_KEY, RSA_PUBLIC_PEM, USER_A, USER_B, USER_C,
  assertProblem, buildTestApp, issuedJwts, signJwt, tokenFor
} from './helpers.js'

/**
 * SPEC §3.1–3.3 in AUTH_MODE=jwt: every way a credential can be wrong is a 401
 * `unauthenticated` (never a 500, never a Mangopay call); a valid session without a usable
 * Mangopay user id is 403; the body's `userId` can only narrow the session's own ids.
 */

const ROUTES = ['/v1/tokens/recipients', '/v1/tokens/checkout'] as const
const KIND = { '/v1/tokens/recipients': 'recipient', '/v1/tokens/checkout': 'checkout' } as const
const HMAC_SECRET = 'a-shared-hmac-secret-of-at-least-32-bytes!'
// Plenty of room so the per-user limit never decides a test here.
const ENV = { RATE_LIMIT_MAX: '1000' }

const nowS = (): number => Math.floor(Date.now() / 1000)
const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')

// A distinct client address per request, so a per-IP limit on failed authentications
// (SPEC §3.5) never turns an expected 401 into a 429.
let ipCounter = 0
function nextIp (): string {
  ipCounter++
  return `10.9.${(ipCounter >> 8) & 255}.${ipCounter & 255}`
}

async function ask (app: FastifyInstance, url: string, headers: Record<string, string>, body?: unknown) {
  return await app.inject({
    method: 'POST',
    url,
    remoteAddress: nextIp(),
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) })
  })
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

/** Signs with jose directly (for shapes `signJwt` does not make) and registers the token for the log check. */
async function signRaw (claims: JWTPayload, header: { alg: string, kid?: string }, key: CryptoKey | Uint8Array): Promise<string> {
  const token = await new SignJWT(claims).setProtectedHeader({ typ: 'JWT', ...header }).sign(key)
  issuedJwts.push(token)
  return token
}

const baseClaims = (): JWTPayload => ({ iss: ISSUER, aud: AUDIENCE, sub: 'idp|subject-1', iat: nowS(), exp: nowS() + 600, mangopay_user_id: USER_A })

t.test('every authentication failure is 401 unauthenticated, and Mangopay is never called', async t => {
  const { app, emulator } = await buildTestApp(t, { env: ENV })
  const otherRsa = await generateKeyPair('RS256', { extractable: true })
  const foreign = await generateKeyPair('RS256', { extractable: true })
  const foreignJwk = { ...await exportJWK(foreign.publicKey), kid: 'foreign-idp-key-1', alg: 'RS256', use: 'sig' }

  const noneToken = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(baseClaims())}.`
  issuedJwts.push(noneToken)

  const cases: Array<[string, () => Promise<Record<string, string>>]> = [
    ['no credentials', async () => ({})],
    ['Basic credentials', async () => ({ authorization: `Basic ${Buffer.from('alice:password').toString('base64')}` })],
    ['"Bearer" with nothing after it', async () => ({ authorization: 'Bearer ' })],
    ['Bearer with garbage', async () => bearer('not-a-jwt-at-all')],
    ['Bearer with two words', async () => ({ authorization: 'Bearer abc def' })],
    ['malformed JWT (three parts, not JSON)', async () => bearer('aaaa.bbbb.cccc')],
    ['malformed JWT (two parts)', async () => bearer(`${b64url({ alg: 'RS256' })}.${b64url(baseClaims())}`)],
    ['bad signature (another RSA key)', async () => bearer(await tokenFor(USER_A, {}, { key: otherRsa.privateKey }))],
    ['a key from a foreign JWKS (with its kid)', async () => bearer(await tokenFor(USER_A, {}, { key: foreign.privateKey, kid: foreignJwk.kid }))],
    ['expired beyond the 30 s tolerance', async () => bearer(await tokenFor(USER_A, {}, { expiresIn: nowS() - 120 }))],
    ['nbf in the future beyond the tolerance', async () => bearer(await tokenFor(USER_A, {}, { notBefore: nowS() + 120 }))],
    ['wrong iss', async () => bearer(await tokenFor(USER_A, {}, { issuer: 'https://evil.example.test/' }))],
    ['wrong aud', async () => bearer(await tokenFor(USER_A, {}, { audience: 'another-service' }))],
    ['alg none (unsigned)', async () => bearer(noneToken)],
    ['HS256 keyed with the RSA public key PEM (RS/HS confusion)', async () =>
      bearer(await signRaw(baseClaims(), { alg: 'HS256' }, new TextEncoder().encode(RSA_PUBLIC_PEM)))],
    ['missing exp', async () => {
      const { exp: _exp, ...claims } = baseClaims()
      return bearer(await signRaw(claims, { alg: 'RS256' }, RSA_PRIVATE_KEY))
    }],
    ['missing sub (the audit line needs a subject)', async () => {
      const { sub: _sub, ...claims } = baseClaims()
      return bearer(await signRaw(claims, { alg: 'RS256' }, RSA_PRIVATE_KEY))
    }],
    ['an empty sub', async () => bearer(await signRaw({ ...baseClaims(), sub: '' }, { alg: 'RS256' }, RSA_PRIVATE_KEY))],
    ['a 9 KB token (otherwise valid)', async () => bearer(await tokenFor(USER_A, { padding: 'x'.repeat(9 * 1024) }))]
  ]

  for (const [name, headersFor] of cases) {
    for (const url of ROUTES) {
      await t.test(`${name} → 401 on ${url}`, async t => {
        const headers = await headersFor()
        const res = await ask(app, url, headers)
        const body = assertProblem(t, res, 401, 'unauthenticated')
        if (headers.authorization !== undefined) {
          const credential = headers.authorization.replace(/^\S+\s*/, '')
          if (credential.length > 8) t.notOk(res.body.includes(credential), 'the credential is not echoed')
        }
        t.notOk(body.detail.includes(API_KEY))
        t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
      })
    }
  }
  t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls after every failure')
})

t.test('expiry and nbf inside the clock tolerance are accepted', async t => {
  const { app, emulator } = await buildTestApp(t, { env: ENV })
  const expiredRecently = await tokenFor(USER_A, {}, { expiresIn: nowS() - 10 })
  const res = await ask(app, ROUTES[0], bearer(expiredRecently))
  t.equal(res.statusCode, 200, 'expired 10 s ago, within the 30 s tolerance')
  t.equal(res.json().userId, USER_A)

  const notYetValid = await tokenFor(USER_A, {}, { notBefore: nowS() + 10 })
  const res2 = await ask(app, ROUTES[1], bearer(notYetValid))
  t.equal(res2.statusCode, 200, 'nbf 10 s ahead, within the tolerance')
  t.same(emulator.control.minted.map(m => [m.kind, m.userId]), [['recipient', USER_A], ['checkout', USER_A]])
})

t.test('a valid session without a usable Mangopay user id is 403 no_mangopay_user', async t => {
  const { app, emulator } = await buildTestApp(t, { env: ENV })
  const cases: Array<[string, JWTPayload]> = [
    ['no claim', {}],
    ['a number', { mangopay_user_id: 12345 }],
    ['an object', { mangopay_user_id: { id: USER_A } }],
    ['an empty array', { mangopay_user_id: [] }],
    ['an array of numbers', { mangopay_user_id: [1, 2] }]
  ]
  for (const [name, claims] of cases) {
    for (const url of ROUTES) {
      const token = await signJwt(claims)
      const res = await ask(app, url, bearer(token))
      assertProblem(t, res, 403, 'no_mangopay_user')
      t.equal(emulator.control.calls.total, 0, `${name} on ${url}: zero Mangopay calls`)
    }
  }
})

t.test('AUTH_USER_ID_CLAIM names the claim that is read', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { ...ENV, AUTH_USER_ID_CLAIM: 'custom' } })
  const defaultClaimOnly = await tokenFor(USER_A)
  assertProblem(t, await ask(app, ROUTES[0], bearer(defaultClaimOnly)), 403, 'no_mangopay_user')
  t.equal(emulator.control.calls.total, 0, 'the default claim is not read when another is configured')

  const custom = await signJwt({ custom: USER_B })
  const res = await ask(app, ROUTES[1], bearer(custom))
  t.equal(res.statusCode, 200)
  t.equal(res.json().userId, USER_B)
  t.same(emulator.control.minted.map(m => [m.kind, m.userId]), [['checkout', USER_B]])
})

t.test('SPEC §3.3: the body userId can only pick one of the session\'s own ids', async t => {
  const { app, emulator } = await buildTestApp(t, { env: ENV })
  const single = await tokenFor(USER_A)
  const several = await tokenFor([USER_B, USER_C])

  for (const url of ROUTES) {
    const kind = KIND[url]
    await t.test(`single id on ${url}`, async t => {
      const before = emulator.control.minted.length
      const noBody = await ask(app, url, bearer(single))
      t.equal(noBody.statusCode, 200, 'no body → the session\'s id')
      t.equal(noBody.json().userId, USER_A)
      const empty = await ask(app, url, bearer(single), {})
      t.equal(empty.statusCode, 200, '{} → the session\'s id')
      t.equal(empty.json().userId, USER_A)
      const naming = await ask(app, url, bearer(single), { userId: USER_A })
      t.equal(naming.statusCode, 200, 'naming its own id → ok')
      t.same(emulator.control.minted.slice(before).map(m => [m.kind, m.userId]), [[kind, USER_A], [kind, USER_A], [kind, USER_A]])

      const total = emulator.control.calls.total
      assertProblem(t, await ask(app, url, bearer(single), { userId: USER_B }), 403, 'forbidden_user')
      t.equal(emulator.control.calls.total, total, 'another id: zero Mangopay calls')
    })

    await t.test(`several ids on ${url}`, async t => {
      let total = emulator.control.calls.total
      assertProblem(t, await ask(app, url, bearer(several)), 400, 'user_id_required')
      assertProblem(t, await ask(app, url, bearer(several), {}), 400, 'user_id_required')
      t.equal(emulator.control.calls.total, total, 'no userId: zero Mangopay calls')

      const picked = await ask(app, url, bearer(several), { userId: USER_C })
      t.equal(picked.statusCode, 200)
      t.equal(picked.json().userId, USER_C)
      const minted = emulator.control.minted.at(-1)
      t.equal(minted?.userId, USER_C, 'Mangopay minted for exactly the chosen user')
      t.equal(minted?.kind, kind)
      t.equal(picked.json().clientToken, minted?.token)

      total = emulator.control.calls.total
      assertProblem(t, await ask(app, url, bearer(several), { userId: USER_A }), 403, 'forbidden_user')
      t.equal(emulator.control.calls.total, total, 'an outsider: zero Mangopay calls')
    })
  }
})

t.test('HMAC secret mode: HS256 tokens with the secret work, nothing else does', async t => {
  const { app, emulator } = await buildTestApp(t, {
    env: { ...ENV, AUTH_JWT_PUBLIC_KEY: undefined, AUTH_JWT_SECRET: HMAC_SECRET, AUTH_JWT_ALGORITHMS: 'HS256' }
  })
  const secret = new TextEncoder().encode(HMAC_SECRET)

  const rs256 = await tokenFor(USER_A)
  const otherSecret = await tokenFor(USER_A, {}, { alg: 'HS256', key: new TextEncoder().encode('another-secret-that-is-32-bytes-long!!') })
  const hs512 = await tokenFor(USER_A, {}, { alg: 'HS512', key: secret })
  for (const [name, token] of [['RS256', rs256], ['HS256 with another secret', otherSecret], ['HS512 (not allow-listed)', hs512]] as const) {
    for (const url of ROUTES) {
      assertProblem(t, await ask(app, url, bearer(token)), 401, 'unauthenticated')
      t.equal(emulator.control.calls.total, 0, `${name} on ${url}: zero Mangopay calls`)
    }
  }

  const valid = await tokenFor(USER_A, {}, { alg: 'HS256', key: secret })
  for (const url of ROUTES) {
    const res = await ask(app, url, bearer(valid))
    t.equal(res.statusCode, 200, `valid HS256 on ${url}`)
    t.equal(res.json().userId, USER_A)
  }
  t.equal(emulator.control.minted.length, 2)
})
