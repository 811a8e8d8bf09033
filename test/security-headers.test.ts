import t from 'tap'
import { buildTestApp, opsGet, post, tokenFor, USER_A } from './helpers.js'

/**
 * SPEC §8 "Headers": Referrer-Policy and Pragma on every answer; a Content-Security-Policy that
 * lets nothing load on JSON answers; Strict-Transport-Security when the request came over HTTPS.
 * With issue 3 §6's nosniff, no-store and no banner headers, checked on the same answers.
 */

const JSON_CSP = "default-src 'none'; frame-ancestors 'none'"

t.test('every answer: nosniff, no-referrer, Pragma no-cache, no banner; no-store but on the script; JSON: a CSP that loads nothing', async t => {
  const { app } = await buildTestApp(t, { env: { CORS_ORIGINS: 'https://app.example.com' } })
  const jwt = await tokenFor(USER_A)
  const json = {
    healthz: await app.inject({ url: '/healthz' }),
    readyz: await app.inject({ url: '/readyz' }),
    token: await post(app, '/v1/tokens/recipients', { token: jwt }),
    unauthenticated: await post(app, '/v1/tokens/recipients'),
    unauthenticatedCheckout: await post(app, '/v1/tokens/checkout'),
    badRequest: await post(app, '/v1/tokens/recipients', { token: jwt, body: '{' }),
    notFound: await app.inject({ url: '/nope' }),
    wrongMethod: await app.inject({ method: 'DELETE', url: '/v1/tokens/recipients' }),
    badUrl: await app.inject({ url: '/v1/%zz' }),
    metricsPortReadiness: await opsGet(app, '/readyz'),
    metricsPortRefusal: await opsGet(app, '/nope')
  }
  const other = {
    preflight: await app.inject({ method: 'OPTIONS', url: '/v1/tokens/recipients', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } }),
    script: await app.inject({ url: '/v1/client.js' }),
    metrics: await opsGet(app, '/metrics')
  }
  for (const [name, res] of Object.entries({ ...json, ...other })) {
    // The script sets its own caching; /metrics writes its own short list of headers (ops-listener.ts).
    if (name !== 'metrics') t.equal(res.headers['x-content-type-options'], 'nosniff', `${name}: nosniff`)
    if (name !== 'script') t.equal(res.headers['cache-control'], 'no-store', `${name}: no-store`)
    t.equal(res.headers['referrer-policy'], 'no-referrer', `${name}: Referrer-Policy`)
    t.equal(res.headers.pragma, 'no-cache', `${name}: Pragma`)
    t.equal(res.headers['strict-transport-security'], undefined, `${name}: no HSTS over plain HTTP`)
    t.equal(res.headers['x-powered-by'], undefined, `${name}: no X-Powered-By`)
    t.equal(res.headers.server, undefined, `${name}: no Server banner`)
  }
  for (const [name, res] of Object.entries(json)) {
    t.match(String(res.headers['content-type']), /^application\/(?:problem\+)?json/, `${name} is JSON`)
    t.equal(res.headers['content-security-policy'], JSON_CSP, `${name}: CSP`)
  }
  t.equal(json.token.statusCode, 200)
  t.equal(json.notFound.statusCode, 404)
  t.equal(json.wrongMethod.json().code, 'not_found')
  t.equal(json.badUrl.statusCode, 400)
  t.equal(other.script.headers['content-security-policy'], undefined, 'the script is not JSON')
})

t.test('Strict-Transport-Security when a trusted proxy says the request came over HTTPS', async t => {
  const { app } = await buildTestApp(t, { env: { TRUST_PROXY: '127.0.0.1' } })
  const viaProxy = await app.inject({ url: '/healthz', headers: { 'x-forwarded-proto': 'https' } })
  t.equal(viaProxy.headers['strict-transport-security'], 'max-age=31536000')
  const refused = await post(app, '/v1/tokens/recipients', { headers: { 'x-forwarded-proto': 'https' } })
  t.equal(refused.statusCode, 401)
  t.equal(refused.headers['strict-transport-security'], 'max-age=31536000', 'on errors too')
  const plain = await app.inject({ url: '/healthz', headers: { 'x-forwarded-proto': 'http' } })
  t.equal(plain.headers['strict-transport-security'], undefined)

  const untrusted = await buildTestApp(t)
  const claimed = await untrusted.app.inject({ url: '/healthz', headers: { 'x-forwarded-proto': 'https' } })
  t.equal(claimed.headers['strict-transport-security'], undefined, 'an X-Forwarded-Proto from an untrusted address is not believed')
})
