import t, { type Test } from 'tap'
import { BrokerError } from '../src/errors.js'
import { TransportError, type UpstreamResponse } from '../src/mangopay/transport.js'
import { Deadline } from '../src/upstream/index.js'
import { backoffDelayMs, MIN_ATTEMPT_MS, RetryBudget, RetryPolicy, type RetrySkipped } from '../src/mangopay/retry.js'
import type { Fault, FaultTarget } from '../src/emulator/index.js'
import { buildTestApp, post, tokenFor, USER_A, type TestApp } from './helpers.js'

/**
 * Retries (SPEC §4): network errors and 5xx only, at most two, never past the deadline, and
 * within a budget that keeps a dead Mangopay from seeing more than ~1.1× the inbound rate.
 * First the policy on its own, then through the HTTP surface against the emulator's faults.
 */

const RECIPIENTS = '/v1/tokens/recipients'
/** No per-user limit; the circuit stays out of the way unless a test is about it. */
const ENV = { RATE_LIMIT_MAX: '1000000', MANGOPAY_TIMEOUT_MS: '5000', MANGOPAY_CIRCUIT_FAILURES: '0', MANGOPAY_CIRCUIT_FAILURE_RATIO: '0' }

const ok = (status = 200): UpstreamResponse => ({ status, headers: {}, text: '{}' })
const reset = (): TransportError => new TransportError('upstream_unavailable', 'x', 'ECONNRESET', {})

/** An attempt function that plays `script` in order and counts its calls. */
function scripted (script: Array<UpstreamResponse | Error>): { attempt: () => Promise<UpstreamResponse>, calls: () => number } {
  let calls = 0
  return {
    attempt: async () => {
      const step = script[Math.min(calls++, script.length - 1)]
      if (step instanceof Error) throw step
      return step as UpstreamResponse
    },
    calls: () => calls
  }
}

function policy (options: { maxRetries?: number, budget?: RetryBudget } = {}): RetryPolicy {
  return new RetryPolicy({ maxRetries: options.maxRetries ?? 2, budget: options.budget ?? new RetryBudget(), baseDelayMs: 1, random: () => 0.5 })
}

const roomy = () => ({ deadline: new Deadline(60_000) })

