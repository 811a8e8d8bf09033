import t from 'tap'
import { createTokenClient, sdkOptions } from '../packages/client/src/index.js'
import { tokenFor, USER_A, USER_B, USER_C } from './helpers.js'
import { checkpoint, clientFor, recordingFetch, rejection, startBroker } from './client-helpers.js'

/** The helper's shared requests, cache, clear() and credentials, against a real broker. */

t.test('concurrent calls for the same kind and user share one request (a StrictMode double mount)', async t => {
  const broker = await startBroker(t)
  const client = await clientFor(broker, USER_A)

  const same = await Promise.all([client.recipientsToken(), client.recipientsToken(), client.recipientsToken(), client.recipientsToken()])
  t.equal(broker.emulator.control.minted.length, 1, 'Mangopay minted once for four callers')
  const minted = broker.emulator.control.minted[0]
  for (const token of same) {
    t.equal(token.clientToken, minted?.token, 'every caller got the one minted token')
    t.equal(token.userId, USER_A)
  }
  t.match(same[0], { tokenType: 'Bearer', clientId: 'acme-client', environment: 'SANDBOX', scope: 'bankaccounts:r bankaccounts:w' })
  t.ok(same[0] !== same[1], 'each caller gets its own copy')

  const [recipients, checkout] = await Promise.all([client.recipientsToken(), client.checkoutToken()])
  t.match(recipients.clientToken, /^rec_/)
  t.match(checkout.clientToken, /^chk_/)
  t.equal(broker.emulator.control.minted.length, 3, 'different kinds are different requests')

  await client.recipientsToken()
  t.equal(broker.emulator.control.minted.length, 4, 'without the cache option, a later call asks again')
})

t.test('the body names a Mangopay user only when asked; headers and credentials mode', async t => {
  const broker = await startBroker(t)
  const recorder = recordingFetch()
  const client = await clientFor(broker, [USER_B, USER_C], { fetch: recorder.fetch })

  const [b, c] = await Promise.all([client.recipientsToken({ userId: USER_B }), client.recipientsToken({ userId: USER_C })])
  t.equal(b.userId, USER_B)
  t.equal(c.userId, USER_C)
  t.same(broker.emulator.control.minted.map(m => m.userId).sort(), [USER_B, USER_C].sort(), 'one request per Mangopay user')
  const named = recorder.sent.find(s => s.init.body === JSON.stringify({ userId: USER_B }))
  t.equal(named?.init.method, 'POST')
  t.match(named?.init.headers, { 'content-type': 'application/json', 'x-csrf': '1', authorization: /^Bearer ey/ })
  t.equal(named?.init.credentials, 'same-origin', 'an Authorization header needs no cookies')
  t.equal(named?.url, `${broker.baseUrl}/v1/tokens/recipients`)

  const err = await rejection(client.checkoutToken())
  t.match(err, { code: 'user_id_required', status: 400 }, 'several users and none named: the broker says which rule')
  const unnamed = recorder.sent[2]
  t.equal(unnamed?.init.body, undefined, 'no body at all')
  t.notOk(unnamed?.init.headers !== undefined && 'content-type' in unnamed.init.headers, 'no content type without a body')
  t.equal(unnamed?.url, `${broker.baseUrl}/v1/tokens/checkout`)

  const cookieClient = createTokenClient({ baseUrl: `${broker.baseUrl}/`, fetch: recorder.fetch })
  await rejection(cookieClient.recipientsToken())
  t.equal(recorder.sent[3]?.init.credentials, 'include', 'cookie sessions: credentials are included by default')
  t.equal(recorder.sent[3]?.url, `${broker.baseUrl}/v1/tokens/recipients`, 'a trailing slash in baseUrl is fine')
})

