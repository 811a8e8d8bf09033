import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { API_KEY, assertProblem, buildTestApp, CLIENT_ID, post, tokenFor, USER_A, type TestApp } from './helpers.js'
import { LiveSecrets } from '../src/observability/index.js'

/**
 * SPEC §8 "Logs": the API key, the Basic value, the bearer and minted tokens are scrubbed from
 * every logged string, whatever carries them: here Mangopay's own error text, from an emulator
 * fault whose body repeats the credentials it was sent, and a URL a browser chose.
 */

const basicOf = (key: string): string => Buffer.from(`${CLIENT_ID}:${key}`).toString('base64')
const ROTATED_KEY = 'sk_test_embedded_rotated_scrub_7c6b5a49382716'

/** The logged Mangopay error texts (SPEC §4 logs them, for support). */
function mangopayMessages (broker: TestApp): string[] {
  return broker.logs.lines()
    .map(l => (l.mangopay as { message?: string } | undefined)?.message)
    .filter((m): m is string => m !== undefined)
}

function assertAbsent (t: Test, text: string, secrets: Record<string, string>): void {
  for (const [name, secret] of Object.entries(secrets)) t.notOk(text.includes(secret), `no ${name} in the logs`)
}

t.test('an OAuth error echoing the Basic credentials is logged without the API key or the Basic value', async t => {
  const broker = await buildTestApp(t)
  broker.emulator.control.inject({ target: 'oauth', times: 1, fault: { kind: 'echo-credentials', status: 400 } })
  const res = await post(broker.app, '/v1/tokens/recipients', { token: await tokenFor(USER_A) })
  assertProblem(t, res, 502, 'upstream_auth_failed')

  const messages = mangopayMessages(broker)
  t.ok(messages.length > 0, 'Mangopay\'s error_description was logged')
  t.ok(messages.every(m => m.startsWith('Authorization: Basic [redacted] (acme-client:[redacted]) was not accepted')), 'with the secrets cut out, the rest kept')
  assertAbsent(t, broker.logs.text(), { 'API key': API_KEY, 'Basic value': basicOf(API_KEY) })
})

t.test('an embedded-endpoint error echoing the bearer is logged without it', async t => {
  const broker = await buildTestApp(t)
  const jwt = await tokenFor(USER_A)
  t.equal((await post(broker.app, '/v1/tokens/recipients', { token: jwt })).statusCode, 200)
  broker.emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'echo-credentials', status: 400 } })
  assertProblem(t, await post(broker.app, '/v1/tokens/checkout', { token: jwt }), 502, 'upstream_error')

  const bearer = broker.emulator.control.bearers[0]?.token ?? 'none'
  t.ok(mangopayMessages(broker).includes('Authorization: Bearer [redacted] was not accepted'), 'Mangopay\'s Message logged, the bearer cut out')
  assertAbsent(t, broker.logs.text(), { bearer })
})

t.test('a minted token a browser puts in a URL or a request id is not logged', async t => {
  const broker = await buildTestApp(t)
  const minted = (await post(broker.app, '/v1/tokens/recipients', { token: await tokenFor(USER_A) })).json().clientToken as string
  t.ok(minted.length >= 16)
  assertProblem(t, await broker.app.inject({ url: `/v1/tokens/${minted}` }), 404, 'not_found')
  await broker.app.inject({ url: '/healthz', headers: { 'x-request-id': minted } })

  const urls = broker.logs.lines().map(l => (l.req as { url?: string } | undefined)?.url)
  t.ok(urls.includes('/v1/tokens/[redacted]'), 'the path is logged with the token cut out')
  assertAbsent(t, broker.logs.text(), { 'minted token': minted })
})

t.test('after a key rotation (SIGHUP), the new key is scrubbed too', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'broker-scrub-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const keyFile = join(dir, 'mangopay-api-key')
  writeFileSync(keyFile, `${API_KEY}\n`)
  const broker = await buildTestApp(t, { env: { MANGOPAY_API_KEY: undefined, MANGOPAY_API_KEY_FILE: keyFile } })
  t.equal((await post(broker.app, '/v1/tokens/recipients', { token: await tokenFor(USER_A) })).statusCode, 200)

  // The new key is tried at once; Mangopay refuses it, repeating it in its answer.
  writeFileSync(keyFile, `${ROTATED_KEY}\n`)
  broker.emulator.control.inject({ target: 'oauth', times: 1, fault: { kind: 'echo-credentials', status: 400 } })
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'refused', tls: 'none' })

  t.ok(mangopayMessages(broker).some(m => m.includes('(acme-client:[redacted])')), 'the refusal, with the key cut out, was logged')
  assertAbsent(t, broker.logs.text(), { 'rotated API key': ROTATED_KEY, 'rotated Basic value': basicOf(ROTATED_KEY) })
})

t.test('a minted token is found wherever a run of its characters stands whole', async t => {
  const secrets = new LiveSecrets()
  const hex = '3f9c2a71b4e8d05c6a1f7e2b9d4c8a13'
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWJ5dGVz'
  const unpadded = 'YWJj+ZGVm/Z2hpamtsbW5vcHFyc3Q'
  for (const token of [hex, jwt, unpadded]) secrets.token(token)
  t.equal(secrets.scrub(`{"url":"/v1/tokens/${hex}?x=1"}`), '{"url":"/v1/tokens/[redacted]?x=1"}', 'in a path')
  t.equal(secrets.scrub(`{"msg":"line\\n${hex}"}`), '{"msg":"line\\n[redacted]"}', 'after a JSON escape')
  t.equal(secrets.scrub(`Authorization: Bearer ${jwt}`), 'Authorization: Bearer [redacted]', 'a JWT, dots and all')
  t.equal(secrets.scrub(`key=${unpadded}=;`), 'key=[redacted];', 'standard base64, with the padding it was minted without')
  const plain = '{"service":"mangopay-token-broker","requestId":"0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"}'
  t.equal(secrets.scrub(plain), plain, 'other runs untouched')
})

t.test('credentials and short tokens are searched anywhere, as written and as JSON escapes them', async t => {
  const secrets = new LiveSecrets()
  const key = 'sk"test\\key-0123456789'
  secrets.credential(key)
  secrets.token('short')
  t.equal(secrets.scrub(`raw ${key}.`), 'raw [redacted].')
  t.equal(secrets.scrub(JSON.stringify({ msg: `in ${key}x` })), '{"msg":"in [redacted]x"}')
  t.equal(secrets.scrub('ashortb'), 'a[redacted]b', 'a token too short to look up is searched for')
})
