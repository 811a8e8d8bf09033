import t from 'tap'
import { advance, problem, scriptedBroker, secondsAt, settle, setUp, sleep, START, tokenAnswer, USER, watcher } from './client-keep-fresh-helpers.js'

/** keepFresh's schedule: when it refreshes, how it retries, when it reports and when it stops. */

t.test('hands a new token 60 s before expiry, each in an object of its own', async t => {
  const broker = scriptedBroker(n => tokenAnswer(n))
  const tokens = setUp(t, broker.fetch)
  const { seen, onToken, onError } = watcher()

  const stop = tokens.keepFresh('checkout', onToken, { onError })
  await settle()
  t.same(seen.tokens.map(token => token.clientToken), ['chk_1'], 'the first token at once')
  t.equal(broker.requests[0]?.url, 'https://broker.example.test/v1/tokens/checkout')

  await advance(839_000)
  t.equal(broker.requests.length, 1, 'nothing asked while more than 60 s are left')
  await advance(1000)
  t.equal(secondsAt(broker.requests[1]), 840, 'asked 60 s before the 900 s token expires')
  t.same(seen.tokens.map(token => token.clientToken), ['chk_1', 'chk_2'])
  await advance(840_000)
  t.equal(secondsAt(broker.requests[2]), 1680, 'and again 60 s before the second one expires')

  t.not(seen.tokens[1], seen.tokens[2], 'a new object each time')
  t.same(seen.errors, [], 'no error on the way')

  stop()
  stop()
  await advance(3_600_000, 10_000)
  t.equal(broker.requests.length, 3, 'stopped (twice is fine): nothing more is asked')
  t.equal(seen.tokens.length, 3)
})

t.test('never refreshes sooner than half the token\'s life', async t => {
  const broker = scriptedBroker(n => tokenAnswer(n, 100))
  const tokens = setUp(t, broker.fetch)
  const { seen, onToken } = watcher()
  tokens.keepFresh('recipients', onToken)
  await settle()
  await advance(49_000)
  t.equal(broker.requests.length, 1, 'a 100 s token: 60 s ahead would be at 40 s, too early')
  await advance(1000)
  t.equal(secondsAt(broker.requests[1]), 50, 'at half its life')
  t.equal(seen.tokens.length, 2)
})

t.test('failures are retried with backoff and Retry-After, silently while the token is valid', async t => {
  const script = ['token', 'offline', 'offline', '503', 'token']
  const broker = scriptedBroker(n => {
    const step = script[n - 1] ?? 'token'
    if (step === 'offline') return 'offline'
    if (step === '503') return problem(503, 'upstream_unavailable', 20)
    return tokenAnswer(n)
  })
  const tokens = setUp(t, broker.fetch)
  const { seen, onToken, onError } = watcher()
  tokens.keepFresh('checkout', onToken, { onError })
  await settle()
  await advance(900_000, 250)

  const at = broker.requests.map(secondsAt)
  t.equal(at[1], 840, 'the refresh fails (offline)')
  const first = (at[2] ?? 0) - 840
  const second = (at[3] ?? 0) - (at[2] ?? 0)
  t.ok(first >= 0.5 && first <= 1, `first retry after 0.5 to 1 s (${first} s)`)
  t.ok(second >= 1 && second <= 2, `then after 1 to 2 s (${second} s)`)
  t.ok((at[4] ?? 0) - (at[3] ?? 0) >= 20, 'the 503 said Retry-After: 20, and was obeyed')
  t.same(seen.tokens.map(token => token.clientToken), ['chk_1', 'chk_5'], 'the new token, well before the old one expires')
  t.same(seen.errors, [], 'onError was never called: the page had a valid token throughout')
})

