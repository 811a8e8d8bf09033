import { chmodSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ConfigError, loadConfig, MANGOPAY_BASE_URLS, shutdownGraceMs, type Config } from '../src/config/index.js'
import { AUDIENCE, ISSUER, RSA_PUBLIC_PEM, spawnServer } from './helpers.js'
import { createTestPki, type TestPki } from './tls-certs.js'

/**
 * SPEC §5: configuration is validated at start-up; a bad or missing value stops the process
 * with one message listing every problem (exit code 1), and every secret can come from a file.
 */

const API_KEY = 'sk_config_test_9f3b2c1d7e6a5b4c'
const HMAC_SECRET = 'an-hmac-secret-that-is-at-least-32-bytes'

const VALID: Record<string, string> = {
  MANGOPAY_CLIENT_ID: 'acme-client',
  MANGOPAY_API_KEY: API_KEY,
  AUTH_MODE: 'jwt',
  AUTH_JWT_PUBLIC_KEY: RSA_PUBLIC_PEM,
  AUTH_ISSUER: ISSUER,
  AUTH_AUDIENCE: AUDIENCE
}

function env (overrides: Record<string, string | undefined>): Record<string, string | undefined> {
  return { ...VALID, ...overrides }
}

/** The problems loadConfig reports (none if it loads); anything but a ConfigError is a bug. */
function problemsOf (t: Test, rawEnv: Record<string, string | undefined>): string[] {
  try {
    loadConfig(rawEnv)
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    t.notOk(err.message.includes(API_KEY), 'the API key is never part of the message')
    return err.problems
  }
}

function hasProblem (t: Test, rawEnv: Record<string, string | undefined>, pattern: RegExp, message: string): string[] {
  const problems = problemsOf(t, rawEnv)
  t.ok(problems.some(p => pattern.test(p)), message, { problems })
  return problems
}

let pki: TestPki | undefined
/** MANGOPAY_TLS_* for a real client certificate (made once, with openssl). */
function clientCertificate (): Record<string, string> {
  pki ??= createTestPki()
  return { MANGOPAY_TLS_CERT_FILE: pki.client.certFile, MANGOPAY_TLS_KEY_FILE: pki.client.keyFile }
}

t.test('a valid environment loads, with the documented defaults', async t => {
  const config: Config = loadConfig(VALID)
  t.equal(config.server.host, '127.0.0.1')
  t.equal(config.server.port, 3000)
  t.equal(config.mangopay.environment, 'sandbox')
  t.equal(config.mangopay.baseUrl, MANGOPAY_BASE_URLS.sandbox)
  t.equal(config.mangopay.apiKey, API_KEY)
  t.equal(config.mangopay.timeoutMs, 5000)
  t.equal(config.mangopay.quotaReserve, 0.2)
  t.equal(config.mangopay.reuseMinTtlS, 0)
  t.equal(config.auth.userIdClaim, 'mangopay_user_id')
  t.same(config.auth.jwt?.key, { kind: 'public-key', pem: RSA_PUBLIC_PEM })
  t.notOk(config.auth.jwt?.algorithms.some(a => a.startsWith('HS')), 'a public key never allows HMAC algorithms')
  t.same(config.cors.origins, [])
  t.match(config.rateLimit, { max: 10, windowMs: 60_000 })

  const production = loadConfig(env({ MANGOPAY_ENV: 'production' }))
  t.equal(production.mangopay.baseUrl, MANGOPAY_BASE_URLS.production)
})

t.test('each missing required variable is named', async t => {
  for (const name of ['MANGOPAY_CLIENT_ID', 'MANGOPAY_API_KEY', 'AUTH_MODE']) {
    hasProblem(t, env({ [name]: undefined }), new RegExp(`^${name}\\b.*required`), `${name} missing`)
    hasProblem(t, env({ [name]: '' }), new RegExp(`^${name}\\b.*required`), `${name} empty counts as missing`)
  }
  hasProblem(t, env({ AUTH_ISSUER: undefined }), /AUTH_ISSUER is required/, 'AUTH_ISSUER missing in jwt mode')
  hasProblem(t, env({ AUTH_AUDIENCE: undefined }), /AUTH_AUDIENCE is required/, 'AUTH_AUDIENCE missing in jwt mode')

  let error: unknown
  try {
    loadConfig({})
  } catch (err) {
    error = err
  }
  t.ok(error instanceof ConfigError, 'one ConfigError')
  const message = (error as Error).message
  for (const name of ['MANGOPAY_CLIENT_ID', 'MANGOPAY_API_KEY', 'AUTH_MODE']) t.match(message, name, `the one message names ${name}`)
})

