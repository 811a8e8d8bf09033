import t from 'tap'
import { request } from 'undici'
import { ManualClock } from './manual-clock.js'
import { REFUSAL_MEMORY_MS } from '../src/mangopay/bearer-store.js'
import {
  API_KEY, buildTestApp, issuedJwts, opsGet, post, tokenFor, USER_A, USER_B, USER_C, type TestApp
} from './helpers.js'

/**
 * Metrics (SPEC §5): after a known sequence of requests, a scrape shows exact counts; no
 * label carries a user id, a token or anything a caller chose.
 */

interface Sample { name: string, labels: Record<string, string>, value: number }

function parse (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) throw new Error(`unparsable line: ${line}`)
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key as string] = value as string
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) })
  }
  return samples
}

/** The value of the one sample with exactly these labels (undefined when absent). */
function value (samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = JSON.stringify(Object.entries(labels).sort())
  return samples.find(s => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === wanted)?.value
}

async function scrape (app: TestApp['app']): Promise<{ text: string, samples: Sample[] }> {
  const res = await opsGet(app, '/metrics')
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}`)
  return { text: res.body, samples: parse(res.body) }
}

t.test('a known sequence of requests, then exact counts', async t => {
  const broker = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '1000' } })
  const { app, emulator } = broker
  const single = await tokenFor(USER_A)
  const several = await tokenFor([USER_B, USER_C])
  const recipients = async (token?: string, body?: unknown) => await post(app, '/v1/tokens/recipients', { token, body })
  const checkout = async (token?: string, body?: unknown) => await post(app, '/v1/tokens/checkout', { token, body })
  const statuses: number[] = []
  const run = async (res: Promise<{ statusCode: number }>) => statuses.push((await res).statusCode)

  await run(recipients(single))
  await run(recipients(single))
  await run(checkout(single))
  await run(recipients())
  await run(checkout(several))
  await run(checkout(several, { userId: USER_A }))
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'status', status: 400 } })
  await run(recipients(single))
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'status', status: 503 } })
  await run(recipients(single))
  await app.inject({ method: 'GET', url: '/healthz' })
  await app.inject({ method: 'GET', url: `/no-such-route/${USER_A}` })
  t.same(statuses, [200, 200, 200, 401, 400, 403, 502, 200], 'the sequence went as planned')

  const res = await opsGet(app, '/metrics')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.equal(res.headers['cache-control'], 'no-store')
  const samples = parse(res.body)

  t.equal(value(samples, 'broker_tokens_issued_total', { kind: 'recipient' }), 3)
  t.equal(value(samples, 'broker_tokens_issued_total', { kind: 'checkout' }), 1)
  t.equal(value(samples, 'broker_tokens_refused_total', { kind: 'recipient', code: 'unauthenticated' }), 1)
  t.equal(value(samples, 'broker_tokens_refused_total', { kind: 'checkout', code: 'user_id_required' }), 1)
  t.equal(value(samples, 'broker_tokens_refused_total', { kind: 'checkout', code: 'forbidden_user' }), 1)
  t.equal(value(samples, 'broker_tokens_refused_total', { kind: 'recipient', code: 'upstream_error' }), 1)
  t.equal(samples.filter(s => s.name === 'broker_tokens_refused_total').length, 4, 'no other refusals')

  const http = (route: string, statusClass: string, method = 'POST') =>
    value(samples, 'broker_http_request_duration_seconds_count', { method, route, status_class: statusClass })
  t.equal(http('/v1/tokens/recipients', '2xx'), 3)
  t.equal(http('/v1/tokens/recipients', '4xx'), 1)
  t.equal(http('/v1/tokens/recipients', '5xx'), 1)
  t.equal(http('/v1/tokens/checkout', '2xx'), 1)
  t.equal(http('/v1/tokens/checkout', '4xx'), 2)
  t.equal(http('/healthz', '2xx', 'GET'), 1)
  t.equal(http('unmatched', '4xx', 'GET'), 1, 'unknown URLs share one label, whatever their path')

  const mangopay = (endpoint: string, status: string) =>
    value(samples, 'broker_mangopay_request_duration_seconds_count', { endpoint, status })
  t.equal(mangopay('oauth', '200'), 1)
  t.equal(mangopay('recipient', '200'), 3)
  t.equal(mangopay('recipient', '400'), 1)
  t.equal(mangopay('recipient', '503'), 1)
  t.equal(mangopay('checkout', '200'), 1)
  t.equal(emulator.control.calls.total, 7, 'and that is every call Mangopay received')

  t.equal(value(samples, 'broker_mangopay_retries_total', { endpoint: 'recipient', reason: 'server_error' }), 1)
  t.equal(value(samples, 'broker_mangopay_bearer_refreshes_total', { result: 'success', background: 'false' }), 1)
  t.equal(value(samples, 'broker_mangopay_bearer_refreshes_total', { result: 'failure', background: 'false' }), undefined)
  t.equal(value(samples, 'broker_mangopay_circuit_state'), 0)
  t.equal(value(samples, 'broker_mangopay_quota_remaining', { window: '0' }), 2300 - 7, 'quota left in the 15-minute window, from Mangopay\'s headers')
  t.equal(value(samples, 'broker_mangopay_quota_limit', { window: '0' }), 2300)
  t.equal(value(samples, 'broker_mangopay_quota_remaining', { window: '3' }), 105600 - 7)
  t.equal(value(samples, 'broker_mangopay_quota_paused'), 0)
  t.equal(value(samples, 'broker_mangopay_client_certificate_expiry_timestamp_seconds'), undefined, 'no mTLS, no expiry')
  t.ok((value(samples, 'process_cpu_user_seconds_total') ?? -1) >= 0, 'process metrics')
  t.ok((value(samples, 'nodejs_heap_size_used_bytes') ?? 0) > 0)

  // Nothing high-cardinality or secret in any label, nor anywhere in the text.
  const secrets = [USER_A, USER_B, USER_C, API_KEY, ...emulator.control.minted.map(m => m.token), ...emulator.control.bearers.map(b => b.token), ...issuedJwts]
  t.notOk(secrets.some(secret => res.body.includes(secret)), 'no user id, token, bearer, JWT or key in the scrape')
  const labelValues = new Set(samples.flatMap(s => Object.values(s.labels)))
  const callerChosen = [...labelValues].filter(v => v.includes('no-such-route') || v.includes('user_m_'))
  t.same(callerChosen, [], 'no label value comes from a URL or a user')
})

t.test('a bearer refresh failure and a bearer dropped after a 401 are counted', async t => {
  const clock = new ManualClock()
  const { app, emulator } = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '1000' }, emulator: { clock }, deps: { clock } })
  const jwt = await tokenFor(USER_A)
  emulator.control.inject({ target: 'oauth', times: 1, fault: { kind: 'status', status: 401 } })
  t.equal((await post(app, '/v1/tokens/recipients', { token: jwt })).statusCode, 502)
  clock.advance(REFUSAL_MEMORY_MS) // the refusal is remembered that long
  t.equal((await post(app, '/v1/tokens/recipients', { token: jwt })).statusCode, 200)
  emulator.control.revokeBearers()
  t.equal((await post(app, '/v1/tokens/recipients', { token: jwt })).statusCode, 200)
  const { samples } = await scrape(app)
  t.equal(value(samples, 'broker_mangopay_bearer_refreshes_total', { result: 'failure', background: 'false' }), 1)
  t.equal(value(samples, 'broker_mangopay_bearer_refreshes_total', { result: 'success', background: 'false' }), 2)
  t.equal(value(samples, 'broker_mangopay_bearer_invalidations_total'), 1)
  t.equal(value(samples, 'broker_tokens_refused_total', { kind: 'recipient', code: 'upstream_auth_failed' }), 1)
})

t.test('several apps in one process keep separate registries', async t => {
  const first = await buildTestApp(t)
  const second = await buildTestApp(t)
  const jwt = await tokenFor(USER_A)
  t.equal((await post(first.app, '/v1/tokens/checkout', { token: jwt })).statusCode, 200)
  t.equal(value((await scrape(first.app)).samples, 'broker_tokens_issued_total', { kind: 'checkout' }), 1)
  t.equal(value((await scrape(second.app)).samples, 'broker_tokens_issued_total', { kind: 'checkout' }), undefined)
})

t.test('METRICS_PORT: /metrics on its own listener, not on the public one', async t => {
  const { app } = await buildTestApp(t)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = app.metrics.listeningOn?.port
  t.ok(port !== undefined && port > 0, 'the metrics listener is up')
  const scraped = await request(`http://127.0.0.1:${String(port)}/metrics`)
  t.equal(scraped.statusCode, 200)
  t.match(await scraped.body.text(), /^broker_mangopay_circuit_state 0$/m)
  const other = await request(`http://127.0.0.1:${String(port)}/healthz`)
  t.equal(other.statusCode, 404, 'only /metrics and /readyz there')
  t.match(other.headers['content-type'], /^application\/problem\+json/, 'refused in problem+json like every other error')
  t.equal(other.headers['cache-control'], 'no-store')
  t.match(await other.body.json(), { status: 404, code: 'not_found', requestId: other.headers['x-request-id'] })
  const posted = await request(`http://127.0.0.1:${String(port)}/metrics`, { method: 'POST' })
  t.equal(posted.statusCode, 404)
  t.match(await posted.body.json(), { code: 'not_found' })
  const publicSide = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(publicSide.statusCode, 404, 'the public listener does not serve /metrics')
  t.equal(publicSide.json().code, 'not_found')
})

t.test('METRICS_PORT must differ from PORT', async t => {
  const { loadConfig, ConfigError } = await import('../src/config/index.js')
  const { baseEnv } = await import('./helpers.js')
  t.throws(() => loadConfig(baseEnv('http://127.0.0.1:1', { PORT: '9100', METRICS_PORT: '9100' })), ConfigError)
  t.equal(loadConfig(baseEnv('http://127.0.0.1:1', { METRICS_PORT: '9100' })).metrics.port, 9100)
  t.equal(loadConfig(baseEnv('http://127.0.0.1:1', { METRICS_PORT: undefined })).metrics.port, 9464, 'SPEC §8: 9464 by default')
})