t.test('when no new token can come in time, onError once, then slower retries until it heals', async t => {
  let down = false
  const broker = scriptedBroker(n => down ? problem(502, 'upstream_error') : tokenAnswer(n, 120))
  const tokens = setUp(t, broker.fetch)
  const { seen, onToken, onError } = watcher()
  tokens.keepFresh('checkout', onToken, { onError })
  await settle()
  down = true
  await advance(600_000, 500)

  t.equal(seen.errors.length, 1, 'one report for the outage, not one per retry')
  t.match(seen.errors[0], { error: { code: 'upstream_error', status: 502 }, stopped: false })
  t.ok((seen.errors[0]?.at ?? 0) - START <= 120_000, 'reported by the time the 120 s token expires')
  const gaps = broker.requests.slice(1).map((request, i) => request.at - (broker.requests[i]?.at ?? 0))
  t.ok(gaps.every(gap => gap <= 60_000), 'it keeps trying, never more than 60 s apart')
  t.ok(gaps.slice(-3).every(gap => gap >= 30_000), 'at a slower pace once the backoff has grown')

  down = false
  await advance(60_000)
  t.equal(seen.tokens.length, 2, 'recovered: the next token reaches the page')
  t.equal(seen.errors.length, 1)
  down = true
  await advance(120_000, 500)
  t.equal(seen.errors.length, 2, 'a later outage is reported again')
})

t.test('with no token yet, the first failure is reported at once and retried', async t => {
  const broker = scriptedBroker(n => n === 1 ? problem(503, 'upstream_unavailable', 2) : tokenAnswer(n))
  const tokens = setUp(t, broker.fetch)
  const { seen, onToken, onError } = watcher()
  tokens.keepFresh('checkout', onToken, { onError })
  await settle()
  t.match(seen.errors, [{ error: { code: 'upstream_unavailable', retryAfter: 2 }, stopped: false }])
  await advance(2000, 100)
  t.same(seen.tokens.map(token => token.clientToken), ['chk_2'], 'the token follows after Retry-After')
})

t.test('errors that retrying cannot fix stop it at once', async t => {
  for (const [status, code] of [[401, 'unauthenticated'], [403, 'forbidden_user'], [403, 'no_mangopay_user'], [400, 'user_id_required'], [403, 'csrf_rejected'], [400, 'bad_request'], [400, 'a_code_from_a_newer_broker']] as const) {
    t.test(code, async t => {
      const broker = scriptedBroker(n => n === 1 ? tokenAnswer(n) : problem(status, code))
      const tokens = setUp(t, broker.fetch)
      const { seen, onToken, onError } = watcher()
      tokens.keepFresh('recipients', onToken, { onError })
      await settle()
      await advance(3_600_000, 10_000)
      t.equal(broker.requests.length, 2, 'the refresh, and nothing after it')
      t.match(seen.errors, [{ error: { code, status }, stopped: true }])
    })
  }
  t.test('an unknown code with a 5xx status is retried', async t => {
    const broker = scriptedBroker(n => n === 2 ? problem(503, 'a_code_from_a_newer_broker') : tokenAnswer(n))
    const tokens = setUp(t, broker.fetch)
    const { seen, onToken, onError } = watcher()
    tokens.keepFresh('recipients', onToken, { onError })
    await settle()
    await advance(842_000)
    t.equal(seen.tokens.length, 2)
    t.same(seen.errors, [])
  })
})

t.test('an aborted signal stops it; already aborted, nothing is asked', async t => {
  const broker = scriptedBroker(n => n === 2 ? 'hang' : tokenAnswer(n))
  const tokens = setUp(t, broker.fetch)
  const { seen, onToken, onError } = watcher()

  const gone = new AbortController()
  gone.abort()
  tokens.keepFresh('checkout', onToken, { signal: gone.signal, onError })()
  await settle()
  t.equal(broker.requests.length, 0)

  const leaving = new AbortController()
  tokens.keepFresh('checkout', onToken, { signal: leaving.signal, onError })
  await settle()
  await advance(840_000, 10_000)
  t.equal(broker.requests.length, 2, 'the refresh is under way')
  leaving.abort()
  await advance(3_600_000, 10_000)
  t.equal(broker.requests.length, 2, 'nothing after the abort')
  t.equal(seen.tokens.length, 1)
  t.same(seen.errors, [], 'the page stopped it: no error')
})

