import t from 'tap'
import { ManualClock } from './manual-clock.js'
import type { CircuitSettings } from '../src/config/index.js'
import { CircuitBreaker, type CircuitPermit, type CircuitTransition } from '../src/mangopay/circuit-breaker.js'
import { buildTestApp, post, tokenFor, USER_A, opsGet } from './helpers.js'

/**
 * The circuit breaker (SPEC §4): on its own with a ManualClock, then through the HTTP surface
 * against the emulator: Mangopay down → the circuit opens and requests fail fast with 503 +
 * Retry-After; after the cool-down exactly one probe; success closes it.
 */

function breaker (settings: Partial<CircuitSettings> = {}) {
  const clock = new ManualClock()
  const transitions: CircuitTransition[] = []
  const circuit = new CircuitBreaker({
    failureThreshold: 3,
    failureRatio: 0,
    windowMs: 10_000,
    minimumCalls: 10,
    cooldownMs: 5000,
    ...settings,
    clock,
    onTransition: transition => transitions.push(transition)
  })
  const call = (outcome: 'success' | 'failure' | 'ignored'): boolean => {
    const permit = circuit.tryAcquire()
    permit?.settle(outcome)
    return permit !== undefined
  }
  return { clock, circuit, transitions, call }
}

t.test('closed → open after N consecutive failures; a success in between resets the count', async t => {
  const { circuit, transitions, call } = breaker()
  call('failure')
  call('failure')
  call('success')
  call('failure')
  call('failure')
  call('ignored')
  t.equal(circuit.state, 'closed', 'two in a row, not three (ignored outcomes do not count)')
  call('failure')
  t.equal(circuit.state, 'open')
  t.same(transitions, [{ from: 'closed', to: 'open', reason: 'consecutive_failures' }])
  t.equal(circuit.tryAcquire(), undefined, 'open: calls fail fast')
  t.equal(circuit.retryAfterMs(), 5000)
})

t.test('open → half-open after the cool-down: one probe at a time; success closes', async t => {
  const { clock, circuit, transitions, call } = breaker()
  for (let i = 0; i < 3; i++) call('failure')
  clock.advance(3000)
  t.equal(circuit.retryAfterMs(), 2000, 'Retry-After is the rest of the cool-down')
  t.equal(circuit.tryAcquire(), undefined)
  clock.advance(2000)
  t.equal(circuit.state, 'half_open')
  const probe = circuit.tryAcquire() as CircuitPermit
  t.ok(probe, 'the probe goes through')
  t.equal(circuit.tryAcquire(), undefined, 'a second caller fails fast while the probe is out')
  t.equal(circuit.retryAfterMs(), 1000)
  probe.settle('success')
  t.equal(circuit.state, 'closed')
  t.ok(call('success'), 'calls flow again')
  t.same(transitions.map(x => `${x.from}>${x.to}:${x.reason}`), [
    'closed>open:consecutive_failures', 'open>half_open:cooldown_elapsed', 'half_open>closed:probe_succeeded'
  ])
})

t.test('a failed probe opens the circuit for a fresh cool-down; an ignored one lets the next call probe', async t => {
  const { clock, circuit, transitions, call } = breaker()
  for (let i = 0; i < 3; i++) call('failure')
  clock.advance(5000)
  t.ok(call('ignored'), 'probe refused by the quota guard before calling')
  t.equal(circuit.state, 'half_open', 'still half-open')
  t.ok(call('failure'), 'the next call probes, and fails')
  t.equal(circuit.state, 'open')
  t.equal(circuit.retryAfterMs(), 5000, 'a whole new cool-down')
  t.equal(transitions.at(-1)?.reason, 'probe_failed')
  clock.advance(4999)
  t.equal(circuit.state, 'open')
  clock.advance(1)
  t.equal(circuit.state, 'half_open')
})

t.test('answers of calls admitted before the circuit opened change nothing', async t => {
  const { circuit, call } = breaker()
  const late = circuit.tryAcquire() as CircuitPermit
  for (let i = 0; i < 3; i++) call('failure')
  late.settle('success')
  t.equal(circuit.state, 'open', 'a late success does not close it')
  late.settle('failure')
  t.equal(circuit.state, 'open', 'a permit settles once')
})

