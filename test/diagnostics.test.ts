import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { exportJWK, generateKeyPair } from 'jose'
import { API_KEY, AUDIENCE, ISSUER, USER_A, assertProblem, buildTestApp, opsGet, post, serverEnv, signJwt, spawnServer, startTestEmulator, tokenFor, unusedPort, until, RSA_PUBLIC_PEM, type TestApp } from './helpers.js'
import { createTestPki } from './tls-certs.js'

/**
 * Failures an operator can diagnose from the logs alone (SPEC §8, Logs): the root cause of a
 * Mangopay or identity-provider failure, once per change of state, with `host:port`; the
 * failed check of a 401; readiness naming refused credentials; the start-up settings line.
 */

const RECIPIENTS = '/v1/tokens/recipients'
type Line = Record<string, any>

async function listen (t: Test, server: Server): Promise<string> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

const causeLines = (broker: TestApp, upstream: string): Line[] => (broker.logs.lines() as Line[]).filter(l => l.upstream === upstream && l.cause !== undefined)
const recoveryLines = (broker: TestApp, upstream: string): Line[] => (broker.logs.lines() as Line[]).filter(l => l.upstream === upstream && l.recovered !== undefined)

t.test('a wrong MANGOPAY_BASE_URL port: ECONNREFUSED and host:port, logged once; the opening circuit names it', async t => {
  const port = await unusedPort()
  const broker = await buildTestApp(t, { env: { MANGOPAY_BASE_URL: `http://127.0.0.1:${port}`, MANGOPAY_CIRCUIT_FAILURES: '2' } })
  const jwt = await tokenFor(USER_A)
  for (let i = 0; i < 3; i++) t.equal((await post(broker.app, RECIPIENTS, { token: jwt })).statusCode, 503)

  const causes = causeLines(broker, 'mangopay')
  t.equal(causes.length, 1, 'one line for the whole run of identical failures')
  t.match(causes[0], { level: 50, cause: { code: 'ECONNREFUSED', host: `127.0.0.1:${port}` }, msg: `Mangopay is failing: ECONNREFUSED from 127.0.0.1:${port}` })
  const opened = (broker.logs.lines() as Line[]).find(l => l.circuit?.to === 'open')
  t.match(opened, { circuit: { lastCause: { code: 'ECONNREFUSED', host: `127.0.0.1:${port}` } } }, 'the circuit line carries the last cause')
})

t.test('a Mangopay host that does not resolve: ENOTFOUND and host:port', async t => {
  const broker = await buildTestApp(t, { env: { MANGOPAY_BASE_URL: 'https://mangopay-broker-test.invalid/proxy?x=1', MANGOPAY_RETRIES: '0' } })
  t.equal((await post(broker.app, RECIPIENTS, { token: await tokenFor(USER_A) })).statusCode, 503)
  const causes = causeLines(broker, 'mangopay')
  t.equal(causes.length, 1)
  t.match(causes[0], { cause: { code: 'ENOTFOUND', host: 'mangopay-broker-test.invalid:443' } })
  t.notMatch(broker.logs.text(), /\/proxy|x=1/, 'host:port only, never the path or the query')
})

t.test('a certificate Mangopay\'s host cannot be verified with: the TLS code is the cause', async t => {
  const pki = createTestPki()
  t.teardown(pki.remove)
  // The emulator's certificate is signed by a CA the broker does not trust.
  const broker = await buildTestApp(t, { emulator: { tls: { cert: pki.server.cert, key: pki.server.key } } })
  t.equal((await post(broker.app, RECIPIENTS, { token: await tokenFor(USER_A) })).statusCode, 503)
  const causes = causeLines(broker, 'mangopay')
  t.equal(causes.length, 1)
  t.match(causes[0]?.cause?.code, /^(UNABLE_TO_|CERT_|DEPTH_ZERO_|SELF_SIGNED_)/, `a certificate code (${String(causes[0]?.cause?.code)})`)
  t.equal(causes[0]?.cause?.host, new URL(broker.emulator.url).host)
})

t.test('a different cause logs again, and so does the recovery', async t => {
  const broker = await buildTestApp(t, { env: { MANGOPAY_CIRCUIT_FAILURES: '100' } })
  const jwt = await tokenFor(USER_A)
  broker.emulator.control.inject({ target: 'oauth', times: 3, fault: { kind: 'status', status: 503 } })
  t.equal((await post(broker.app, RECIPIENTS, { token: jwt })).statusCode, 502, 'three 503s in a row')
  t.equal((await post(broker.app, RECIPIENTS, { token: jwt })).statusCode, 200)
  broker.emulator.control.inject({ target: 'recipient', times: 1, fault: { kind: 'reset' } })
  t.equal((await post(broker.app, RECIPIENTS, { token: jwt })).statusCode, 200, 'a reset, retried')

  const lines = (broker.logs.lines() as Line[]).filter(l => l.upstream === 'mangopay')
  t.equal(lines.length, 4)
  t.match(lines[0], { level: 50, cause: { status: 503, host: new URL(broker.emulator.url).host } })
  t.match(lines[1], { level: 30, recovered: { after: 'HTTP 503' }, msg: 'Mangopay answers again' })
  t.match(lines[2]?.cause?.code, /^(ECONNRESET|UND_ERR_SOCKET)$/, `then the reset (${String(lines[2]?.cause?.code)})`)
  t.match(lines[3], { recovered: { after: lines[2]?.cause?.code } })
})

