import { once } from 'node:events'
import t from 'tap'
import { Agent, request } from 'undici'
import { ManualClock } from './manual-clock.js'
import { startEmulator, type Emulator, type EmulatorOptions } from '../src/emulator/index.js'
import { BoundedLog } from '../src/emulator/records.js'
import { until } from './helpers.js'

const CLIENT_ID = 'acme-client'
const API_KEY = 'embedded-key'
const OAUTH = '/v2.01/oauth/token'
const RECIPIENT = '/v2.01/oauth/token/embedded/recipient'
const CHECKOUT = '/v2.01/oauth/token/embedded/checkout'
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const PARAM_MESSAGE = 'One or several required parameters are missing or incorrect. An incorrect resource ID also raises this kind of error.'

interface Teardown { teardown: (fn: () => unknown) => void }

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, text: string, json: any }

interface CallOptions { method?: string, headers?: Record<string, string>, body?: string, headersTimeout?: number }

const basic = (id = CLIENT_ID, key = API_KEY): string => `Basic ${Buffer.from(`${id}:${key}`).toString('base64')}`

function parse (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

async function setup (t: Teardown, options: Partial<EmulatorOptions> = {}) {
  const clock = new ManualClock()
  const emulator = await startEmulator({ clientId: CLIENT_ID, apiKey: API_KEY, clock, ...options })
  const agent = new Agent()
  t.teardown(async () => {
    await emulator.close()
    await agent.destroy()
  })

  async function call (path: string, { method = 'POST', headers = {}, body, headersTimeout }: CallOptions = {}): Promise<Answer> {
    const res = await request(emulator.url + path, { method, headers, body, dispatcher: agent, headersTimeout })
    const text = await res.body.text()
    return { status: res.statusCode, headers: res.headers, text, json: parse(text) }
  }

  const oauth = async (headers: Record<string, string> = { authorization: basic(), ...FORM }, body = 'grant_type=client_credentials') =>
    await call(OAUTH, { headers, body })

  async function bearer (): Promise<string> {
    const res = await oauth()
    if (res.status !== 200) throw new Error(`oauth answered ${res.status}`)
    return res.json.access_token
  }

  const embedded = async (path: string, token: string, body: unknown = { clientId: CLIENT_ID, claims: { userId: 'user_m_1' } }) =>
    await call(path, {
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body)
    })

  return { emulator, clock, agent, call, oauth, bearer, embedded }
}