t.test('the failure-ratio rule: over the window, with a minimum number of calls', async t => {
  const { clock, circuit, transitions, call } = breaker({ failureThreshold: 0, failureRatio: 0.5, minimumCalls: 10, windowMs: 10_000 })
  for (let i = 0; i < 4; i++) {
    call('failure')
    call('success')
  }
  t.equal(circuit.state, 'closed', '8 calls: below the minimum')
  // Old calls leave the window: these 8 no longer count.
  clock.advance(11_000)
  for (let i = 0; i < 4; i++) {
    call('failure')
    call('success')
  }
  call('success')
  t.equal(circuit.state, 'closed', '9 calls in the window')
  call('failure')
  t.equal(circuit.state, 'open', '10 calls, 5 failed: 50 %')
  t.equal(transitions[0]?.reason, 'failure_ratio')
})

t.test('both rules off: never opens', async t => {
  const { circuit, call } = breaker({ failureThreshold: 0, failureRatio: 0 })
  for (let i = 0; i < 100; i++) call('failure')
  t.equal(circuit.state, 'closed')
})

t.test('through the broker: Mangopay down → open, fail fast, one probe, recovery', async t => {
  const clock = new ManualClock()
  const { app, emulator, logs } = await buildTestApp(t, {
    env: { RATE_LIMIT_MAX: '1000000', MANGOPAY_TIMEOUT_MS: '1000', MANGOPAY_CIRCUIT_FAILURES: '5', MANGOPAY_CIRCUIT_COOLDOWN_MS: '10000' },
    emulator: { clock },
    deps: { clock }
  })
  const jwt = await tokenFor(USER_A)
  const mint = async () => await post(app, '/v1/tokens/recipients', { token: jwt })
  const embedded = () => emulator.control.calls.recipient
  const scrape = async () => (await opsGet(app, '/metrics')).body
  t.equal((await mint()).statusCode, 200, 'warm-up')
  t.match(await scrape(), /^broker_mangopay_circuit_state 0$/m)

  // 100 % failure: 5 failed calls open the circuit; then nothing reaches Mangopay.
  emulator.control.inject({ target: 'embedded', fault: { kind: 'status', status: 503 } })
  const requests = 200
  const statuses: number[] = []
  for (let i = 0; i < requests; i++) statuses.push((await mint()).statusCode)
  const failedCalls = embedded() - 1
  t.equal(failedCalls, 5, 'Mangopay saw 5 calls for 200 requests')
  t.ok(failedCalls <= requests * 1.1 + 10)
  t.equal(statuses[0], 502, 'the first request fails after its retries')
  t.ok(statuses.slice(2).every(s => s === 503), 'then 503s')
  t.equal(app.mangopay.circuitState(), 'open')
  t.match(logs.lines().find(l => l.msg === 'Mangopay circuit opened: token requests fail fast until a probe succeeds'), { level: 50, circuit: { from: 'closed', to: 'open', reason: 'consecutive_failures', cooldownMs: 10000 } })

  const fast = await mint()
  t.equal(fast.statusCode, 503)
  t.equal(fast.json().code, 'upstream_unavailable')
  t.equal(fast.headers['retry-after'], '10')
  t.notMatch(fast.body, /circuit/i, 'the browser is told to retry later, not about internals')
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 503, 'not ready while open')
  t.same(ready.json().failing, ['circuit'])
  t.equal(ready.headers['retry-after'], '10')
  const detailed = await opsGet(app, '/readyz')
  t.match(detailed.json().checks, { circuit: 'open', bearer: 'held', shutdown: false }, 'the figures on the metrics port')
  t.equal(detailed.headers['retry-after'], '10', 'with the same Retry-After')
  t.match(await scrape(), /^broker_mangopay_circuit_state 2$/m)

  clock.advance(4000)
  t.equal((await mint()).headers['retry-after'], '6', 'Retry-After counts down the cool-down')

  // Cool-down over: one probe (it hangs until the 1 s deadline, and fails); the others fail fast meanwhile.
  clock.advance(6000)
  const readyAgain = await opsGet(app, '/readyz')
  t.equal(readyAgain.statusCode, 200, 'half-open: ready again, so traffic can probe')
  t.equal(readyAgain.json().checks.circuit, 'half_open')
  emulator.control.clearFaults()
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'hang' } })
  emulator.control.inject({ target: 'embedded', fault: { kind: 'status', status: 503 } })
  const before = embedded()
  const burst = await Promise.all(Array.from({ length: 5 }, mint))
  t.equal(embedded() - before, 1, 'exactly one probe reached Mangopay')
  t.same(burst.map(r => r.statusCode).sort(), [503, 503, 503, 503, 504], 'the probe timed out; the others failed fast')
  t.equal(app.mangopay.circuitState(), 'open', 'a failed probe opens it again')
  t.equal((await mint()).headers['retry-after'], '10', 'for a whole cool-down')

  // Mangopay is back: the next probe succeeds (slowly, so the others arrive while it is out) and closes it.
  clock.advance(10_000)
  emulator.control.clearFaults()
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'latency', ms: 300 } })
  const recovering = await Promise.all(Array.from({ length: 5 }, mint))
  t.same(recovering.map(r => r.statusCode).sort(), [200, 503, 503, 503, 503])
  t.equal(app.mangopay.circuitState(), 'closed')
  t.equal((await mint()).statusCode, 200, 'calls flow again')
  const closed = await opsGet(app, '/readyz')
  t.equal(closed.statusCode, 200)
  t.equal(closed.json().checks.circuit, 'closed')
  t.ok(logs.lines().some(l => l.msg === 'Mangopay circuit closed: calls flow again'))
  t.match(await scrape(), /^broker_mangopay_circuit_transitions_total\{to="open"\} 2$/m)
})

