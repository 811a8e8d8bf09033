import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createTokenClient, TokenClientError, type TokenClientOptions } from '../packages/client/src/index.js'
import { buildTestApp, tokenFor, USER_A, USER_B, USER_C, type TestApp, type TestContext } from './helpers.js'

/**
 * The browser helper (packages/client) against a real broker listening on a socket, in front of the
 * emulator, with Node's fetch: what the emulator minted tells how many requests reached Mangopay.
 */

interface Broker extends TestApp { baseUrl: string }

async function startBroker (t: TestContext, env: Record<string, string> = {}): Promise<Broker> {
  // The helper tests make many calls for one user: the per-user limit is not under test here.
  const test = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '1000', ...env } })
  await test.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = test.app.server.address() as AddressInfo
  return { ...test, baseUrl: `http://127.0.0.1:${port}` }
}

interface Sent { url: string, init: RequestInit, status?: number, retryAfter?: string | null, at: number, answeredAt?: number }

/** Node's fetch, recording what the helper sent and what came back (the network edge, not the helper). */
function recordingFetch (): { fetch: typeof fetch, sent: Sent[] } {
  const sent: Sent[] = []
  return {
    sent,
    fetch: async (input, init = {}) => {
      const entry: Sent = { url: String(input), init, at: Date.now() }
      sent.push(entry)
      const response = await fetch(input, init)
      entry.status = response.status
      entry.retryAfter = response.headers.get('retry-after')
      entry.answeredAt = Date.now()
      return response
    }
  }
}

async function clientFor (broker: Broker, userIds: string | string[], options: Partial<TokenClientOptions> = {}) {
  const jwt = await tokenFor(userIds)
  return createTokenClient({ baseUrl: broker.baseUrl, getAuthorization: () => `Bearer ${jwt}`, ...options })
}

async function rejection (promise: Promise<unknown>): Promise<TokenClientError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof TokenClientError) return err
    throw err
  }
  throw new Error('expected a TokenClientError, the call succeeded')
}

/** A point in a request the test waits for: `reached` settles the first time `reach()` is called. */
function checkpoint (): { reach: () => void, reached: Promise<void> } {
  let reach = (): void => {}
  const reached = new Promise<void>(resolve => { reach = resolve })
  return { reach, reached }
}

/** USER_A's client, its requests recorded, and a checkpoint reached as the first is sent. */
async function recordedClient (broker: Broker, options: Partial<TokenClientOptions> = {}) {
  const recorder = recordingFetch()
  const sent = checkpoint()
  const client = await clientFor(broker, USER_A, {
    ...options,
    fetch: async (input, init) => {
      sent.reach()
      return await recorder.fetch(input, init)
    }
  })
  return { client, recorder, sent }
}

/** A 429 from Mangopay whose window resets `inS` seconds from now: the broker answers 503 + Retry-After. */
function mangopayRateLimited (inS: number) {
  return {
    target: 'recipient' as const,
    times: 1,
    fault: {
      kind: 'status' as const,
      status: 429,
      headers: { 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(Math.ceil(Date.now() / 1000) + inS) }
    }
  }
}

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

t.test('errors are TokenClientError with the problem+json code, status and request id', async t => {
  const broker = await startBroker(t)

  const anonymous = createTokenClient({ baseUrl: broker.baseUrl })
  const err = await rejection(anonymous.recipientsToken())
  t.ok(err instanceof Error)
  t.equal(err.name, 'TokenClientError')
  t.match(err, { code: 'unauthenticated', status: 401, retryAfter: undefined })
  t.match(err.requestId, /^[\w-]{8,}$/, 'the request id, to quote to support')
  t.match(err.detail, /sign in/i, 'the broker\'s detail for the developer')
  t.equal(err.message, err.detail)

  const forbidden = await rejection((await clientFor(broker, [])).checkoutToken())
  t.match(forbidden, { code: 'no_mangopay_user', status: 403 })

  const bare = await tokenFor(USER_A)
  const barePrefixed = createTokenClient({ baseUrl: broker.baseUrl, getAuthorization: async () => bare })
  t.equal((await barePrefixed.checkoutToken()).userId, USER_A, 'a bare JWT from getAuthorization is sent as Bearer')
  t.equal(broker.emulator.control.minted.length, 1, 'refused calls never reached Mangopay')
})

