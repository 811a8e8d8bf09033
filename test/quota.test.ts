import t from 'tap'
import { ManualClock } from './manual-clock.js'
import { parseRateLimitHeaders, QuotaTracker } from '../src/mangopay/quota.js'
import { BrokerError } from '../src/errors.js'
import { buildTestApp, post, tokenFor, USER_A, opsGet } from './helpers.js'

/** SPEC §4 "Quota": keep MANGOPAY_QUOTA_RESERVE of every window; stop calling until reset. */

const NOW = Date.UTC(2026, 10, 28, 10, 0, 0)

/** The refusal `assertCallAllowed` throws right now, if any. */
function refusal (quota: QuotaTracker): { code: string, retryAfterS: number | undefined } | undefined {
  try {
    quota.assertCallAllowed()
    return undefined
  } catch (err) {
    if (!(err instanceof BrokerError)) throw err
    return { code: err.code, retryAfterS: err.retryAfterS }
  }
}

t.test('headers with 4 and with 6 windows are both parsed', async t => {
  const four = parseRateLimitHeaders({
    'x-ratelimit': '1, 1, 1, 295',
    'x-ratelimit-remaining': '2299, 4499, 8799, 105305',
    'x-ratelimit-reset': '1795860000, 1795861800, 1795863600, 1795942800'
  })
  t.equal(four.length, 4)
  t.same(four[3], { index: 3, made: 295, remaining: 105305, limit: 105600, resetAt: 1795942800_000 })

  const six = parseRateLimitHeaders({
    'x-ratelimit': '3,5,1,1,1,295',
    'x-ratelimit-remaining': '97,495,2299,4499,8799,105305',
    'x-ratelimit-reset': '1795859160,1795859400,1795860000,1795861800,1795863600,1795942800'
  })
  t.equal(six.length, 6)
  t.same(six.map(w => w.limit), [100, 500, 2300, 4500, 8800, 105600])
  t.same(six.map(w => w.index), [0, 1, 2, 3, 4, 5])

  t.same(parseRateLimitHeaders({}), [], 'no headers, no windows')
  t.same(parseRateLimitHeaders({ 'x-ratelimit-remaining': 'abc, 5', 'x-ratelimit-reset': '1795860000, 1795861800' }).map(w => w.index), [1], 'a malformed entry is skipped, not fatal')
  t.same(parseRateLimitHeaders({ 'x-ratelimit-remaining': ' , 5', 'x-ratelimit-reset': '1795860000, 1795861800' }).map(w => w.index), [1], 'so is an empty one: it is not a window with nothing left')
})

t.test('each entry is read as Number() reads it, except that an empty one is no window', async t => {
  // The reading before plain digits got a path of their own: split, trim, Number().
  const reference = (text: string): number[] => text.trim() === '' ? [] : text.split(',').map(v => v.trim() === '' ? Number.NaN : Number(v))
  const entries = ['5', ' 5', '5 ', '  5  ', '\t5', '5\t', '\t', '\u00a05', '007', '0', '-0', '-1', '+5', '1.5', '1e3', '0x10', 'abc', '5a',
    'a5', '', ' ', 'Infinity', '123456789012345', '1234567890123456', '12345678901234567890', '9007199254740993', '1 2']
  const reset = '1795860000'
  for (const a of entries) {
    for (const b of ['', '42', ' 7 ', 'x']) {
      const text = b === '' ? a : `${a},${b}`
      const expected = reference(text)
      // Only what is left is under test: a valid reset for every entry, so an entry read as 0 is
      // a window (with nothing left) and one read as NaN is none.
      const windows = parseRateLimitHeaders({ 'x-ratelimit-remaining': text, 'x-ratelimit-reset': expected.map(() => reset).join(',') })
      const usable = expected.flatMap((value, index) => Number.isFinite(value) && value >= 0 ? [{ index, value }] : [])
      t.same(windows.map(w => ({ index: w.index, value: w.remaining })), usable, JSON.stringify(text))
    }
  }
  t.same(parseRateLimitHeaders({ 'x-ratelimit-remaining': ['5', '6'], 'x-ratelimit-reset': '10, 20' }).map(w => w.remaining), [5, 6], 'a repeated header: one list')
  t.same(parseRateLimitHeaders({ 'x-ratelimit-remaining': '5,', 'x-ratelimit-reset': '10,20' }).map(w => w.index), [0], 'a trailing comma: an empty last entry')
})