t.test('several problems at once are listed together in one ConfigError', async t => {
  let error: ConfigError | undefined
  try {
    loadConfig(env({
      PORT: 'abc',
      MANGOPAY_ENV: 'staging',
      MANGOPAY_CLIENT_ID: undefined,
      MANGOPAY_BASE_URL: 'http://api.example.com',
      CORS_ORIGINS: '*',
      AUTH_ISSUER: undefined
    }))
  } catch (err) {
    if (err instanceof ConfigError) error = err
  }
  t.ok(error, 'a ConfigError')
  const expected = [/^PORT\b/, /^MANGOPAY_ENV\b/, /^MANGOPAY_CLIENT_ID\b/, /^MANGOPAY_BASE_URL\b/, /^CORS_ORIGINS\b/, /^AUTH_ISSUER\b/]
  for (const pattern of expected) {
    t.ok(error?.problems.some(p => pattern.test(p)), `lists ${pattern}`)
    t.match(error?.message, pattern.source.replace(/^\^|\\b$/g, ''))
  }
  t.equal(error?.problems.length, expected.length, `exactly these problems: ${JSON.stringify(error?.problems)}`)
})

t.test('bad values are refused', async t => {
  for (const port of ['abc', '70000', '-1', '3.5']) hasProblem(t, env({ PORT: port }), /^PORT\b/, `PORT=${port}`)
  t.equal(loadConfig(env({ PORT: '0' })).server.port, 0, 'PORT=0 (any free port) is allowed')
  hasProblem(t, env({ MANGOPAY_ENV: 'staging' }), /^MANGOPAY_ENV must be one of sandbox, production/, 'MANGOPAY_ENV')
  hasProblem(t, env({ AUTH_MODE: 'magic' }), /^AUTH_MODE must be one of jwt, forward, dev/, 'AUTH_MODE')
  hasProblem(t, env({ MANGOPAY_TIMEOUT_MS: '10' }), /^MANGOPAY_TIMEOUT_MS\b/, 'MANGOPAY_TIMEOUT_MS below the minimum')
  hasProblem(t, env({ MANGOPAY_QUOTA_RESERVE: '1.5' }), /^MANGOPAY_QUOTA_RESERVE\b/, 'a reserve above 0.95')
  hasProblem(t, env({ TRUST_PROXY: 'everyone' }), /^TRUST_PROXY\b/, 'TRUST_PROXY that is not an address')
})

t.test('numbers must be written plainly: nothing Number() would read differently is reinterpreted', async t => {
  for (const port of ['0x10', '1e3', ' 3000', '3000 ', '+3000']) {
    const problems = hasProblem(t, env({ PORT: port }), /^PORT must be written as a whole number in decimal$/, `PORT=${JSON.stringify(port)}`)
    t.equal(problems.length, 1, 'one problem, said once')
  }
  hasProblem(t, env({ MANGOPAY_QUOTA_RESERVE: '0x0' }), /^MANGOPAY_QUOTA_RESERVE must be written as a decimal number$/, 'a hexadecimal reserve')
  hasProblem(t, env({ MANGOPAY_CIRCUIT_FAILURE_RATIO: '5e-1' }), /^MANGOPAY_CIRCUIT_FAILURE_RATIO must be written as a decimal number$/, 'an exponent')
  t.equal(loadConfig(env({ MANGOPAY_QUOTA_RESERVE: '0.25', PORT: '8080' })).mangopay.quotaReserve, 0.25, 'plain decimals load')
  hasProblem(t, env({ HOST: '   ' }), /^HOST has an invalid format$/, 'a blank HOST')
})

