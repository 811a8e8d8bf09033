import type { AddressInfo } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { ManualClock } from './manual-clock.js'
import { assertProblem, buildTestApp, forwardModeEnv, post, tokenFor, USER_A, USER_B } from './helpers.js'
import { startSessionServer } from './session-server.js'

/**
 * SPEC §8 "Failed sign-ins": the per-address limit bounds the work spent on credentials that
 * fail, and a credential that verifies is always served, whatever its address has sent (one
 * load balancer or NAT address is many honest users). jwt mode verifies every credential;
 * forward mode, where a refusal costs the platform a session call, rations new ones.
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

t.test('jwt mode, a spent address: every new valid credential is served at once, however many forged ones come along', async t => {
  // The clock stands still: the window never ends, so nothing here is served by waiting.
  const clock = new ManualClock()
  const { app, emulator, logs } = await buildTestApp(t, { env: { ...SPEND, TOKEN_BUDGET_PER_USER: '100', TOKEN_BUDGET_PER_SESSION: '100' }, deps: { clock } })
  for (let i = 0; i < 3; i++) assertProblem(t, await post(app, RECIPIENTS, { token: `bad-${i}` }), 401, 'unauthenticated')

  const good = await tokenFor(USER_A)
  const honest = await Promise.all(Array.from({ length: 10 }, async (_, i) => await tokenFor(USER_B, {}, { subject: `idp|new-${i}` })))
  // Forged and honest requests interleaved, all in flight together.
  const flood = await Promise.all(Array.from({ length: 60 }, async (_, i) =>
    await post(app, RECIPIENTS, { token: i % 6 === 0 ? honest[i / 6] as string : forge(good) })))
  const honestAnswers = flood.filter((_, i) => i % 6 === 0)
  const forgedAnswers = flood.filter((_, i) => i % 6 !== 0)
  t.same(honestAnswers.map(res => res.statusCode), Array(10).fill(200), 'each new valid credential was verified and served')
  t.equal(forgedAnswers.length, 50)
  for (const res of forgedAnswers) assertProblem(t, res, 429, 'rate_limited')
  t.equal(forgedAnswers[0]?.headers['retry-after'], '60', 'a forged one is told when the window ends')
  const events = logs.lines().filter(l => l.code === 'rate_limited')
  t.equal(events.length, 50, 'each is logged')
  t.match(events[0], { rateLimit: { scope: 'auth_failures_per_ip' }, securityEvent: { ip: '127.0.0.1', route: RECIPIENTS } }, 'as a security event')
  t.notOk(logs.text().includes(forge(good)), 'without the credential')

  const late = await post(app, RECIPIENTS, { token: await tokenFor(USER_B, {}, { subject: 'idp|latecomer' }) })
  t.equal(late.statusCode, 200, 'right after the flood, without waiting, a new credential is served too')
  t.same(emulator.control.minted.map(m => m.userId), Array(11).fill(USER_B), 'Mangopay was asked for the honest users\' tokens only')
})

t.test('forward mode, a spent address: new sessions are asked one at a time, each failure closing the way for window / max', async t => {
  const clock = new ManualClock()
  const session = await startSessionServer(t)
  const { app, emulator } = await buildTestApp(t, { env: { ...SPEND, ...forwardModeEnv(session.url) }, deps: { clock } })
  // bob's session names two Mangopay users: he says which.
  const asking = async (sid: string) => await post(app, RECIPIENTS, { headers: { cookie: `sid=${sid}`, 'x-csrf': '1' }, ...(sid === 'bob' ? { body: { userId: USER_B } } : {}) })
  for (let i = 0; i < 3; i++) assertProblem(t, await asking(`guess-${i}`), 401, 'unauthenticated')
  t.equal((await asking('bob')).statusCode, 200, 'a new session is asked about and served')

  const burst = await Promise.all(Array.from({ length: 50 }, async (_, i) => await asking(`guess-x${i}`)))
  t.equal(burst.filter(res => res.statusCode === 401).length, 1, 'a parallel flood gets one session call')
  const refused = burst.filter(res => res.statusCode === 429)
  t.equal(refused.length, 49, 'the rest are refused before the session endpoint is asked')
  t.equal(session.received.length, 5, 'three guesses, bob, and one from the flood')

  const waiting = await asking('alice')
  assertProblem(t, waiting, 429, 'rate_limited')
  t.equal(waiting.headers['retry-after'], '20', 'a new session waits out the pace after a failure (60 s / 3)')
  t.equal((await asking('bob')).statusCode, 200, 'one verified before is served meanwhile')

  clock.advance(19_999)
  assertProblem(t, await asking('guess-late'), 429, 'rate_limited')
  clock.advance(1)
  t.equal((await asking('alice')).statusCode, 200, 'then the new session is asked about and served')
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