t.test('caching is opt-in, reuses a token until shortly before it expires, and hands out copies', async t => {
  const broker = await startBroker(t)
  let now = Date.now()
  const client = await clientFor(broker, USER_A, { cache: true, now: () => now })

  const first = await client.checkoutToken()
  t.equal(broker.emulator.control.minted.length, 1)
  t.ok(first.expiresIn >= 899 && first.expiresIn <= 900, 'the broker\'s remaining lifetime')

  now += 100_000
  const later = await client.checkoutToken()
  t.equal(broker.emulator.control.minted.length, 1, 'served from the cache')
  t.equal(later.clientToken, first.clientToken)
  t.equal(later.expiresIn, first.expiresIn - 100, 'expiresIn counts down with the clock')
  later.clientToken = 'tampered'
  t.equal((await client.checkoutToken()).clientToken, first.clientToken, 'changing a returned object does not change the cache')

  now += 760_000 // 860 s after receipt: more than 30 s left
  t.equal((await client.checkoutToken()).clientToken, first.clientToken, 'still cached with more than 30 s left')
  t.equal(broker.emulator.control.minted.length, 1)

  now += 20_000 // 880 s: inside the 30 s margin
  const renewed = await client.checkoutToken()
  t.equal(broker.emulator.control.minted.length, 2, 'a token about to expire is not handed out')
  t.not(renewed.clientToken, first.clientToken)

  const forced = await client.checkoutToken({ forceRefresh: true })
  t.equal(broker.emulator.control.minted.length, 3, 'forceRefresh skips the cache')
  t.equal((await client.checkoutToken()).clientToken, forced.clientToken, 'and the fresh token is cached')

  const recipients = await client.recipientsToken()
  t.equal(broker.emulator.control.minted.length, 4, 'each kind has its own entry')
  t.equal((await client.recipientsToken()).clientToken, recipients.clientToken)

  const wideMargin = await clientFor(broker, USER_A, { cache: { refreshBeforeExpiryS: 600 }, now: () => now })
  await wideMargin.recipientsToken()
  now += 301_000
  await wideMargin.recipientsToken()
  t.equal(broker.emulator.control.minted.length, 6, 'refreshBeforeExpiryS widens the margin')
})

t.test('clear() drops cached tokens and cancels what is in flight', async t => {
  const broker = await startBroker(t)
  const sent = checkpoint()
  const client = await clientFor(broker, USER_A, {
    cache: true,
    fetch: async (input, init) => {
      if (String(input).endsWith('/checkout')) sent.reach()
      return await fetch(input, init)
    }
  })

  const before = await client.recipientsToken()
  client.clear()
  const after = await client.recipientsToken()
  t.equal(broker.emulator.control.minted.length, 2, 'after clear() the broker is asked again')
  t.not(after.clientToken, before.clientToken)

  broker.emulator.control.inject({ target: 'checkout', times: 1, fault: { kind: 'latency', ms: 300 } })
  const pending = client.checkoutToken()
  await sent.reached
  client.clear()
  t.match(await rejection(pending), { code: 'cleared', status: 0 }, 'a caller waiting at clear() gets a cleared error')
})

t.test('an answer that arrives after clear() never fills the cache, even if fetch cannot abort', async t => {
  const broker = await startBroker(t)
  // Some fetch polyfills ignore the abort signal: the answer then arrives after clear().
  const sent = checkpoint()
  const client = await clientFor(broker, USER_A, {
    cache: true,
    fetch: async (input, init) => {
      sent.reach()
      return await fetch(input, { ...init, signal: null })
    }
  })
  broker.emulator.control.inject({ target: 'recipient', times: 1, fault: { kind: 'latency', ms: 300 } })
  const pending = client.recipientsToken()
  await sent.reached
  client.clear()
  t.match(await rejection(pending), { code: 'cleared' }, 'the old request\'s caller still gets no token')
  t.equal(broker.emulator.control.minted.length, 1, 'the old request did reach Mangopay')
  const late = broker.emulator.control.minted[0]?.token

  const next = await client.recipientsToken()
  t.equal(broker.emulator.control.minted.length, 2, 'the next call asked again instead of using the late answer')
  t.not(next.clientToken, late)
  t.equal((await client.recipientsToken()).clientToken, next.clientToken, 'and caches its own token')
})