t.test('URLs: absolute, https unless loopback, no credentials', async t => {
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'not a url' }), /^MANGOPAY_BASE_URL must be an absolute URL/, 'a relative/garbage URL')
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'ftp://api.mangopay.com' }), /^MANGOPAY_BASE_URL must use https/, 'another scheme')
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'http://api.mangopay.com' }), /^MANGOPAY_BASE_URL must use https/, 'plain http to a non-loopback host')
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'http://10.0.0.5:4010' }), /^MANGOPAY_BASE_URL must use https/, 'plain http to a private address')
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'https://user:pass@api.mangopay.com' }), /^MANGOPAY_BASE_URL must not contain credentials/, 'credentials in the URL')
  hasProblem(t, env({ AUTH_MODE: 'jwt', AUTH_JWT_PUBLIC_KEY: undefined, AUTH_JWKS_URL: 'http://idp.example.com/jwks' }), /^AUTH_JWKS_URL must use https/, 'a plain-http JWKS URL')

  t.equal(loadConfig(env({ MANGOPAY_BASE_URL: 'http://127.0.0.1:4010/' })).mangopay.baseUrl, 'http://127.0.0.1:4010', 'http to 127.0.0.1 (the emulator)')
  t.equal(loadConfig(env({ MANGOPAY_BASE_URL: 'http://localhost:4010' })).mangopay.baseUrl, 'http://localhost:4010', 'http to localhost')
  t.equal(loadConfig(env({ MANGOPAY_BASE_URL: 'https://api-mtls.sandbox.mangopay.com', ...clientCertificate() })).mangopay.baseUrl, 'https://api-mtls.sandbox.mangopay.com')
})

t.test('CORS_ORIGINS: exact origins only', async t => {
  for (const bad of ['*', 'https://app.example.com/path', 'app.example.com', 'https://*.example.com', 'null']) {
    hasProblem(t, env({ CORS_ORIGINS: bad }), /^CORS_ORIGINS\b/, `CORS_ORIGINS=${bad}`)
  }
  hasProblem(t, env({ CORS_ORIGINS: 'https://app.example.com,*' }), /^CORS_ORIGINS: "\*"/, 'a wildcard among good origins')
  t.same(loadConfig(env({ CORS_ORIGINS: 'https://app.example.com, http://localhost:5173' })).cors.origins, ['https://app.example.com', 'http://localhost:5173'])
})

t.test('secrets from files', async t => {
  const dir = t.testdir({ 'api-key': `${API_KEY}\n`, 'secret-crlf': `${HMAC_SECRET}\r\n`, 'unreadable-key': 'nope' })

  const fromFile = loadConfig(env({ MANGOPAY_API_KEY: undefined, MANGOPAY_API_KEY_FILE: join(dir, 'api-key') }))
  t.equal(fromFile.mangopay.apiKey, API_KEY, 'read, trailing newline stripped')

  const hmac = loadConfig(env({ AUTH_JWT_PUBLIC_KEY: undefined, AUTH_JWT_SECRET_FILE: join(dir, 'secret-crlf'), AUTH_JWT_ALGORITHMS: 'HS256' }))
  t.same(hmac.auth.jwt?.key, { kind: 'secret', secret: HMAC_SECRET }, 'a CRLF ending is stripped too')

  hasProblem(t, env({ MANGOPAY_API_KEY_FILE: join(dir, 'api-key') }), /^MANGOPAY_API_KEY and MANGOPAY_API_KEY_FILE are both set/, 'both X and X_FILE')
  const missing = hasProblem(t, env({ MANGOPAY_API_KEY: undefined, MANGOPAY_API_KEY_FILE: join(dir, 'does-not-exist') }), /^MANGOPAY_API_KEY_FILE: cannot read/, 'a missing file')
  t.ok(missing.some(p => /ENOENT/.test(p)), 'says why')

  await t.test('a file without read permission', { skip: process.getuid?.() === 0 ? 'root reads any file' : false }, async t => {
    chmodSync(join(dir, 'unreadable-key'), 0o000)
    hasProblem(t, env({ MANGOPAY_API_KEY: undefined, MANGOPAY_API_KEY_FILE: join(dir, 'unreadable-key') }), /^MANGOPAY_API_KEY_FILE: cannot read.*EACCES/, 'an unreadable file')
  })
  hasProblem(t, env({ MANGOPAY_API_KEY: undefined, MANGOPAY_API_KEY_FILE: dir }), /^MANGOPAY_API_KEY_FILE: cannot read/, 'a directory')
})

