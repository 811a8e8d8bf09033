import { X509Certificate } from 'node:crypto'
import { copyFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig } from '../src/config/index.js'
import { baseEnv, buildTestApp, post, tokenFor, USER_A, type TestApp, opsGet } from './helpers.js'
import { createTestPki } from './tls-certs.js'

/**
 * mTLS towards Mangopay's api-mtls hosts, over a real TLS handshake: the emulator serves
 * HTTPS and requires a client certificate signed by the test CA. Certificates are generated
 * for this run with openssl (test/tls-certs.ts).
 */

const pki = createTestPki()
t.teardown(pki.remove)

const RECIPIENTS = '/v1/tokens/recipients'
/** Whatever went wrong in the handshake stays in the logs; the browser reads none of it. */
const TLS_WORDS = /certificate|ssl|tls|alert|handshake|x509|unable to verify|self.signed/i

interface Setup {
  client?: 'good' | 'untrusted' | 'none'
  server?: 'good' | 'rogue'
  env?: Record<string, string>
}

async function setup (t: Test, options: Setup = {}): Promise<TestApp> {
  const server = options.server === 'rogue' ? pki.rogueServer : pki.server
  const client = options.client ?? 'good'
  const clientFiles = client === 'none'
    ? {}
    : { MANGOPAY_TLS_CERT_FILE: (client === 'good' ? pki.client : pki.untrustedClient).certFile, MANGOPAY_TLS_KEY_FILE: (client === 'good' ? pki.client : pki.untrustedClient).keyFile }
  return await buildTestApp(t, {
    emulator: { tls: { cert: server.cert, key: server.key, ca: pki.ca.cert, requestCert: true } },
    env: { MANGOPAY_TLS_CA_FILE: pki.ca.certFile, ...clientFiles, ...options.env }
  })
}

function assertRefusedWithoutDetails (t: Test, broker: TestApp, res: Awaited<ReturnType<typeof post>>): void {
  t.ok(res.statusCode === 503 || res.statusCode === 502, `refused with ${res.statusCode}`)
  t.equal(res.json().code, res.statusCode === 503 ? 'upstream_unavailable' : 'upstream_error')
  t.notMatch(res.body, TLS_WORDS, 'no TLS detail in the answer')
  t.notMatch(res.body, /rec_|chk_/, 'no token')
  t.equal(broker.emulator.control.calls.total, 0, 'no HTTP request got through the handshake')
  t.equal(broker.emulator.control.minted.length, 0, 'nothing minted')
}

t.test('the emulator really requires a client certificate over HTTPS', async t => {
  const broker = await setup(t)
  t.match(broker.emulator.url, /^https:\/\/127\.0\.0\.1:\d+$/)
})

t.test('a good client certificate: 200, and Mangopay got both calls over mTLS', async t => {
  const broker = await setup(t)
  const res = await post(broker.app, RECIPIENTS, { token: await tokenFor(USER_A) })
  t.equal(res.statusCode, 200)
  t.equal(res.json().clientToken, broker.emulator.control.minted.at(-1)?.token)
  t.same(broker.emulator.control.calls, { oauth: 1, recipient: 1, checkout: 0, total: 2 })
  const metrics = (await opsGet(broker.app, '/metrics')).body
  const expiry = Math.floor(Date.parse(new X509Certificate(pki.client.cert).validTo) / 1000)
  t.match(metrics, new RegExp(`^broker_mangopay_client_certificate_expiry_timestamp_seconds ${expiry}$`, 'm'), 'the certificate expiry is a metric')
})

t.test('a passphrase-protected key with MANGOPAY_TLS_PASSPHRASE_FILE: 200', async t => {
  const passphraseFile = join(pki.dir, 'passphrase.txt')
  writeFileSync(passphraseFile, `${pki.passphrase}\n`)
  const broker = await setup(t, { env: { MANGOPAY_TLS_KEY_FILE: pki.encryptedClientKeyFile, MANGOPAY_TLS_PASSPHRASE_FILE: passphraseFile } })
  const res = await post(broker.app, RECIPIENTS, { token: await tokenFor(USER_A) })
  t.equal(res.statusCode, 200)
  t.notOk(broker.logs.text().includes(pki.passphrase), 'the passphrase is never logged')
})

t.test('no client certificate: the handshake fails, 503 without TLS details', async t => {
  const broker = await setup(t, { client: 'none' })
  const res = await post(broker.app, RECIPIENTS, { token: await tokenFor(USER_A) })
  assertRefusedWithoutDetails(t, broker, res)
  t.ok(broker.logs.lines().some(l => l.level === 50 && typeof (l.mangopay as { network?: unknown } | undefined)?.network === 'string'), 'the cause is logged for the operator')
})

t.test('a client certificate from a CA Mangopay does not trust: 503 without TLS details', async t => {
  const broker = await setup(t, { client: 'untrusted' })
  const res = await post(broker.app, RECIPIENTS, { token: await tokenFor(USER_A) })
  assertRefusedWithoutDetails(t, broker, res)
})