t.test('oauth: a valid client gets a bearer, and several stay valid at once', async (t) => {
  const { emulator, oauth, embedded } = await setup(t)
  const first = await oauth()
  t.equal(first.status, 200)
  t.equal(first.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(first.headers['cache-control'], 'no-store')
  t.same(Object.keys(first.json).sort(), ['access_token', 'expires_in', 'token_type'])
  t.match(first.json.access_token, /^[0-9a-f]{32}$/)
  t.equal(first.json.token_type, 'bearer')
  t.equal(first.json.expires_in, 1200)

  const second = await oauth()
  t.not(second.json.access_token, first.json.access_token)
  t.equal((await embedded(RECIPIENT, first.json.access_token)).status, 200, 'the older bearer still works')
  t.equal((await embedded(RECIPIENT, second.json.access_token)).status, 200)
  t.same(emulator.control.bearers.map((b) => b.token), [first.json.access_token, second.json.access_token])
  t.equal(emulator.control.bearers[0]?.revoked, false)
})

t.test('oauth: token type and lifetime follow the options', async (t) => {
  const { clock, emulator, oauth } = await setup(t, { bearerTokenType: 'Bearer', bearerTtlS: 3600 })
  const res = await oauth()
  t.equal(res.json.token_type, 'Bearer')
  t.equal(res.json.expires_in, 3600)
  t.equal(emulator.control.bearers[0]?.expiresAt, clock.now() + 3600_000)
})

t.test('oauth: each client error in its OAuth dialect', async (t) => {
  const { oauth, emulator } = await setup(t)
  const malformed = { error: 'invalid_client', error_description: 'The authorization header was malformed or not recognized' }
  for (const authorization of [undefined, 'Bearer abc', 'Basic', 'Basic !!!', `Basic ${Buffer.from('no-colon').toString('base64')}`]) {
    const headers: Record<string, string> = authorization === undefined ? { ...FORM } : { authorization, ...FORM }
    const res = await oauth(headers)
    t.equal(res.status, 401, `401 for ${authorization ?? 'no header'}`)
    t.same(res.json, malformed)
  }
  for (const authorization of [basic(CLIENT_ID, 'wrong-key'), basic('other-client', API_KEY)]) {
    const res = await oauth({ authorization, ...FORM })
    t.equal(res.status, 401)
    t.strictSame(res.json, { error: 'invalid_client' })
  }
  const wrongType = await oauth({ authorization: basic(), 'content-type': 'application/json' }, '{"grant_type":"client_credentials"}')
  t.equal(wrongType.status, 400)
  t.strictSame(wrongType.json, { error: 'invalid_request' })
  const noGrant = await oauth(undefined, 'scope=x')
  t.equal(noGrant.status, 400)
  t.strictSame(noGrant.json, { error: 'invalid_request' })
  const otherGrant = await oauth(undefined, 'grant_type=password')
  t.equal(otherGrant.status, 400)
  t.strictSame(otherGrant.json, { error: 'unsupported_grant_type' })
  const charset = await oauth({ authorization: basic(), 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' })
  t.equal(charset.status, 200, 'a charset parameter is accepted')
  t.equal(emulator.control.bearers.length, 1, 'failed calls issue no bearer')
})

t.test('oauth: key rotation accepts only the new key, existing bearers keep working', async (t) => {
  const { emulator, oauth, bearer, embedded } = await setup(t)
  const old = await bearer()
  emulator.control.setApiKey('rotated-key')
  t.equal((await oauth()).status, 401)
  t.equal((await oauth({ authorization: basic(CLIENT_ID, 'rotated-key'), ...FORM })).status, 200)
  t.equal((await embedded(CHECKOUT, old)).status, 200)
})

t.test('bearer expiry follows the injected clock', async (t) => {
  const { clock, bearer, embedded } = await setup(t)
  const token = await bearer()
  clock.advance(1200_000 - 1)
  t.equal((await embedded(RECIPIENT, token)).status, 200, 'valid until the last millisecond')
  clock.advance(1)
  const res = await embedded(RECIPIENT, token)
  t.equal(res.status, 401)
  t.strictSame(res.json, {
    Message: 'The authorization credentials are not valid', Type: 'invalid_credentials', Date: Math.floor(clock.now() / 1000)
  }, 'the documented body: no Id, no errors')
})

t.test('revoked, unknown and missing bearers get 401', async (t) => {
  const { emulator, bearer, embedded, call } = await setup(t)
  const token = await bearer()
  emulator.control.revokeBearers()
  t.equal(emulator.control.bearers[0]?.revoked, true)
  t.equal((await embedded(RECIPIENT, token)).status, 401)
  t.equal((await embedded(CHECKOUT, 'f'.repeat(32))).status, 401)
  const none = await call(RECIPIENT, { headers: { 'content-type': 'application/json' }, body: '{}' })
  t.equal(none.status, 401)
  t.equal(none.json.Type, 'invalid_credentials')
  t.equal((await embedded(RECIPIENT, await bearer())).status, 200, 'a bearer minted after revocation works')
})

t.test('embedded tokens for both kinds, with the exact documented shape', async (t) => {
  const { emulator, clock, bearer, embedded } = await setup(t)
  const token = await bearer()
  const recipient = await embedded(RECIPIENT, token, { clientId: CLIENT_ID, claims: { userId: 'user_m_01JP2X1PK52W8PYD99Q3CXDMAP' } })
  t.equal(recipient.status, 200)
  t.equal(recipient.headers['content-type'], 'application/json; charset=utf-8')
  t.match(recipient.json.access_token, /^rec_[0-9a-f]{32}$/)
  t.strictSame(recipient.json, {
    access_token: recipient.json.access_token, token_type: 'Bearer', expires_in: 900, scope: 'bankaccounts:r bankaccounts:w'
  })
  t.same(Object.keys(recipient.json), ['access_token', 'token_type', 'expires_in', 'scope'])

  const checkout = await embedded(CHECKOUT, token, { clientId: CLIENT_ID, claims: { userId: 'user_m_2' } })
  t.equal(checkout.status, 200)
  t.match(checkout.json.access_token, /^chk_[0-9a-f]{32}$/)
  t.strictSame(checkout.json, {
    access_token: checkout.json.access_token, token_type: 'Bearer', expires_in: 900, scope: 'checkout.session:r checkout.session:w'
  })

  t.strictSame(emulator.control.minted, [
    { kind: 'recipient', token: recipient.json.access_token, userId: 'user_m_01JP2X1PK52W8PYD99Q3CXDMAP', clientId: CLIENT_ID, expiresAt: clock.now() + 900_000, bearer: token },
    { kind: 'checkout', token: checkout.json.access_token, userId: 'user_m_2', clientId: CLIENT_ID, expiresAt: clock.now() + 900_000, bearer: token }
  ])
})

t.test('embedded token lifetime follows the option', async (t) => {
  const { bearer, embedded } = await setup(t, { embeddedTtlS: 60 })
  t.equal((await embedded(CHECKOUT, await bearer())).json.expires_in, 60)
})

t.test('embedded body validation answers param_error with the failing fields', async (t) => {
  const { emulator, clock, bearer, embedded, call } = await setup(t)
  const token = await bearer()
  const cases: Array<[string, unknown, string[]]> = [
    ['invalid JSON', '{"clientId":', ['body']],
    ['not an object', '[1]', ['body']],
    ['empty object', {}, ['clientId', 'claims']],
    ['wrong clientId type', { clientId: 1, claims: { userId: 'u' } }, ['clientId']],
    ['claims not an object', { clientId: CLIENT_ID, claims: 'u' }, ['claims']],
    ['missing userId', { clientId: CLIENT_ID, claims: {} }, ['claims.userId']],
    ['empty userId', { clientId: CLIENT_ID, claims: { userId: '' } }, ['claims.userId']],
    ['unknown fields', { clientId: CLIENT_ID, claims: { userId: 'u', role: 'x' }, extra: true }, ['extra', 'claims.role']]
  ]
  for (const [name, body, fields] of cases) {
    const res = await embedded(RECIPIENT, token, body)
    t.equal(res.status, 400, name)
    t.equal(res.json.Type, 'param_error', name)
    t.equal(res.json.Message, PARAM_MESSAGE)
    t.match(res.json.Id, UUID)
    t.equal(res.json.Date, Math.floor(clock.now() / 1000))
    t.same(Object.keys(res.json.errors).sort(), [...fields].sort(), name)
  }
  const wrongType = await call(CHECKOUT, {
    headers: { authorization: `Bearer ${token}`, 'content-type': 'text/plain' },
    body: JSON.stringify({ clientId: CLIENT_ID, claims: { userId: 'u' } })
  })
  t.equal(wrongType.status, 400)
  t.equal(wrongType.json.Type, 'param_error')
  t.ok(wrongType.json.errors['Content-Type'])

  const forbidden = await embedded(RECIPIENT, token, { clientId: 'someone-else', claims: { userId: 'u' } })
  t.equal(forbidden.status, 403)
  t.equal(forbidden.json.Type, 'forbidden_ressource')
  t.match(forbidden.json.Id, UUID)
  t.equal(emulator.control.minted.length, 0, 'nothing minted on errors')
})

t.test('other paths and methods get ressource_not_found and are not counted as calls', async (t) => {
  const { emulator, call } = await setup(t)
  for (const [method, path] of [['GET', OAUTH], ['POST', '/v2.01/acme/users'], ['GET', '/']]) {
    const res = await call(path as string, { method })
    t.equal(res.status, 404)
    t.equal(res.json.Type, 'ressource_not_found')
    t.match(res.json.Id, UUID)
  }
  t.equal(emulator.control.calls.total, 0)
  t.same(emulator.control.received.map((r) => r.endpoint), ['other', 'other', 'other'])
  t.equal((await call('/__emulator/state', { method: 'GET' })).status, 404, 'no control API unless enabled')
})

t.test('rate-limit headers on every answer, one value per window', async (t) => {
  const { clock, oauth, bearer, embedded } = await setup(t)
  const start = Math.ceil(clock.now() / 1000)
  const first = await oauth()
  t.equal(first.headers['x-ratelimit'], '1, 1, 1, 1')
  t.equal(first.headers['x-ratelimit-remaining'], '2299, 4499, 8799, 105599')
  t.equal(first.headers['x-ratelimit-reset'], [900, 1800, 3600, 86400].map((s) => start + s).join(', '))

  clock.advance(10_000)
  const failed = await oauth({ authorization: basic(CLIENT_ID, 'nope'), ...FORM })
  t.equal(failed.status, 401)
  t.equal(failed.headers['x-ratelimit'], '2, 2, 2, 2', 'errors count and carry the headers')
  t.equal(failed.headers['x-ratelimit-reset'], [900, 1800, 3600, 86400].map((s) => start + s).join(', '), 'windows started at the first call')
  const minted = await embedded(RECIPIENT, await bearer())
  t.equal(minted.headers['x-ratelimit-remaining'], '2296, 4496, 8796, 105596')
})

t.test('an exhausted window answers 429 until it resets', async (t) => {
  const { clock, oauth } = await setup(t, { quota: [{ limit: 2, periodS: 60 }, { limit: 5, periodS: 3600 }] })
  t.equal((await oauth()).status, 200)
  clock.advance(30_000)
  const second = await oauth()
  t.equal(second.headers['x-ratelimit-remaining'], '0, 3')
  const limited = await oauth()
  t.equal(limited.status, 429)
  t.strictSame(Object.keys(limited.json), ['Message', 'Type', 'Id', 'Date', 'errors'])
  t.equal(limited.json.Message, 'Rate limit exceeded. Please contact support for more assistance')
  t.equal(limited.json.Type, 'rate_limit')
  t.equal(limited.json.errors, null)
  t.match(limited.json.Id, UUID)
  t.equal(limited.headers['x-ratelimit'], '2, 2')
  t.equal(limited.headers['x-ratelimit-remaining'], '0, 3')

  clock.advance(30_000)
  const after = await oauth()
  t.equal(after.status, 200, 'the short window has reset')
  t.equal(after.headers['x-ratelimit'], '1, 3')
  t.equal(after.headers['x-ratelimit-remaining'], '1, 2')
  t.equal(after.headers['x-ratelimit-reset'], `${Math.ceil(clock.now() / 1000) + 60}, ${Math.ceil((clock.now() - 60_000) / 1000) + 3600}`)
})

t.test('setRemaining simulates a nearly spent quota', async (t) => {
  const { emulator, oauth } = await setup(t)
  emulator.control.setRemaining([1, 10])
  const last = await oauth()
  t.equal(last.status, 200)
  t.equal(last.headers['x-ratelimit-remaining'], '0, 9, 8799, 105599')
  t.equal(last.headers['x-ratelimit'], '2300, 4491, 1, 1')
  t.equal((await oauth()).status, 429)
})

t.test('faults: status applies `times` then the endpoint answers normally', async (t) => {
  const { emulator, oauth } = await setup(t)
  emulator.control.inject({ target: 'oauth', times: 1, fault: { kind: 'status', status: 503, body: { Message: 'down', Type: 'other' }, headers: { 'Retry-After': '3' } } })
  const faulted = await oauth()
  t.equal(faulted.status, 503)
  t.strictSame(faulted.json, { Message: 'down', Type: 'other' })
  t.equal(faulted.headers['retry-after'], '3')
  t.equal(faulted.headers['x-ratelimit'], '1, 1, 1, 1', 'faulted answers carry and consume quota')
  const normal = await oauth()
  t.equal(normal.status, 200)
  t.equal(normal.headers['x-ratelimit'], '2, 2, 2, 2')
  t.equal(emulator.control.calls.oauth, 2)
  t.equal(emulator.control.received.length, 2)
})

t.test('faults: status with a string body, a default body, and targeting', async (t) => {
  const { emulator, oauth, bearer, embedded } = await setup(t)
  const token = await bearer()
  emulator.control.inject({ target: 'embedded', times: 2, fault: { kind: 'status', status: 502, body: '<html>bad gateway</html>', headers: { 'content-type': 'text/html' } } })
  emulator.control.inject({ target: 'checkout', fault: { kind: 'status', status: 500 } })
  t.equal((await oauth()).status, 200, 'oauth is not an embedded target')
  const html = await embedded(CHECKOUT, token)
  t.equal(html.status, 502)
  t.equal(html.text, '<html>bad gateway</html>')
  t.equal(html.headers['content-type'], 'text/html')
  t.equal((await embedded(RECIPIENT, token)).status, 502)
  t.equal((await embedded(RECIPIENT, token)).status, 200, 'the embedded rule is spent')
  const generic = await embedded(CHECKOUT, token)
  t.equal(generic.status, 500)
  t.equal(generic.json.Type, 'other')
  t.match(generic.json.Id, UUID)
  emulator.control.clearFaults()
  t.equal((await embedded(CHECKOUT, token)).status, 200, 'clearFaults removes rules')
})

t.test('faults: reset destroys the socket without an answer', async (t) => {
  const { emulator, oauth } = await setup(t)
  emulator.control.inject({ times: 1, fault: { kind: 'reset' } })
  await t.rejects(oauth(), { code: /^(ECONNRESET|UND_ERR_SOCKET)$/ }, 'the client sees a socket error')
  t.equal(emulator.control.calls.oauth, 1)
  t.equal((await oauth()).status, 200)
})

t.test('faults: reset-mid-body sends headers and half a body', async (t) => {
  const { emulator, agent } = await setup(t)
  emulator.control.inject({ times: 1, fault: { kind: 'reset-mid-body' } })
  const res = await request(emulator.url + OAUTH, { method: 'POST', headers: { authorization: basic(), ...FORM }, body: 'grant_type=client_credentials', dispatcher: agent })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-ratelimit'], '1, 1, 1, 1')
  await t.rejects(res.body.text())
  t.equal(emulator.control.bearers.length, 0, 'nothing was issued')
})

t.test('faults: hang never answers, the client times out', async (t) => {
  const { emulator, call } = await setup(t)
  emulator.control.inject({ times: 1, fault: { kind: 'hang' } })
  await t.rejects(call(OAUTH, { headers: { authorization: basic(), ...FORM }, body: 'grant_type=client_credentials', headersTimeout: 100 }),
    { code: 'UND_ERR_HEADERS_TIMEOUT' })
})

t.test('faults: malformed answers 200 with invalid JSON', async (t) => {
  const { emulator, oauth } = await setup(t)
  emulator.control.inject({ fault: { kind: 'malformed' } })
  const res = await oauth()
  t.equal(res.status, 200)
  t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  t.throws(() => JSON.parse(res.text))
})

t.test('faults: trickle sends the normal answer a few bytes at a time', async (t) => {
  const { emulator, agent, bearer } = await setup(t)
  const token = await bearer()
  emulator.control.inject({ target: 'recipient', times: 1, fault: { kind: 'trickle', chunkDelayMs: 5 } })
  const res = await request(emulator.url + RECIPIENT, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ clientId: CLIENT_ID, claims: { userId: 'u' } }),
    dispatcher: agent
  })
  t.equal(res.statusCode, 200)
  let chunks = 0
  let text = ''
  for await (const chunk of res.body) {
    chunks++
    text += String(chunk)
  }
  t.ok(chunks > 5, `body came in ${chunks} chunks`)
  t.match(JSON.parse(text), { access_token: /^rec_[0-9a-f]{32}$/, token_type: 'Bearer' })
  t.equal(emulator.control.minted.length, 1)
})

