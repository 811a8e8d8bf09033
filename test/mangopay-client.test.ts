import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { request } from 'undici'
import { ManualClock } from './manual-clock.js'
import type { Emulator, EndpointName, ReceivedRequest } from '../src/emulator/index.js'
import { REFUSAL_MEMORY_MS, YOUNG_BEARER_MS } from '../src/mangopay/bearer-store.js'
import {
  API_KEY, assertProblem, buildTestApp, CLIENT_ID, post, tokenFor, USER_A, type TestApp
} from './helpers.js'

/**
 * The broker's Mangopay side through its HTTP surface, in front of the real emulator: what the
 * browser gets, and exactly what Mangopay received.
 */

const RECIPIENTS = '/v1/tokens/recipients'
const CHECKOUT = '/v1/tokens/checkout'
const BASIC = `Basic ${Buffer.from(`${CLIENT_ID}:${API_KEY}`).toString('base64')}`
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
/** Generous deadline and no per-user limit: these tests are about Mangopay, on a busy machine. */
const ENV = { MANGOPAY_TIMEOUT_MS: '10000', RATE_LIMIT_MAX: '1000000' }
const INVALID_CREDENTIALS = { Message: 'The authorization credentials are not valid', Type: 'invalid_credentials', Date: 1764324000 }

const KINDS = [
  { kind: 'recipient', url: RECIPIENTS, prefix: 'rec_', scope: 'bankaccounts:r bankaccounts:w' },
  { kind: 'checkout', url: CHECKOUT, prefix: 'chk_', scope: 'checkout.session:r checkout.session:w' }
] as const

function received (emulator: Emulator, ...endpoints: Array<EndpointName | 'embedded'>): ReceivedRequest[] {
  return emulator.control.received.filter(r =>
    endpoints.includes(r.endpoint as EndpointName) || (endpoints.includes('embedded') && (r.endpoint === 'recipient' || r.endpoint === 'checkout')))
}

function embeddedCalls (emulator: Emulator): number {
  const { recipient, checkout } = emulator.control.calls
  return recipient + checkout
}

async function setup (t: Parameters<typeof buildTestApp>[0], options: Parameters<typeof buildTestApp>[1] = {}): Promise<TestApp & { jwt: string }> {
  const built = await buildTestApp(t, { ...options, env: { ...ENV, ...options.env } })
  return { ...built, jwt: await tokenFor(USER_A) }
}

/** The broker and the emulator on one ManualClock, so a test can age the bearer. */
async function setupWithClock (t: Parameters<typeof buildTestApp>[0], options: Parameters<typeof buildTestApp>[1] = {}): Promise<TestApp & { jwt: string, clock: ManualClock }> {
  const clock = new ManualClock()
  return { ...await setup(t, { ...options, deps: { clock }, emulator: { clock } }), clock }
}

