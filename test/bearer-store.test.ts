import t from 'tap'
import { setImmediate as tick } from 'node:timers/promises'
import { ManualClock } from './manual-clock.js'
import { BrokerError } from '../src/errors.js'
import {
  BearerStore, clampLifetime, HARD_MARGIN_MS, MAX_LIFETIME_S, MIN_LIFETIME_S, refreshAtFor, REFUSAL_MEMORY_MS, YOUNG_BEARER_MS,
  type Bearer, type BearerEvent, type BearerGrant, type SharedBearers
} from '../src/mangopay/bearer-store.js'

/**
 * The bearer store on its own: a ManualClock and a fetchBearer whose answers the test settles
 * by hand, so "is the caller still waiting?" and "how many OAuth calls?" are exact.
 */

interface PendingFetch {
  resolve: (grant: BearerGrant) => void
  reject: (error: unknown) => void
}

/** With Mangopay's Sandbox lifetime (1200 s) the store refreshes from 80 % of it on. */
const LIFETIME_S = 1200
const REFRESH_AT_MS = 960_000
const UNUSABLE_AT_MS = LIFETIME_S * 1000 - HARD_MARGIN_MS

function setup (shared?: SharedBearers) {
  const clock = new ManualClock()
  const start = clock.now()
  const fetches: PendingFetch[] = []
  const events: BearerEvent[] = []
  const store = new BearerStore({
    clock,
    shared,
    fetchBearer: async () => await new Promise<BearerGrant>((resolve, reject) => { fetches.push({ resolve, reject }) }),
    onEvent: event => events.push(event)
  })

  /** Answers OAuth call number `index` (0-based) with `token`. */
  function answer (index: number, token: string, expiresIn: unknown = LIFETIME_S): void {
    const pending = fetches[index]
    if (pending === undefined) throw new Error(`fetch #${index} was never started (${fetches.length} started)`)
    pending.resolve({ accessToken: token, expiresIn })
  }

  function fail (index: number, error: unknown = new Error('oauth refused')): void {
    const pending = fetches[index]
    if (pending === undefined) throw new Error(`fetch #${index} was never started (${fetches.length} started)`)
    pending.reject(error)
  }

  /** Cold start: the first caller fetches bearer-1 and gets it. */
  async function warm (): Promise<void> {
    const first = store.current()
    answer(fetches.length - 1, 'bearer-1')
    await first
  }

  /** Moves the clock to `ms` after the start. */
  function at (ms: number): void {
    clock.set(start + ms)
  }

  return { clock, start, fetches, events, store, answer, fail, warm, at }
}

/** Whether `promise` has settled once pending callbacks have run. */
async function settled (promise: Promise<unknown>): Promise<boolean> {
  let done = false
  promise.then(() => { done = true }, () => { done = true })
  await tick()
  await tick()
  return done
}

/** The error `promise` has rejected with once pending callbacks have run; undefined if it has not. */
async function rejectionOf (promise: Promise<unknown>): Promise<unknown> {
  let error: unknown
  promise.catch((err: unknown) => { error = err })
  await tick()
  await tick()
  return error
}

/** What the client's OAuth call throws when Mangopay refuses the credentials (400/401/403). */
function credentialsRefused (detail = 'refused'): BrokerError {
  return new BrokerError('upstream_auth_failed', detail)
}

t.test('a fresh bearer is reused: one OAuth call until the refresh point', async t => {
  const { store, fetches, warm, at } = setup()
  await warm()
  t.equal(fetches.length, 1)
  for (const ms of [0, 1, 60_000, 600_000, REFRESH_AT_MS - 1]) {
    at(ms)
    t.equal(await store.current(), 'bearer-1', `same bearer at +${ms} ms`)
  }
  t.equal(fetches.length, 1, 'no further OAuth call while the bearer is fresh')
})