t.test('a failing getAuthorization is a TokenClientError, or cleared when clear() came first', async t => {
  const broker = await startBroker(t)
  const recorder = recordingFetch()
  const refreshFailed = new Error('the identity provider is down')

  for (const getAuthorization of [async () => { throw refreshFailed }, () => { throw refreshFailed }]) {
    const err = await rejection(createTokenClient({ baseUrl: broker.baseUrl, fetch: recorder.fetch, getAuthorization }).recipientsToken())
    t.match(err, { code: 'authorization_failed', status: 0 })
    t.equal(err.cause, refreshFailed, 'the app\'s own error is kept as the cause')
  }

  let fail = (_err: Error): void => {}
  const failingAfterClear = createTokenClient({
    baseUrl: broker.baseUrl,
    fetch: recorder.fetch,
    getAuthorization: async () => await new Promise<string>((_resolve, reject) => { fail = reject })
  })
  const failing = failingAfterClear.checkoutToken()
  failingAfterClear.clear()
  fail(new Error('refresh interrupted by the logout'))
  t.match(await rejection(failing), { code: 'cleared' }, 'clear() during getAuthorization: the caller gets cleared')

  const jwt = await tokenFor(USER_A)
  let answer = (_jwt: string): void => {}
  const answeringAfterClear = createTokenClient({
    baseUrl: broker.baseUrl,
    fetch: recorder.fetch,
    getAuthorization: async () => await new Promise<string>(resolve => { answer = resolve })
  })
  const answering = answeringAfterClear.checkoutToken()
  answeringAfterClear.clear()
  answer(jwt)
  t.match(await rejection(answering), { code: 'cleared' }, 'a credential read across clear() is not used')
  t.equal(recorder.sent.length, 0, 'nothing was sent')
})

