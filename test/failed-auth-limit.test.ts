import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { limitFailedAuthentications, MAX_WAITING_PER_ADDRESS, type FailedAuthLimit, type FailedAuthStanding } from '../src/limits/failed-auth.js'
import { BrokerError } from '../src/errors.js'
import type { Authenticator, Session } from '../src/auth/index.js'

/**
 * The turns of one address (limits/failed-auth.ts, where a refusal costs a session call), on
 * their own: at most as many authentications at once as failures are left, the rest waiting;
 * every turn taken is given back, whatever happens. Through the HTTP surface in forward-auth.test.ts.
 */

const SESSION: Session = { subject: 'alice', mangopayUserIds: ['user_1'] }
const request = { ip: '192.0.2.1' } as unknown as FastifyRequest

/** Lets every pending callback run. */
async function flush (): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve))
}

function harness (remaining: number, ttlInSeconds = 60) {
  const pending: Array<(session: Session) => void> = []
  let standingFails = false
  const limit: FailedAuthLimit = {
    async standing (): Promise<FailedAuthStanding> {
      if (standingFails) throw new Error('the store is down')
      return { address: '192.0.2.1', remaining, ttlInSeconds, exceeded: false }
    },
    async record () {
      return { address: '192.0.2.1', remaining, ttlInSeconds, exceeded: false }
    }
  }
  const inner: Authenticator = {
    credentialSource: () => 'header',
    authenticate: async () => await new Promise<Session>(resolve => pending.push(resolve))
  }
  return {
    authenticator: limitFailedAuthentications(inner, limit),
    pending,
    failStanding: (fails: boolean) => { standingFails = fails }
  }
}

t.test('a turn handed to a waiting request is given back when its standing cannot be read', async t => {
  const { authenticator, pending, failStanding } = harness(1)
  const first = authenticator.authenticate(request)
  const second = authenticator.authenticate(request)
  await flush()
  t.equal(pending.length, 1, 'one authentication at a time: the second waits')

  failStanding(true)
  pending[0]?.(SESSION)
  t.same(await first, SESSION)
  await t.rejects(second, /the store is down/, 'the waiting one fails with the store')

  failStanding(false)
  const third = authenticator.authenticate(request)
  await flush()
  t.equal(pending.length, 2, 'the turn was given back: the next request authenticates at once')
  pending[1]?.(SESSION)
  t.same(await third, SESSION)
})

t.test('turns: as many at once as failures are left, the others served in order as turns end', async t => {
  const { authenticator, pending } = harness(2)
  const all = Array.from({ length: 5 }, () => authenticator.authenticate(request))
  await flush()
  t.equal(pending.length, 2)
  for (let served = 0; served < 5; served++) {
    pending[served]?.(SESSION)
    await flush()
  }
  t.equal(pending.length, 5, 'each waiting request got its turn')
  t.same(await Promise.all(all), Array(5).fill(SESSION))
})

t.test('a full queue is refused at once (429, Retry-After at least 1 s even before any failure), and everyone already waiting is served', async t => {
  const { authenticator, pending } = harness(1, 0)
  // One running (a single failure left), MAX_WAITING_PER_ADDRESS waiting; no window yet (ttl 0).
  const admitted = Array.from({ length: 1 + MAX_WAITING_PER_ADDRESS }, () => authenticator.authenticate(request))
  await flush()
  const refused = await authenticator.authenticate(request).then(() => undefined, (err: unknown) => err)
  t.ok(refused instanceof BrokerError && refused.code === 'rate_limited', '429 rate_limited')
  t.equal((refused as BrokerError).retryAfterS, 1, 'Retry-After: 1, never 0')
  for (let i = 0; i <= MAX_WAITING_PER_ADDRESS; i++) {
    pending[i]?.(SESSION)
    await flush()
  }
  t.equal((await Promise.all(admitted)).length, 1 + MAX_WAITING_PER_ADDRESS, 'the running one and every waiting one are served')
})
