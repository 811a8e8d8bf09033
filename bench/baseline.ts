/**
 * The leanest possible broker, for comparison: a bare Fastify route forwarding to the same
 * emulator endpoint over an undici Pool (sized like the broker's) with one bearer fetched at
 * start. No auth, no validation, no logging, no rate limiting.
 */
import Fastify from 'fastify'
import { Pool } from 'undici'

function required (name: string): string {
  const value = process.env[name]
  if (value === undefined || value === '') throw new Error(`${name} is not set`)
  return value
}

const upstream = required('BASELINE_UPSTREAM')
const clientId = required('BASELINE_CLIENT_ID')
const apiKey = required('BASELINE_API_KEY')
const port = Number(required('BASELINE_PORT'))

const pool = new Pool(upstream, { connections: 64, pipelining: 1 })

const grant = await pool.request({
  method: 'POST',
  path: '/v2.01/oauth/token',
  headers: {
    authorization: `Basic ${Buffer.from(`${clientId}:${apiKey}`).toString('base64')}`,
    'content-type': 'application/x-www-form-urlencoded'
  },
  body: 'grant_type=client_credentials'
})
const { access_token: bearer } = await grant.body.json() as { access_token: string }

const app = Fastify({ logger: false })
for (const [route, kind] of [['recipients', 'recipient'], ['checkout', 'checkout']] as const) {
  const path = `/v2.01/oauth/token/embedded/${kind}`
  const body = JSON.stringify({ clientId, claims: { userId: 'user_baseline' } })
  app.post(`/v1/tokens/${route}`, async (_request, reply) => {
    const response = await pool.request({
      method: 'POST',
      path,
      headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
      body
    })
    reply.code(response.statusCode).header('content-type', 'application/json')
    return await response.body.text()
  })
}

app.addHook('onClose', async () => await pool.close())
await app.listen({ host: '127.0.0.1', port })
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
}