/** A bearer straight from the emulator's OAuth endpoint, as if another instance had asked. */
async function bearerFromEmulator (emulator: Emulator): Promise<string> {
  const res = await request(`${emulator.url}/v2.01/oauth/token`, {
    method: 'POST',
    headers: { authorization: BASIC, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials'
  })
  const body = await res.body.json() as { access_token: string }
  if (res.statusCode !== 200) throw new Error(`emulator OAuth answered ${res.statusCode}`)
  return body.access_token
}

for (const { kind, url, prefix, scope } of KINDS) {
  t.test(`happy path: POST ${url} returns the minted ${prefix} token, and Mangopay got exactly the documented calls`, async t => {
    const { app, emulator, jwt } = await setup(t)
    const before = Date.now()
    const res = await post(app, url, { token: jwt })
    const after = Date.now()

    t.equal(res.statusCode, 200)
    t.match(res.headers['content-type'], /^application\/json(;|$)/)
    t.equal(res.headers['cache-control'], 'no-store')
    t.match(res.headers['x-request-id'], UUID, 'a request id is generated')

    const minted = emulator.control.minted
    t.equal(minted.length, 1, 'one token minted')
    const token = minted[0]
    t.equal(token?.kind, kind)
    t.equal(token?.userId, USER_A)

    const body = res.json()
    t.strictSame(Object.keys(body).sort(), ['clientId', 'clientToken', 'environment', 'expiresAt', 'expiresIn', 'scope', 'tokenType', 'userId'])
    t.equal(body.clientToken, token?.token, 'the token the emulator minted')
    t.match(body.clientToken, new RegExp(`^${prefix}[0-9a-f]{32}$`))
    t.equal(body.tokenType, 'Bearer')
    t.type(body.expiresIn, 'number')
    t.ok(Number.isInteger(body.expiresIn) && body.expiresIn <= 900 && body.expiresIn > 890, `expiresIn ${body.expiresIn} in (890, 900]`)
    t.match(body.expiresAt, ISO_UTC)
    const expiresAtMs = Date.parse(body.expiresAt)
    // expiresIn is floor((expiresAt - now) / 1 s) for some now within [before, after].
    t.ok(expiresAtMs - before >= body.expiresIn * 1000, 'expiresAt is at least expiresIn after the request started')
    t.ok(expiresAtMs - after < body.expiresIn * 1000 + 1000, 'and less than expiresIn + 1 s after it ended')
    t.ok(expiresAtMs <= (token?.expiresAt ?? 0), 'never later than the token really expires')
    t.equal(body.scope, scope)
    t.equal(body.clientId, CLIENT_ID)
    t.equal(body.userId, USER_A)
    t.equal(body.environment, 'SANDBOX')

    const [oauth, ...moreOauth] = received(emulator, 'oauth')
    t.equal(moreOauth.length, 0, 'one OAuth call')
    t.equal(oauth?.method, 'POST')
    t.equal(oauth?.path, '/v2.01/oauth/token')
    t.equal(oauth?.headers.authorization, BASIC, 'Basic base64(clientId:apiKey)')
    t.equal(oauth?.headers['content-type'], 'application/x-www-form-urlencoded')
    t.equal(oauth?.rawBody, 'grant_type=client_credentials')
    t.notOk('idempotency-key' in (oauth?.headers ?? {}), 'no Idempotency-Key on the OAuth call')

    const [embedded, ...moreEmbedded] = received(emulator, 'embedded')
    t.equal(moreEmbedded.length, 0, 'one embedded call')
    t.equal(embedded?.method, 'POST')
    t.equal(embedded?.path, `/v2.01/oauth/token/embedded/${kind}`)
    const bearer = emulator.control.bearers[0]?.token
    t.equal(emulator.control.bearers.length, 1)
    t.equal(embedded?.headers.authorization, `Bearer ${bearer}`, 'the bearer the emulator issued')
    t.equal(embedded?.headers['content-type'], 'application/json')
    const expected = { clientId: CLIENT_ID, claims: { userId: USER_A } }
    t.strictSame(JSON.parse(embedded?.rawBody ?? 'null'), expected)
    t.equal(embedded?.rawBody, JSON.stringify(expected), 'no other key in the raw body')
    t.notOk('idempotency-key' in (embedded?.headers ?? {}), 'no Idempotency-Key on the embedded call')
    t.equal(emulator.control.received.length, 2, 'nothing else was called')
  })
}

t.test('X-Request-Id: a sane one is echoed back, an insane one replaced', async t => {
  const { app, jwt } = await setup(t)
  const sane = 'trace-42.abc:XYZ_9'
  const echoed = await post(app, RECIPIENTS, { token: jwt, headers: { 'x-request-id': sane } })
  t.equal(echoed.statusCode, 200)
  t.equal(echoed.headers['x-request-id'], sane)

  for (const insane of ['has spaces <and> "quotes"', 'a'.repeat(129), 'semi;colon', '']) {
    const res = await post(app, RECIPIENTS, { token: jwt, headers: { 'x-request-id': insane } })
    t.equal(res.statusCode, 200)
    t.not(res.headers['x-request-id'], insane)
    t.match(res.headers['x-request-id'], UUID, `${JSON.stringify(insane.slice(0, 20))} is replaced by a fresh id`)
  }
})

t.test('500 concurrent cold requests: exactly one OAuth call, all 200', async t => {
  // 500 JWT verifications and Mangopay calls on a shared 2-core machine: a deadline that is about load, not faults.
  const { app, emulator, jwt } = await setup(t, { env: { MANGOPAY_TIMEOUT_MS: '30000' } })
  const responses = await Promise.all(Array.from({ length: 500 }, async (_, i) => await post(app, i % 2 === 0 ? RECIPIENTS : CHECKOUT, { token: jwt })))
  const statuses = new Map<number, number>()
  for (const res of responses) statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
  t.strictSame([...statuses], [[200, 500]], 'all 500 answered 200')
  t.equal(emulator.control.calls.oauth, 1, 'one OAuth call')
  t.equal(embeddedCalls(emulator), 500)
  const tokens = new Set(responses.map(r => r.json().clientToken))
  t.equal(tokens.size, 500, 'each request got its own token')
  const bearer = emulator.control.bearers[0]?.token
  t.ok(received(emulator, 'embedded').every(r => r.headers.authorization === `Bearer ${bearer}`), 'all with the one bearer')
})

t.test('the bearer is reused across requests', async t => {
  const { app, emulator, jwt } = await setup(t)
  for (let i = 0; i < 6; i++) {
    const res = await post(app, i % 2 === 0 ? RECIPIENTS : CHECKOUT, { token: jwt })
    t.equal(res.statusCode, 200)
  }
  t.equal(emulator.control.calls.oauth, 1, '6 requests, 1 OAuth call')
  t.equal(embeddedCalls(emulator), 6)
  t.equal(new Set(received(emulator, 'embedded').map(r => r.headers.authorization)).size, 1)
})

t.test('a revoked bearer: one re-authentication, one retry, the request still succeeds', async t => {
  const { app, emulator, jwt } = await setup(t)
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200)
  const old = emulator.control.bearers[0]?.token
  // Seconds old: a bearer fetched for no refusal is replaced whatever its age (SPEC §4).
  emulator.control.revokeBearers()
  const embeddedBefore = embeddedCalls(emulator)

  const res = await post(app, CHECKOUT, { token: jwt })
  t.equal(res.statusCode, 200)
  t.equal(emulator.control.calls.oauth, 2, 'exactly one extra OAuth call')
  t.equal(embeddedCalls(emulator) - embeddedBefore, 2, 'the embedded endpoint was called twice for that request')
  const fresh = emulator.control.bearers[1]?.token
  t.ok(fresh !== undefined && fresh !== old)
  t.strictSame(received(emulator, 'embedded').slice(-2).map(r => r.headers.authorization), [`Bearer ${old}`, `Bearer ${fresh}`],
    'first with the revoked bearer, then with the new one')
  t.equal(res.json().clientToken, emulator.control.minted.at(-1)?.token)

  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200)
  t.equal(emulator.control.calls.oauth, 2, 'the new bearer is kept')
})