t.test('a server certificate from another CA: refused before anything is sent', async t => {
  const broker = await setup(t, { server: 'rogue' })
  const res = await post(broker.app, RECIPIENTS, { token: await tokenFor(USER_A) })
  assertRefusedWithoutDetails(t, broker, res)
  // The broker's own verification fails with a certificate error: retrying could not help.
  // (A refused client certificate, under TLS 1.3, looks like a closed connection instead.)
  t.notOk(broker.logs.lines().some(l => l.msg === 'retrying a failed Mangopay call'), 'a certificate error is not retried')
  const ready = await broker.app.inject({ method: 'GET', url: '/readyz' })
  t.equal(ready.statusCode, 503, 'not ready: no bearer can be obtained')
})

t.test('SIGHUP reload: new certificate files are used by new connections', async t => {
  const certFile = join(pki.dir, 'rotating.crt')
  const keyFile = join(pki.dir, 'rotating.key')
  copyFileSync(pki.untrustedClient.certFile, certFile)
  copyFileSync(pki.untrustedClient.keyFile, keyFile)
  const broker = await setup(t, { env: { MANGOPAY_TLS_CERT_FILE: certFile, MANGOPAY_TLS_KEY_FILE: keyFile } })
  const jwt = await tokenFor(USER_A)
  const refused = await post(broker.app, RECIPIENTS, { token: jwt })
  t.equal(refused.statusCode, 503, 'the old certificate is refused')

  // A half-written rotation (new certificate, old key) is refused and the old material kept.
  copyFileSync(pki.client.certFile, certFile)
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'inline', tls: 'invalid' })
  t.ok(broker.logs.lines().some(l => l.msg === 'the Mangopay TLS files could not be reloaded; the current certificate stays in use'))

  copyFileSync(pki.client.keyFile, keyFile)
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'inline', tls: 'reloaded' })
  const res = await post(broker.app, RECIPIENTS, { token: jwt })
  t.equal(res.statusCode, 200, 'the new certificate is accepted')
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'inline', tls: 'unchanged' }, 'nothing changed since')
})

t.test('TLS configuration problems stop start-up, all in one ConfigError', async t => {
  const wrongPassphrase = join(pki.dir, 'wrong-passphrase.txt')
  writeFileSync(wrongPassphrase, 'not the passphrase')
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['a certificate without its key', { MANGOPAY_TLS_CERT_FILE: pki.client.certFile }, /MANGOPAY_TLS_CERT_FILE and MANGOPAY_TLS_KEY_FILE go together/],
    ['an unreadable file', { MANGOPAY_TLS_CERT_FILE: join(pki.dir, 'missing.crt'), MANGOPAY_TLS_KEY_FILE: pki.client.keyFile }, /MANGOPAY_TLS_CERT_FILE: cannot read .*missing\.crt \(ENOENT\)/],
    ['a key that is not PEM', { MANGOPAY_TLS_CERT_FILE: pki.client.certFile, MANGOPAY_TLS_KEY_FILE: wrongPassphrase }, /MANGOPAY_TLS_KEY_FILE: .* is not a PEM private key/],
    ['a key that does not match the certificate', { MANGOPAY_TLS_CERT_FILE: pki.client.certFile, MANGOPAY_TLS_KEY_FILE: pki.untrustedClient.keyFile }, /the key does not match MANGOPAY_TLS_CERT_FILE/],
    ['a wrong passphrase', { MANGOPAY_TLS_CERT_FILE: pki.client.certFile, MANGOPAY_TLS_KEY_FILE: pki.encryptedClientKeyFile, MANGOPAY_TLS_PASSPHRASE_FILE: wrongPassphrase }, /wrong or missing MANGOPAY_TLS_PASSPHRASE/],
    ['a passphrase without a key', { MANGOPAY_TLS_PASSPHRASE: 'x', MANGOPAY_TLS_CA_FILE: pki.ca.certFile }, /MANGOPAY_TLS_PASSPHRASE is set but MANGOPAY_TLS_KEY_FILE is not/]
  ]
  for (const [label, env, problem] of cases) {
    let error: unknown
    try {
      loadConfig(baseEnv('https://api-mtls.sandbox.mangopay.com', env))
    } catch (err) {
      error = err
    }
    t.type(error, ConfigError, label)
    t.match((error as ConfigError).problems.join('\n'), problem, label)
    t.notOk((error as ConfigError).message.includes('not the passphrase'), `${label}: no secret in the message`)
  }

  // Several problems at once, one message: plain http with TLS files, and the public (non-mTLS) host.
  try {
    loadConfig(baseEnv('http://127.0.0.1:1', { MANGOPAY_TLS_CERT_FILE: pki.client.certFile }))
    t.fail('should throw')
  } catch (err) {
    t.match((err as ConfigError).problems, [/not https/, /go together/])
  }
  try {
    loadConfig(baseEnv('https://api.sandbox.mangopay.com', { MANGOPAY_TLS_CERT_FILE: pki.client.certFile, MANGOPAY_TLS_KEY_FILE: pki.client.keyFile }))
    t.fail('should throw')
  } catch (err) {
    t.match((err as ConfigError).problems, [/api-mtls\.sandbox\.mangopay\.com/])
  }

  const config = loadConfig(baseEnv('https://api-mtls.sandbox.mangopay.com', { MANGOPAY_TLS_CERT_FILE: pki.client.certFile, MANGOPAY_TLS_KEY_FILE: pki.client.keyFile }))
  t.equal(config.mangopay.tls?.material.cert, pki.client.cert, 'the files are read at start-up')
  t.equal(config.mangopay.tls?.files.keyFile, pki.client.keyFile, 'and their paths kept for SIGHUP')
})
