import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { ManualClock } from './manual-clock.js'
import { REFUSAL_MEMORY_MS } from '../src/mangopay/bearer-store.js'
import { parseUpstreamError } from '../src/mangopay/upstream-errors.js'
import type { Emulator, Fault, FaultTarget } from '../src/emulator/index.js'
import {
  API_KEY, assertProblem, buildTestApp, CLIENT_ID, forwardModeEnv, post, tokenFor, USER_A, until, type AnswerLike, type TestApp
} from './helpers.js'

/**
 * Every way Mangopay can fail, through the HTTP surface: the stable SPEC §2 code the browser
 * sees, what Mangopay was (not) called with, and that the broker serves again once the fault
 * is gone.
 */

const RECIPIENTS = '/v1/tokens/recipients'
const BASIC = Buffer.from(`${CLIENT_ID}:${API_KEY}`).toString('base64')
/** No per-user limit and a generous deadline, except where the deadline is the subject. */
const ENV = { MANGOPAY_TIMEOUT_MS: '10000', RATE_LIMIT_MAX: '1000000' }

interface Broker extends TestApp {
  jwt: string
  mint: () => ReturnType<typeof post>
  embeddedCalls: () => number
  /** A request that should succeed; with a tight deadline, a busy machine gets two more tries. */
  mintOk: () => ReturnType<typeof post>
}

/**
 * A broker and emulator; `warm` makes one successful request first, so a bearer is held.
 * `tightDeadline` sets MANGOPAY_TIMEOUT_MS to 1000 ms.
 */
async function setup (t: Test, options: { warm?: boolean, tightDeadline?: boolean, clock?: ManualClock } = {}): Promise<Broker> {
  const clock = options.clock
  const attempts = options.tightDeadline === true ? 3 : 1
  const built = await buildTestApp(t, {
    env: { ...ENV, ...(options.tightDeadline === true ? { MANGOPAY_TIMEOUT_MS: '1000' } : {}) },
    ...(clock === undefined ? {} : { emulator: { clock }, deps: { clock } })
  })
  const jwt = await tokenFor(USER_A)
  const broker: Broker = {
    ...built,
    jwt,
    mint: async () => await post(built.app, RECIPIENTS, { token: jwt }),
    embeddedCalls: () => built.emulator.control.calls.recipient + built.emulator.control.calls.checkout,
    mintOk: async () => {
      let res = await broker.mint()
      for (let tries = 1; tries < attempts && res.statusCode === 504; tries++) res = await broker.mint()
      return res
    }
  }
  if (options.warm ?? true) {
    const res = await broker.mintOk()
    t.equal(res.statusCode, 200, 'warm-up request succeeds')
  }
  return broker
}

function inject (emulator: Emulator, target: FaultTarget, fault: Fault): void {
  emulator.control.inject({ target, fault })
}

/**
 * A refusal as the browser must see it (helpers' assertProblem), and nothing secret in it:
 * exactly the RFC 9457 members, no embedded token, bearer, API key or Basic credential.
 */
function assertCleanProblem (t: Test, broker: Broker, res: AnswerLike, status: number, code: string): Record<string, any> {
  const body = assertProblem(t, res, status, code)
  t.strictSame(Object.keys(body).sort(), ['code', 'detail', 'requestId', 'status', 'title', 'type'], 'only the problem members')
  t.notMatch(res.body, /rec_|chk_/, 'no embedded token')
  t.notMatch(res.body, /stack|Error:/, 'no stack trace')
  const secrets = [API_KEY, BASIC, ...broker.emulator.control.bearers.map(b => b.token)]
  t.notOk(secrets.some(s => res.body.includes(s)), 'no API key, Basic credential or bearer')
  return body
}

/** Once the fault is cleared, the same broker serves again (no stuck state, no crash). */
async function assertRecovers (t: Test, broker: Broker): Promise<void> {
  broker.emulator.control.clearFaults()
  const health = await broker.app.inject({ method: 'GET', url: '/healthz' })
  t.equal(health.statusCode, 200, 'still alive')
  const res = await broker.mintOk()
  t.equal(res.statusCode, 200, 'a request succeeds once the fault is cleared')
  t.equal(res.json().clientToken, broker.emulator.control.minted.at(-1)?.token)
}