t.test('a bearer Mangopay accepted, then revoked seconds after it replaced a refused one, is replaced again', async t => {
  const { app, emulator, jwt } = await setup(t)
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200)
  emulator.control.revokeBearers()
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200, 'the first revocation: a new bearer once')
  t.equal((await post(app, CHECKOUT, { token: jwt })).statusCode, 200, 'that new bearer works')
  t.equal(emulator.control.calls.oauth, 2)
  // Within YOUNG_BEARER_MS of its issue, but Mangopay has accepted it since: this refusal is news.
  emulator.control.revokeBearers()
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200, 'the second revocation: a new bearer again, not 502')
  t.equal(emulator.control.calls.oauth, 3)
})

t.test('a key without Checkout rights: Recipients successes in between do not turn each Checkout 401 into an OAuth call', async t => {
  const { app, emulator, jwt } = await setup(t)
  emulator.control.inject({ target: 'checkout', fault: { kind: 'status', status: 401, body: INVALID_CREDENTIALS } })
  const statuses: number[] = []
  for (let i = 0; i < 10; i++) {
    statuses.push((await post(app, CHECKOUT, { token: jwt })).statusCode)
    statuses.push((await post(app, RECIPIENTS, { token: jwt })).statusCode)
  }
  t.same(statuses, Array.from({ length: 20 }, (_, i) => i % 2 === 0 ? 502 : 200))
  t.equal(emulator.control.calls.oauth, 2, 'the first refusal gets a new bearer once; the nine after it none')
})