t.test('from refreshAt on: the caller gets the old bearer at once, one refresh runs, the next caller gets the new one', async t => {
  const { store, fetches, events, warm, at, answer } = setup()
  await warm()
  const held = store.peek()
  t.equal(held?.refreshAt, (held?.obtainedAt ?? 0) + REFRESH_AT_MS, 'refresh point at 80 % of 1200 s')

  at(REFRESH_AT_MS)
  const first = store.current()
  t.ok(await settled(first), 'the caller does not wait for the refresh')
  t.equal(await first, 'bearer-1', 'and gets the still-valid bearer')
  t.equal(fetches.length, 2, 'exactly one refresh started')

  const during = await Promise.all(Array.from({ length: 20 }, async () => await store.current()))
  t.same(new Set(during), new Set(['bearer-1']), 'callers during the refresh keep the old bearer')
  t.equal(fetches.length, 2, 'and start no other refresh')

  answer(1, 'bearer-2')
  await tick()
  t.equal(await store.current(), 'bearer-2', 'the next caller gets the new bearer')
  t.equal(fetches.length, 2)
  t.same(events.filter(e => e.type === 'refreshed').map(e => e.type === 'refreshed' && e.background), [false, true])
})

t.test('hard margin: in the last 30 s the store waits for a new bearer', async t => {
  t.test('just before the margin the old bearer is still served', async t => {
    const { store, fetches, warm, at } = setup()
    await warm()
    at(UNUSABLE_AT_MS - 1)
    const early = store.current()
    t.ok(await settled(early))
    t.equal(await early, 'bearer-1')
    t.equal(fetches.length, 2, 'while a refresh runs in the background')
  })

  t.test('at the margin, callers wait; all of them share one OAuth call', async t => {
    const { store, fetches, warm, at, answer } = setup()
    await warm()
    at(UNUSABLE_AT_MS)
    t.equal(store.peek(), undefined, 'the bearer is no longer offered')
    const waiting = Array.from({ length: 10 }, async () => await store.current())
    t.notOk(await settled(Promise.all(waiting)), 'callers wait')
    t.equal(fetches.length, 2, 'one OAuth call for all of them')
    answer(1, 'bearer-2')
    t.same(new Set(await Promise.all(waiting)), new Set(['bearer-2']), 'and all get the new bearer, never the old one')
  })

  t.test('a background refresh still running at the margin is joined, not duplicated', async t => {
    const { store, fetches, warm, at, answer } = setup()
    await warm()
    at(REFRESH_AT_MS)
    t.equal(await store.current(), 'bearer-1')
    at(UNUSABLE_AT_MS + 5000)
    const waiting = store.current()
    t.notOk(await settled(waiting))
    t.equal(fetches.length, 2)
    answer(1, 'bearer-2')
    t.equal(await waiting, 'bearer-2')
  })

  t.test('long after expiry the store fetches before answering', async t => {
    const { store, fetches, warm, at, answer } = setup()
    await warm()
    at(10 * LIFETIME_S * 1000)
    const waiting = store.current()
    t.notOk(await settled(waiting))
    t.equal(fetches.length, 2)
    answer(1, 'bearer-2')
    t.equal(await waiting, 'bearer-2')
  })
})

t.test('single flight: 500 concurrent callers on a cold store make one OAuth call', async t => {
  const { store, fetches, answer } = setup()
  const callers = Array.from({ length: 500 }, async () => await store.current())
  t.equal(fetches.length, 1)
  answer(0, 'bearer-1')
  const tokens = await Promise.all(callers)
  t.equal(tokens.length, 500)
  t.same(new Set(tokens), new Set(['bearer-1']), 'all get the same bearer')
  t.equal(fetches.length, 1)
})