t.test('faults: redirect answers 302 or the given status with Location', async (t) => {
  const { emulator, oauth } = await setup(t)
  emulator.control.inject({ times: 1, fault: { kind: 'redirect', location: 'https://evil.example/token' } })
  emulator.control.inject({ times: 1, fault: { kind: 'redirect', status: 307, location: '/elsewhere' } })
  const first = await oauth()
  t.equal(first.status, 302)
  t.equal(first.headers.location, 'https://evil.example/token')
  const second = await oauth()
  t.equal(second.status, 307)
  t.equal(second.headers.location, '/elsewhere')
})

t.test('faults: latency delays, then answers normally', async (t) => {
  const { emulator, oauth } = await setup(t)
  emulator.control.inject({ times: 1, fault: { kind: 'latency', ms: 150 } })
  const started = performance.now()
  const res = await oauth()
  t.ok(performance.now() - started >= 140, 'the answer waited')
  t.equal(res.status, 200)
  t.match(res.json.access_token, /^[0-9a-f]{32}$/)
})

t.test('records and counters', async (t) => {
  const { emulator, clock, oauth, bearer, embedded } = await setup(t)
  await oauth()
  const token = await bearer()
  await embedded(RECIPIENT, token)
  await embedded(CHECKOUT, token)
  await embedded(CHECKOUT, token)
  t.strictSame(emulator.control.calls, { oauth: 2, recipient: 1, checkout: 2, total: 5 })
  const [first, , third] = emulator.control.received
  t.equal(first?.endpoint, 'oauth')
  t.equal(first?.method, 'POST')
  t.equal(first?.path, OAUTH)
  t.equal(first?.headers.authorization, basic())
  t.equal(first?.rawBody, 'grant_type=client_credentials')
  t.equal(first?.at, clock.now())
  t.equal(third?.endpoint, 'recipient')
  t.strictSame(JSON.parse(third?.rawBody ?? ''), { clientId: CLIENT_ID, claims: { userId: 'user_m_1' } })
  t.equal(emulator.control.minted.length, 3)
})

