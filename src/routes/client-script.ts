import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'

// From source (tsx) the helper is transpiled on first request: only a process serving it pays for the compiler.

const COMPILED = new URL('../client/index.js', import.meta.url)
const SOURCE = new URL('../client/index.ts', import.meta.url)

/** Short, so a redeployed helper reaches pages soon; the ETag makes revalidation a 304. */
export const CLIENT_SCRIPT_CACHE_CONTROL = 'public, max-age=300'

export interface ClientScript {
  body: string
  etag: string
}

function withEtag (body: string): ClientScript {
  return { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 32)}"` }
}

/** The compiled file points at a source map this route does not serve. */
function withoutSourceMapComment (code: string): string {
  return code.replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n')
}

async function transpileSource (): Promise<ClientScript> {
  const source = await readFile(SOURCE, 'utf8')
  const ts = (await import('typescript')).default
  const output = ts.transpileModule(source, {
    fileName: fileURLToPath(SOURCE),
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, sourceMap: false, removeComments: false }
  })
  return withEtag(output.outputText)
}

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and may list several tags or `*`. */
function matches (ifNoneMatch: string | undefined, etag: string): boolean {
  if (ifNoneMatch === undefined) return false
  return ifNoneMatch.split(',').some((candidate) => {
    const tag = candidate.trim().replace(/^W\//, '')
    return tag === '*' || tag === etag
  })
}

/** Reads the compiled helper now, or transpiles the source on first use (a failure is retried next time). */
function scriptLoader (): () => Promise<ClientScript> {
  if (existsSync(COMPILED)) {
    const ready = Promise.resolve(withEtag(withoutSourceMapComment(readFileSync(COMPILED, 'utf8'))))
    return async () => await ready
  }
  if (existsSync(SOURCE)) {
    let transpiled: Promise<ClientScript> | undefined
    return async () => {
      transpiled ??= transpileSource().catch((err: unknown) => {
        transpiled = undefined
        throw err
      })
      return await transpiled
    }
  }
  throw new Error(`The browser helper is missing (${fileURLToPath(COMPILED)}): run "npm run build".`)
}

export async function clientScriptRoutes (app: FastifyInstance): Promise<void> {
  const script = scriptLoader()

  app.get('/v1/client.js', async (request, reply) => {
    const { body, etag } = await script()
    reply.header('etag', etag).header('cache-control', CLIENT_SCRIPT_CACHE_CONTROL)
    if (matches(request.headers['if-none-match'], etag)) return reply.code(304).send()
    return reply.type('text/javascript; charset=utf-8').send(body)
  })
}