t.test('without X-RateLimit a window\'s size comes from X-RateLimit-Limit, else from the most seen left', async t => {
  const remaining = { 'x-ratelimit-remaining': '100, 4000', 'x-ratelimit-reset': '1795860000, 1795861800' }
  t.same(parseRateLimitHeaders({ ...remaining, 'x-ratelimit-limit': '2300, 4500' }).map(w => [w.limit, w.made]), [[2300, 2200], [4500, 500]], 'the size as its docs once named it')
  t.same(parseRateLimitHeaders(remaining, [2300, 4500]).map(w => w.limit), [2300, 4500], 'the size seen before')
  t.same(parseRateLimitHeaders(remaining).map(w => w.limit), [100, 4000], 'nothing known: at least what is left')
  t.same(parseRateLimitHeaders({ ...remaining, 'x-ratelimit-limit': '50, 4500' }, [2300]).map(w => w.limit), [2300, 4500], 'a size smaller than what is left is not believed')

  const clock = new ManualClock(NOW)
  const quota = new QuotaTracker({ reserve: 0.2, clock })
  const resetS = NOW / 1000 + 900
  quota.observe(200, { 'x-ratelimit-remaining': '100', 'x-ratelimit-reset': String(resetS) })
  quota.observe(200, { 'x-ratelimit-remaining': '21', 'x-ratelimit-reset': String(resetS) })
  t.equal(refusal(quota), undefined, '21 left of at least 100: above the reserve')
  quota.observe(200, { 'x-ratelimit-remaining': '20', 'x-ratelimit-reset': String(resetS) })
  t.equal(refusal(quota)?.code, 'upstream_unavailable', '20 left of at least 100: the reserve is kept')
})

t.test('an empty entry in X-RateLimit-Remaining does not pause calls', async t => {
  const clock = new ManualClock(NOW)
  const quota = new QuotaTracker({ reserve: 0.1, clock })
  const resetS = NOW / 1000 + 900
  quota.observe(200, { 'x-ratelimit': '1, 1', 'x-ratelimit-remaining': ', 4499', 'x-ratelimit-reset': `${resetS}, ${resetS + 900}` })
  t.equal(refusal(quota), undefined, 'the next call may go')
  t.same(quota.snapshot().windows.map(w => w.index), [1], 'only the well-formed window is tracked')
})

t.test('the tracker blocks at the reserve and unblocks at the reset', async t => {
  const clock = new ManualClock(NOW)
  const events: string[] = []
  const quota = new QuotaTracker({ reserve: 0.2, clock, onEvent: e => { events.push(e.type) } })
  const resetS = NOW / 1000 + 900
  quota.observe(200, { 'x-ratelimit': '79', 'x-ratelimit-remaining': '21', 'x-ratelimit-reset': String(resetS) })
  t.equal(refusal(quota), undefined, '21 left of 100: above the reserve of 20')
  quota.observe(200, { 'x-ratelimit': '80', 'x-ratelimit-remaining': '20', 'x-ratelimit-reset': String(resetS) })
  t.same(refusal(quota), { code: 'upstream_unavailable', retryAfterS: 900 }, 'at the reserve: refused with Retry-After up to the reset')
  t.same(quota.snapshot().blocked, { until: new Date(resetS * 1000).toISOString(), reason: 'reserve' })
  clock.advance(899_000)
  t.same(refusal(quota), { code: 'upstream_unavailable', retryAfterS: 1 })
  clock.advance(1000)
  t.equal(refusal(quota), undefined, 'the window reset: calls resume')
  t.equal(quota.snapshot().blocked, undefined)
  t.equal(quota.snapshot().windows.length, 0, 'a window past its reset is no longer shown')
  t.equal(events.filter(e => e === 'blocked').length, 1, 'one log-worthy event per block, not one per refusal')
})

t.test('a 429 blocks until the exhausted window resets, or a minute without headers', async t => {
  const clock = new ManualClock(NOW)
  const quota = new QuotaTracker({ reserve: 0, clock })
  quota.observe(429, { 'x-ratelimit': '2300, 2301', 'x-ratelimit-remaining': '0, 2199', 'x-ratelimit-reset': `${NOW / 1000 + 120}, ${NOW / 1000 + 1700}` })
  t.same(refusal(quota), { code: 'upstream_unavailable', retryAfterS: 120 })
  clock.advance(120_000)
  t.equal(refusal(quota), undefined)
  quota.observe(429, {})
  t.same(refusal(quota), { code: 'upstream_unavailable', retryAfterS: 60 })
})

