import { connect } from 'node:net'
import t from 'tap'
import { assertProblem, buildTestApp, post, tokenFor, USER_A, USER_B } from './helpers.js'

/**
 * SPEC §8 "Logs": a refusal of a caller who got past the door is a security event, logged with
 * the session's subject, the Mangopay user asked for, the client address and the route; a
 * request Node's parser refuses is logged too, in one line at info.
 */

const RECIPIENTS = '/v1/tokens/recipients'
const APP_ORIGIN = 'https://app.example.com'

function refusal (lines: Array<Record<string, unknown>>, code: string): Record<string, unknown> | undefined {
  return lines.find(l => l.code === code && l.msg === `refused: ${code}`)
}

t.test('forbidden_user, no_mangopay_user and the per-user limit log who asked for whom, from where, on which route', async t => {
  const { app, logs } = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '1' } })
  const alice = await tokenFor(USER_A, {}, { subject: 'idp|alice' })
  assertProblem(t, await post(app, RECIPIENTS, { token: alice, body: { userId: USER_B } }), 403, 'forbidden_user')
  assertProblem(t, await post(app, RECIPIENTS, { token: await tokenFor([], {}, { subject: 'idp|carol' }) }), 403, 'no_mangopay_user')
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200)
  assertProblem(t, await post(app, RECIPIENTS, { token: alice }), 429, 'rate_limited')

  const lines = logs.lines()
  t.match(refusal(lines, 'forbidden_user'), { level: 30, securityEvent: { subject: 'idp|alice', mangopayUserId: USER_B, ip: '127.0.0.1', route: RECIPIENTS } })
  const none = refusal(lines, 'no_mangopay_user')
  t.match(none, { securityEvent: { subject: 'idp|carol', ip: '127.0.0.1', route: RECIPIENTS } })
  t.notOk(none !== undefined && 'mangopayUserId' in (none.securityEvent as object), 'no Mangopay user was asked for')
  t.match(refusal(lines, 'rate_limited'), { securityEvent: { subject: 'idp|alice', mangopayUserId: USER_A, ip: '127.0.0.1', route: RECIPIENTS } })
})

t.test('a fair-quota refusal and a CSRF refusal are security events too', async t => {
  const { app, logs } = await buildTestApp(t, { env: { TOKEN_BUDGET_PER_USER: '1', AUTH_COOKIE_NAME: '__Host-session', CORS_ORIGINS: APP_ORIGIN } })
  const alice = await tokenFor(USER_A, {}, { subject: 'idp|alice' })
  t.equal((await post(app, RECIPIENTS, { token: alice })).statusCode, 200)
  assertProblem(t, await post(app, '/v1/tokens/checkout', { token: alice }), 429, 'rate_limited')
  const cookie = `__Host-session=${alice}`
  assertProblem(t, await app.inject({ method: 'POST', url: RECIPIENTS, remoteAddress: '192.0.2.7', headers: { cookie, origin: 'https://evil.test' } }), 403, 'csrf_rejected')

  const lines = logs.lines()
  t.match(refusal(lines, 'rate_limited'), { securityEvent: { subject: 'idp|alice', mangopayUserId: USER_A, ip: '127.0.0.1', route: '/v1/tokens/checkout' } })
  const csrf = refusal(lines, 'csrf_rejected')
  t.match(csrf, { securityEvent: { ip: '192.0.2.7', route: RECIPIENTS } }, 'refused before verification: address and route')
  t.notOk(csrf !== undefined && 'subject' in (csrf.securityEvent as object), 'no subject: the cookie was never verified')
})

t.test('a request the HTTP parser refuses is logged in one line at info', async t => {
  const { app, logs } = await buildTestApp(t)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const response = await new Promise<string>((resolve, reject) => {
    const socket = connect(address.port, '127.0.0.1')
    let answer = ''
    socket.on('data', d => { answer += d.toString() })
    socket.on('error', reject)
    socket.on('close', () => resolve(answer))
    socket.write('NOT AN HTTP REQUEST\r\n\r\n')
  })
  t.match(response, /^HTTP\/1\.1 400 /)
  const requestId = /"requestId":"([^"]+)"/.exec(response)?.[1]
  const lines = logs.lines().filter(l => l.msg === 'refused: bad_request (client error)')
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], { level: 30, code: 'bad_request', clientError: /^HPE_/, ip: '127.0.0.1', requestId })
})