t.test('policy: what is retried and what is not', async t => {
  const cases: Array<[string, Array<UpstreamResponse | Error>, number, number | string]> = [
    ['a 503 then a 200: one retry', [ok(503), ok(200)], 2, 200],
    ['a reset then a 200: one retry', [reset(), ok(200)], 2, 200],
    ['5xx every time: two retries, the last answer returned', [ok(500), ok(502), ok(504)], 3, 504],
    ['a 400: never retried', [ok(400), ok(200)], 1, 400],
    ['a 401: left to the re-authentication path', [ok(401), ok(200)], 1, 401],
    ['a 429: never retried (the quota guard decides)', [ok(429), ok(200)], 1, 429],
    ['a redirect: never retried', [ok(302), ok(200)], 1, 302],
    ['a timeout: never retried (the deadline is spent)', [new TransportError('upstream_timeout', 'x', 'UND_ERR_HEADERS_TIMEOUT', {}), ok(200)], 1, 'upstream_timeout'],
    ['a certificate error: never retried', [new TransportError('upstream_unavailable', 'x', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', {}), ok(200)], 1, 'upstream_unavailable'],
    ['a refusal before calling (quota, circuit): never retried', [new BrokerError('upstream_unavailable', 'x'), ok(200)], 1, 'upstream_unavailable']
  ]
  for (const [label, script, calls, outcome] of cases) {
    const { attempt, calls: made } = scripted(script)
    let result: number | string
    try {
      result = (await policy().run(attempt, roomy())).status
    } catch (err) {
      result = (err as BrokerError).code
    }
    t.equal(result, outcome, `${label}: outcome`)
    t.equal(made(), calls, `${label}: ${calls} attempt(s)`)
  }
})

t.test('policy: no attempt starts that could not finish before the deadline', async t => {
  const skipped: RetrySkipped[] = []
  const { attempt, calls } = scripted([ok(503), ok(200)])
  const res = await policy().run(attempt, { deadline: new Deadline(MIN_ATTEMPT_MS - 1), onSkipped: why => skipped.push(why) })
  t.equal(res.status, 503, 'the failure is returned as it is')
  t.equal(calls(), 1)
  t.same(skipped, ['deadline'])
})

t.test('policy: the request deadline cuts a backoff short', async t => {
  const deadline = new Deadline(10 * 60_000)
  const { attempt, calls } = scripted([ok(503), ok(200)])
  const slow = new RetryPolicy({ maxRetries: 2, budget: new RetryBudget(), baseDelayMs: 60_000, random: () => 0.99 })
  const running = slow.run(attempt, { deadline })
  // Once the first attempt has failed and the (one-minute) backoff has begun.
  while (calls() === 0) await new Promise(resolve => setImmediate(resolve))
  await new Promise(resolve => setTimeout(resolve, 20))
  deadline.abort(new DOMException('deadline', 'TimeoutError'))
  await t.rejects(running, { code: 'upstream_timeout' })
  t.equal(calls(), 1)
})

t.test('backoff: full jitter, exponential', async t => {
  t.equal(backoffDelayMs(1, 100, () => 0), 0)
  t.equal(backoffDelayMs(1, 100, () => 0.999), 99)
  t.equal(backoffDelayMs(2, 100, () => 0.999), 199)
  t.equal(backoffDelayMs(2, 100, () => 0.5), 100)
})

t.test('budget: under total failure, retries ≤ 10 % of calls + the cap', async t => {
  const budget = new RetryBudget({ ratio: 0.1, cap: 10 })
  const retrying = policy({ budget })
  let attempts = 0
  const calls = 1000
  for (let i = 0; i < calls; i++) {
    await retrying.run(async () => {
      attempts++
      return ok(503)
    }, roomy())
  }
  t.ok(attempts <= calls * 1.1 + 10, `${attempts} attempts for ${calls} calls`)
  t.ok(attempts >= calls * 1.1, 'and the budget is used: 10 % of calls are retried')
  t.ok(budget.balance < 1, 'the budget is spent')

  // It refills with successful traffic, and never beyond the cap.
  for (let i = 0; i < 500; i++) budget.recordCall()
  t.equal(budget.balance, 10)
})

/** A broker with a warm bearer, and counters of what the emulator received. */
async function setup (t: Test, env: Record<string, string> = {}, warm = true): Promise<TestApp & { mint: () => ReturnType<typeof post>, embedded: () => number }> {
  const built = await buildTestApp(t, { env: { ...ENV, ...env } })
  const jwt = await tokenFor(USER_A)
  const mint = async () => await post(built.app, RECIPIENTS, { token: jwt })
  if (warm) t.equal((await mint()).statusCode, 200, 'warm-up')
  return { ...built, mint, embedded: () => built.emulator.control.calls.recipient }
}

function once (broker: TestApp, target: FaultTarget, fault: Fault, times = 1): void {
  broker.emulator.control.inject({ target, times, fault })
}

t.test('a 5xx then success: one retry, 200', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'status', status: 503 })
  const before = broker.embedded()
  const res = await broker.mint()
  t.equal(res.statusCode, 200)
  t.equal(res.json().clientToken, broker.emulator.control.minted.at(-1)?.token)
  t.equal(broker.embedded() - before, 2, 'two embedded calls: the 503 and its retry')
  t.match(broker.logs.lines().find(l => l.msg === 'retrying a failed Mangopay call'), { level: 40, mangopay: { endpoint: 'recipient', retry: 1, reason: 'status_503' } })
})

t.test('a 5xx on the OAuth call then success: retried too', async t => {
  const broker = await setup(t, {}, false)
  once(broker, 'oauth', { kind: 'status', status: 502 })
  const res = await broker.mint()
  t.equal(res.statusCode, 200)
  t.equal(broker.emulator.control.calls.oauth, 2)
  t.equal(broker.embedded(), 1)
})

t.test('a reset in the middle of the body: retried, 200', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'reset-mid-body' })
  const before = broker.embedded()
  const res = await broker.mint()
  t.equal(res.statusCode, 200)
  t.equal(broker.embedded() - before, 2)
  t.match(broker.logs.lines().find(l => l.msg === 'retrying a failed Mangopay call'), { mangopay: { reason: 'network' } })
})

t.test('a dropped connection twice, then success: two retries, 200', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'reset' }, 2)
  const before = broker.embedded()
  const res = await broker.mint()
  t.equal(res.statusCode, 200)
  t.equal(broker.embedded() - before, 3)
})

t.test('5xx every time: at most two retries, then 502 upstream_error', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'status', status: 500 }, Infinity)
  const before = broker.embedded()
  const res = await broker.mint()
  t.equal(res.statusCode, 502)
  t.equal(res.json().code, 'upstream_error')
  t.equal(broker.embedded() - before, 3)
})

t.test('a 4xx is never retried', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'status', status: 400 })
  const before = broker.embedded()
  const res = await broker.mint()
  t.equal(res.statusCode, 502)
  t.equal(broker.embedded() - before, 1)
})