t.test('through the broker: calls cut short by a slow bearer fetch do not open the circuit', async t => {
  // A 3000 ms deadline; 3 timeouts in a row would open the circuit.
  const { app, emulator } = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '1000', MANGOPAY_TIMEOUT_MS: '3000', MANGOPAY_CIRCUIT_FAILURES: '3' } })
  const jwt = await tokenFor(USER_A)
  const mint = async () => await post(app, '/v1/tokens/recipients', { token: jwt })

  // The bearer arrives 2950 ms into the requests' 3000 ms: too late for any call to finish.
  emulator.control.inject({ target: 'oauth', times: 1, fault: { kind: 'latency', ms: 2950 } })
  const late = await Promise.all(Array.from({ length: 6 }, mint))
  t.same(late.map(r => r.json().code), Array(6).fill('upstream_timeout'), 'each request times out')
  t.equal(emulator.control.calls.recipient, 0, 'no call is started that could not finish: no quota spent on it')
  t.equal(app.mangopay.circuitState(), 'closed')
})

t.test('through the broker: calls started with a third of the timeout left do not open the circuit', async t => {
  const { app, emulator } = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '1000', MANGOPAY_TIMEOUT_MS: '3000', MANGOPAY_CIRCUIT_FAILURES: '3' } })
  const jwt = await tokenFor(USER_A)
  const mint = async () => await post(app, '/v1/tokens/recipients', { token: jwt })

  // The bearer arrives 2000 ms in: the calls start with about 1000 ms left (well under half the
  // timeout, well over the 100 ms an attempt needs), and Mangopay takes 2500 ms.
  emulator.control.inject({ target: 'oauth', times: 1, fault: { kind: 'latency', ms: 2000 } })
  emulator.control.inject({ target: 'embedded', times: 6, fault: { kind: 'latency', ms: 2500 } })
  const cut = await Promise.all(Array.from({ length: 6 }, mint))
  t.same(cut.map(r => r.json().code), Array(6).fill('upstream_timeout'))
  t.equal(emulator.control.calls.recipient, 6, 'these calls were made, and timed out on the requests\' budget')
  t.equal(app.mangopay.circuitState(), 'closed', 'timeouts of calls given a third of the timeout say nothing of Mangopay')
  emulator.control.clearFaults()
  t.equal((await mint()).statusCode, 200, 'the next request is served')
})