t.test('a Mangopay-envelope error: 502 upstream_error, its Id in the log, nothing of it in the answer', async t => {
  const broker = await setup(t)
  const errorId = '5c1b7e2a-0d3f-4a9e-8b61-upstream-err-1#1764324000'
  const upstream = {
    Message: 'One or several required parameters are missing or incorrect. Upstream says: user 42 is not an OWNER',
    Type: 'param_error',
    Id: errorId,
    Date: 1764324000.0,
    errors: { 'claims.userId': 'The user must be an OWNER (internal-upstream-detail)' }
  }
  inject(broker.emulator, 'embedded', { kind: 'status', status: 400, body: upstream })
  const before = broker.embeddedCalls()

  const res = await broker.mint()
  assertCleanProblem(t, broker, res, 502, 'upstream_error')
  for (const fragment of [upstream.Message, 'Upstream says', 'internal-upstream-detail', 'param_error', errorId, JSON.stringify(upstream)]) {
    t.notOk(res.body.includes(fragment), `the answer does not contain ${JSON.stringify(fragment.slice(0, 30))}`)
  }
  t.equal(broker.embeddedCalls() - before, 1, 'a 4xx is not retried')

  const requestId = res.headers['x-request-id']
  const lines = broker.logs.lines().filter(l => l.requestId === requestId && JSON.stringify(l).includes(errorId))
  t.ok(lines.length >= 1, 'a log line of this request carries the Mangopay error Id')
  t.match(lines[0], { level: 50, mangopay: { errorId, status: 400, type: 'param_error' } })

  await assertRecovers(t, broker)
})

t.test('an OAuth-dialect refusal of the OAuth call (temporary lock): 502 upstream_auth_failed', async t => {
  const clock = new ManualClock()
  const broker = await setup(t, { warm: false, clock })
  inject(broker.emulator, 'oauth', {
    kind: 'status',
    status: 400,
    body: { error: 'unauthorized_client', error_description: 'This account has been temporarily locked for security reasons. Please try again later.' }
  })
  const res = await broker.mint()
  const body = assertCleanProblem(t, broker, res, 502, 'upstream_auth_failed')
  t.notMatch(body.detail, /temporarily locked|unauthorized_client/, 'the upstream description stays out of the answer')
  t.equal(broker.emulator.control.calls.oauth, 1)
  t.equal(broker.embeddedCalls(), 0, 'no embedded call without a bearer')
  t.ok(broker.logs.lines().some(l => JSON.stringify(l).includes('unauthorized_client')), 'the OAuth error is logged')
  // A lock is what repeated bad-credential calls earn: the refusal is remembered, not retried per request.
  assertCleanProblem(t, broker, await broker.mint(), 502, 'upstream_auth_failed')
  t.equal(broker.emulator.control.calls.oauth, 1, 'no second OAuth call while the refusal is remembered')
  clock.advance(REFUSAL_MEMORY_MS)
  await assertRecovers(t, broker)
})

t.test('a 500 with Type "other": 502 upstream_error, retries bounded', async t => {
  const broker = await setup(t)
  inject(broker.emulator, 'embedded', { kind: 'status', status: 500, body: { Message: 'Internal server error', Type: 'other', Id: 'err-500-1', Date: 1764324000 } })
  const before = broker.embeddedCalls()
  const res = await broker.mint()
  assertCleanProblem(t, broker, res, 502, 'upstream_error')
  const calls = broker.embeddedCalls() - before
  t.ok(calls >= 1 && calls <= 4, `${calls} embedded call(s): a bounded number`)
  await assertRecovers(t, broker)
})