t.test('answers that are not the broker\'s become typed errors too', async t => {
  const answers: Record<string, (res: ServerResponse) => void> = {
    '/proxy/v1/tokens/recipients': res => res.writeHead(502, { 'content-type': 'text/html', 'x-request-id': 'proxy-1' }).end('<h1>Bad gateway</h1>'),
    '/proxy/v1/tokens/checkout': res => res.writeHead(200, { 'content-type': 'application/json' }).end('{"hello":"world"}'),
    '/html/v1/tokens/recipients': res => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html>')
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    const answer = answers[req.url ?? '']
    if (answer === undefined) res.writeHead(404).end()
    else answer(res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const proxy = createTokenClient({ baseUrl: `${base}/proxy` })
  t.match(await rejection(proxy.recipientsToken()), { code: 'http_error', status: 502, requestId: 'proxy-1' }, 'an HTML error page')
  t.match(await rejection(proxy.checkoutToken()), { code: 'invalid_response', status: 200 }, 'a 200 that is not a token')
  t.match(await rejection(createTokenClient({ baseUrl: `${base}/html` }).recipientsToken()), { code: 'invalid_response' }, 'a 200 that is not JSON')

  // A port nobody listens on: the connection is refused.
  const closed = createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const closedPort = (closed.address() as AddressInfo).port
  await new Promise<void>(resolve => closed.close(() => resolve()))
  const unreachable = await rejection(createTokenClient({ baseUrl: `http://127.0.0.1:${closedPort}` }).recipientsToken())
  t.match(unreachable, { code: 'network_error', status: 0 })
  t.ok(unreachable.cause instanceof Error, 'the underlying fetch error is kept as the cause')
})

t.test('without retry, a 503 with Retry-After is reported, not retried', async t => {
  const broker = await startBroker(t)
  broker.emulator.control.inject(mangopayRateLimited(1))
  const recorder = recordingFetch()
  const client = await clientFor(broker, USER_A, { fetch: recorder.fetch })
  const err = await rejection(client.recipientsToken())
  t.match(err, { code: 'upstream_unavailable', status: 503 })
  t.ok(err.retryAfter !== undefined && err.retryAfter >= 1, 'retryAfter comes from the Retry-After header')
  t.equal(recorder.sent.length, 1, 'one request')
})

t.test('opt-in retry waits for Retry-After, then tries once more', async t => {
  const broker = await startBroker(t)
  broker.emulator.control.inject(mangopayRateLimited(1))
  const recorder = recordingFetch()
  const client = await clientFor(broker, USER_A, { fetch: recorder.fetch, retry: true })

  const token = await client.recipientsToken()
  t.equal(token.userId, USER_A)
  t.equal(recorder.sent.length, 2, 'the refused request and one retry')
  const [refused, retried] = recorder.sent
  t.equal(refused?.status, 503)
  const waitS = Number(refused?.retryAfter)
  t.ok(waitS >= 1, `the broker said Retry-After: ${waitS}`)
  t.ok((retried?.at ?? 0) - (refused?.answeredAt ?? 0) >= waitS * 1000 - 50, 'the retry waited at least that long')
  t.equal(retried?.status, 200)
  t.equal(broker.emulator.control.minted.length, 1)
})

t.test('opt-in retry gives up at once when Retry-After exceeds maxWaitS', async t => {
  const broker = await startBroker(t)
  broker.emulator.control.inject(mangopayRateLimited(120))
  const recorder = recordingFetch()
  const client = await clientFor(broker, USER_A, { fetch: recorder.fetch, retry: { maxWaitS: 5 } })
  const err = await rejection(client.recipientsToken())
  t.match(err, { code: 'upstream_unavailable', status: 503 })
  t.ok(err.retryAfter !== undefined && err.retryAfter > 5, `Retry-After ${String(err.retryAfter)} is beyond the cap`)
  t.equal(recorder.sent.length, 1, 'no retry')
})

t.test('the broker\'s own per-user limit is a typed rate_limited error', async t => {
  const broker = await startBroker(t, { RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW_MS: '60000' })
  const recorder = recordingFetch()
  const client = await clientFor(broker, USER_A, { fetch: recorder.fetch, retry: true })
  await client.checkoutToken()
  const err = await rejection(client.checkoutToken())
  t.match(err, { code: 'rate_limited', status: 429 })
  t.ok(err.retryAfter !== undefined && err.retryAfter > 10, 'a minute-long window')
  t.equal(recorder.sent.length, 2, 'too long to wait: not retried')
  t.equal(broker.emulator.control.minted.length, 1)
})

t.test('a caller whose signal is already aborted sends nothing', async t => {
  const broker = await startBroker(t)
  const recorder = recordingFetch()
  const jwt = await tokenFor(USER_A)
  let credentialReads = 0
  let credential = (_jwt: string): void => {}
  let slow = false
  const client = createTokenClient({
    baseUrl: broker.baseUrl,
    fetch: recorder.fetch,
    getAuthorization: async () => {
      credentialReads++
      return slow ? await new Promise<string>(resolve => { credential = resolve }) : jwt
    }
  })

  const gone = new AbortController()
  gone.abort()
  await t.rejects(client.recipientsToken({ signal: gone.signal }), { name: 'AbortError' })
  t.equal(credentialReads, 0, 'not even the credential is read')

  slow = true
  const leaving = new AbortController()
  const whileReading = client.recipientsToken({ signal: leaving.signal })
  leaving.abort()
  await t.rejects(whileReading, { name: 'AbortError' }, 'aborted while getAuthorization was pending')
  credential(jwt)

  // A later call, answered, leaves time for any request the aborted calls had started to show.
  slow = false
  await client.checkoutToken()
  t.same(recorder.sent.map(s => s.url), [`${broker.baseUrl}/v1/tokens/checkout`], 'only the later call reached the broker')
  t.same(broker.emulator.control.minted.map(m => m.kind), ['checkout'])
})

t.test('a shared request every caller has given up on is cancelled, Retry-After wait included', async t => {
  const broker = await startBroker(t)
  broker.emulator.control.inject(mangopayRateLimited(1))
  const recorder = recordingFetch()
  const refused = checkpoint()
  const retried = checkpoint()
  const client = await clientFor(broker, USER_A, {
    retry: true,
    fetch: async (input, init) => {
      if (recorder.sent.length === 1) retried.reach()
      const response = await recorder.fetch(input, init)
      if (response.status === 503) refused.reach()
      return response
    }
  })

  const first = new AbortController()
  const second = new AbortController()
  const firstCaller = client.recipientsToken({ signal: first.signal })
  const secondCaller = client.recipientsToken({ signal: second.signal })
  await refused.reached // the helper now waits for Retry-After before its one retry
  const requestSignal = recorder.sent[0]?.init.signal ?? undefined
  first.abort()
  await t.rejects(firstCaller, { name: 'AbortError' })
  t.notOk(requestSignal?.aborted, 'one caller giving up leaves the request to the other')
  second.abort()
  await t.rejects(secondCaller, { name: 'AbortError' })

  const cancelled = new Promise<string>(resolve => {
    if (requestSignal?.aborted === true) resolve('cancelled')
    else requestSignal?.addEventListener('abort', () => resolve('cancelled'))
  })
  t.equal(await Promise.race([cancelled, retried.reached.then(() => 'retried')]), 'cancelled', 'the last one leaving cancels it')
  t.equal(recorder.sent.length, 1, 'the retry was never sent')
  t.equal(broker.emulator.control.minted.length, 0, 'no token minted for nobody')

  t.equal((await client.recipientsToken()).userId, USER_A, 'a later call starts its own request, not the cancelled one')
})

t.test('a caller arriving as the last one leaves still shares the request', async t => {
  const broker = await startBroker(t)
  broker.emulator.control.inject({ target: 'recipient', times: 1, fault: { kind: 'latency', ms: 300 } })
  const { client, recorder, sent } = await recordedClient(broker)
  const unmounted = new AbortController()
  const before = client.recipientsToken({ signal: unmounted.signal })
  await sent.reached
  // A component unmounted and mounted again in one task (a re-keyed parent, a route remount).
  unmounted.abort()
  const after = client.recipientsToken()
  await t.rejects(before, { name: 'AbortError' })
  t.equal((await after).clientToken, broker.emulator.control.minted[0]?.token)
  t.equal(recorder.sent.length, 1, 'one request for both')
})

t.test('with the cache on, a request every caller gave up on finishes and fills the cache', async t => {
  const broker = await startBroker(t)
  broker.emulator.control.inject({ target: 'recipient', times: 1, fault: { kind: 'latency', ms: 300 } })
  const { client, recorder, sent } = await recordedClient(broker, { cache: true })
  const unmounted = new AbortController()
  const gaveUp = client.recipientsToken({ signal: unmounted.signal })
  await sent.reached
  unmounted.abort()
  await t.rejects(gaveUp, { name: 'AbortError' })
  await new Promise(resolve => setTimeout(resolve, 0)) // a task later: when a cancellation would have happened

  const token = await client.recipientsToken()
  t.equal(token.clientToken, broker.emulator.control.minted[0]?.token, 'the next caller gets that request\'s token')
  t.notOk(recorder.sent[0]?.init.signal?.aborted, 'it was not cancelled')
  t.equal((await client.recipientsToken()).clientToken, token.clientToken, 'and it is cached')
  t.equal(recorder.sent.length, 1)
})

t.test('creating a client touches nothing: safe during server-side rendering', async t => {
  t.equal(typeof (globalThis as { window?: unknown }).window, 'undefined', 'this runs without a window')
  const recorder = recordingFetch()
  const client = createTokenClient({ baseUrl: 'https://broker.invalid', fetch: recorder.fetch })
  client.clear()
  t.equal(recorder.sent.length, 0, 'no request until a token is asked for')
})

t.test('GET /v1/client.js serves the helper as a cacheable ES module', async t => {
  const broker = await startBroker(t)
  const res = await fetch(`${broker.baseUrl}/v1/client.js`)
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8')
  t.equal(res.headers.get('cache-control'), 'public, max-age=300', 'its own cache policy, not no-store')
  const etag = res.headers.get('etag') ?? ''
  t.match(etag, /^"[\w-]{20,}"$/, 'a strong ETag')
  const script = await res.text()
  t.equal(script, await readFile(new URL('../packages/client/dist/index.js', import.meta.url), 'utf8'), 'the package\'s own build, byte for byte')
  t.notMatch(script, /^\s*(interface|type) \w+/m, 'plain JavaScript, no TypeScript left')
  t.notMatch(script, 'sourceMappingURL', 'no pointer to a source map that is not served')
  t.notMatch(script, /^\s*import\b/m, 'one self-contained module: nothing else to load')

  // The served file is the working helper: import it as a module and get a token with it.
  const served = await import(`data:text/javascript;base64,${Buffer.from(script).toString('base64')}`) as typeof import('../packages/client/src/index.js')
  t.same(Object.keys(served).sort(), ['TokenClientError', 'createTokenClient'], 'the package\'s public API')
  const jwt = await tokenFor(USER_A)
  const token = await served.createTokenClient({ baseUrl: broker.baseUrl, getAuthorization: () => jwt }).recipientsToken()
  t.equal(token.clientToken, broker.emulator.control.minted[0]?.token)

  for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const again = await fetch(`${broker.baseUrl}/v1/client.js`, { headers: { 'if-none-match': ifNoneMatch } })
    t.equal(again.status, 304, `If-None-Match: ${ifNoneMatch}`)
    t.equal(await again.text(), '')
    t.equal(again.headers.get('etag'), etag)
    t.equal(again.headers.get('cache-control'), 'public, max-age=300')
  }
  const changed = await fetch(`${broker.baseUrl}/v1/client.js`, { headers: { 'if-none-match': '"stale"' } })
  t.equal(changed.status, 200, 'another version: the full script')
  t.equal(await changed.text(), script, 'the same bytes every time')

  const tokenRoute = await fetch(`${broker.baseUrl}/v1/tokens/recipients`, { method: 'POST' })
  t.equal(tokenRoute.headers.get('cache-control'), 'no-store', 'every other answer stays no-store')
  await tokenRoute.body?.cancel()
})
