import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { ManualClock } from './manual-clock.js'
import { FORWARD_CACHE_MAX_ENTRIES } from '../src/auth/forward.js'
import { BUDGET_ENTRIES, FAILED_AUTH_LIMIT_ENTRIES, USER_LIMIT_ENTRIES } from '../src/limits/index.js'
import { MemoryRateLimitStore } from '../src/limits/store.js'

/**
 * Bounded memory (STYLE, issue 3 §7): 200,000 distinct users, client addresses and session
 * credentials go through the per-user limiter, the fair quota's budgets, the failed-authentication
 * limiter and the forward-auth cache. Each keeps at most its stated number of entries, and the heap they retain
 * stays under a stated bound. The work runs in a process of its own (test/fixtures/
 * fill-bounded-maps.ts) so the heap figure is not the test runner's. It counts, it does not time.
 */

const DISTINCT = 200_000
/**
 * All of them full retain about 24 MiB; were any one of them unbounded, 200,000 entries
 * would push it past 45 MiB.
 */
const RETAINED_HEAP_BOUND_BYTES = 40 * 1024 * 1024

const root = fileURLToPath(new URL('..', import.meta.url))
const fixture = fileURLToPath(new URL('./fixtures/fill-bounded-maps.ts', import.meta.url))

interface Filled {
  userEntries: number
  failedAuthEntries: number
  forwardEntries: number
  budgetUserEntries: number
  budgetSessionEntries: number
  lastUserCount: number
  retainedBytes: number
}

t.test(`${DISTINCT} distinct users, addresses and sessions: every map stays at its bound`, async t => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--import', 'tsx', fixture, String(DISTINCT)], { cwd: root, timeout: 110_000 })
  const filled = JSON.parse(stdout) as Filled
  t.equal(filled.userEntries, USER_LIMIT_ENTRIES, `per-user counters: ${USER_LIMIT_ENTRIES} entries, not ${DISTINCT}`)
  t.equal(filled.failedAuthEntries, FAILED_AUTH_LIMIT_ENTRIES, `failed-auth counters: ${FAILED_AUTH_LIMIT_ENTRIES} entries, not ${DISTINCT}`)
  t.equal(filled.forwardEntries, FORWARD_CACHE_MAX_ENTRIES, `forward-auth cache: ${FORWARD_CACHE_MAX_ENTRIES} entries, not ${DISTINCT}`)
  t.equal(filled.budgetUserEntries, BUDGET_ENTRIES, `token budgets, users: ${BUDGET_ENTRIES} entries, not ${DISTINCT}`)
  t.equal(filled.budgetSessionEntries, BUDGET_ENTRIES, `token budgets, sessions: ${BUDGET_ENTRIES} entries, not ${DISTINCT}`)
  t.equal(filled.lastUserCount, 1, 'at the bound the limiter still counts the most recent user')
  t.ok(filled.retainedBytes < RETAINED_HEAP_BOUND_BYTES,
    `retained heap grew by ${(filled.retainedBytes / 1024 / 1024).toFixed(1)} MiB (bound ${RETAINED_HEAP_BOUND_BYTES / 1024 / 1024} MiB)`)
})

t.test('the in-memory counters forget the least recently seen key first', async t => {
  const store = new MemoryRateLimitStore({ clock: new ManualClock(), maxEntries: 3 })
  const count = async (key: string) => await new Promise<number>(resolve => store.incr(key, (_err, res) => resolve(res?.current ?? -1), 60_000))
  const peek = async (key: string) => await new Promise<number>(resolve => store.read(key, (_err, res) => resolve(res?.current ?? -1)))
  await count('a')
  await count('a')
  await count('b')
  await count('c')
  await count('a')
  await count('d')
  t.equal(store.size, 3)
  t.equal(await peek('b'), 0, 'b, the least recently seen, was forgotten')
  t.equal(await peek('a'), 3, 'a, seen recently, kept its count')
  t.equal(await peek('d'), 1)
})