t.test('a failed OAuth call is not cached: all waiters fail, the next call tries again', async t => {
  const { store, fetches, events, answer, fail } = setup()
  const waiters = Array.from({ length: 10 }, async () => await store.current())
  t.equal(fetches.length, 1)
  const refused = new Error('oauth refused')
  fail(0, refused)
  const outcomes = await Promise.allSettled(waiters)
  t.same(outcomes.map(o => o.status), Array(10).fill('rejected'), 'every waiter is rejected')
  t.ok(outcomes.every(o => o.status === 'rejected' && o.reason === refused), 'with the OAuth error')
  t.equal(store.peek(), undefined, 'nothing is held')
  t.match(events.at(-1), { type: 'refresh_failed', background: false, error: refused })

  const retry = store.current()
  t.equal(fetches.length, 2, 'the next call fetches again')
  answer(1, 'bearer-2')
  t.equal(await retry, 'bearer-2')

  t.test('also after a failed refresh at the hard margin', async t => {
    const { store, fetches, warm, at, fail, answer } = setup()
    await warm()
    at(UNUSABLE_AT_MS)
    const waiting = store.current()
    fail(1)
    await t.rejects(waiting, /oauth refused/)
    const again = store.current()
    t.equal(fetches.length, 3, 'no backoff for callers that need a bearer now')
    answer(2, 'bearer-2')
    t.equal(await again, 'bearer-2')
  })
})

t.test('a failing background refresh backs off instead of running on every call', async t => {
  const { store, fetches, events, warm, at, fail, answer } = setup()
  await warm()
  at(REFRESH_AT_MS)
  t.equal(await store.current(), 'bearer-1')
  t.equal(fetches.length, 2)
  fail(1)
  await tick()
  t.match(events.at(-1), { type: 'refresh_failed', background: true })

  for (let i = 0; i < 50; i++) t.equal(await store.current(), 'bearer-1')
  t.equal(fetches.length, 2, 'no refresh on each of 50 calls right after the failure')
  at(REFRESH_AT_MS + 999)
  await store.current()
  t.equal(fetches.length, 2, 'still backing off after 999 ms')
  at(REFRESH_AT_MS + 1000)
  t.equal(await store.current(), 'bearer-1')
  t.equal(fetches.length, 3, 'one new attempt after the first backoff (1 s)')

  fail(2)
  await tick()
  at(REFRESH_AT_MS + 1000 + 1999)
  await store.current()
  t.equal(fetches.length, 3, 'the backoff grows: nothing after 1999 ms')
  at(REFRESH_AT_MS + 1000 + 2000)
  await store.current()
  t.equal(fetches.length, 4, 'a new attempt after 2 s')

  answer(3, 'bearer-2')
  await tick()
  t.equal(await store.current(), 'bearer-2', 'a success replaces the bearer')
  t.equal(fetches.length, 4)
})

t.test('expires_in is clamped into a sane lifetime', async t => {
  const cases: Array<[string, unknown, number, boolean]> = [
    ['0', 0, MIN_LIFETIME_S, true],
    ['-5', -5, MIN_LIFETIME_S, true],
    ['missing', undefined, MIN_LIFETIME_S, true],
    ['null', null, MIN_LIFETIME_S, true],
    ["'abc'", 'abc', MIN_LIFETIME_S, true],
    ["''", '', MIN_LIFETIME_S, true],
    ['NaN', Number.NaN, MIN_LIFETIME_S, true],
    ['Infinity', Number.POSITIVE_INFINITY, MIN_LIFETIME_S, true],
    ['10^9', 1e9, MAX_LIFETIME_S, true],
    ["'1200' (a string)", '1200', 1200, false],
    ['1200', 1200, 1200, false],
    ['3600', 3600, 3600, false],
    ['1199.7', 1199.7, 1199, false]
  ]
  t.equal(MIN_LIFETIME_S, 60)
  t.equal(MAX_LIFETIME_S, 86_400)

  for (const [label, expiresIn, seconds, clamped] of cases) {
    t.test(`expires_in ${label} → ${seconds} s`, async t => {
      t.same(clampLifetime(expiresIn), { seconds, clamped })

      const { store, fetches, events, at } = setup()
      const first = store.current()
      // Sent as is: a missing field really is missing, not defaulted.
      const grant = (expiresIn === undefined ? { accessToken: 'bearer-1' } : { accessToken: 'bearer-1', expiresIn }) as BearerGrant
      fetches[0]?.resolve(grant)
      t.equal(await first, 'bearer-1', 'the first caller gets the bearer')
      const held = store.peek()
      t.ok(held, 'the bearer is held')
      t.equal((held?.expiresAt ?? 0) - (held?.obtainedAt ?? 0), seconds * 1000)
      t.match(events, [{ type: 'refreshed', lifetimeS: seconds, clamped }])
      t.ok((held?.refreshAt ?? Infinity) <= (held?.expiresAt ?? 0) - HARD_MARGIN_MS, 'refreshed no later than 30 s before expiry')
      t.equal(await store.current(), 'bearer-1', 'the bearer is used')
      at(1000)
      t.equal(await store.current(), 'bearer-1', 'and still a second later')
      t.equal(fetches.length, 1, 'without an OAuth call per request')
    })
  }
})