t.test('no pause outlasts the longest window (24 h), whatever the reset header says', async t => {
  const clock = new ManualClock(NOW)
  const quota = new QuotaTracker({ reserve: 0, clock })
  // A reset sent in milliseconds instead of seconds: 1000 times too far in the future.
  quota.observe(429, { 'x-ratelimit': '2300', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': `${NOW + 120_000}` })
  t.same(refusal(quota), { code: 'upstream_unavailable', retryAfterS: 86_400 })
  clock.advance(86_400_000)
  t.equal(refusal(quota), undefined, 'calls flow again after a day at most')
  t.ok(quota.adoptBlock(NOW * 1000, 'rate_limited'), 'a block another instance published (REDIS_URL)…')
  t.same(refusal(quota), { code: 'upstream_unavailable', retryAfterS: 86_400 }, '…is capped the same way')
})

t.test('when several windows are at the reserve, the latest reset wins', async t => {
  const clock = new ManualClock(NOW)
  const quota = new QuotaTracker({ reserve: 0.5, clock })
  quota.observe(200, { 'x-ratelimit': '60, 10', 'x-ratelimit-remaining': '40, 10', 'x-ratelimit-reset': `${NOW / 1000 + 60}, ${NOW / 1000 + 600}` })
  t.same(refusal(quota), { code: 'upstream_unavailable', retryAfterS: 600 }, 'both windows are at half: wait for the later reset')
})

t.test('through the broker: the reserve holds whichever header tells the window\'s size, or none', async t => {
  for (const style of ['made', 'limit', 'none'] as const) {
    t.test(style, async t => {
      const { app, emulator } = await buildTestApp(t, {
        env: { MANGOPAY_QUOTA_RESERVE: '0.2' },
        emulator: { quota: [{ limit: 10, periodS: 900 }], rateLimitHeaderStyle: style }
      })
      const jwt = await tokenFor(USER_A)
      const statuses: number[] = []
      for (let i = 0; i < 10; i++) statuses.push((await post(app, '/v1/tokens/recipients', { token: jwt })).statusCode)
      // 1 OAuth call + 7 embedded calls = 8 of 10: 2 left, which is the reserve (20 %).
      t.same(statuses, [200, 200, 200, 200, 200, 200, 200, 503, 503, 503], 'seven tokens, then the platform\'s share is kept')
      t.equal(emulator.control.calls.total, 8)
    })
  }
})

t.test('through the broker: at the reserve, 503 with Retry-After and no further Mangopay call until the reset', async t => {
  const clock = new ManualClock(NOW)
  const { app, emulator } = await buildTestApp(t, {
    env: { MANGOPAY_QUOTA_RESERVE: '0.2' },
    emulator: { clock, quota: [{ limit: 10, periodS: 900 }, { limit: 1000, periodS: 3600 }] },
    deps: { clock }
  })
  const jwt = await tokenFor(USER_A)
  // 1 OAuth call + 7 embedded calls = 8 of 10: 2 left, which is the reserve (20 %).
  for (let i = 0; i < 7; i++) {
    const res = await post(app, '/v1/tokens/recipients', { token: jwt })
    t.equal(res.statusCode, 200, `call ${i + 1} within the broker's share`)
  }
  t.equal(emulator.control.calls.total, 8)
  const refused = await post(app, '/v1/tokens/checkout', { token: jwt })
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().code, 'upstream_unavailable')
  t.equal(refused.headers['retry-after'], '900', 'Retry-After counts down to the window reset')
  t.notMatch(refused.body, /rec_|chk_/)

  const ready = await opsGet(app, '/readyz')
  t.equal(ready.statusCode, 200, 'the quota view is information in /readyz, not its status')
  t.equal(ready.json().checks.quota.windows.length, 2)
  t.equal(ready.json().checks.quota.blocked.reason, 'reserve')

  for (let i = 0; i < 5; i++) await post(app, '/v1/tokens/recipients', { token: jwt })
  t.equal(emulator.control.calls.total, 8, 'no Mangopay call while paused')

  clock.advance(900_000)
  const resumed = await post(app, '/v1/tokens/recipients', { token: jwt })
  t.equal(resumed.statusCode, 200, 'calls resume once the window has reset')
  t.equal(emulator.control.calls.total, 9)
})

t.test('through the broker: a Mangopay 429 pauses calls the same way', async t => {
  const clock = new ManualClock(NOW)
  const { app, emulator, logs } = await buildTestApp(t, { emulator: { clock }, deps: { clock } })
  const jwt = await tokenFor(USER_A)
  t.equal((await post(app, '/v1/tokens/recipients', { token: jwt })).statusCode, 200)
  emulator.control.setRemaining([0, 4000, 8000, 100000])
  const limited = await post(app, '/v1/tokens/recipients', { token: jwt })
  t.equal(limited.statusCode, 503)
  t.equal(limited.json().code, 'upstream_unavailable')
  t.ok(Number(limited.headers['retry-after']) > 0 && Number(limited.headers['retry-after']) <= 900, 'Retry-After from X-RateLimit-Reset')
  const callsAfter429 = emulator.control.calls.total
  for (let i = 0; i < 5; i++) {
    const res = await post(app, '/v1/tokens/checkout', { token: jwt })
    t.equal(res.statusCode, 503)
  }
  t.equal(emulator.control.calls.total, callsAfter429, 'zero further Mangopay calls until the reset')
  t.ok(logs.lines().some(l => l.msg === 'Mangopay quota guard: calls paused until the window resets'), 'the pause is logged with the quota view')
  clock.advance(900_000)
  emulator.control.reset()
  t.equal((await post(app, '/v1/tokens/checkout', { token: jwt })).statusCode, 200, 'recovers after the reset')
})