t.test('a persistent 401: 502 upstream_auth_failed after one re-authentication, never a loop', async t => {
  const { app, emulator, jwt } = await setup(t)
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200)
  emulator.control.inject({ target: 'embedded', fault: { kind: 'status', status: 401, body: INVALID_CREDENTIALS } })
  const oauthBefore = emulator.control.calls.oauth
  const embeddedBefore = embeddedCalls(emulator)

  const res = await post(app, RECIPIENTS, { token: jwt })
  t.equal(res.statusCode, 502)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.equal(res.json().code, 'upstream_auth_failed')
  t.equal(embeddedCalls(emulator) - embeddedBefore, 2, 'exactly 2 embedded calls')
  t.equal(emulator.control.calls.oauth - oauthBefore, 1, 'exactly 1 extra OAuth call')

  await sleep(300)
  t.equal(embeddedCalls(emulator) - embeddedBefore, 2, 'and nothing more afterwards')
  t.equal(emulator.control.calls.oauth - oauthBefore, 1)

  emulator.control.clearFaults()
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200, 'healthy once Mangopay accepts the bearer again')
})

t.test('a 401 on every bearer (a key without embedded rights): one re-authentication, then 502 at once, at most one OAuth call per YOUNG_BEARER_MS', async t => {
  const { app, emulator, logs, jwt, clock } = await setupWithClock(t)
  emulator.control.inject({ target: 'embedded', fault: { kind: 'status', status: 401, body: INVALID_CREDENTIALS } })
  const refusedTen = async (): Promise<void> => {
    for (let i = 0; i < 10; i++) assertProblem(t, await post(app, RECIPIENTS, { token: jwt }), 502, 'upstream_auth_failed')
  }
  const keptLines = () => logs.lines().filter(l => l.msg === 'Mangopay refused the bearer that replaced a refused one seconds ago; not re-authenticating, another would be refused too').length

  await refusedTen()
  t.equal(emulator.control.calls.oauth, 2, 'the first request drops the bearer and gets a new one once (SPEC §4); the other nine make no OAuth call')
  t.equal(embeddedCalls(emulator), 11, 'the first request retried once, the others did not')
  t.equal(keptLines(), 9, 'each of the nine says why')

  clock.advance(YOUNG_BEARER_MS)
  await refusedTen()
  t.equal(emulator.control.calls.oauth, 3, 'once that bearer is older, one re-authentication again; its young successor is kept')
  t.equal(embeddedCalls(emulator), 22)

  emulator.control.clearFaults()
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200, 'healthy once Mangopay accepts the bearer')
  t.equal(emulator.control.calls.oauth, 3, 'the bearer kept is the one used')
})

t.test('OAuth refused (wrong API key): 502 upstream_auth_failed, remembered for REFUSAL_MEMORY_MS, never cached as a bearer', async t => {
  const { app, emulator, jwt, clock } = await setupWithClock(t)
  emulator.control.setApiKey('other')
  for (let i = 0; i < 20; i++) assertProblem(t, await post(app, RECIPIENTS, { token: jwt }), 502, 'upstream_auth_failed')
  t.equal(emulator.control.calls.oauth, 1, 'one OAuth call for twenty requests')
  t.equal(embeddedCalls(emulator), 0, 'no embedded call without a bearer')
  t.equal(emulator.control.bearers.length, 0)

  emulator.control.setApiKey(API_KEY)
  clock.advance(REFUSAL_MEMORY_MS - 1)
  assertProblem(t, await post(app, RECIPIENTS, { token: jwt }), 502, 'upstream_auth_failed')
  t.equal(emulator.control.calls.oauth, 1, 'still remembered just before REFUSAL_MEMORY_MS')
  clock.advance(1)
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200, 'then Mangopay is asked again')
  t.equal(emulator.control.calls.oauth, 2)
})

