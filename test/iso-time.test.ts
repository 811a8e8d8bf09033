import t from 'tap'
import { isoFormatter } from '../src/fast-paths/index.js'

/** The formatter is `Date.prototype.toISOString` made cheaper: it must agree with it everywhere. */

const DAY_MS = 86_400_000

t.test('agrees with toISOString on day boundaries, leap days and any millisecond', async t => {
  const toIso = isoFormatter()
  const cases: number[] = [0, 1, 999, 1000, DAY_MS - 1, DAY_MS, DAY_MS + 1]
  for (const [y, m, d] of [[2024, 1, 29], [2000, 1, 29], [2100, 1, 28], [2100, 2, 1], [2026, 11, 31], [2027, 0, 1], [9999, 11, 31]] as const) {
    const start = Date.UTC(y, m, d)
    cases.push(start - 1, start, start + 1, start + DAY_MS - 1, start + 43_199_999, start + 3_600_000 * 23 + 60_000 * 59 + 59_999)
  }
  // Spread over 1970–9999, each followed by values a day either side: the day part is cached.
  let seed = 42
  for (let i = 0; i < 2000; i++) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    const ms = Math.floor((seed / 2 ** 31) * 253_402_300_799_999)
    cases.push(ms, ms + DAY_MS, ms - DAY_MS, ms)
  }
  for (const ms of cases) {
    const expected = new Date(ms).toISOString()
    if (toIso(ms) !== expected) t.fail(`${ms}: ${toIso(ms)} where toISOString gives ${expected}`)
  }
  t.pass(`${cases.length} instants agree`)
})

t.test('what it does not format itself is toISOString\'s, errors included', async t => {
  const toIso = isoFormatter()
  for (const ms of [-1, -DAY_MS - 5, 1.5, 253_402_300_800_000, 8.64e15]) t.equal(toIso(ms), new Date(ms).toISOString(), String(ms))
  t.throws(() => toIso(Number.NaN), RangeError)
  t.throws(() => toIso(8.64e15 + 1), RangeError)
})
