import { createServer, type IncomingHttpHeaders, type IncomingMessage, type RequestListener, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { systemClock } from '../clock.js'
import { CONTROL_PREFIX, handleControl } from './control-api.js'
import { applyFault, Timers } from './faults.js'
import { handleEmbedded, handleOAuth, previewBody, type HandlerContext, type IncomingCall } from './handlers.js'
import { MANGOPAY_QUOTA } from './quota.js'
import { notFound, payloadTooLarge, rateLimited, send, type Reply } from './replies.js'
import { EmulatorState } from './state.js'
import type { Emulator, EmulatorOptions, EndpointName } from './types.js'

/** Bodies beyond this are drained but not kept (the real ones are a few dozen bytes). */
const MAX_BODY_BYTES = 64 * 1024

const ROUTES: Record<string, EndpointName> = {
  '/v2.01/oauth/token': 'oauth',
  '/v2.01/oauth/token/embedded/recipient': 'recipient',
  '/v2.01/oauth/token/embedded/checkout': 'checkout'
}

function classify (method: string, pathname: string): EndpointName | 'other' {
  return method === 'POST' ? ROUTES[pathname] ?? 'other' : 'other'
}

function flatten (headers: IncomingHttpHeaders): Record<string, string> {
  const flat: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return flat
}

/** Reads the whole body first: every answer, faults included, leaves the connection reusable. */
function readBody (req: IncomingMessage, done: (rawBody: string, tooLarge: boolean) => void): void {
  const chunks: Buffer[] = []
  let size = 0
  req.on('data', (chunk: Buffer) => {
    size += chunk.length
    if (size <= MAX_BODY_BYTES) chunks.push(chunk)
  })
  req.on('end', () => done(Buffer.concat(chunks).toString('utf8'), size > MAX_BODY_BYTES))
  // The client went away mid-body: there is nobody to answer.
  req.on('error', () => {})
}

export async function startEmulator (options: EmulatorOptions): Promise<Emulator> {
  const clock = options.clock ?? systemClock
  const state = new EmulatorState(options.apiKey, options.quota ?? MANGOPAY_QUOTA, clock, options.rateLimitHeaderStyle)
  const ctx: HandlerContext = {
    state,
    clock,
    settings: {
      clientId: options.clientId,
      bearerTtlS: options.bearerTtlS ?? 1200,
      bearerTokenType: options.bearerTokenType ?? 'bearer',
      embeddedTtlS: options.embeddedTtlS ?? 900
    }
  }
  const controlEnabled = options.controlEnabled ?? false
  const timers = new Timers()

  function answer (endpoint: EndpointName, call: IncomingCall, exhausted: boolean, tooLarge: boolean): Reply {
    const now = clock.now()
    if (exhausted) return rateLimited(now)
    if (tooLarge) return payloadTooLarge(now)
    return endpoint === 'oauth' ? handleOAuth(call, ctx) : handleEmbedded(endpoint, call, ctx)
  }

  function dispatch (req: IncomingMessage, res: ServerResponse, rawBody: string, tooLarge: boolean): void {
    const method = req.method ?? 'GET'
    const path = req.url ?? '/'
    const query = path.indexOf('?')
    const pathname = query < 0 ? path : path.slice(0, query)

    if (controlEnabled && (pathname === CONTROL_PREFIX || pathname.startsWith(`${CONTROL_PREFIX}/`))) {
      send(res, tooLarge ? payloadTooLarge(clock.now()) : handleControl(method, pathname, rawBody, state))
      return
    }

    const now = clock.now()
    const endpoint = classify(method, pathname)
    const headers = flatten(req.headers)
    state.recordRequest({ endpoint, method, path, headers, rawBody, at: now })
    if (endpoint === 'other') {
      send(res, notFound(now), state.quota.peek())
      return
    }

    const { exhausted, headers: rateHeaders } = state.quota.consume()
    const call: IncomingCall = { headers: req.headers, rawBody }
    const fault = state.takeFault(endpoint)
    if (fault === undefined) {
      send(res, answer(endpoint, call, exhausted, tooLarge), rateHeaders)
      return
    }
    applyFault(fault, {
      res,
      endpoint,
      authorization: req.headers.authorization,
      rateHeaders,
      timers,
      now,
      answer: () => answer(endpoint, call, exhausted, tooLarge),
      preview: () => previewBody(endpoint, ctx.settings)
    })
  }

  const listener: RequestListener = (req, res) => {
    readBody(req, (rawBody, tooLarge) => dispatch(req, res, rawBody, tooLarge))
  }
  const tls = options.tls
  // A refused client certificate ends the handshake; nothing reaches the handlers or the records.
  const server = tls === undefined
    ? createServer(listener)
    : createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.requestCert ?? false, rejectUnauthorized: tls.requestCert ?? false, minVersion: 'TLSv1.2' }, listener)

  const host = options.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { port } = server.address() as AddressInfo
  const url = `${tls === undefined ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${port}`

  let closing: Promise<void> | undefined
  function close (): Promise<void> {
    closing ??= new Promise<void>((resolve) => {
      timers.clear()
      server.close(() => resolve())
      // Hanging, trickling and idle keep-alive sockets would otherwise hold close() open.
      server.closeAllConnections()
    })
    return closing
  }

  return { url, control: state, close }
}
