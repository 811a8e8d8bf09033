import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { TraceSpan, Tracing } from './tracing.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's server span: continued from its `traceparent`, or started when spans are exported; null otherwise. */
    traceSpan: TraceSpan | null
  }
}

/** One server span per request, from its arrival to its answer; the routes hang their spans under it. */
async function requestSpans (app: FastifyInstance, options: { tracing: Tracing }): Promise<void> {
  const { tracing } = options
  app.decorateRequest('traceSpan', null)
  // Callback style: no promise per request, and nothing at all but a header lookup when there is no trace.
  app.addHook('onRequest', (request, _reply, done) => {
    request.traceSpan = tracing.startRequest(request) ?? null
    done()
  })
  app.addHook('onResponse', (request, reply, done) => {
    const span = request.traceSpan
    if (span !== null) {
      span.setAttribute('http.response.status_code', reply.statusCode)
      // As OpenTelemetry's HTTP conventions say: a 4xx is the client's failure, not the server span's.
      if (reply.statusCode >= 500) span.fail(reply.problemCode ?? String(reply.statusCode))
      else if (reply.problemCode !== null) span.setAttribute('error.type', reply.problemCode)
      span.end()
    }
    done()
  })
}

export default fp(requestSpans, { name: 'request-spans', fastify: '5.x', dependencies: ['problem'] })
