import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { ManualClock } from './manual-clock.js'
import type { EmbeddedToken } from '../src/mangopay/index.js'
import { EmbeddedTokenReuse } from '../src/mangopay/token-reuse.js'
import { assertProblem, buildTestApp, forwardModeEnv, post, tokenFor, USER_A, USER_B, type TestApp } from './helpers.js'

/**
 * Optional embedded-token reuse (EMBEDDED_TOKEN_REUSE_MIN_TTL_S, SPEC §4): a token with at
 * least that many seconds left is handed again to the same user for the same kind, with a
 * truthful expiresIn; concurrent identical requests share one Mangopay call; off by default.
 */

const MIN_TTL_S = 300

interface Reusing extends TestApp {
  clock: ManualClock
  mint: (user?: string, kind?: 'recipients' | 'checkout') => Promise<Record<string, any>>
  embedded: () => number
  audits: () => Array<Record<string, any>>
}

/** `null`: the variable is not set at all. */
async function setup (t: Test, minTtlS: number | null = MIN_TTL_S): Promise<Reusing> {
  const clock = new ManualClock()
  const built = await buildTestApp(t, {
    env: { RATE_LIMIT_MAX: '1000', ...(minTtlS === null ? {} : { EMBEDDED_TOKEN_REUSE_MIN_TTL_S: String(minTtlS) }) },
    deps: { clock }
  })
  const jwts = new Map<string, string>()
  return {
    ...built,
    clock,
    mint: async (user = USER_A, kind = 'recipients') => {
      const jwt = jwts.get(user) ?? await tokenFor(user)
      jwts.set(user, jwt)
      const res = await post(built.app, `/v1/tokens/${kind}`, { token: jwt })
      return { status: res.statusCode, ...res.json() }
    },
    embedded: () => built.emulator.control.calls.recipient + built.emulator.control.calls.checkout,
    audits: () => built.logs.lines().filter(l => (l.audit as { event?: string } | undefined)?.event === 'embedded_token_issued').map(l => l.audit as Record<string, any>)
  }
}

t.test('on: the same user and kind get the same token again, with the truth about its lifetime', async t => {
  const broker = await setup(t)
  const first = await broker.mint()
  t.equal(first.status, 200)
  t.equal(first.expiresIn, 900)
  broker.clock.advance(100_000)
  const second = await broker.mint()
  t.equal(second.status, 200)
  t.equal(broker.embedded(), 1, 'one Mangopay call for two requests')
  t.equal(second.clientToken, first.clientToken, 'the same token')
  t.equal(second.expiresIn, 800, 'with 100 s less to live')
  t.equal(second.expiresAt, first.expiresAt, 'and the same expiry instant')
  t.match(broker.audits(), [{ kind: 'recipient', reused: false }, { kind: 'recipient', reused: true }], 'an audit line per hand-out, saying whether reused')
  t.equal(broker.audits()[1]?.fingerprint, broker.audits()[0]?.fingerprint)
})

t.test('on: different users, or different kinds, get their own tokens', async t => {
  const broker = await setup(t)
  const a = await broker.mint(USER_A)
  const b = await broker.mint(USER_B)
  const aCheckout = await broker.mint(USER_A, 'checkout')
  t.equal(broker.embedded(), 3)
  t.not(a.clientToken, b.clientToken)
  t.match(aCheckout.clientToken, /^chk_/)
  const minted = broker.emulator.control.minted
  t.same(minted.map(m => [m.kind, m.userId]), [['recipient', USER_A], ['recipient', USER_B], ['checkout', USER_A]])
  t.equal((await broker.mint(USER_B)).clientToken, b.clientToken, 'each user gets back only their own')
  t.equal((await broker.mint(USER_A)).clientToken, a.clientToken)
  t.equal(broker.embedded(), 3)
})

t.test('on: a token with less than the minimum lifetime left is not handed again', async t => {
  const broker = await setup(t)
  const first = await broker.mint()
  broker.clock.advance((900 - MIN_TTL_S) * 1000)
  const atMinimum = await broker.mint()
  t.equal(atMinimum.clientToken, first.clientToken, `exactly ${MIN_TTL_S} s left: still handed out`)
  t.equal(atMinimum.expiresIn, MIN_TTL_S)
  broker.clock.advance(1)
  const fresh = await broker.mint()
  t.equal(broker.embedded(), 2, 'a new Mangopay call')
  t.not(fresh.clientToken, first.clientToken)
  t.equal(fresh.expiresIn, 900)
})