t.test('tokens and shared requests belong to one credential: a JWT swapped without clear() never gets the previous user\'s token', async t => {
  const broker = await startBroker(t)
  const alice = await tokenFor(USER_A)
  const bob = await tokenFor(USER_B)
  let jwt = alice
  const minted = broker.emulator.control.minted

  broker.emulator.control.inject({ target: 'recipient', times: 1, fault: { kind: 'latency', ms: 300 } })
  const client = createTokenClient({ baseUrl: broker.baseUrl, getAuthorization: () => jwt })
  const forAlice = client.recipientsToken()
  jwt = bob // an app that keeps the JWT in memory signs Alice out and Bob in
  const forBob = client.recipientsToken()
  t.match(await forAlice, { userId: USER_A, clientToken: minted.find(m => m.userId === USER_A)?.token })
  t.match(await forBob, { userId: USER_B, clientToken: minted.find(m => m.userId === USER_B)?.token }, 'Bob\'s call did not join Alice\'s request')
  t.equal(minted.length, 2)

  jwt = alice
  const cached = createTokenClient({ baseUrl: broker.baseUrl, getAuthorization: () => jwt, cache: true })
  const alicesToken = await cached.checkoutToken()
  jwt = bob
  const bobsToken = await cached.checkoutToken()
  t.equal(bobsToken.userId, USER_B, 'Alice\'s cached token is not handed to Bob')
  t.not(bobsToken.clientToken, alicesToken.clientToken)
  t.equal((await cached.checkoutToken()).clientToken, bobsToken.clientToken, 'Bob\'s own token is cached for him')
  t.equal(minted.length, 4)
})

t.test('an answer for another Mangopay user than the one named is refused', async t => {
  const broker = await startBroker(t)
  // A proxy cache keyed by URL alone (a misconfiguration): it replays B's answer when C is asked for.
  let replayed: string | undefined
  const client = await clientFor(broker, [USER_B, USER_C], {
    cache: true,
    fetch: async (input, init) => {
      if (replayed !== undefined) return new Response(replayed, { status: 200, headers: { 'content-type': 'application/json' } })
      const response = await fetch(input, init)
      replayed = await response.clone().text()
      return response
    }
  })
  t.equal((await client.recipientsToken({ userId: USER_B })).userId, USER_B)
  const err = await rejection(client.recipientsToken({ userId: USER_C }))
  t.match(err, { code: 'user_mismatch', status: 200 }, 'C\'s caller does not get B\'s token')
  t.notMatch(err.message, replayed ?? '', 'the refused answer is not echoed')
  t.equal(broker.emulator.control.minted.length, 1)
})

t.test('creating a client touches nothing: safe during server-side rendering', async t => {
  t.equal(typeof (globalThis as { window?: unknown }).window, 'undefined', 'this runs without a window')
  const recorder = recordingFetch()
  const client = createTokenClient({ baseUrl: 'https://broker.invalid', fetch: recorder.fetch })
  client.clear()
  t.equal(recorder.sent.length, 0, 'no request until a token is asked for')
})

t.test('sdkOptions() keeps exactly the four fields the Mangopay SDKs take', async t => {
  const broker = await startBroker(t)
  const client = await clientFor(broker, USER_A)
  const token = await client.checkoutToken()
  const options = sdkOptions(token)
  t.same(options, { clientId: 'acme-client', clientToken: broker.emulator.control.minted[0]?.token, userId: USER_A, environment: 'SANDBOX' })
  t.same(Object.keys(options).sort(), ['clientId', 'clientToken', 'environment', 'userId'], 'no expiry, scope or token type for the SDK to carry')
  options.clientToken = 'changed'
  t.not(token.clientToken, 'changed', 'a copy: the token object is not touched')
})