t.test('jwt mode: exactly one key source, algorithms that fit it', async t => {
  const noKey = { AUTH_JWT_PUBLIC_KEY: undefined }
  hasProblem(t, env({ ...noKey, AUTH_ISSUER: undefined }), /AUTH_MODE=jwt needs one of AUTH_JWKS_URL, AUTH_JWT_PUBLIC_KEY\(_FILE\) or AUTH_JWT_SECRET\(_FILE\), or AUTH_ISSUER alone/, 'no key source and no issuer')
  hasProblem(t, env({ AUTH_JWT_SECRET: HMAC_SECRET }), /set only one of/, 'public key and secret')
  hasProblem(t, env({ AUTH_JWKS_URL: 'https://idp.example.com/jwks' }), /set only one of/, 'public key and JWKS')
  hasProblem(t, env({ AUTH_JWT_ALGORITHMS: 'HS256' }), /AUTH_JWT_ALGORITHMS: "HS256" is not allowed with public keys/, 'HS algorithm with a public key')
  hasProblem(t, env({ AUTH_JWT_ALGORITHMS: 'RS256,none' }), /AUTH_JWT_ALGORITHMS: "none"/, 'none is never allowed')
  hasProblem(t, env({ ...noKey, AUTH_JWT_SECRET: HMAC_SECRET, AUTH_JWT_ALGORITHMS: 'RS256' }), /AUTH_JWT_ALGORITHMS: "RS256" is not allowed with an HMAC secret/, 'RS algorithm with a secret')
  hasProblem(t, env({ ...noKey, AUTH_JWT_SECRET: 'too-short' }), /AUTH_JWT_SECRET must be at least 32 bytes/, 'a short secret')
  hasProblem(t, env({ AUTH_JWT_PUBLIC_KEY: 'not a pem' }), /AUTH_JWT_PUBLIC_KEY must be a PEM/, 'a public key that is not PEM')

  const hmac = loadConfig(env({ ...noKey, AUTH_JWT_SECRET: HMAC_SECRET }))
  t.same(hmac.auth.jwt?.algorithms, ['HS256'], 'a secret defaults to HS256 only')
  const jwks = loadConfig(env({ ...noKey, AUTH_JWKS_URL: 'https://idp.example.com/.well-known/jwks.json', AUTH_JWT_ALGORITHMS: 'RS256, ES256' }))
  t.same(jwks.auth.jwt?.algorithms, ['RS256', 'ES256'])
  t.same(jwks.auth.jwt?.key, { kind: 'jwks', url: 'https://idp.example.com/.well-known/jwks.json' })
})

t.test('jwt mode: AUTH_ISSUER alone means OIDC discovery, from an https (or loopback) issuer', async t => {
  const noKey = { AUTH_JWT_PUBLIC_KEY: undefined }
  t.same(loadConfig(env({ ...noKey, AUTH_ISSUER: 'https://sso.example.com/realms/acme' })).auth.jwt?.key, { kind: 'discovery', issuer: 'https://sso.example.com/realms/acme' }, 'kept exactly as written')
  t.same(loadConfig(env({ ...noKey, AUTH_ISSUER: 'http://127.0.0.1:8080' })).auth.jwt?.key, { kind: 'discovery', issuer: 'http://127.0.0.1:8080' }, 'plain http to loopback')
  hasProblem(t, env({ ...noKey, AUTH_ISSUER: 'http://idp.example.com/' }), /^AUTH_ISSUER must use https/, 'plain http to another host')
  hasProblem(t, env({ ...noKey, AUTH_ISSUER: 'idp.example.com' }), /^AUTH_ISSUER must be an absolute URL/, 'not a URL')
  hasProblem(t, env({ ...noKey, AUTH_ISSUER: 'https://idp.example.com/?tenant=a' }), /^AUTH_ISSUER must have no query or fragment/, 'a query')
  t.same(loadConfig(env({ AUTH_ISSUER: 'urn:acme:idp' })).auth.jwt?.key.kind, 'public-key', 'with a key source, the issuer is only compared with iss')
})