t.test('a 403 on the embedded endpoint: 502 upstream_auth_failed, without a re-authentication', async t => {
  const broker = await setup(t)
  inject(broker.emulator, 'embedded', {
    kind: 'status',
    status: 403,
    body: { Message: 'Your authorization do not allow you to access to this information', Type: 'forbidden_ressource', Id: 'err-403-1', Date: 1764324000 }
  })
  const oauthBefore = broker.emulator.control.calls.oauth
  const before = broker.embeddedCalls()
  const res = await broker.mint()
  assertCleanProblem(t, broker, res, 502, 'upstream_auth_failed')
  t.equal(broker.emulator.control.calls.oauth, oauthBefore, 'no new OAuth call')
  t.equal(broker.embeddedCalls() - before, 1, 'no retry')
  await assertRecovers(t, broker)
})

t.test('a 429 with rate-limit headers: 503 upstream_unavailable with Retry-After until the window resets', async t => {
  const clock = new ManualClock()
  const broker = await setup(t, { clock })
  const nowS = Math.floor(clock.now() / 1000)
  inject(broker.emulator, 'embedded', {
    kind: 'status',
    status: 429,
    body: { Message: 'Rate limit exceeded. Please contact support for more assistance', Type: 'rate_limit', Id: 'err-429-1', Date: nowS, errors: null },
    headers: {
      'X-RateLimit': '2300, 2301, 2302, 2303',
      'X-RateLimit-Remaining': '0, 2199, 6498, 103297',
      'X-RateLimit-Reset': `${nowS + 120}, ${nowS + 1800}, ${nowS + 3600}, ${nowS + 86400}`
    }
  })
  const before = broker.embeddedCalls()
  const res = await broker.mint()
  assertCleanProblem(t, broker, res, 503, 'upstream_unavailable')
  const retryAfter = Number(res.headers['retry-after'])
  t.ok(Number.isInteger(retryAfter) && retryAfter >= 119 && retryAfter <= 121, `Retry-After ${String(res.headers['retry-after'])} ≈ 120 s, when the exhausted window resets`)
  t.equal(broker.embeddedCalls() - before, 1, 'a 429 is not retried')
  t.match(broker.logs.lines().find(l => l.msg === 'Mangopay answered 429: its rate limit is reached'), { level: 40, mangopay: { endpoint: 'recipient', status: 429, errorId: 'err-429-1', type: 'rate_limit' } }, 'Mangopay\'s error Id is logged for support')

  broker.emulator.control.clearFaults()
  clock.advance(60_000)
  const meanwhile = await broker.mint()
  assertCleanProblem(t, broker, meanwhile, 503, 'upstream_unavailable')
  t.match(meanwhile.headers['retry-after'], /^(59|60|61)$/, 'Retry-After counts down to the reset')
  t.equal(broker.embeddedCalls() - before, 1, 'Mangopay is not called before the window resets')

  clock.advance(61_000)
  await assertRecovers(t, broker)
})

t.test('a 429 on the OAuth call: 503 upstream_unavailable with Retry-After', async t => {
  const clock = new ManualClock()
  const broker = await setup(t, { warm: false, clock })
  inject(broker.emulator, 'oauth', { kind: 'status', status: 429 })
  const res = await broker.mint()
  assertCleanProblem(t, broker, res, 503, 'upstream_unavailable')
  t.match(res.headers['retry-after'], /^[1-9]\d*$/)
  t.equal(broker.embeddedCalls(), 0)
  clock.advance(Number(res.headers['retry-after']) * 1000 + 1000)
  await assertRecovers(t, broker)
})

t.test('malformed JSON in a 200: 502 upstream_error, never a 200 without a token', async t => {
  for (const target of ['embedded', 'oauth'] as const) {
    t.test(`on ${target}`, async t => {
      const broker = await setup(t, { warm: target === 'embedded' })
      inject(broker.emulator, target, { kind: 'malformed' })
      const res = await broker.mint()
      assertCleanProblem(t, broker, res, 502, 'upstream_error')
      if (target === 'oauth') t.equal(broker.embeddedCalls(), 0, 'no embedded call with a half-parsed bearer')
      await assertRecovers(t, broker)
    })
  }
})