t.test('a key rotation (SIGHUP) while a refusal is remembered still calls OAuth, with the new key', async t => {
  const newKey = 'sk_test_embedded_rotated_0a1b2c3d4e5f6789'
  const dir = mkdtempSync(join(tmpdir(), 'broker-refusal-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const keyFile = join(dir, 'mangopay-api-key')
  writeFileSync(keyFile, API_KEY)
  const { app, emulator, logs, jwt } = await setupWithClock(t, { env: { MANGOPAY_API_KEY: undefined, MANGOPAY_API_KEY_FILE: keyFile } })
  t.teardown(() => {
    if (logs.text().includes(newKey)) throw new Error('the new key reached the logs')
  })
  emulator.control.setApiKey(newKey)
  for (let i = 0; i < 3; i++) assertProblem(t, await post(app, RECIPIENTS, { token: jwt }), 502, 'upstream_auth_failed')
  t.equal(emulator.control.calls.oauth, 1, 'the refusal of the old key is remembered')

  writeFileSync(keyFile, newKey)
  t.same(await app.mangopay.reloadSecrets(), { apiKey: 'rotated', tls: 'none' })
  t.equal(emulator.control.calls.oauth, 2, 'the new key was tried at once')
  t.equal(received(emulator, 'oauth').at(-1)?.headers.authorization, `Basic ${Buffer.from(`${CLIENT_ID}:${newKey}`).toString('base64')}`)
  t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200, 'and serves at once')
  t.equal(emulator.control.calls.oauth, 2)
})

for (const tokenType of ['BEARER', 'Bearer', 'bearer']) {
  t.test(`OAuth token_type "${tokenType}" is accepted`, async t => {
    const { app, emulator, jwt } = await setup(t, { emulator: { bearerTokenType: tokenType } })
    const res = await post(app, CHECKOUT, { token: jwt })
    t.equal(res.statusCode, 200)
    t.equal(received(emulator, 'embedded')[0]?.headers.authorization, `Bearer ${emulator.control.bearers[0]?.token}`,
      'the broker always sends the literal "Bearer " prefix')
  })
}

t.test('odd expires_in from OAuth still yields a usable bearer, without an OAuth call per request', async t => {
  for (const expiresIn of [0, -5, 'abc', null, 1e9, '1200']) {
    t.test(`expires_in ${JSON.stringify(expiresIn)}`, async t => {
      const { app, emulator, jwt } = await setup(t)
      const bearer = await bearerFromEmulator(emulator)
      emulator.control.inject({
        target: 'oauth',
        times: 1,
        fault: { kind: 'status', status: 200, body: { access_token: bearer, token_type: 'bearer', expires_in: expiresIn } }
      })
      const oauthBefore = emulator.control.calls.oauth
      for (let i = 0; i < 3; i++) t.equal((await post(app, RECIPIENTS, { token: jwt })).statusCode, 200)
      t.equal(emulator.control.calls.oauth - oauthBefore, 1, 'one OAuth call for three requests')
      t.ok(received(emulator, 'embedded').every(r => r.headers.authorization === `Bearer ${bearer}`), 'the odd bearer is the one used')
    })
  }

  t.test('expires_in 0 on a bearer Mangopay then refuses: re-authenticates and succeeds', async t => {
    const { app, emulator, jwt } = await setup(t)
    const fake = 'x'.repeat(32)
    emulator.control.inject({ target: 'oauth', times: 1, fault: { kind: 'status', status: 200, body: { access_token: fake, token_type: 'bearer', expires_in: 0 } } })
    await app.mangopay.warmUp()
    const res = await post(app, RECIPIENTS, { token: jwt })
    t.equal(res.statusCode, 200)
    t.equal(res.json().clientToken, emulator.control.minted[0]?.token)
    t.equal(received(emulator, 'embedded')[0]?.headers.authorization, `Bearer ${fake}`, 'the odd answer was accepted as a bearer')
    t.equal(emulator.control.calls.oauth, 2)
  })
})

t.test('a browser that leaves while its token is minted: the token is still audited, once, as not delivered', async t => {
  const { app, emulator, logs, jwt } = await setup(t)
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'latency', ms: 300 } })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(`POST ${RECIPIENTS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${jwt}\r\nX-Request-Id: leaving-browser\r\nContent-Length: 0\r\n\r\n`)
  await sleep(100)
  socket.destroy()
  // The Mangopay answer lands ~200 ms after the browser left.
  for (let i = 0; i < 50 && emulator.control.minted.length === 0; i++) await sleep(20)
  await sleep(200)

  t.equal(emulator.control.minted.length, 1, 'Mangopay minted the token')
  const lines = logs.lines().filter(l => l.requestId === 'leaving-browser')
  const audits = lines.filter(l => l.msg === 'embedded token issued')
  t.equal(audits.length, 1, 'exactly one audit line')
  t.equal(audits[0]?.delivered, false, 'saying the answer never reached the browser')
  const minted = String(emulator.control.minted[0]?.token)
  t.equal((audits[0]?.audit as { fingerprint?: string } | undefined)?.fingerprint, createHash('sha256').update(minted).digest('base64url').slice(0, 12), 'of the minted token')
  t.notOk(logs.text().includes(minted), 'never the token itself')
})