t.test('invalidate(token) drops only the bearer it names', async t => {
  const { store, fetches, events, warm, answer } = setup()
  await warm()

  store.invalidate('some-other-bearer')
  t.equal(store.peek()?.token, 'bearer-1', 'another token leaves the bearer in place')
  t.equal(await store.current(), 'bearer-1')
  t.equal(fetches.length, 1)
  t.notOk(events.some(e => e.type === 'invalidated'))

  store.invalidate('bearer-1')
  t.equal(store.peek(), undefined, 'the named bearer is dropped')
  t.match(events.at(-1), { type: 'invalidated' })
  const next = store.current()
  t.equal(fetches.length, 2, 'the next caller fetches a new one')
  answer(1, 'bearer-2')
  t.equal(await next, 'bearer-2')

  // A request that saw bearer-1 refused after another request already re-authenticated.
  store.invalidate('bearer-1')
  t.equal(store.peek()?.token, 'bearer-2', 'a stale token does not drop its replacement')
  t.equal(await store.current(), 'bearer-2')
  t.equal(fetches.length, 2)
})

t.test('refresh() fetches whatever the bearer age and joins a running fetch', async t => {
  const { store, fetches, warm, answer } = setup()
  await warm()
  const a = store.refresh()
  const b = store.refresh()
  t.equal(fetches.length, 2, 'one OAuth call for two refresh() calls')
  answer(1, 'bearer-2')
  t.equal((await a).token, 'bearer-2')
  t.equal((await b).token, 'bearer-2')
  t.equal(await store.current(), 'bearer-2')
})

t.test('refreshAfterCredentialChange() waits for a refresh in flight, then makes an OAuth call of its own', async t => {
  const { store, fetches, warm, at, answer } = setup()
  await warm()
  at(REFRESH_AT_MS)
  t.equal(await store.current(), 'bearer-1')
  t.equal(fetches.length, 2, 'a background refresh is in flight, with the old credentials')

  const rotation = store.refreshAfterCredentialChange()
  t.equal(fetches.length, 2, 'it is not duplicated while it runs')
  answer(1, 'bearer-old-key')
  t.notOk(await settled(rotation), 'nor joined')
  t.equal(fetches.length, 3, 'a new OAuth call starts once it is done')
  const other = store.refresh()
  t.equal(fetches.length, 3, 'and everyone else joins that one')
  answer(2, 'bearer-new-key')
  t.equal((await rotation).token, 'bearer-new-key')
  t.equal((await other).token, 'bearer-new-key')
  t.equal(await store.current(), 'bearer-new-key')
})

