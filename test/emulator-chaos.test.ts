import t from 'tap'
import { Agent, request } from 'undici'
import { ManualClock } from './manual-clock.js'
import { startEmulator, type ChaosPlan, type Emulator } from '../src/emulator/index.js'

/** The emulator's random faults: drawn from a seed, so the same seed replays the same faults. */

const CLIENT_ID = 'acme-client'
const API_KEY = 'embedded-key'
const OAUTH = '/v2.01/oauth/token'
const OAUTH_CALL = {
  method: 'POST' as const,
  headers: { authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${API_KEY}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
  body: 'grant_type=client_credentials'
}

interface Teardown { teardown: (fn: () => unknown) => void }

async function setup (t: Teardown, controlEnabled = false): Promise<{ emulator: Emulator, clock: ManualClock, agent: Agent }> {
  const clock = new ManualClock()
  const emulator = await startEmulator({ clientId: CLIENT_ID, apiKey: API_KEY, clock, controlEnabled })
  const agent = new Agent()
  t.teardown(async () => {
    await emulator.close()
    await agent.destroy()
  })
  return { emulator, clock, agent }
}

/** What one OAuth call met: its status, or 'reset' / 'hang' when no answer came. */
async function outcome (emulator: Emulator, agent: Agent, headersTimeout = 10_000): Promise<string> {
  try {
    const res = await request(emulator.url + OAUTH, { ...OAUTH_CALL, dispatcher: agent, headersTimeout })
    await res.body.text()
    return String(res.statusCode)
  } catch (err) {
    return (err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT' ? 'hang' : 'reset'
  }
}

async function run (t: Teardown, plan: ChaosPlan, calls: number): Promise<{ outcomes: string[], emulator: Emulator }> {
  const { emulator, agent } = await setup(t)
  emulator.control.chaos(plan)
  const outcomes: string[] = []
  for (let i = 0; i < calls; i++) outcomes.push(await outcome(emulator, agent))
  return { outcomes, emulator }
}

const MIXED = { reset: 0.2, error: 0.2, rate_limited: 0.2 }

t.test('the same seed draws the same faults; another seed, others', async t => {
  const first = await run(t, { seed: 42, chances: MIXED }, 40)
  const again = await run(t, { seed: 42, chances: MIXED }, 40)
  const other = await run(t, { seed: 43, chances: MIXED }, 40)
  t.same(again.outcomes, first.outcomes, 'replayed')
  t.notSame(other.outcomes, first.outcomes)
  t.same(new Set(first.outcomes), new Set(['reset', '500', '429', '200']), 'each mode and normal answers')
  const count = (status: string): number => first.outcomes.filter(o => o === status).length
  t.same(first.emulator.control.chaosDrawn, { reset: count('reset'), hang: 0, error: count('500'), rate_limited: count('429'), none: count('200') })
  t.equal(first.emulator.control.calls.oauth, 40, 'every faulted call is counted')
})

t.test('a hang never answers; clearFaults ends the chaos', async t => {
  const { emulator, agent } = await setup(t)
  emulator.control.chaos({ seed: 1, target: 'oauth', chances: { hang: 1 } })
  t.equal(await outcome(emulator, agent, 200), 'hang')
  emulator.control.clearFaults()
  t.equal(await outcome(emulator, agent), '200')
  t.same(emulator.control.chaosDrawn, { reset: 0, hang: 1, error: 0, rate_limited: 0, none: 0 })
})

t.test('a random 429 shows the shortest window spent until it resets, the others as they are', async t => {
  const { emulator, clock, agent } = await setup(t)
  emulator.control.chaos({ seed: 7, chances: { rate_limited: 1 }, rateLimitResetS: 2 })
  const res = await request(emulator.url + OAUTH, { ...OAUTH_CALL, dispatcher: agent })
  t.equal(res.statusCode, 429)
  t.match(await res.body.json(), { Type: 'rate_limit', Message: /Rate limit exceeded/ })
  const nowS = Math.ceil(clock.now() / 1000)
  t.equal(res.headers['x-ratelimit'], '2300, 1, 1, 1')
  t.equal(res.headers['x-ratelimit-remaining'], '0, 4499, 8799, 105599')
  t.equal(res.headers['x-ratelimit-reset'], `${nowS + 2}, ${nowS + 1800}, ${nowS + 3600}, ${nowS + 86400}`)
})

t.test('targets: embedded chaos leaves OAuth alone', async t => {
  const { outcomes } = await run(t, { seed: 3, target: 'embedded', chances: { error: 1 } }, 3)
  t.same(outcomes, ['200', '200', '200'])
})

t.test('a plan that cannot run is refused, in code and over the control API', async t => {
  const { emulator } = await setup(t, true)
  t.throws(() => emulator.control.chaos({ seed: 1, chances: { reset: 0.6, error: 0.6 } }), RangeError)
  t.throws(() => emulator.control.chaos({ seed: 1.5, chances: {} }), RangeError)
  t.throws(() => emulator.control.chaos({ seed: 1, chances: { meltdown: 0.1 } as ChaosPlan['chances'] }), RangeError)
  const post = async (body: unknown): Promise<number> => (await request(`${emulator.url}/__emulator/chaos`, { method: 'POST', body: JSON.stringify(body) })).statusCode
  t.equal(await post({ seed: 1, chances: { hang: 2 } }), 400)
  t.equal(await post({ seed: 1, target: 'nowhere', chances: {} }), 400)
  t.equal(await post({ seed: 9, target: 'checkout', chances: { error: 1 } }), 204)
  const drawn = await request(`${emulator.url}/__emulator/chaos`)
  t.same(await drawn.body.json(), { reset: 0, hang: 0, error: 0, rate_limited: 0, none: 0 })
})