t.test('a 200 whose body fails the schema: 502 upstream_error', async t => {
  const cases: Array<[string, FaultTarget, unknown]> = [
    ['OAuth answer without access_token', 'oauth', { token_type: 'bearer', expires_in: 1200 }],
    ['OAuth answer with token_type "mac"', 'oauth', { access_token: 'a'.repeat(32), token_type: 'mac', expires_in: 1200 }],
    ['OAuth answer that is an array', 'oauth', [{ access_token: 'a'.repeat(32), token_type: 'bearer' }]],
    ['OAuth answer whose access_token holds a line break', 'oauth', { access_token: `${'a'.repeat(16)}\r\nX-Injected: 1`, token_type: 'bearer', expires_in: 1200 }],
    ['OAuth answer whose access_token holds a space', 'oauth', { access_token: 'abc def', token_type: 'bearer', expires_in: 1200 }],
    ['embedded answer without access_token', 'embedded', { token_type: 'Bearer', expires_in: 900, scope: 'bankaccounts:r bankaccounts:w' }],
    ['embedded answer with an empty access_token', 'embedded', { access_token: '', token_type: 'Bearer', expires_in: 900 }],
    ['embedded answer without expires_in', 'embedded', { access_token: 'rec_0123456789abcdef0123456789abcdef', token_type: 'Bearer' }]
  ]
  for (const [label, target, body] of cases) {
    t.test(label, async t => {
      const broker = await setup(t, { warm: target === 'embedded' })
      inject(broker.emulator, target, { kind: 'status', status: 200, body })
      const res = await broker.mint()
      assertCleanProblem(t, broker, res, 502, 'upstream_error')
      await assertRecovers(t, broker)
    })
  }
})

t.test('an oversized 200 (over 64 KB): 502 upstream_error, the body is not buffered', async t => {
  // A valid token answer but for its size: only the body bound can refuse it.
  const padding = 'x'.repeat(65 * 1024)
  const cases: Array<[FaultTarget, unknown]> = [
    ['embedded', { access_token: 'rec_0123456789abcdef0123456789abcdef', token_type: 'Bearer', expires_in: 900, padding }],
    ['oauth', { access_token: 'a'.repeat(32), token_type: 'bearer', expires_in: 1200, padding }]
  ]
  for (const [target, body] of cases) {
    t.test(`on ${target}`, async t => {
      const broker = await setup(t, { warm: target === 'embedded' })
      inject(broker.emulator, target, { kind: 'status', status: 200, body })
      const res = await broker.mint()
      const problem = assertCleanProblem(t, broker, res, 502, 'upstream_error')
      t.match(problem.detail, /oversized/)
      await assertRecovers(t, broker)
    })
  }
})

t.test('a connection reset: 503 upstream_unavailable with Retry-After', async t => {
  for (const target of ['embedded', 'oauth'] as const) {
    t.test(`on ${target}`, async t => {
      const broker = await setup(t, { warm: target === 'embedded' })
      inject(broker.emulator, target, { kind: 'reset' })
      const res = await broker.mint()
      assertCleanProblem(t, broker, res, 503, 'upstream_unavailable')
      t.match(res.headers['retry-after'], /^[1-9]\d*$/)
      await assertRecovers(t, broker)
    })
  }
})

t.test('a reset in the middle of the body: 503 upstream_unavailable', async t => {
  for (const target of ['embedded', 'oauth'] as const) {
    t.test(`on ${target}`, async t => {
      const broker = await setup(t, { warm: target === 'embedded' })
      inject(broker.emulator, target, { kind: 'reset-mid-body' })
      const res = await broker.mint()
      assertCleanProblem(t, broker, res, 503, 'upstream_unavailable')
      await assertRecovers(t, broker)
    })
  }
})