t.test('readiness says when Mangopay refused the credentials', async t => {
  let shift = 0
  const broker = await buildTestApp(t, { deps: { clock: { now: () => Date.now() + shift } } })
  broker.emulator.control.setApiKey('sk_test_some_other_key_000000000000')
  const ready = await broker.app.inject({ method: 'GET', url: '/readyz' })
  t.same(assertProblem(t, ready, 503, 'upstream_unavailable').failing, ['bearer'], 'the public port names the check')
  const detailed = await opsGet(broker.app, '/readyz')
  t.equal(detailed.statusCode, 503)
  t.equal(detailed.json().checks.bearer, 'credentials_refused', 'the metrics port says why')
  t.match(detailed.json().detail, /refused the broker's credentials/)
  const again = await opsGet(broker.app, '/readyz')
  t.equal(again.json().checks.bearer, 'credentials_refused', 'remembered between polls')
  t.equal(broker.emulator.control.calls.oauth, 1, 'without asking Mangopay again')
  t.match(causeLines(broker, 'mangopay'), [{ cause: { status: 401 } }], 'the refusal is the logged cause')

  broker.emulator.control.setApiKey(API_KEY)
  shift += 11_000 // past readiness's and the bearer store's memory of the refusal
  t.equal((await broker.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
  t.equal(recoveryLines(broker, 'mangopay').length, 1, 'and the recovery')
})

function refusal (broker: TestApp, res: { headers: Record<string, unknown> }): Line | undefined {
  return (broker.logs.lines() as Line[]).find(l => l.requestId === res.headers['x-request-id'] && typeof l.msg === 'string' && l.msg.startsWith('refused:'))
}

t.test('a 401\'s log line names the failed check; the answer does not', async t => {
  const broker = await buildTestApp(t)
  const now = Math.floor(Date.now() / 1000)
  const cases: Array<[string, string, Line]> = [
    ['expired', await tokenFor(USER_A, {}, { expiresIn: now - 3600 }), { reason: 'expired', claim: 'exp' }],
    ['wrong audience', await tokenFor(USER_A, {}, { audience: 'someone-else' }), { reason: 'claim', claim: 'aud', check: 'check_failed' }],
    ['wrong issuer', await tokenFor(USER_A, {}, { issuer: 'https://other-idp.example.test/' }), { reason: 'claim', claim: 'iss', check: 'check_failed' }],
    ['not a JWT', 'not-a-jwt', { reason: 'malformed' }]
  ]
  for (const [name, token, check] of cases) {
    const res = await post(broker.app, RECIPIENTS, { token })
    assertProblem(t, res, 401, 'unauthenticated')
    t.notMatch(res.body, /"(reason|claim|check)"/, `${name}: the check stays in the logs`)
    t.match(refusal(broker, res), { code: 'unauthenticated', auth: check }, `${name}: the line names it`)
  }
})

t.test('a session without the user-id claim: the 403 line names the claim', async t => {
  const broker = await buildTestApp(t)
  const res = await post(broker.app, RECIPIENTS, { token: await signJwt({}) })
  assertProblem(t, res, 403, 'no_mangopay_user')
  t.match(refusal(broker, res), { auth: { reason: 'claim', claim: 'mangopay_user_id', check: 'missing' } })
})

t.test('a kid the key set does not hold: unknown_key', async t => {
  const pair = await generateKeyPair('RS256', { extractable: true })
  const jwk = { ...await exportJWK(pair.publicKey), kid: 'key-known', alg: 'RS256', use: 'sig' }
  const url = await listen(t, createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })) }))
  const broker = await buildTestApp(t, { env: { AUTH_JWT_PUBLIC_KEY: undefined, AUTH_JWKS_URL: `${url}/jwks.json` } })
  const res = await post(broker.app, RECIPIENTS, { token: await tokenFor(USER_A, {}, { key: pair.privateKey, kid: 'key-unknown' }) })
  assertProblem(t, res, 401, 'unauthenticated')
  t.match(refusal(broker, res), { auth: { reason: 'unknown_key' } })
})