t.test('reset() clears counters, records, faults and quota but keeps bearers', async (t) => {
  const { emulator, oauth, bearer, embedded } = await setup(t)
  const token = await bearer()
  await embedded(RECIPIENT, token)
  emulator.control.inject({ fault: { kind: 'status', status: 500 } })
  emulator.control.reset()
  t.strictSame(emulator.control.calls, { oauth: 0, recipient: 0, checkout: 0, total: 0 })
  t.equal(emulator.control.received.length, 0)
  t.equal(emulator.control.minted.length, 0)
  const res = await embedded(RECIPIENT, token)
  t.equal(res.status, 200, 'no fault, bearer still valid')
  t.equal(res.headers['x-ratelimit'], '1, 1, 1, 1')
  t.equal((await oauth()).status, 200)
})

t.test('the HTTP control API', async (t) => {
  const { emulator, call, oauth, bearer, embedded } = await setup(t, { controlEnabled: true })
  const token = await bearer()
  await embedded(RECIPIENT, token)
  const state = await call('/__emulator/state', { method: 'GET' })
  t.equal(state.status, 200)
  t.strictSame(state.json, { calls: { oauth: 1, recipient: 1, checkout: 0, total: 2 }, minted: 1, bearers: 1 })

  const json = { 'content-type': 'application/json' }
  t.equal((await call('/__emulator/faults', { headers: json, body: '{"fault":{"kind":"nope"}}' })).status, 400)
  t.equal((await call('/__emulator/faults', { headers: json, body: '{"times":0,"fault":{"kind":"reset"}}' })).status, 400)
  t.equal((await call('/__emulator/faults', { headers: json, body: '{"target":"oauth","times":1,"fault":{"kind":"status","status":503}}' })).status, 204)
  t.equal((await oauth()).status, 503)
  t.equal((await oauth()).status, 200)
  t.equal((await call('/__emulator/faults', { headers: json, body: '{"fault":{"kind":"status","status":500}}' })).status, 204)
  t.equal((await call('/__emulator/faults', { method: 'DELETE' })).status, 204)
  t.equal((await oauth()).status, 200)

  t.equal((await call('/__emulator/remaining', { headers: json, body: '{"remaining":[0]}' })).status, 204)
  t.equal((await oauth()).status, 429)
  t.equal((await call('/__emulator/remaining', { headers: json, body: '{"remaining":"x"}' })).status, 400)

  t.equal((await call('/__emulator/revoke')).status, 204)
  t.equal(emulator.control.bearers.every((b) => b.revoked), true)

  const before = emulator.control.calls.total
  t.equal((await call('/__emulator/reset')).status, 204)
  t.equal(emulator.control.calls.total, 0)
  t.ok(before > 0)
  t.equal((await embedded(RECIPIENT, token)).status, 401, 'revocation survives reset')
  t.equal((await call('/__emulator/nope', { method: 'GET' })).status, 404)
  t.equal(emulator.control.calls.total, 1, 'control routes are not calls')
  t.equal((await oauth()).headers['x-ratelimit'], '2, 2, 2, 2', 'and do not consume quota')
})