t.test('a redirect: 502 upstream_error, and the Location is never called', async t => {
  let elsewhereHits = 0
  const elsewhere = createServer((_req, res) => {
    elsewhereHits++
    res.end('{}')
  })
  await new Promise<void>(resolve => elsewhere.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise(resolve => elsewhere.close(resolve)))
  const otherHost = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}/v2.01/oauth/token/embedded/recipient`

  for (const [target, where] of [['embedded', 'same host'], ['embedded', 'other host'], ['oauth', 'same host']] as const) {
    t.test(`on ${target}, to the ${where}`, async t => {
      const broker = await setup(t, { warm: target === 'embedded' })
      const location = where === 'same host' ? `${broker.emulator.url}/redirected-here` : otherHost
      inject(broker.emulator, target, { kind: 'redirect', location })
      const hitsBefore = elsewhereHits
      const res = await broker.mint()
      assertCleanProblem(t, broker, res, 502, 'upstream_error')
      t.notOk(broker.emulator.control.received.some(r => r.path.startsWith('/redirected-here')), 'the same-host Location was not called')
      t.equal(elsewhereHits, hitsBefore, 'the other host was not called')
      await assertRecovers(t, broker)
    })
  }
})

t.test('deadlines: 504 upstream_timeout near MANGOPAY_TIMEOUT_MS', async t => {
  const cases: Array<[string, FaultTarget, Fault, boolean]> = [
    ['the embedded endpoint hangs', 'embedded', { kind: 'hang' }, true],
    ['the OAuth endpoint hangs', 'oauth', { kind: 'hang' }, false],
    // ~120 bytes, 8 per write, 300 ms apart: each gap is within the idle timeout, the whole body is not.
    ['the embedded body trickles slower than the deadline', 'embedded', { kind: 'trickle', chunkDelayMs: 300 }, true]
  ]
  for (const [label, target, fault, warm] of cases) {
    t.test(label, async t => {
      const broker = await setup(t, { warm, tightDeadline: true })
      inject(broker.emulator, target, fault)
      const started = performance.now()
      const res = await broker.mint()
      const elapsed = performance.now() - started
      assertCleanProblem(t, broker, res, 504, 'upstream_timeout')
      t.ok(elapsed >= 900, `answered after ${Math.round(elapsed)} ms, not before the deadline`)
      t.ok(elapsed < 4000, `answered after ${Math.round(elapsed)} ms, soon after the 1000 ms deadline`)
      if (target === 'oauth') {
        // The OAuth call is shared by all waiters and keeps its own deadline, which ends a moment
        // after this request's: a request arriving in between would join it and time out too.
        await until('the failed refresh to be logged', () => broker.logs.lines().some(l => l.msg === 'Mangopay bearer refresh failed'), 5000)
      }
      await assertRecovers(t, broker)
    })
  }
})

t.test('deadlines: MANGOPAY_TIMEOUT_MS counts from the request\'s arrival, authentication included', async t => {
  // Forward mode: the platform's session endpoint answers after 700 ms.
  const session = createServer((_req, res) => {
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sub: 'u1', mangopay_user_id: USER_A })), 700)
  })
  await new Promise<void>(resolve => session.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { session.close() })
  const { app, emulator } = await buildTestApp(t, {
    env: {
      ...ENV,
      MANGOPAY_TIMEOUT_MS: '1500',
      ...forwardModeEnv(`http://127.0.0.1:${(session.address() as AddressInfo).port}/session`)
    }
  })
  await app.mangopay.warmUp()
  const mint = async () => await app.inject({ method: 'POST', url: RECIPIENTS, headers: { authorization: 'Bearer opaque-session' } })

  // 700 ms of session lookup + 1000 ms of Mangopay is past the 1500 ms deadline.
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'latency', ms: 1000 } })
  const started = performance.now()
  const late = await mint()
  const elapsed = performance.now() - started
  assertProblem(t, late, 504, 'upstream_timeout')
  t.ok(elapsed < 1500 + 700, `answered after ${Math.round(elapsed)} ms: the Mangopay call had only what authentication left of the deadline`)

  // 700 ms + 300 ms fits.
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'latency', ms: 300 } })
  t.equal((await mint()).statusCode, 200, 'a request within the deadline is served')
})

t.test('the field errors of a Mangopay envelope are logged by name, whichever way the field is spelt', async t => {
  for (const key of ['errors', 'Errors']) {
    const info = parseUpstreamError('recipient', 400, JSON.stringify({ Message: 'm', Type: 'param_error', Id: 'err-1', [key]: { 'claims.userId': 'internal detail' } }))
    t.same(info.fields, ['claims.userId'], key)
    t.notOk(JSON.stringify(info).includes('internal detail'), 'names only, never the messages')
  }
})
