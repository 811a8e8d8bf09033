import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { MemoryBudgetStore, type Admission, type BudgetStore, type ShareView } from '../src/limits/budget-store.js'
import { RedisBudgetStore } from '../src/limits/budget-store-redis.js'
import { sessionKey, shareView } from '../src/limits/token-budgets.js'
import { ManualClock } from './manual-clock.js'

/**
 * The fair quota's admission on its own (limits/budget-store.ts), and the same steps in Redis's
 * Lua script: both stores are driven through identical sequences and must agree.
 */

const NOW = Date.UTC(2026, 10, 28, 10, 0, 0)
const LIMITS = { perUser: 3, perSession: 5, windowMs: 60_000 }
const RESET = NOW + 900_000

type Outcome = string

const outcome = (a: Admission): Outcome => a.admitted ? (a.firstOfWindow ? 'first' : 'ok') : `${a.reason}:${a.retryAfterMs}`

/** Both stores, each with its own clock; `run` drives them alike and returns both outcomes. */
async function bothStores (t: Test): Promise<{ clocks: ManualClock[], run: (user: string, session: string, view?: ShareView) => Promise<Outcome[]> }> {
  const prefix = `broker-test-budget-${randomUUID()}:`
  const redis = new Redis('redis://127.0.0.1:6379', { keyPrefix: prefix, maxRetriesPerRequest: 1 })
  const cleaner = new Redis('redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 })
  t.teardown(async () => {
    const keys = await cleaner.keys(`${prefix}*`)
    if (keys.length > 0) await cleaner.del(...keys)
    await Promise.all([redis.quit(), cleaner.quit()])
  })
  const clocks = [new ManualClock(NOW), new ManualClock(NOW)]
  const stores: BudgetStore[] = [
    new MemoryBudgetStore({ clock: clocks[0] as ManualClock, maxEntries: 100 }),
    new RedisBudgetStore({ redis, clock: clocks[1] as ManualClock, scope: 'test' })
  ]
  return {
    clocks,
    run: async (user, session, view) => await Promise.all(stores.map(async s => outcome(await s.admit({ userKey: user, sessionKey: session, view }, LIMITS))))
  }
}

const view = (observedAt: number, left: number, kept: number, resetAt = RESET): ShareView => ({ observedAt, windows: [{ left, kept, resetAt }] })

t.test('budgets per user and per session, each in its own window', async t => {
  const { clocks, run } = await bothStores(t)
  const expect = async (user: string, session: string, wanted: Outcome, why: string) => t.same(await run(user, session), [wanted, wanted], why)
  await expect('u1', 's1', 'first', 'a first mint')
  await expect('u1', 's1', 'ok', 'a second')
  await expect('u1', 's2', 'ok', 'the user\'s budget follows them to another session')
  await expect('u1', 's1', 'user_budget:60000', 'the fourth for the user')
  await expect('u2', 's1', 'first', 'another user of the session')
  await expect('u3', 's1', 'first', 'the session\'s fourth (a refusal is not counted)')
  await expect('u4', 's1', 'first', 'its fifth')
  await expect('u5', 's1', 'session_budget:60000', 'its sixth')
  for (const clock of clocks) clock.advance(59_999)
  await expect('u1', 's3', 'user_budget:1', 'one millisecond left')
  for (const clock of clocks) clock.advance(1)
  await expect('u1', 's1', 'first', 'a new window for both')
})

t.test('the share: repeat users wait while it is low, first tokens go until the reserve', async t => {
  const { run } = await bothStores(t)
  const low = view(NOW - 1000, 4, 2)
  t.same(await run('a', 'sa', low), ['first', 'first'], '4 left, 2 kept: a\'s first')
  t.same(await run('a', 'sa', low), ['ok', 'ok'], 'an estimated 3 left: a may have another')
  t.same(await run('a', 'sa', low), ['first_tokens_first:900000', 'first_tokens_first:900000'], 'an estimated 2 left: kept for first tokens')
  t.same(await run('b', 'sb', low), ['first', 'first'], 'b\'s first')
  t.same(await run('c', 'sc', low), ['first', 'first'], 'c\'s first: the last call above the reserve')
  t.same(await run('d', 'sd', low), ['reserve:900000', 'reserve:900000'], 'none left: even a first token waits for the reset')
  t.same(await run('d', 'sd', view(NOW - 5000, 40, 2)), ['reserve:900000', 'reserve:900000'], 'an older answer does not replace a newer one')
  t.same(await run('d', 'sd', view(NOW, 40, 2)), ['first', 'first'], 'a newer answer does, and restarts the estimate')
  t.same(await run('e', 'se', view(NOW, 0, 2, NOW)), ['first', 'first'], 'a window past its reset no longer counts')
})

t.test('shareView: calls left above the reserve, and the part of the share kept for first tokens', async t => {
  const snapshot = { reserve: 0.2, observedAt: NOW, windows: [{ index: 0, made: 1830, remaining: 470, limit: 2300, resetAt: RESET }] }
  t.same(shareView(snapshot, 0.25), { observedAt: NOW, windows: [{ left: 10, kept: 460, resetAt: RESET }] })
  t.same(shareView(snapshot, 0)?.windows[0]?.kept, 0, 'nothing kept: first tokens have no precedence')
  t.equal(shareView({ reserve: 0.2, observedAt: undefined, windows: [] }, 0.25), undefined, 'no answer read yet')
})

t.test('sessionKey: the verified subject, hashed; sessions without one told apart by their users', async t => {
  const key = sessionKey({ subject: 'idp|alice', mangopayUserIds: ['u1'] })
  t.match(key, /^[A-Za-z0-9_-]{22}$/)
  t.equal(sessionKey({ subject: 'idp|alice', mangopayUserIds: ['u2', 'u3'] }), key, 'the subject, whichever users it lists')
  t.not(sessionKey({ subject: 'idp|bob', mangopayUserIds: ['u1'] }), key)
  const anonymous = sessionKey({ subject: 'unknown', mangopayUserIds: ['u2', 'u1'] })
  t.equal(sessionKey({ subject: 'unknown', mangopayUserIds: ['u1', 'u2'] }), anonymous)
  t.not(sessionKey({ subject: 'unknown', mangopayUserIds: ['u3'] }), anonymous, 'not one bound for every session without a subject')
})

t.test('the in-memory windows are bounded (LRU)', async t => {
  const store = new MemoryBudgetStore({ clock: new ManualClock(NOW), maxEntries: 3 })
  for (const user of ['a', 'b', 'c', 'd']) await store.admit({ userKey: user, sessionKey: `s-${user}`, view: undefined }, LIMITS)
  t.same(store.size, { users: 3, sessions: 3 })
  t.same(outcome(await store.admit({ userKey: 'a', sessionKey: 's-a', view: undefined }, LIMITS)), 'first', 'the least recently seen was forgotten: a fresh window')
})
