import type { AddressInfo } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { ManualClock } from './manual-clock.js'
import { assertProblem, buildTestApp, post, tokenFor, USER_A, USER_B } from './helpers.js'

/**
 * SPEC §8 "Failed sign-ins": the per-address limit bounds the work spent on credentials that
 * fail, and a credential that verifies is always served, whatever its address has sent (one
 * load balancer or NAT address is many honest users).
 */

const RECIPIENTS = '/v1/tokens/recipients'
const SPEND = { AUTH_FAILURE_LIMIT_MAX: '3', AUTH_FAILURE_LIMIT_WINDOW_MS: '60000', RATE_LIMIT_MAX: '1000' }

/** A well-formed JWT with a wrong signature: each one verified costs an RSA verification. */
function forge (jwt: string): string {
  return jwt.slice(0, -4) + (jwt.endsWith('AAAA') ? 'BBBB' : 'AAAA')
}

t.test('a credential that verified before is served from an address that has spent its failures', async t => {
  const { app, emulator } = await buildTestApp(t, { env: SPEND })
  const alice = await tokenFor(USER_A)
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200)
  for (let i = 0; i < 3; i++) assertProblem(t, await post(app, RECIPIENTS, { token: `bad-${i}` }), 401, 'unauthenticated')

  const again = await post(app, RECIPIENTS, { token: alice })
  t.equal(again.statusCode, 200, 'the attacker sharing her address does not lock her out')
  t.equal(emulator.control.minted.length, 2)
})

t.test('a spent address: new credentials go one at a time, and each failure closes the way for window / max', async t => {
  const clock = new ManualClock()
  const { app, emulator } = await buildTestApp(t, { env: SPEND, deps: { clock } })
  for (let i = 0; i < 3; i++) assertProblem(t, await post(app, RECIPIENTS, { token: `bad-${i}` }), 401, 'unauthenticated')

  const bob = await tokenFor(USER_B, {}, { subject: 'idp|bob' })
  t.equal((await post(app, RECIPIENTS, { token: bob })).statusCode, 200, 'a new valid credential is verified and served')

  const good = await tokenFor(USER_A)
  const burst = await Promise.all(Array.from({ length: 50 }, async () => await post(app, RECIPIENTS, { token: forge(good) })))
  t.equal(burst.filter(res => res.statusCode === 401).length, 1, 'a parallel flood gets one verification')
  const refused = burst.filter(res => res.statusCode === 429)
  t.equal(refused.length, 49, 'the rest are refused before any verification')
  const first = refused[0]
  if (first !== undefined) assertProblem(t, first, 429, 'rate_limited')

  const waiting = await post(app, RECIPIENTS, { token: good })
  assertProblem(t, waiting, 429, 'rate_limited')
  t.equal(waiting.headers['retry-after'], '20', 'a new credential waits out the pace after a failure (60 s / 3)')
  t.equal((await post(app, RECIPIENTS, { token: bob })).statusCode, 200, 'one verified before is served meanwhile')

  clock.advance(19_999)
  assertProblem(t, await post(app, RECIPIENTS, { token: forge(good) }), 429, 'rate_limited')
  clock.advance(1)
  t.equal((await post(app, RECIPIENTS, { token: good })).statusCode, 200, 'then the new credential is verified and served')
  t.same(emulator.control.minted.map(m => m.userId), [USER_B, USER_B, USER_A])
})

t.test('X-Forwarded-For without TRUST_PROXY: one warning that every client shares one address', async t => {
  for (const [env, warnings] of [[{}, 1], [{ TRUST_PROXY: '127.0.0.1' }, 0]] as const) {
    const { app, logs } = await buildTestApp(t, { env })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}${RECIPIENTS}`
    for (let i = 0; i < 3; i++) {
      const res = await request(url, { method: 'POST', headers: { authorization: `Bearer ${await tokenFor(USER_A)}`, 'x-forwarded-for': `198.51.100.${i}` } })
      await res.body.dump()
    }
    const lines = logs.lines().filter(l => l.level === 40 && /TRUST_PROXY/.test(String(l.msg)))
    t.equal(lines.length, warnings, `TRUST_PROXY ${'TRUST_PROXY' in env ? 'set' : 'unset'}: ${warnings} warning(s)`)
  }
})
