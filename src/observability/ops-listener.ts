import { randomUUID } from 'node:crypto'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import { BrokerError } from '../errors.js'
import { commonHeaders, problemBody } from '../http/index.js'

/** Readiness with its figures (quota windows, bearer state): what the public port leaves out (SPEC §8 "Ports"). */
export type DetailedReadiness =
  | { ready: true, checks: Record<string, unknown> }
  | { ready: false, failing: string[], error: BrokerError, checks: Record<string, unknown> }

export interface OpsListenerOptions {
  /** The registry to scrape, and where the listener ended up once it listens. */
  metrics: { registry: Registry, listeningOn: AddressInfo | undefined }
  readiness: () => Promise<DetailedReadiness>
  port: number
  host: string
}

/** JSON with the headers every answer carries; problem+json for a refusal. */
function send (res: ServerResponse, status: number, body: unknown, requestId: string, headers: Record<string, string> = {}): void {
  const type = status < 400 ? 'application/json' : 'application/problem+json'
  res.writeHead(status, { 'content-type': `${type}; charset=utf-8`, ...commonHeaders(requestId), ...headers }).end(JSON.stringify(body))
}

/** As sendProblem does on the public port, Retry-After included. */
function refuse (res: ServerResponse, error: BrokerError, extensions: Record<string, unknown> = {}): void {
  const requestId = randomUUID()
  const headers: Record<string, string> = error.retryAfterS === undefined ? {} : { 'retry-after': String(error.retryAfterS) }
  send(res, error.statusCode, { ...problemBody(error.statusCode, error.code, error.detail, requestId), ...extensions }, requestId, headers)
}

/**
 * METRICS_PORT: `/metrics` and the detailed `/readyz`, on a listener of its own so operational
 * data is never served where browsers reach the broker. Refusals are problem+json (SPEC §2).
 */
export function listenForOperations (app: FastifyInstance, options: OpsListenerOptions): void {
  const { metrics, readiness } = options
  const failed = (res: ServerResponse, what: string) => (err: unknown) => {
    app.log.error({ err }, `${what} failed`)
    refuse(res, new BrokerError('internal_error', `The ${what} could not be collected.`))
  }

  const server: Server = createServer((req, res) => {
    // The path is not echoed, whatever it held.
    const path = req.url?.split('?')[0]
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/readyz')) {
      refuse(res, new BrokerError('not_found', 'Only GET /metrics and GET /readyz are served here.'))
      return
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        text => res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store', pragma: 'no-cache', 'referrer-policy': 'no-referrer' }).end(text),
        failed(res, 'metrics collection')
      )
      return
    }
    readiness().then(report => {
      if (report.ready) send(res, 200, { status: 'ready', checks: report.checks }, randomUUID())
      else refuse(res, report.error, { failing: report.failing, checks: report.checks })
    }, failed(res, 'readiness check'))
  })

  app.addHook('onReady', async () => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(options.port, options.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    metrics.listeningOn = server.address() as AddressInfo
    app.log.info({ metrics: { port: metrics.listeningOn.port } }, 'metrics and detailed readiness listening')
  })
  app.addHook('onClose', async () => {
    if (!server.listening) return
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
}
