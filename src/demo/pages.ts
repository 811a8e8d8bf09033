import { readFile } from 'node:fs/promises'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance, FastifyReply } from 'fastify'

// The demo page, on the broker's origin and on a second one; no inline code, so a strict CSP holds on both.

const PUBLIC = new URL('./public/', import.meta.url)

export interface DemoAssets {
  html: string
  js: string
  css: string
}

export async function loadDemoAssets (): Promise<DemoAssets> {
  const [html, js, css] = await Promise.all(['index.html', 'demo.js', 'demo.css'].map(async name => await readFile(new URL(name, PUBLIC), 'utf8')))
  return { html: html as string, js: js as string, css: css as string }
}

export interface PageSettings {
  role: 'broker' | 'frontend'
  /** The broker's origin as the page calls it; '' on the broker's own origin. */
  broker: string
  frontend: string
}

function escapeAttribute (value: string): string {
  return value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

export function renderPage (html: string, settings: PageSettings): string {
  return html
    .replace('{{ROLE}}', settings.role)
    .replace('{{BROKER}}', escapeAttribute(settings.broker))
    .replace('{{FRONTEND}}', escapeAttribute(settings.frontend))
}

/** Only the page's own files run, it talks only to the broker (the helper's origin too), and it cannot be framed. */
export function contentSecurityPolicy (brokerOrigin?: string): string {
  const broker = brokerOrigin === undefined ? '' : ` ${brokerOrigin}`
  return [
    "default-src 'none'",
    `script-src 'self'${broker}`,
    "style-src 'self'",
    `connect-src 'self'${broker}`,
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join('; ')
}

const PAGE_HEADERS = {
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin'
}

/** Demo-only: the page at the broker's `/`. Registered by startDemo, never by buildApp. */
export async function demoPageRoutes (app: FastifyInstance, options: { assets: DemoAssets, frontendUrl: () => string }): Promise<void> {
  const { assets } = options
  const send = (reply: FastifyReply, type: string, body: string): FastifyReply =>
    reply.headers({ ...PAGE_HEADERS, 'content-security-policy': contentSecurityPolicy() }).type(type).send(body)

  app.get('/', async (_request, reply) =>
    send(reply, 'text/html; charset=utf-8', renderPage(assets.html, { role: 'broker', broker: '', frontend: options.frontendUrl() })))
  app.get('/demo.js', async (_request, reply) => send(reply, 'text/javascript; charset=utf-8', assets.js))
  app.get('/demo.css', async (_request, reply) => send(reply, 'text/css; charset=utf-8', assets.css))
}

export interface FrontendServer {
  url: string
  close (): Promise<void>
}

export async function startFrontendServer (options: { assets: DemoAssets, host: string, port: number, brokerUrl: () => string }): Promise<FrontendServer> {
  const { assets } = options

  function answer (res: ServerResponse, status: number, type: string, body: string, csp: string): void {
    res.writeHead(status, {
      ...PAGE_HEADERS,
      'content-type': type,
      'content-security-policy': csp,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff'
    })
    res.end(body)
  }

  const server = createServer((req, res) => {
    const broker = options.brokerUrl()
    const csp = contentSecurityPolicy(broker)
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, 'text/plain; charset=utf-8', 'Method not allowed\n', csp)
    if (path === '/') return answer(res, 200, 'text/html; charset=utf-8', renderPage(assets.html, { role: 'frontend', broker, frontend: '' }), csp)
    if (path === '/demo.js') return answer(res, 200, 'text/javascript; charset=utf-8', assets.js, csp)
    if (path === '/demo.css') return answer(res, 200, 'text/css; charset=utf-8', assets.css, csp)
    answer(res, 404, 'text/plain; charset=utf-8', 'Not found\n', csp)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${options.host}:${port}`,
    close: async () => await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  }
}
