import type { FastifyInstance } from 'fastify'
import fastifyCors from '@fastify/cors'
import fp from 'fastify-plugin'

// SPEC §3.4: only the exact origins in CORS_ORIGINS; any other gets no CORS header (its preflight a plain 404).

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
    // Strict answers a preflight lacking Access-Control-Request-Method with a text/plain 400; browsers always send it.
    strictPreflight: false
  })
}

export default fp(corsPlugin, { name: 'cors', fastify: '5.x' })
