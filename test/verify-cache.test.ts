import t from 'tap'
import type { JWTPayload } from 'jose'
import { createJwtVerifier } from '../src/auth/jwt.js'
import { cacheVerifications } from '../src/auth/verify-cache.js'
import { BrokerError } from '../src/errors.js'
import { AUDIENCE, ISSUER, RSA_PUBLIC_PEM, USER_A, tokenFor } from './helpers.js'

/**
 * The verified-JWT cache (src/auth/verify-cache.ts) skips only the repeated signature check:
 * it must never accept what the verifier would refuse at that moment. Time is a number the
 * tests move; the verifier underneath is counted.
 */

const T0 = Date.UTC(2026, 10, 28, 10, 0, 0)
const S = 1000

interface Counted { verify: (token: string) => Promise<JWTPayload>, calls: () => number }

/** A stand-in verifier that accepts every token and answers the given claims, counting calls. */
function counting (claims: (token: string) => JWTPayload): Counted {
  let calls = 0
  return {
    verify: async (token) => { calls++; return claims(token) },
    calls: () => calls
  }
}

t.test('a JWT verified once is not verified again while it is valid', async t => {
  const inner = counting(() => ({ sub: 'a', exp: T0 / S + 600 }))
  const verify = cacheVerifications(inner.verify, { now: () => T0 })
  const first = await verify('token-a')
  const second = await verify('token-a')
  t.equal(inner.calls(), 1)
  t.same(second, first)
  await verify('token-b')
  t.equal(inner.calls(), 2, 'another token is verified on its own')
})

t.test('a cached verification is never used at or after exp, nor before nbf', async t => {
  let now = T0
  const inner = counting(() => ({ exp: T0 / S + 60, nbf: T0 / S - 5 }))
  const verify = cacheVerifications(inner.verify, { now: () => now })
  await verify('token')
  now = T0 + 59 * S
  await verify('token')
  t.equal(inner.calls(), 1, 'served from the cache just before exp')
  now = T0 + 60 * S
  await verify('token')
  t.equal(inner.calls(), 2, 'at exp the verifier decides again (its clock tolerance is its own business)')

  now = T0
  await verify('token')
  now = T0 - 10 * S // the clock went back before nbf
  await verify('token')
  t.equal(inner.calls(), 4, 'before nbf the verifier decides again')
})

t.test('tokens not yet valid, already expired or without exp are never cached', async t => {
  const now = T0
  const cases: Array<[string, JWTPayload]> = [
    ['nbf in the future (inside the tolerance)', { exp: T0 / S + 600, nbf: T0 / S + 10 }],
    ['exp passed (inside the tolerance)', { exp: T0 / S - 10 }],
    ['no exp', {}]
  ]
  for (const [name, claims] of cases) {
    const inner = counting(() => claims)
    const verify = cacheVerifications(inner.verify, { now: () => now })
    await verify('token')
    await verify('token')
    t.equal(inner.calls(), 2, name)
  }
})

t.test('a verification is reused until exp while the keys are unchanged, and not once they change', async t => {
  let now = T0
  let version: number | undefined = 1
  const inner = counting(() => ({ exp: T0 / S + 24 * 3600 }))
  const verify = cacheVerifications(inner.verify, { now: () => now, keysVersion: () => version })
  await verify('token')
  now = T0 + 24 * 3600 * S - 1
  await verify('token')
  t.equal(inner.calls(), 1, 'one verification for a token presented all day')

  version = 2
  await verify('token')
  t.equal(inner.calls(), 2, 'different keys (one withdrawn, say): verified again')
  await verify('token')
  t.equal(inner.calls(), 2, 'and then reused under the new keys')

  version = undefined
  await verify('token')
  await verify('token')
  t.equal(inner.calls(), 4, 'no keys to verify with: every request goes to the verifier, which decides')
  version = 2
  await verify('token')
  t.equal(inner.calls(), 4, 'what was verified under the current keys still serves')
})

t.test('the keys version is read before verifying: keys that change meanwhile leave the entry stale', async t => {
  let version = 1
  const inner = counting(() => {
    version = 2 // a key set fetched while this token was being verified
    return { exp: T0 / S + 600 }
  })
  const verify = cacheVerifications(inner.verify, { now: () => T0, keysVersion: () => version })
  await verify('token')
  await verify('token')
  t.equal(inner.calls(), 2, 'verified again under the keys now in force')
})

t.test('failures are not cached', async t => {
  let calls = 0
  const verify = cacheVerifications(async () => {
    calls++
    if (calls === 1) throw new BrokerError('auth_unavailable', 'keys cannot be fetched')
    return { exp: T0 / S + 600 }
  }, { now: () => T0 })
  await t.rejects(verify('token'), { code: 'auth_unavailable' })
  t.same(await verify('token'), { exp: T0 / S + 600 }, 'the next attempt verifies again and succeeds')
  t.equal(calls, 2)
})

t.test('the cache is bounded: the least recently used entry is forgotten', async t => {
  const inner = counting(() => ({ exp: T0 / S + 600 }))
  const verify = cacheVerifications(inner.verify, { now: () => T0, maxEntries: 2 })
  await verify('a')
  await verify('b')
  await verify('c')
  t.equal(inner.calls(), 3)
  await verify('c')
  await verify('b')
  t.equal(inner.calls(), 3, 'the two most recent are still cached')
  await verify('a')
  t.equal(inner.calls(), 4, 'the oldest was evicted')
})

t.test('with the real RS256 verifier: a tampered copy of a cached token is still refused', async t => {
  const verify = cacheVerifications(createJwtVerifier({
    key: { kind: 'public-key', pem: RSA_PUBLIC_PEM },
    algorithms: ['RS256'],
    issuer: ISSUER,
    audience: AUDIENCE,
    clockToleranceS: 30
  }))
  const token = await tokenFor(USER_A)
  const claims = await verify(token)
  t.equal(claims.mangopay_user_id, USER_A)
  t.equal((await verify(token)).mangopay_user_id, USER_A, 'served again')

  const [header, , signature] = token.split('.')
  const forgedPayload = Buffer.from(JSON.stringify({ ...claims, mangopay_user_id: 'user_m_SOMEONE_ELSE' })).toString('base64url')
  await t.rejects(verify(`${header}.${forgedPayload}.${signature}`), { code: 'unauthenticated' })
  await t.rejects(verify(`${token}x`), { code: 'unauthenticated' }, 'a changed signature is refused too')
})

t.test('cached claims cannot be altered by one request for the next', async t => {
  const inner = counting(() => ({ exp: T0 / S + 600, mangopay_user_id: USER_A }))
  const verify = cacheVerifications(inner.verify, { now: () => T0 })
  const claims = await verify('token')
  t.throws(() => { (claims as Record<string, unknown>).mangopay_user_id = 'user_m_SOMEONE_ELSE' })
  t.equal((await verify('token')).mangopay_user_id, USER_A)
})
