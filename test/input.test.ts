import t, { type Test } from 'tap'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { API_KEY, USER_A, assertProblem, buildTestApp, tokenFor } from './helpers.js'

/**
 * SPEC §2: the token routes take no body, `{}` or `{"userId": …}` as application/json, and
 * refuse everything else with a problem+json 4xx before Mangopay is called. Every refusal is
 * a clean problem: no stack, no path, no secret, no-store, and the request id of the answer.
 */

const ROUTES = ['/v1/tokens/recipients', '/v1/tokens/checkout'] as const
const ENV = { RATE_LIMIT_MAX: '1000' }

async function setup (t: Parameters<typeof buildTestApp>[0]) {
  const built = await buildTestApp(t, { env: ENV })
  const token = await tokenFor(USER_A)
  const send = async (url: string, options: { payload?: string, contentType?: string, method?: InjectOptions['method'], headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, ...options.headers }
    if (options.contentType !== undefined) headers['content-type'] = options.contentType
    return await built.app.inject({ method: options.method ?? 'POST', url, headers, ...(options.payload === undefined ? {} : { payload: options.payload }) })
  }
  return { ...built, token, send }
}

/** The refusal carries nothing of the request's credentials either. */
function assertCleanProblem (t: Test, res: Awaited<ReturnType<FastifyInstance['inject']>>, status: number, code: string, token: string) {
  const body = assertProblem(t, res, status, code)
  t.notOk(res.body.includes(token), 'the JWT is not echoed')
  t.notOk(res.body.includes(API_KEY), 'the API key is not in the body')
  return body
}

for (const url of ROUTES) {
  t.test(`refused bodies on ${url}`, async t => {
    const { emulator, token, send } = await setup(t)
    const refusals: Array<[string, Parameters<typeof send>[1], number, string, RegExp?]> = [
      ['malformed JSON', { payload: '{"userId": ', contentType: 'application/json' }, 400, 'bad_request'],
      ['an unknown field', { payload: JSON.stringify({ userId: USER_A, extra: 1 }), contentType: 'application/json' }, 400, 'bad_request', /"extra"/],
      ['userId of the wrong type', { payload: JSON.stringify({ userId: 5 }), contentType: 'application/json' }, 400, 'bad_request', /userId/],
      ['an empty userId', { payload: JSON.stringify({ userId: '' }), contentType: 'application/json' }, 400, 'bad_request'],
      ['an array body', { payload: JSON.stringify([{ userId: USER_A }]), contentType: 'application/json' }, 400, 'bad_request'],
      ['a string body', { payload: JSON.stringify(USER_A), contentType: 'application/json' }, 400, 'bad_request'],
      ['a text/plain body', { payload: JSON.stringify({ userId: USER_A }), contentType: 'text/plain' }, 415, 'unsupported_media_type'],
      ['a form body', { payload: `userId=${USER_A}`, contentType: 'application/x-www-form-urlencoded' }, 415, 'unsupported_media_type'],
      ['a 10 KB body', { payload: JSON.stringify({ userId: USER_A, pad: 'x'.repeat(10 * 1024) }), contentType: 'application/json' }, 413, 'payload_too_large'],
      ['__proto__ poisoning', { payload: '{"__proto__":{"x":1}}', contentType: 'application/json' }, 400, 'bad_request'],
      ['constructor.prototype poisoning', { payload: '{"constructor":{"prototype":{}}}', contentType: 'application/json' }, 400, 'bad_request']
    ]
    for (const [name, options, status, code, detail] of refusals) {
      await t.test(name, async t => {
        const res = await send(url, options)
        const body = assertCleanProblem(t, res, status, code, token)
        if (detail !== undefined) t.match(body.detail, detail, 'the detail names the problem')
        t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
      })
    }

    await t.test('a body without any content type', async t => {
      // No Content-Type is not JSON: the body is refused as an unsupported media type.
      const res = await send(url, { payload: JSON.stringify({ userId: USER_A }) })
      t.notOk(res.raw.req.headers['content-type'], 'sent without a content type')
      const body = assertCleanProblem(t, res, 415, 'unsupported_media_type', token)
      t.ok(body.status >= 400 && body.status < 500)
      t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
    })
  })

  t.test(`accepted bodies on ${url}`, async t => {
    const { emulator, send } = await setup(t)
    const accepted: Array<[string, Parameters<typeof send>[1]]> = [
      ['application/json; charset=utf-8', { payload: JSON.stringify({ userId: USER_A }), contentType: 'application/json; charset=utf-8' }],
      ['an empty body with application/json ("no body")', { payload: '', contentType: 'application/json' }],
      ['no body, no content type', {}],
      ['{}', { payload: '{}', contentType: 'application/json' }]
    ]
    for (const [name, options] of accepted) {
      const res = await send(url, options)
      t.equal(res.statusCode, 200, name)
      t.equal(res.json().userId, USER_A, `${name}: the session's user`)
      t.equal(res.headers['cache-control'], 'no-store')
    }
    t.equal(emulator.control.minted.length, accepted.length)
  })
}

t.test('unknown routes and methods are 404 not_found', async t => {
  const { emulator, token, send } = await setup(t)
  const cases: Array<[string, string, InjectOptions['method']]> = [
    ['an unknown route', '/v1/tokens/something-else', 'POST'],
    ['an unknown route (GET)', '/nope', 'GET'],
    ['GET on the recipients route', '/v1/tokens/recipients', 'GET'],
    ['GET on the checkout route', '/v1/tokens/checkout', 'GET'],
    ['PUT on a token route', '/v1/tokens/checkout', 'PUT'],
    ['DELETE on a token route', '/v1/tokens/recipients', 'DELETE']
  ]
  for (const [name, url, method] of cases) {
    const res = await send(url, { method })
    const body = assertCleanProblem(t, res, 404, 'not_found', token)
    t.notMatch(body.detail, /something-else|nope/, `${name}: the path is not echoed`)
  }
  t.equal(emulator.control.calls.total, 0, 'zero Mangopay calls')
})

t.test('the caller\'s X-Request-Id is kept when sane, replaced when not', async t => {
  const { send } = await setup(t)
  const kept = await send(ROUTES[0], { payload: '{', contentType: 'application/json', headers: { 'x-request-id': 'trace-1234.abc' } })
  t.equal(kept.headers['x-request-id'], 'trace-1234.abc')
  t.equal(assertProblem(t, kept, 400, 'bad_request').requestId, 'trace-1234.abc')

  const insane = await send(ROUTES[0], { payload: '{', contentType: 'application/json', headers: { 'x-request-id': '<script>alert(1)</script>' } })
  t.not(insane.headers['x-request-id'], '<script>alert(1)</script>')
  t.notMatch(insane.body, /<script>/)
  assertProblem(t, insane, 400, 'bad_request')
})