t.test('close() finishes promptly with a hanging request in flight', async (t) => {
  const clock = new ManualClock()
  const emulator: Emulator = await startEmulator({ clientId: CLIENT_ID, apiKey: API_KEY, clock })
  const agent = new Agent()
  t.teardown(async () => await agent.destroy())
  emulator.control.inject({ fault: { kind: 'hang' } })
  const pending = request(emulator.url + OAUTH, { method: 'POST', headers: { authorization: basic(), ...FORM }, body: 'grant_type=client_credentials', dispatcher: agent })
  pending.catch(() => {})
  await until('the call to be counted', () => emulator.control.calls.total === 1)

  let guard: NodeJS.Timeout | undefined
  const outcome = await Promise.race([
    emulator.close().then(() => 'closed'),
    new Promise((resolve) => { guard = setTimeout(resolve, 2000, 'stuck') })
  ])
  clearTimeout(guard)
  t.equal(outcome, 'closed')
  await t.rejects(pending, 'the hanging request fails instead of hanging')
  await emulator.close()
  t.pass('close() is idempotent')
})

t.test('the emulator entry point prints its URL and stops on SIGTERM', async (t) => {
  const { spawn } = await import('node:child_process')
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/emulator/main.ts'], {
    env: { ...process.env, EMULATOR_PORT: '0', EMULATOR_CONTROL: '1' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { child.kill('SIGKILL') })
  const [line] = await once(child.stdout, 'data') as [Buffer]
  const url = /http:\/\/127\.0\.0\.1:\d+/.exec(String(line))?.[0]
  t.ok(url, `printed ${String(line).trim()}`)
  const res = await request(`${url ?? ''}/__emulator/state`)
  t.equal(res.statusCode, 200)
  await res.body.dump()
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0)
})

t.test('BoundedLog keeps only the most recent items', async (t) => {
  const log = new BoundedLog<number>(3)
  for (let i = 0; i < 10; i++) log.push(i)
  t.strictSame(log.items, [7, 8, 9])
  log.clear()
  t.strictSame(log.items, [])
})