t.test('on: concurrent identical requests share one Mangopay call', async t => {
  const broker = await setup(t)
  await broker.app.mangopay.warmUp()
  // Slow enough that every request arrives while the first call is out.
  broker.emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'latency', ms: 300 } })
  const answers = await Promise.all(Array.from({ length: 10 }, async () => await broker.mint()))
  t.equal(broker.embedded(), 1, 'one call for ten requests')
  t.same(new Set(answers.map(a => a.status)), new Set([200]))
  t.equal(new Set(answers.map(a => a.clientToken)).size, 1, 'all got that one token')
  t.equal(broker.audits().filter(a => a.reused === false).length, 1, 'one minted')
  t.equal(broker.audits().filter(a => a.reused === true).length, 9, 'nine shared')
})

t.test('on: a request that joins a call in flight waits within its own deadline, not the first request\'s', async t => {
  // Forward mode: the platform's session endpoint takes 1500 ms for the first request, none for the second.
  const session = createServer((req, res) => {
    const delayMs = req.headers.authorization === 'Bearer slow-session' ? 1500 : 0
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sub: 'u1', mangopay_user_id: USER_A })), delayMs)
  })
  await new Promise<void>(resolve => session.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { session.close() })
  const { app, emulator } = await buildTestApp(t, {
    env: {
      RATE_LIMIT_MAX: '1000',
      EMBEDDED_TOKEN_REUSE_MIN_TTL_S: String(MIN_TTL_S),
      MANGOPAY_TIMEOUT_MS: '3000',
      ...forwardModeEnv(`http://127.0.0.1:${(session.address() as AddressInfo).port}/session`)
    }
  })
  await app.mangopay.warmUp()
  const mint = async (credential: string) => await app.inject({ method: 'POST', url: '/v1/tokens/recipients', headers: { authorization: `Bearer ${credential}` } })

  // Mangopay takes 2000 ms: more than the first request has left of its 3000 ms, less than 3000 ms.
  emulator.control.inject({ target: 'recipient', times: 1, fault: { kind: 'latency', ms: 2000 } })
  const first = mint('slow-session')
  for (let i = 0; i < 500 && emulator.control.calls.recipient === 0; i++) await sleep(10)
  t.equal(emulator.control.calls.recipient, 1, 'the first request\'s call is out')
  const joiner = await mint('quick-session')
  t.equal(joiner.statusCode, 200, 'the joiner is served when the call answers')
  t.equal(joiner.json().clientToken, emulator.control.minted[0]?.token)
  t.equal(emulator.control.calls.recipient, 1, 'by the one call')
  assertProblem(t, await first, 504, 'upstream_timeout')
})

t.test('on: a failed call is not remembered', async t => {
  const broker = await setup(t)
  broker.emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'status', status: 400 } })
  t.equal((await broker.mint()).status, 502)
  const next = await broker.mint()
  t.equal(next.status, 200)
  t.equal(broker.embedded(), 2)
})

t.test('off by default: every request mints', async t => {
  const broker = await setup(t, null)
  const first = await broker.mint()
  const second = await broker.mint()
  t.equal(broker.embedded(), 2)
  t.not(first.clientToken, second.clientToken)
  t.notOk(broker.audits().some(a => 'reused' in a), 'the audit line does not mention reuse')
})

t.test('the cache is bounded (LRU), and keeps the original issuedAt', async t => {
  const clock = new ManualClock()
  const reuse = new EmbeddedTokenReuse({ clock, minTtlS: 60, maxEntries: 3 })
  let minted = 0
  const mint = async (): Promise<EmbeddedToken> => ({ accessToken: `rec_${++minted}`, tokenType: 'Bearer', expiresInS: 900, scope: '', issuedAt: clock.now() })
  for (const user of ['u1', 'u2', 'u3', 'u4']) await reuse.get('recipient', user, mint)
  t.equal(reuse.size, 3, 'never more than the bound')
  t.equal(minted, 4)
  clock.advance(10_000)
  const u4 = await reuse.get('recipient', 'u4', mint)
  t.equal(u4.accessToken, 'rec_4')
  t.equal(u4.issuedAt, clock.now() - 10_000, 'the original issuedAt')
  t.equal(u4.reused, true)
  t.equal((await reuse.get('recipient', 'u1', mint)).accessToken, 'rec_5', 'the least recently used entry was dropped')
})