t.test('a persistent 401: exactly one re-authentication and one retry, whatever the retry policy', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'status', status: 401, body: { Message: 'The authorization credentials are not valid', Type: 'invalid_credentials', Date: 1764324000 } }, Infinity)
  const before = broker.embedded()
  const oauthBefore = broker.emulator.control.calls.oauth
  const res = await broker.mint()
  t.equal(res.statusCode, 502)
  t.equal(res.json().code, 'upstream_auth_failed')
  t.equal(broker.embedded() - before, 2, 'two embedded calls')
  t.equal(broker.emulator.control.calls.oauth - oauthBefore, 1, 'one re-authentication')
})

t.test('a 401, then a 503 on the call after re-authentication: that 503 is retried, 200', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'status', status: 401 })
  once(broker, 'embedded', { kind: 'status', status: 503 })
  const before = broker.embedded()
  const res = await broker.mint()
  t.equal(res.statusCode, 200)
  t.equal(broker.embedded() - before, 3)
  t.equal(broker.emulator.control.calls.oauth, 2)
})

t.test('a hang: 504 near the deadline, not undici\'s defaults, and not retried', async t => {
  const broker = await setup(t, { MANGOPAY_TIMEOUT_MS: '1000' })
  once(broker, 'embedded', { kind: 'hang' })
  const before = broker.embedded()
  const started = performance.now()
  const res = await broker.mint()
  const elapsed = performance.now() - started
  t.equal(res.statusCode, 504)
  t.equal(res.json().code, 'upstream_timeout')
  t.ok(elapsed >= 900 && elapsed < 4000, `answered after ${Math.round(elapsed)} ms (deadline 1000 ms)`)
  t.equal(broker.embedded() - before, 1)
})

t.test('a trickled body: cut at the deadline, 504, not retried', async t => {
  const broker = await setup(t, { MANGOPAY_TIMEOUT_MS: '1000' })
  // ~120 bytes, 8 per write, 400 ms apart: ~6 s for the whole body.
  once(broker, 'embedded', { kind: 'trickle', chunkDelayMs: 400 })
  const before = broker.embedded()
  const started = performance.now()
  const res = await broker.mint()
  const elapsed = performance.now() - started
  t.equal(res.statusCode, 504)
  t.ok(elapsed >= 900 && elapsed < 4000, `answered after ${Math.round(elapsed)} ms (deadline 1000 ms)`)
  t.equal(broker.embedded() - before, 1)
})

t.test('a redirect: 502, not followed, not retried', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'redirect', location: `${broker.emulator.url}/v2.01/oauth/token/embedded/checkout` })
  const before = broker.embedded()
  const res = await broker.mint()
  t.equal(res.statusCode, 502)
  t.equal(res.json().code, 'upstream_error')
  t.equal(broker.embedded() - before, 1)
  t.equal(broker.emulator.control.calls.checkout, 0, 'the Location was not called')
})

t.test('no retry when too little of the deadline is left', async t => {
  const broker = await setup(t, { MANGOPAY_TIMEOUT_MS: '1000' }, false)
  // The OAuth call takes 920 ms of the 1000: a failed embedded call has no time for a retry.
  once(broker, 'oauth', { kind: 'latency', ms: 920 })
  once(broker, 'embedded', { kind: 'status', status: 503 }, Infinity)
  const res = await broker.mint()
  t.ok(res.statusCode === 502 || res.statusCode === 504, `refused with ${res.statusCode}`)
  t.ok(broker.embedded() <= 1, `${broker.embedded()} embedded call(s): no retry`)
  t.notOk(broker.logs.lines().some(l => l.msg === 'retrying a failed Mangopay call'))
})

t.test('Mangopay down for a burst of requests: it sees at most ~1.1× the inbound rate', async t => {
  const broker = await setup(t)
  once(broker, 'embedded', { kind: 'status', status: 503 }, Infinity)
  const before = broker.embedded()
  const requests = 200
  const concurrency = 4
  let sent = 0
  const statuses = new Map<number, number>()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (sent < requests) {
      sent++
      const res = await broker.mint()
      statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
    }
  }))
  const calls = broker.embedded() - before
  t.same([...statuses], [[502, requests]], 'every request is refused with 502')
  t.ok(calls <= requests * 1.1 + 10, `${calls} Mangopay calls for ${requests} requests (≤ 1.1 × ${requests} + 10)`)
  t.ok(calls > requests + 10, 'retries did happen while the budget lasted')
  t.ok(broker.logs.lines().some(l => l.msg === 'Mangopay call not retried: the retry budget is spent'), 'the spent budget is logged')
})
