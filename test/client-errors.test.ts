import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createTokenClient } from '../packages/client/src/index.js'
import { tokenFor, USER_A } from './helpers.js'
import { clientFor, mangopayRateLimited, recordingFetch, rejection, startBroker } from './client-helpers.js'

/** What the helper throws: the broker's problems, its own codes, and the opt-in retry. */

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
