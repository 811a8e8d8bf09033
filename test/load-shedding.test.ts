import t from 'tap'
import { assertProblem, buildTestApp, opsGet, post, tokenFor, until, USER_A, type AnswerLike } from './helpers.js'
import type { LightMyRequestResponse } from 'fastify'

/**
 * Load shedding: while the event loop is overloaded the broker answers 503 `overloaded` with
 * Retry-After at once, instead of queueing requests that would miss their deadline. The loop is
 * blocked here by busy-waiting in the test's own process, where the app runs.
 */

function busyWait (ms: number): void {
  const end = performance.now() + ms
  while (performance.now() < end) {
    // The point is to hold the event loop.
  }
}

t.test('a blocked event loop: token requests get 503 overloaded with Retry-After; liveness still answers', async t => {
  const { app, emulator } = await buildTestApp(t, {
    env: { LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '100' },
    deps: { loadSampleIntervalMs: 20 }
  })
  const jwt = await tokenFor(USER_A)
  const mint = async () => await post(app, '/v1/tokens/recipients', { token: jwt })
  // On a crowded machine the loop can be late by itself at first: wait until it is free.
  await until('a token request to be served while the loop is free', async () => (await mint()).statusCode === 200, 20_000)
  const callsBefore = emulator.control.calls.total

  // 300 ms of every ~300 ms busy: requests still get through between the slices.
  const hog = setInterval(() => busyWait(300), 1)
  let shed: LightMyRequestResponse | undefined
  let liveness: LightMyRequestResponse | undefined
  let metrics: AnswerLike | undefined
  try {
    await until('a token request to be shed', async () => {
      const [token, live, scraped] = await Promise.all([mint(), app.inject({ url: '/healthz' }), opsGet(app, '/metrics')])
      if (token.statusCode !== 503) return false
      shed = token
      liveness = live
      metrics = scraped
      return true
    }, 20_000)
  } finally {
    clearInterval(hog)
  }
  if (shed === undefined) return
  const body = assertProblem(t, shed, 503, 'overloaded')
  t.match(body.detail, /overloaded/)
  t.equal(shed.headers['retry-after'], '2', 'with Retry-After')
  t.equal(liveness?.statusCode, 200, 'liveness answers while requests are shed')
  t.equal(metrics?.statusCode, 200, 'the metrics port is not shed')

  await until('token requests to be served again', async () => (await mint()).statusCode === 200, 20_000)
  t.ok(emulator.control.calls.total > callsBefore, 'Mangopay is called again once the loop is free')
})