t.test('logs of a happy-path and fault run hold no secret, and one audit line per token', async t => {
  const { app, emulator, logs, clock } = await setupWithClock(t)
  const jwt = await tokenFor(USER_A, {}, { subject: 'idp|audit-subject' })
  const issued: Array<{ kind: string, requestId: string, body: Record<string, unknown> }> = []
  async function mint (url: string, kind: string): Promise<void> {
    const res = await post(app, url, { token: jwt })
    t.equal(res.statusCode, 200)
    issued.push({ kind, requestId: String(res.headers['x-request-id']), body: res.json() })
  }

  await mint(RECIPIENTS, 'recipient')
  await mint(CHECKOUT, 'checkout')
  emulator.control.revokeBearers()
  await mint(RECIPIENTS, 'recipient')
  emulator.control.inject({
    target: 'embedded',
    times: 1,
    fault: { kind: 'status', status: 400, body: { Message: 'bad', Type: 'param_error', Id: 'e-1', Date: 1764324000, errors: { 'claims.userId': 'no' } } }
  })
  t.equal((await post(app, CHECKOUT, { token: jwt })).statusCode, 502)
  clock.advance(YOUNG_BEARER_MS)
  emulator.control.inject({ target: 'embedded', fault: { kind: 'status', status: 401, body: INVALID_CREDENTIALS } })
  t.equal((await post(app, CHECKOUT, { token: jwt })).statusCode, 502, 'one re-authentication')
  t.equal((await post(app, CHECKOUT, { token: jwt })).statusCode, 502, 'none for the bearer it gave')
  emulator.control.clearFaults()
  // Persistent, so that retries of network errors cannot turn it into a success.
  emulator.control.inject({ target: 'embedded', fault: { kind: 'reset' } })
  t.equal((await post(app, CHECKOUT, { token: jwt })).statusCode, 503)
  emulator.control.clearFaults()
  await mint(CHECKOUT, 'checkout')

  const text = logs.text()
  const bearers = emulator.control.bearers.map(b => b.token)
  const minted = emulator.control.minted.map(m => m.token)
  t.ok(bearers.length >= 3, `${bearers.length} bearers issued`)
  t.equal(minted.length, 4)
  const secrets: Array<[string, string]> = [
    ['the API key', API_KEY],
    ['the Basic credential', BASIC.slice('Basic '.length)],
    ['the JWT', jwt],
    ...bearers.map((b, i): [string, string] => [`bearer #${i}`, b]),
    ...minted.map((m, i): [string, string] => [`minted token #${i}`, m])
  ]
  for (const [name, secret] of secrets) t.notOk(text.includes(secret), `${name} is not in the logs`)
  t.notMatch(text, /rec_[0-9a-f]{8}|chk_[0-9a-f]{8}/, 'no embedded token, whatever its origin')

  const audits = logs.lines().filter(l => l.msg === 'embedded token issued')
  t.equal(audits.length, issued.length, 'one audit line per issued token')
  issued.forEach(({ kind, requestId, body }, i) => {
    const line = audits[i] as { requestId?: string, audit?: Record<string, unknown>, req?: Record<string, unknown>, res?: Record<string, unknown>, responseTime?: unknown }
    const audit = line?.audit ?? {}
    t.equal(line?.requestId, requestId, 'the audit line carries the request id')
    const ending = logs.lines().filter(l => l.requestId === requestId && (l.msg === 'embedded token issued' || l.msg === 'request completed'))
    t.same(ending.map(l => l.msg), ['embedded token issued'], 'and is the request\'s only access line')
    t.match(line, { req: { method: 'POST', url: issued[i]?.kind === 'recipient' ? RECIPIENTS : CHECKOUT }, res: { statusCode: 200 }, responseTime: Number }, 'with the access fields')
    t.equal(audit.kind, kind)
    t.equal(audit.mangopayUserId, USER_A)
    t.equal(audit.subject, 'idp|audit-subject')
    t.equal(audit.expiresAt, body.expiresAt)
    t.match(audit.fingerprint, /^[A-Za-z0-9_-]{12}$/, 'a 12-char fingerprint')
    const expected = createHash('sha256').update(String(body.clientToken)).digest('base64url').slice(0, 12)
    t.equal(audit.fingerprint, expected, 'of this token')
    t.notOk(JSON.stringify(line).includes(String(body.clientToken)), 'and never the token itself')
  })
})