t.test('an identity provider that fails: its cause once per change, and its recovery', async t => {
  const pair = await generateKeyPair('RS256', { extractable: true })
  const jwk = { ...await exportJWK(pair.publicKey), kid: 'k1', alg: 'RS256', use: 'sig' }
  const state = { status: 500 }
  const url = await listen(t, createServer((_req, res) => {
    if (state.status !== 200) res.writeHead(state.status).end('down')
    else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }))
  }))
  let shift = 0
  const broker = await buildTestApp(t, { env: { AUTH_JWT_PUBLIC_KEY: undefined, AUTH_JWKS_URL: `${url}/a/jwks.json?tenant=t1` }, deps: { clock: { now: () => Date.now() + shift } } })
  const host = new URL(url).host
  const ready = async (): Promise<number> => {
    shift += 10_000 // past readiness's memory of the last failure
    return (await broker.app.inject({ method: 'GET', url: '/readyz' })).statusCode
  }
  t.equal(await ready(), 503)
  t.equal(await ready(), 503)
  state.status = 502
  t.equal(await ready(), 503)
  state.status = 200
  t.equal(await ready(), 200)

  const lines = (broker.logs.lines() as Line[]).filter(l => l.upstream === 'identity_provider')
  t.equal(lines.length, 3, 'HTTP 500 once, HTTP 502, the recovery')
  t.match(lines[0], { level: 40, cause: { status: 500, host }, auth: { jwks: 'unavailable' } })
  t.match(lines[1], { cause: { status: 502, host } })
  t.match(lines[2], { recovered: { host, after: 'HTTP 502' } })
  t.notMatch(broker.logs.text(), /tenant=t1|\/a\/jwks/, 'host:port only')
})

t.test('a session endpoint that refuses connections: ECONNREFUSED and host:port, once', async t => {
  const port = await unusedPort()
  const broker = await buildTestApp(t, { env: { AUTH_JWT_PUBLIC_KEY: undefined, AUTH_ISSUER: undefined, AUTH_AUDIENCE: undefined, AUTH_MODE: 'forward', AUTH_FORWARD_URL: `http://127.0.0.1:${port}/session` } })
  for (let i = 0; i < 2; i++) assertProblem(t, await post(broker.app, RECIPIENTS, { headers: { authorization: 'Bearer opaque' } }), 503, 'auth_unavailable')
  t.match(causeLines(broker, 'identity_provider'), [{ cause: { code: 'ECONNREFUSED', host: `127.0.0.1:${port}` } }])
})

t.test('each SIGHUP reload logs its outcome, uncensored: reloaded, unchanged, failed', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'broker-diag-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const keyFile = join(dir, 'mangopay-api-key')
  writeFileSync(keyFile, API_KEY)
  const broker = await buildTestApp(t, { env: { MANGOPAY_API_KEY: undefined, MANGOPAY_API_KEY_FILE: keyFile } })
  const newKey = 'sk_test_embedded_diag_rotated_1234567890'
  writeFileSync(keyFile, newKey)
  broker.emulator.control.setApiKey(newKey)
  await broker.app.mangopay.reloadSecrets()
  await broker.app.mangopay.reloadSecrets()
  writeFileSync(keyFile, 'sk_test_embedded_diag_wrong_0000000000')
  await broker.app.mangopay.reloadSecrets()
  const reloads = (broker.logs.lines() as Line[]).filter(l => l.reload !== undefined)
  t.match(reloads, [
    { level: 30, msg: 'secrets reload: reloaded', reload: { outcome: 'reloaded', mangopayKey: 'rotated', tls: 'none' } },
    { level: 30, msg: 'secrets reload: unchanged', reload: { outcome: 'unchanged', mangopayKey: 'unchanged' } },
    { level: 40, msg: 'secrets reload: failed', reload: { outcome: 'failed', mangopayKey: 'refused' } }
  ])
  t.equal(reloads.length, 3)
  t.notOk(broker.logs.text().includes(newKey), 'the new key is not logged')
})

t.test('the start-up line states the effective settings without secrets', async t => {
  const emulator = await startTestEmulator(t)
  const server = spawnServer(t, serverEnv(emulator.url, {
    CORS_ORIGINS: 'https://shop.example.com',
    REDIS_URL: 'redis://127.0.0.1:6379',
    EMBEDDED_TOKEN_REUSE_MIN_TTL_S: '120'
  }))
  const started = (): Line | undefined => server.stdout().split('\n').filter(l => l.includes('"msg":"broker started"')).map(l => JSON.parse(l) as Line)[0]
  await until('the start-up line', () => {
    if (server.child.exitCode !== null) throw new Error(`the server exited: ${server.stderr()}`)
    return started() !== undefined
  }, 60_000)
  t.match(started(), {
    level: 30,
    settings: {
      auth: { mode: 'jwt', identityProvider: { kind: 'public_key', issuer: ISSUER, audience: AUDIENCE } },
      mangopay: { environment: 'sandbox', host: new URL(emulator.url).host, keyFrom: 'env' },
      origins: ['https://shop.example.com'],
      redis: { host: '127.0.0.1:6379', tls: false },
      limits: { perUser: { max: Number, windowMs: Number }, failedAuth: { max: Number }, budget: { perUser: Number } },
      reuse: { minTtlS: 120 }
    }
  })
  server.child.kill('SIGTERM')
  await server.exited
  const output = server.stdout() + server.stderr()
  t.notOk(output.includes(API_KEY), 'no API key')
  t.notOk(output.includes(Buffer.from(`acme-client:${API_KEY}`).toString('base64')), 'no Basic value')
  t.notOk(output.includes(RSA_PUBLIC_PEM.split('\n')[1] as string), 'no key material')
  t.notMatch(JSON.stringify(started()), /\[redacted\]/, 'nothing on the line needed the censor')
})
