import t from 'tap'
import { createTokenClient } from '../packages/client/src/index.js'
import { tokenFor, USER_A } from './helpers.js'
import { checkpoint, clientFor, mangopayRateLimited, recordedClient, recordingFetch, startBroker } from './client-helpers.js'

/** Callers that stop waiting (an AbortSignal): what is sent, shared, cancelled or cached. */

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