t.test('refreshAfterCredentialChange(): the outcome of the refresh in flight does not count, its own does', async t => {
  const { store, fetches, warm, at, fail, answer } = setup()
  await warm()
  at(REFRESH_AT_MS)
  await store.current()
  const rotation = store.refreshAfterCredentialChange()
  fail(1)
  t.notOk(await settled(rotation), 'a failure with the old credentials is not the answer')
  answer(2, 'bearer-2')
  t.equal((await rotation).token, 'bearer-2')

  const refused = new Error('new credentials refused')
  const again = store.refreshAfterCredentialChange()
  t.equal(fetches.length, 4, 'with nothing in flight it calls at once')
  fail(3, refused)
  await t.rejects(again, refused, 'its own failure is reported')
  t.equal(store.peek()?.token, 'bearer-2', 'and the current bearer stays')
})

t.test('refreshAfterCredentialChange() adopts no shared bearer: it may come from the old credentials', async t => {
  // What other instances shared.
  const stored: Bearer[] = []
  const shared: SharedBearers = {
    obtain: async (accept, fetch) => stored.find(accept) ?? await fetch(),
    discard: () => {}
  }
  const { store, clock, fetches, warm, at, answer } = setup(shared)
  await warm()
  at(60_000)
  const expiresAt = clock.now() + LIFETIME_S * 1000
  stored.push({ token: 'bearer-other-instance', obtainedAt: clock.now(), expiresAt, refreshAt: refreshAtFor(clock.now(), expiresAt) })

  const rotation = store.refreshAfterCredentialChange()
  t.equal(fetches.length, 2, 'an OAuth call, though a newer shared bearer is there')
  answer(1, 'bearer-2')
  t.equal((await rotation).token, 'bearer-2')
  t.equal((await store.refresh()).token, 'bearer-other-instance', 'which an ordinary refresh would adopt')
  t.equal(fetches.length, 2)
})

t.test('isYoung(token, at, kind): only the bearer that replaced a refused one, not accepted for that kind since, less than YOUNG_BEARER_MS after it was obtained', async t => {
  const { store, fetches, start, warm, answer, at } = setup()
  await warm()
  t.notOk(store.isYoung('bearer-1', start + 1, 'checkout'), 'a bearer fetched for no refusal is never young: a 401 on it gets a new one')

  at(1000)
  store.invalidate('bearer-1')
  const replacement = store.current()
  answer(fetches.length - 1, 'bearer-2')
  await replacement
  t.ok(store.isYoung('bearer-2', start + 1000 + YOUNG_BEARER_MS - 1, 'checkout'), 'its replacement is young just before')
  t.notOk(store.isYoung('bearer-2', start + 1000 + YOUNG_BEARER_MS, 'checkout'), 'no longer from then on')
  t.notOk(store.isYoung('bearer-1', start + 1000, 'checkout'), 'a bearer no longer held is not young')

  store.accepted('bearer-2', 'recipient')
  t.notOk(store.isYoung('bearer-2', start + 1001, 'recipient'), 'accepted for a kind: a 401 for that kind is news')
  t.ok(store.isYoung('bearer-2', start + 1001, 'checkout'), 'but not for another kind (a key without its rights)')
  store.accepted('bearer-1', 'checkout')
  t.ok(store.isYoung('bearer-2', start + 1001, 'checkout'), 'an acceptance of a bearer no longer held changes nothing')

  at(2000)
  store.invalidate('bearer-2')
  const next = store.current()
  answer(fetches.length - 1, 'bearer-3')
  await next
  t.ok(store.isYoung('bearer-3', start + 2001, 'recipient'), 'a new bearer starts with no acceptance')
})

