import { connect } from 'node:net'
import t from 'tap'
import { request } from 'undici'
import { buildTestApp, post, tokenFor, USER_A, type TestContext } from './helpers.js'

/** Issue 3 §6: server hardening, checked over real sockets where the limit lives in Node's parser. */

async function listening (t: TestContext, env: Record<string, string> = {}) {
  const built = await buildTestApp(t, { env })
  await built.app.listen({ host: '127.0.0.1', port: 0 })
  const address = built.app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return { ...built, port: address.port, url: `http://127.0.0.1:${address.port}` }
}

/** Sends raw bytes and resolves with everything the server sent back before closing. */
function rawExchange (port: number, chunks: Array<{ data: string, delayMs?: number }>, limitMs = 8000): Promise<{ response: string, closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const socket = connect(port, '127.0.0.1')
    let response = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('server never closed the connection')) }, limitMs)
    socket.on('data', d => { response += d.toString() })
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve({ response, closedAfterMs: Date.now() - started }) })
    const send = async (): Promise<void> => {
      for (const chunk of chunks) {
        if (chunk.delayMs !== undefined) await new Promise(resolve => setTimeout(resolve, chunk.delayMs))
        if (socket.destroyed) return
        socket.write(chunk.data)
      }
    }
    send().catch(() => {})
  })
}

t.test('oversized headers → 431 problem+json', async t => {
  const { url } = await listening(t)
  const res = await request(`${url}/v1/tokens/recipients`, { method: 'POST', headers: { 'x-padding': 'a'.repeat(12 * 1024) } })
  t.equal(res.statusCode, 431)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(res.headers.pragma, 'no-cache')
  t.equal(res.headers['referrer-policy'], 'no-referrer')
  t.equal(res.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'")
  const body = await res.body.json() as Record<string, unknown>
  t.equal(body.code, 'request_header_fields_too_large')
  t.equal(body.status, 431)
  t.equal(res.headers['x-request-id'], body.requestId, 'the request id of the body')
})

t.test('a slow-header client is cut off by the server', async t => {
  const { port } = await listening(t, { HTTP_HEADERS_TIMEOUT_MS: '1000', HTTP_REQUEST_TIMEOUT_MS: '2000' })
  // One header line every 400 ms, for far longer than the 1 s allowed.
  const chunks = [{ data: 'POST /v1/tokens/recipients HTTP/1.1\r\nHost: localhost\r\n' }]
  for (let i = 0; i < 20; i++) chunks.push({ data: `X-Slow-${i}: 1\r\n`, delayMs: 400 } as { data: string, delayMs: number })
  const { response, closedAfterMs } = await rawExchange(port, chunks)
  t.ok(closedAfterMs < 6000, `closed after ${closedAfterMs} ms, long before the client finished (8 s)`)
  t.match(response, /^HTTP\/1\.1 408 /, 'answered 408 before closing')
  t.match(response, /"code":"request_timeout"/)
})

t.test('bodies: 413 over the limit, 415 for every non-JSON type, no parser bypass', async t => {
  const { app, emulator } = await buildTestApp(t)
  const jwt = await tokenFor(USER_A)
  const big = await post(app, '/v1/tokens/recipients', { token: jwt, body: { userId: 'x'.repeat(8000) } })
  t.equal(big.statusCode, 413)
  t.equal(big.json().code, 'payload_too_large')
  // The content types a cross-site form or a "simple" CORS request can send without a preflight,
  // and JSON look-alikes: none may reach the JSON parser.
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/jsonx', 'text/json', 'application/json-seq', 'application/xml']) {
    const res = await post(app, '/v1/tokens/recipients', { token: jwt, body: '{"userId":"' + USER_A + '"}', headers: { 'content-type': type } })
    t.equal(res.statusCode, 415, type)
    t.equal(res.json().code, 'unsupported_media_type', type)
  }
  t.equal(emulator.control.calls.total, 0, 'nothing was minted for a refused body')
})

t.test('prototype-poisoning payloads → 400', async t => {
  const { app, emulator } = await buildTestApp(t)
  const jwt = await tokenFor(USER_A)
  for (const body of ['{"__proto__":{"userId":"x"}}', '{"constructor":{"prototype":{"userId":"x"}}}', '{"userId":"a","__proto__":{"admin":true}}']) {
    const res = await post(app, '/v1/tokens/recipients', { token: jwt, body })
    t.equal(res.statusCode, 400, body)
    t.equal(res.json().code, 'bad_request', body)
  }
  t.equal(({} as Record<string, unknown>).userId, undefined, 'Object.prototype untouched')
  t.equal(emulator.control.calls.total, 0)
})

t.test('a URL that does not decode → 400 problem+json with the common headers, the path not echoed', async t => {
  const { port, logs } = await listening(t)
  for (const path of ['/v1/%zz%3Cscript%3E', '/v1/tokens/%E0%A4%A']) {
    const { response } = await rawExchange(port, [{ data: `POST ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n` }])
    const [head = '', body = ''] = response.split('\r\n\r\n')
    t.match(head, /^HTTP\/1\.1 400 /, path)
    t.match(head, /\r\ncontent-type: application\/problem\+json/i)
    t.match(head, /\r\ncache-control: no-store\r\n/i)
    t.match(head, /\r\nx-content-type-options: nosniff\r\n/i)
    const requestId = /\r\nx-request-id: ([^\r]+)\r\n/i.exec(head)?.[1]
    t.ok(requestId, 'a request id')
    const problem = JSON.parse(body) as Record<string, unknown>
    t.match(problem, { type: 'about:blank', status: 400, code: 'bad_request', requestId })
    t.notMatch(body, /script|%zz|%E0/i, 'nothing of the URL comes back')
    t.ok(logs.lines().some(l => l.requestId === requestId && l.code === 'bad_request'), 'the refusal is logged under its request id')
  }
})

t.test('a query string never reaches a log line: a token put there by mistake is not written', async t => {
  const { app, logs } = await buildTestApp(t)
  const jwt = await tokenFor(USER_A)
  // RFC 6750 §2.3 lets a bearer ride in `access_token=`; a frontend may send one there. No route reads it.
  const asked = {
    token: await post(app, `/v1/tokens/recipients?access_token=${jwt}`, { token: jwt }),
    health: await app.inject({ url: `/healthz?token=${jwt}&x=1` }),
    notFound: await app.inject({ url: `/v1/tokens/nope?jwt=${jwt}` })
  }
  t.equal(asked.token.statusCode, 200, 'the query string is ignored, the token is issued')
  t.equal(asked.health.statusCode, 200)
  t.equal(asked.notFound.statusCode, 404)
  const urls = logs.lines().map(l => (l.req as { url?: string } | undefined)?.url).filter(url => url !== undefined)
  t.same(urls, ['/v1/tokens/recipients?[redacted]', '/healthz?[redacted]', '/v1/tokens/nope?[redacted]'], 'the path is kept; what follows "?" is not')
  t.notOk(logs.text().includes(jwt.split('.')[2] as string), 'no part of the JWT is in the logs')
})
