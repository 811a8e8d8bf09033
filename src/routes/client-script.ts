import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'

/**
 * `GET /v1/client.js`: the browser helper, for plain pages that have no bundler
 * (`<script type="module">` / `import()`). It is the very file the npm package ships
 * (packages/client, built by `npm ci`, `npm test`, `npm run demo`, `npm run build`), read once at
 * start-up and served from memory with a strong ETag (a hash of the content).
 */

const CLIENT_PACKAGE = 'mangopay-token-broker-client'

/** Short, so a redeployed helper reaches pages soon; the ETag makes revalidation a 304. */
export const CLIENT_SCRIPT_CACHE_CONTROL = 'public, max-age=300'

export interface ClientScriptOptions {
  /** The built helper; by default the package's entry, found like any import (the workspace link). */
  file?: URL
}

interface ClientScript {
  body: string
  etag: string
}

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and may list several tags or `*`. */
function matches (ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  return ifNoneMatch.split(',').some((candidate) => {
    const tag = candidate.trim().replace(/^W\//, '')
    return tag === '*' || tag === etag
  })
}

async function loadClientScript (file: URL | undefined): Promise<ClientScript> {
  let body: string
  try {
    body = await readFile(file ?? new URL(import.meta.resolve(CLIENT_PACKAGE)), 'utf8')
  } catch (err) {
    const where = file === undefined ? `the ${CLIENT_PACKAGE} package's entry` : fileURLToPath(file)
    throw new Error(`The browser helper served at /v1/client.js is not built (${where}: ${(err as Error).message}). Run "npm run build" (or "npm ci", which builds it).`, { cause: err })
  }
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"` }
}

export async function clientScriptRoutes (app: FastifyInstance, options: ClientScriptOptions): Promise<void> {
  const { body, etag } = await loadClientScript(options.file)

  app.get('/v1/client.js', async (request, reply) => {
    reply.header('etag', etag).header('cache-control', CLIENT_SCRIPT_CACHE_CONTROL)
    if (matches(request.headers['if-none-match'], etag)) return reply.code(304).send()
    return reply.type('text/javascript; charset=utf-8').send(body)
  })
}