t.test('a refusal of the credentials is remembered for REFUSAL_MEMORY_MS: needs meanwhile get it again, without an OAuth call', async t => {
  const { store, fetches, events, at, fail, answer } = setup()
  const refused = credentialsRefused()
  const first = store.current()
  fail(0, refused)
  await t.rejects(first, refused)

  for (const ms of [0, REFUSAL_MEMORY_MS - 1]) {
    at(ms)
    t.equal(await rejectionOf(store.current()), refused, `+${ms} ms: a need gets the same refusal at once`)
    t.equal(await rejectionOf(store.refresh()), refused, 'and so does readiness')
  }
  t.equal(fetches.length, 1, 'without an OAuth call')
  t.equal(events.filter(e => e.type === 'refresh_failed').length, 1, 'nor a refresh reported as failed')

  at(REFUSAL_MEMORY_MS)
  const again = store.current()
  t.equal(fetches.length, 2, 'once the memory lapses, Mangopay is asked again')
  answer(1, 'bearer-1')
  t.equal(await again, 'bearer-1')

  for (const code of ['upstream_unavailable', 'upstream_timeout', 'upstream_error'] as const) {
    const transient = setup()
    const failed = transient.store.current()
    transient.fail(0, new BrokerError(code, 'Mangopay is failing'))
    await t.rejects(failed)
    transient.store.current().catch(() => {})
    t.equal(transient.fetches.length, 2, `${code} is not a refusal: not remembered`)
  }
})

t.test('refreshAfterCredentialChange() calls OAuth despite a remembered refusal, and does not remember its own', async t => {
  const { store, fetches, fail, answer } = setup()
  const refused = credentialsRefused('old key refused')
  const first = store.current()
  fail(0, refused)
  await t.rejects(first, refused)
  t.equal(await rejectionOf(store.current()), refused, 'the refusal is remembered')

  const wrongKey = store.refreshAfterCredentialChange()
  t.equal(fetches.length, 2, 'new credentials are tried at once')
  fail(1, credentialsRefused('new key refused'))
  await t.rejects(wrongKey, /new key refused/, 'their refusal is reported')
  t.equal(await rejectionOf(store.current()), refused, 'but not remembered: the caller puts the previous credentials back')

  const goodKey = store.refreshAfterCredentialChange()
  t.equal(fetches.length, 3)
  answer(2, 'bearer-new-key')
  t.equal((await goodKey).token, 'bearer-new-key')
  store.invalidate('bearer-new-key')
  store.current().catch(() => {})
  t.equal(fetches.length, 4, 'a bearer obtained forgets the refusal')
})

t.test('a 401 on a bearer a refresh ahead replaced meanwhile: the replacement goes too, unless obtained after the refused call', async t => {
  const { store, clock, fetches, warm, at, answer } = setup()
  await warm()
  at(REFRESH_AT_MS - 1)
  const sentBeforeRefresh = clock.now()
  at(REFRESH_AT_MS)
  t.equal(await store.current(), 'bearer-1', 'a call is sent with bearer-1, and a refresh ahead starts')
  answer(1, 'bearer-2')
  await tick()
  store.invalidate('bearer-1', sentBeforeRefresh)
  t.equal(store.peek()?.token, 'bearer-2', 'a replacement requested after the refused call stays')

  at(REFRESH_AT_MS + REFRESH_AT_MS)
  const sentAt = clock.now()
  t.equal(await store.current(), 'bearer-2', 'another call, another refresh ahead')
  answer(2, 'bearer-3')
  await tick()
  t.equal(store.peek()?.token, 'bearer-3', 'which replaces bearer-2 before the 401 on it comes back')
  store.invalidate('bearer-2', sentAt)
  t.equal(store.peek(), undefined, 'bearer-3, requested no later than the refused call, may have been revoked with it: it goes too')
  const renewed = store.current()
  t.equal(fetches.length, 4, 'a need fetches a new one')
  answer(3, 'bearer-4')
  t.equal(await renewed, 'bearer-4')

  store.invalidate('bearer-2', sentAt)
  t.equal(store.peek()?.token, 'bearer-4', 'a bearer fetched once none was usable stays, though obtained at the same instant')
  t.equal(fetches.length, 4)
})
