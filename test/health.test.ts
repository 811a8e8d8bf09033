import t from 'tap'
import { ManualClock } from './manual-clock.js'
import { API_KEY, assertProblem, buildTestApp, opsGet } from './helpers.js'

/**
 * SPEC §2 operations routes: liveness is just "the process serves"; readiness is "a token
 * request would work now" (a bearer is held or can be obtained, not shutting down), and a
 * failing Mangopay is not polled on every probe.
 */

t.test('/healthz answers 200 with no-store', async t => {
  const { app, emulator } = await buildTestApp(t)
  const res = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  t.same(res.json(), { status: 'ok' })
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(emulator.control.calls.total, 0, 'liveness never calls Mangopay')
})

t.test('/readyz obtains a bearer once, then answers from the one it holds', async t => {
  const { app, emulator } = await buildTestApp(t, { deps: { clock: new ManualClock() } })
  const first = await opsGet(app, '/readyz')
  t.equal(first.statusCode, 200)
  t.equal(first.headers['cache-control'], 'no-store')
  t.match(first.json(), { status: 'ready', checks: { shutdown: false, bearer: 'obtained' } })
  t.equal(emulator.control.calls.oauth, 1, 'one OAuth call')

  for (let i = 0; i < 3; i++) {
    const again = await app.inject({ method: 'GET', url: '/readyz' })
    t.equal(again.statusCode, 200)
    t.same(again.json(), { status: 'ready' })
    t.equal(again.headers['cache-control'], 'no-store')
  }
  t.equal((await opsGet(app, '/readyz')).json().checks.bearer, 'held')
  t.equal(emulator.control.calls.total, 1, 'no further Mangopay call while the bearer is held')
})

t.test('/readyz is 503 while OAuth fails, without calling Mangopay on every poll', async t => {
  const clock = new ManualClock()
  const { app, emulator } = await buildTestApp(t, { deps: { clock } })
  emulator.control.setApiKey('wrong') // the broker's key is no longer accepted

  const failed = await app.inject({ method: 'GET', url: '/readyz' })
  const body = assertProblem(t, failed, 503, 'upstream_unavailable')
  t.same(body.failing, ['bearer'])
  t.match((await opsGet(app, '/readyz')).json().checks, { shutdown: false, bearer: 'credentials_refused' }, 'the metrics port says why')
  t.ok(Number(failed.headers['retry-after']) >= 1, 'with Retry-After')
  t.notMatch(failed.body, /invalid_client|wrong/, 'no upstream body in the answer')
  const afterFirst = emulator.control.calls.oauth
  t.ok(afterFirst >= 1, 'OAuth was tried')

  for (let i = 0; i < 10; i++) {
    clock.advance(100)
    assertProblem(t, await app.inject({ method: 'GET', url: '/readyz' }), 503, 'upstream_unavailable')
  }
  t.equal(emulator.control.calls.oauth, afterFirst, 'polls right after a failure answer from memory')

  clock.advance(10_000)
  assertProblem(t, await app.inject({ method: 'GET', url: '/readyz' }), 503, 'upstream_unavailable')
  t.ok(emulator.control.calls.oauth > afterFirst, 'tried again once the retry interval passed')
  t.ok(emulator.control.calls.oauth <= afterFirst * 2, 'and only once')

  emulator.control.setApiKey(API_KEY) // the key works again
  clock.advance(10_000)
  const recovered = await opsGet(app, '/readyz')
  t.equal(recovered.statusCode, 200, 'ready again once OAuth works')
  t.equal(recovered.json().checks.bearer, 'obtained')
})

t.test('/readyz is 503 shutting_down from the moment shutdown starts', async t => {
  const { app, emulator } = await buildTestApp(t)
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
  const calls = emulator.control.calls.total

  app.lifecycle.shuttingDown = true
  const res = await app.inject({ method: 'GET', url: '/readyz' })
  const body = assertProblem(t, res, 503, 'shutting_down')
  t.same(body.failing, ['shutdown'])
  t.equal(res.headers.connection, 'close', 'draining: the connection is not kept alive')
  t.equal(emulator.control.calls.total, calls, 'no Mangopay call')
  const live = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(live.statusCode, 200, 'liveness still answers while draining')
})

t.test('readiness checks Redis when REDIS_URL is set', async t => {
  const up = await buildTestApp(t, { env: { REDIS_URL: 'redis://127.0.0.1:6379', REDIS_KEY_PREFIX: `broker-test-ready-${process.pid}:` } })
  const ready = await opsGet(up.app, '/readyz')
  t.equal(ready.statusCode, 200)
  t.equal(ready.json().checks.redis, 'ok')

  const down = await buildTestApp(t, { env: { REDIS_URL: 'redis://127.0.0.1:1', REDIS_KEY_PREFIX: 'broker-test-ready-down:' } })
  const notReady = await down.app.inject({ url: '/readyz' })
  t.equal(notReady.statusCode, 503)
  t.same(notReady.json().failing, ['redis'])
  t.match(notReady.headers['content-type'], /^application\/problem\+json/)
  t.equal(down.emulator.control.calls.total, 0, 'no Mangopay call while a configured dependency is down')

  const noRedis = await buildTestApp(t)
  t.equal((await opsGet(noRedis.app, '/readyz')).json().checks.redis, undefined, 'no Redis check without REDIS_URL')
})

t.test('SPEC §8 Ports: the public /readyz tells status and failing checks, no figures; they are on the metrics port', async t => {
  const { app } = await buildTestApp(t)
  const ready = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ready' }, 'no bearer state, no quota windows')
  const detailed = await opsGet(app, '/readyz')
  t.equal(detailed.statusCode, 200)
  t.match(detailed.json(), { status: 'ready', checks: { shutdown: false, bearer: 'held', circuit: 'closed', quota: { reserve: 0.2 } } })
  t.equal(detailed.headers['cache-control'], 'no-store')

  app.lifecycle.shuttingDown = true
  const down = await app.inject({ method: 'GET', url: '/readyz' })
  const body = assertProblem(t, down, 503, 'shutting_down')
  t.same(Object.keys(body).sort(), ['code', 'detail', 'failing', 'requestId', 'status', 'title', 'type'], 'only the names of what fails')
  t.same(body.failing, ['shutdown'])
  const detailedDown = await opsGet(app, '/readyz')
  const full = assertProblem(t, detailedDown, 503, 'shutting_down')
  t.match(full, { failing: ['shutdown'], checks: { shutdown: true, quota: { reserve: 0.2 } } })

  const metrics = await app.inject({ method: 'GET', url: '/metrics' })
  assertProblem(t, metrics, 404, 'not_found')
  t.equal((await opsGet(app, '/metrics')).statusCode, 200, '/metrics only on METRICS_PORT')
})