t.test('MANGOPAY_BASE_URL on a Mangopay host must belong to MANGOPAY_ENV', async t => {
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'https://api.mangopay.com' }), /MANGOPAY_BASE_URL is Mangopay's production host but MANGOPAY_ENV=sandbox/, 'production host, sandbox setting')
  hasProblem(t, env({ AUTH_MODE: 'dev', MANGOPAY_BASE_URL: 'https://api-mtls.mangopay.com/' }), /production host but MANGOPAY_ENV=sandbox/, 'so dev mode cannot reach production through it')
  hasProblem(t, env({ MANGOPAY_ENV: 'production', MANGOPAY_BASE_URL: 'https://api.sandbox.mangopay.com' }), /sandbox host but MANGOPAY_ENV=production/, 'and the other way round')
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'https://api.mangopay.com.' }), /production host but MANGOPAY_ENV=sandbox/, 'the fully qualified form (trailing dot) is the same host')
  t.equal(loadConfig(env({ MANGOPAY_ENV: 'production', MANGOPAY_BASE_URL: 'https://api-mtls.mangopay.com', ...clientCertificate() })).mangopay.environment, 'production')
  t.equal(loadConfig(env({ MANGOPAY_BASE_URL: 'https://api-mtls.sandbox.mangopay.com', ...clientCertificate() })).mangopay.environment, 'sandbox')
  t.equal(loadConfig(env({ MANGOPAY_BASE_URL: 'https://mangopay-proxy.internal.example' })).mangopay.baseUrl, 'https://mangopay-proxy.internal.example', 'any other host is the operator\'s business')
})

t.test('Mangopay settings that could never work are refused at start-up', async t => {
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'https://api-mtls.sandbox.mangopay.com' }), /MANGOPAY_BASE_URL is an api-mtls host: set MANGOPAY_TLS_CERT_FILE and MANGOPAY_TLS_KEY_FILE/, 'an mTLS host without a client certificate')
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'https://api.sandbox.mangopay.com.', ...clientCertificate() }), /a client certificate is only presented to the api-mtls hosts/, 'a certificate for the standard host written with a trailing dot')
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'https://api.sandbox.mangopay.com/v2.01' }), /MANGOPAY_BASE_URL must not end with \/v2\.01/, 'the API version in the base URL')
  hasProblem(t, env({ MANGOPAY_BASE_URL: 'https://mangopay-proxy.internal.example/v2.01/' }), /must not end with \/v2\.01/, 'behind a proxy too')
  t.equal(loadConfig(env({ MANGOPAY_BASE_URL: 'https://mangopay-proxy.internal.example/mangopay/' })).mangopay.baseUrl, 'https://mangopay-proxy.internal.example/mangopay', 'a proxy\'s own path is kept')
  hasProblem(t, env({ MANGOPAY_CLIENT_ID: 'acme:client' }), /MANGOPAY_CLIENT_ID must not contain ":"/, 'a client id HTTP Basic cannot carry')
  const all = hasProblem(t, env({ PORT: 'not-a-port', MANGOPAY_BASE_URL: 'https://api-mtls.sandbox.mangopay.com/v2.01' }), /must not end with \/v2\.01/, 'listed with the schema\'s own problems')
  t.ok(all.some(p => /api-mtls host/.test(p)) && all.some(p => /PORT/.test(p)), 'every problem in one start-up')
})

t.test('AUTH_MODE=dev is refused with MANGOPAY_ENV=production', async t => {
  hasProblem(t, env({ AUTH_MODE: 'dev', MANGOPAY_ENV: 'production' }), /AUTH_MODE=dev is refused when MANGOPAY_ENV=production/, 'dev in production')
  t.equal(loadConfig(env({ AUTH_MODE: 'dev' })).auth.mode, 'dev', 'dev in sandbox loads')
})

t.test('AUTH_MODE=dev is refused with NODE_ENV=production', async t => {
  hasProblem(t, env({ AUTH_MODE: 'dev', NODE_ENV: 'production' }), /AUTH_MODE=dev is refused when NODE_ENV=production/, 'dev under NODE_ENV=production')
  t.equal(loadConfig(env({ AUTH_MODE: 'dev', NODE_ENV: 'development' })).auth.mode, 'dev', 'dev under NODE_ENV=development loads')
})