t.test('clear() stops every keeper, each told once, with a request in flight or not', async t => {
  const broker = scriptedBroker(n => n === 3 ? 'hang' : tokenAnswer(n))
  const tokens = setUp(t, broker.fetch)
  const waiting = watcher()
  const asking = watcher()
  tokens.keepFresh('recipients', waiting.onToken, { onError: waiting.onError })
  await settle()
  await advance(100_000, 10_000)
  tokens.keepFresh('checkout', asking.onToken, { onError: asking.onError })
  await settle()
  await advance(740_000, 10_000)
  t.equal(broker.requests.length, 3, 'the recipients refresh is in flight; the checkout keeper waits')

  tokens.clear()
  await settle()
  for (const seen of [waiting.seen, asking.seen]) t.match(seen.errors, [{ error: { code: 'cleared' }, stopped: true }])
  await advance(3_600_000, 10_000)
  t.equal(broker.requests.length, 3, 'nothing asked after clear()')
  t.equal(waiting.seen.errors.length + asking.seen.errors.length, 2, 'one report each')
})

t.test('after a sleep (the wall clock jumped, the timer did not fire), it refreshes within one check', async t => {
  const broker = scriptedBroker(n => tokenAnswer(n))
  const tokens = setUp(t, broker.fetch)
  const { seen, onToken } = watcher()
  tokens.keepFresh('checkout', onToken)
  await settle()
  await advance(5000)
  sleep(880_000) // awake again 885 s after the token: inside the margin, and its timer 835 s away
  await settle()
  t.equal(broker.requests.length, 1, 'no timer has fired yet')
  await advance(10_000)
  t.equal(broker.requests.length, 2, 'the next wall-clock check, at most 10 s later, saw it was due')
  t.equal(seen.tokens.length, 2)
})

t.test('keepers of the same kind and user share requests, with each other and with token calls', async t => {
  const broker = scriptedBroker(n => tokenAnswer(n))
  const tokens = setUp(t, broker.fetch, { cache: true })
  const a = watcher()
  const b = watcher()
  tokens.keepFresh('checkout', a.onToken)
  tokens.keepFresh('checkout', b.onToken)
  const called = await tokens.checkoutToken()
  await settle()
  t.equal(broker.requests.length, 1, 'two keepers and a call: one request')
  t.equal(called.clientToken, 'chk_1')
  t.not(a.seen.tokens[0], b.seen.tokens[0], 'one answer, an object of its own for each keeper')
  a.seen.tokens[0]!.clientToken = 'changed by the page'
  t.equal(b.seen.tokens[0]?.clientToken, 'chk_1', 'what one page changes, another keeper does not see')
  t.equal((await tokens.checkoutToken()).clientToken, 'chk_1', 'nor does the cache')

  await advance(300_000)
  const c = watcher()
  tokens.keepFresh('checkout', c.onToken)
  await settle()
  t.equal(broker.requests.length, 1, 'a later keeper starts from the cached token')
  await advance(540_000)
  t.equal(broker.requests.length, 2, 'one refresh for all three')
  t.same(a.seen.tokens.map(token => token.clientToken), ['changed by the page', 'chk_2'])
  for (const seen of [b.seen, c.seen]) t.same(seen.tokens.map(token => token.clientToken), ['chk_1', 'chk_2'])

  tokens.keepFresh('checkout', () => {}, { userId: 'user_m_other' })
  await settle()
  t.equal(broker.requests.length, 3, 'another Mangopay user is another request')
  t.equal(broker.requests[2]?.body, JSON.stringify({ userId: 'user_m_other' }))
})

t.test('the same token handed again (broker-side reuse) is not handed to the page twice', async t => {
  const broker = scriptedBroker(n => n === 2 ? tokenAnswer(1, 60) : tokenAnswer(n))
  const tokens = setUp(t, broker.fetch)
  const { seen, onToken } = watcher()
  tokens.keepFresh('checkout', onToken)
  await settle()
  await advance(840_000)
  t.equal(broker.requests.length, 2)
  t.same(seen.tokens.map(token => token.clientToken), ['chk_1'], 'chk_1 again: onToken not called')
  await advance(30_000)
  t.equal(broker.requests.length, 3, 'asked again at half of what was left')
  t.same(seen.tokens.map(token => token.clientToken), ['chk_1', 'chk_3'])
  t.equal(seen.tokens[1]?.userId, USER)
})
