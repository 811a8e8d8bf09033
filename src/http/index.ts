import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Lifecycle } from '../lifecycle.js'
import cors from './cors.js'
import { loadShedding, type LoadSheddingOptions } from './load-shedding.js'
import problem, { HSTS, JSON_CSP } from './problem.js'

export { serverOptions } from './options.js'
export { commonHeaders, problemBody, sendProblem } from './problem.js'

export interface InboundOptions {
  lifecycle: Lifecycle
  origins: readonly string[]
  loadShedding: LoadSheddingOptions
}

async function inbound (app: FastifyInstance, options: InboundOptions): Promise<void> {
  const { lifecycle } = options
  // JSON only (else 415), prototype poisoning refused; an empty body counts as none (SPEC §2 allows none).
  app.removeAllContentTypeParsers()
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, null)
    parseJson(request, body as string, done)
  })

  // The access line writes a token request's audit with it (fast-paths/access-line.ts).
  app.decorateRequest('tokenAudit', null)

  // Callback style: no promise per request for work that never waits.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id)
    // Only GET /v1/client.js (a public script) sets its own caching; everything else is no-store.
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store')
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
    reply.header('pragma', 'no-cache')
    const type = reply.getHeader('content-type')
    // A JSON answer is data, never a document: nothing in it may load or frame anything.
    if (typeof type === 'string' && (type.startsWith('application/json') || type.startsWith('application/problem+json'))) {
      reply.header('content-security-policy', JSON_CSP)
    }
    // HTTPS directly, or per X-Forwarded-Proto from a TRUST_PROXY address (Fastify's request.protocol).
    if (request.protocol === 'https') reply.header('strict-transport-security', HSTS)
    // close() waits for every connection, and one idle for the keep-alive timeout would outlast it.
    if (lifecycle.shuttingDown) reply.header('connection', 'close')
    done(null, payload)
  })

  await app.register(problem)
  await app.register(cors, { origins: options.origins })
  await loadShedding(app, options.loadShedding)
}

export default fp(inbound, { name: 'inbound', fastify: '5.x' })
