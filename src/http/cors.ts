import type { FastifyInstance } from 'fastify'
import fastifyCors from '@fastify/cors'
import fp from 'fastify-plugin'

/**
 * SPEC §3.4: CORS answers only origins listed exactly in CORS_ORIGINS — no wildcard, no
 * reflection, no suffix or scheme/port leniency. An unlisted origin gets no CORS header at
 * all (its preflight is a plain 404), so the browser refuses to send or read the request.
 */

/** Browsers may cache a successful preflight this long (seconds): short, so a removed origin stops quickly. */
export const PREFLIGHT_MAX_AGE_S = 600

async function corsPlugin (app: FastifyInstance, options: { origins: readonly string[] }): Promise<void> {
  const allowed = new Set(options.origins)
  await app.register(fastifyCors, {
    origin: (origin, callback) => {
      callback(null, origin !== undefined && allowed.has(origin) ? origin : false)
    },
    credentials: true,
    methods: ['GET', 'POST'],
    allowedHeaders: ['Authorization', 'Content-Type', 'X-CSRF'],
    exposedHeaders: ['Retry-After', 'X-Request-Id', 'X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset'],
    maxAge: PREFLIGHT_MAX_AGE_S,
    // Not strict: the strict check answers an OPTIONS without Access-Control-Request-Method
    // with a text/plain 400, which no problem+json client can read. Browsers always send the
    // header; such a request from a listed origin is answered like a preflight, and one from
    // any other origin is still the plain 404.
    strictPreflight: false
  })
}

export default fp(corsPlugin, { name: 'cors', fastify: '5.x' })