t.test('REDIS_URL: redis:// only to a loopback host, unless REDIS_TRUSTED_NETWORK=true', async t => {
  for (const url of ['redis://:hunter2-password@10.0.0.5:6379', 'redis://redis.internal:6379/0', 'redis://[2001:db8::5]:6379']) {
    const problems = hasProblem(t, env({ REDIS_URL: url }), /^REDIS_URL must use rediss:\/\//, `${new URL(url).hostname} refused in clear`)
    t.notOk(problems.join(' ').includes('hunter2'), 'the URL (and its password) is not quoted')
    t.equal(loadConfig(env({ REDIS_URL: url, REDIS_TRUSTED_NETWORK: 'true' })).redis?.url, url, 'accepted on a network stated trusted')
  }
  for (const url of ['rediss://10.0.0.5:6380', 'redis://127.0.0.1:6379', 'redis://localhost:6379', 'redis://[::1]:6379']) {
    t.equal(loadConfig(env({ REDIS_URL: url })).redis?.url, url, `${url} accepted`)
  }
  hasProblem(t, env({ REDIS_TRUSTED_NETWORK: 'yes' }), /REDIS_TRUSTED_NETWORK must be one of true, false/, 'a boolean spelled out')
})

t.test('the server refuses a clear-text REDIS_URL to another host: exit 1, naming REDIS_URL', async t => {
  const server = spawnServer(t, { ...VALID, PORT: '0', REDIS_URL: 'redis://:hunter2-password@10.0.0.5:6379' })
  // A server that accepted the URL says it listens instead of exiting: that is a failure, not a wait.
  const outcome = await Promise.race([
    server.exited.then(([code]) => code),
    new Promise<'listening'>(resolve => { server.child.stdout.on('data', () => { if (/listening/i.test(server.stdout())) resolve('listening') }) })
  ])
  t.equal(outcome, 1, 'exit code 1')
  t.match(server.stderr(), /REDIS_URL must use rediss:\/\//)
  t.notMatch(server.stderr(), /hunter2/, 'the password is printed nowhere')
})

t.test('the server process exits 1 with every problem in one message on stderr', async t => {
  // Only what node needs (spawnServer adds PATH and HOME), plus a deliberately broken configuration.
  const server = spawnServer(t, {
    PORT: 'not-a-port',
    MANGOPAY_API_KEY: API_KEY,
    MANGOPAY_BASE_URL: 'http://api.example.com',
    AUTH_MODE: 'jwt',
    CORS_ORIGINS: 'https://*.example.com'
  })
  const [code] = await server.exited
  const stdout = server.stdout()
  const stderr = server.stderr()

  t.equal(code, 1, 'exit code 1')
  t.equal(stderr.match(/Invalid configuration/g)?.length, 1, 'one message')
  for (const pattern of [/PORT/, /MANGOPAY_CLIENT_ID is required/, /MANGOPAY_BASE_URL must use https/, /AUTH_MODE=jwt needs one of/, /AUTH_ISSUER is required/, /AUTH_AUDIENCE is required/, /CORS_ORIGINS/]) {
    t.match(stderr, pattern, `stderr lists ${pattern.source}`)
  }
  t.notOk(stdout.includes(API_KEY) || stderr.includes(API_KEY), 'the API key is printed nowhere')
  t.notMatch(stderr, /\n\s+at /, 'no stack trace')
})

t.test('the shutdown grace outlasts the longest request the settings allow', async t => {
  t.equal(shutdownGraceMs(loadConfig(env({}))), 1000 + 15_000, 'defaults: the drain delay, then 15 s')
  t.equal(shutdownGraceMs(loadConfig(env({ MANGOPAY_TIMEOUT_MS: '60000', SHUTDOWN_DELAY_MS: '2000' }))), 2000 + 60_000 + 5000, 'a 60 s deadline gets 60 s and a margin after the delay')
  const forward = loadConfig(env({ AUTH_MODE: 'forward', AUTH_FORWARD_URL: 'https://platform.example.com/session', AUTH_FORWARD_TIMEOUT_MS: '30000', AUTH_JWT_PUBLIC_KEY: undefined, AUTH_ISSUER: undefined, AUTH_AUDIENCE: undefined }))
  t.equal(shutdownGraceMs(forward), 1000 + 30_000 + 5000, 'a session call allowed 30 s gets them too')
})
