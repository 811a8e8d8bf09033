import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import {
  defaultTextMapGetter, defaultTextMapSetter, INVALID_SPAN_CONTEXT, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace,
  type Attributes, type Context, type Span
} from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import type { FastifyBaseLogger } from 'fastify'
import type { TracingConfig } from '../config/index.js'
import { BrokerError } from '../errors.js'

// SPEC §8 "Tracing". Contexts are passed by hand (request → span → Mangopay call), so nothing
// is registered with OpenTelemetry's globals and no async context is tracked.

export type SpanKindName = 'client' | 'internal'
export type SpanAttributes = Record<string, string | number | boolean>

type StartSpan = (name: string, kind: SpanKind, attributes: Attributes, parent: Context) => Span
/** The parts of a Fastify request a server span is made from. */
type IncomingRequest = { headers: IncomingHttpHeaders, method: string, routeOptions: { url?: string | undefined } }

const KINDS: Record<SpanKindName, SpanKind> = { client: SpanKind.CLIENT, internal: SpanKind.INTERNAL }
const propagator = new W3CTraceContextPropagator()

/** Without an exporter: the incoming trace goes on through spans nothing records, each with an id of its own. */
const propagateOnly: StartSpan = (_name, _kind, _attributes, parent) => {
  // Always called with a parent: requests without a trace get no span.
  const { traceId, traceFlags, traceState } = trace.getSpanContext(parent) ?? INVALID_SPAN_CONTEXT
  return trace.wrapSpanContext({ traceId, spanId: randomBytes(8).toString('hex'), traceFlags, traceState })
}

/** The SPEC error code of a refusal; the class name of anything else (its message may quote a secret). */
function errorCode (error: unknown): string {
  if (error instanceof BrokerError) return error.code
  if (typeof error === 'string') return error
  return error instanceof Error ? error.name : 'error'
}

export class TraceSpan {
  readonly #span: Span
  readonly #context: Context
  readonly #start: StartSpan

  constructor (start: StartSpan, name: string, kind: SpanKind, attributes: Attributes, parent: Context) {
    this.#start = start
    this.#span = start(name, kind, attributes, parent)
    this.#context = trace.setSpan(parent, this.#span)
  }

  child (name: string, attributes: SpanAttributes = {}, kind: SpanKindName = 'internal'): TraceSpan {
    return new TraceSpan(this.#start, name, KINDS[kind], attributes, this.#context)
  }

  /** `traceparent` (and `tracestate`) for a call made within this span. */
  headers (): Record<string, string> {
    const carrier: Record<string, string> = {}
    propagator.inject(this.#context, carrier, defaultTextMapSetter)
    return carrier
  }

  setAttribute (name: string, value: string | number | boolean): void {
    this.#span.setAttribute(name, value)
  }

  /** A BrokerError's code, or a code given as a string; never an error's message. */
  fail (error: unknown): void {
    const code = errorCode(error)
    this.#span.setAttribute('error.type', code)
    this.#span.setStatus({ code: SpanStatusCode.ERROR, message: code })
  }

  end (): void {
    this.#span.end()
  }
}

export class Tracing {
  readonly #start: StartSpan
  /** Spans are recorded and exported: a request without a traceparent starts a trace. */
  readonly exporting: boolean
  readonly #shutdown: () => Promise<void>

  constructor (start: StartSpan, exporting: boolean, shutdown: () => Promise<void>) {
    this.#start = start
    this.exporting = exporting
    this.#shutdown = shutdown
  }

  /** A request's server span, named after its route (never its URL); none when there is no trace to continue or record. */
  startRequest (request: IncomingRequest): TraceSpan | undefined {
    const { headers, method } = request
    // An invalid traceparent is ignored, as W3C Trace Context says.
    const parent = headers.traceparent === undefined ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter)
    if (!this.exporting && trace.getSpanContext(parent) === undefined) return undefined
    // Read only now: Fastify builds `routeOptions` anew on each access.
    const route = request.routeOptions.url
    const attributes: Attributes = { 'http.request.method': method }
    if (route !== undefined) attributes['http.route'] = route
    return new TraceSpan(this.#start, route === undefined ? method : `${method} ${route}`, SpanKind.SERVER, attributes, parent)
  }

  root (name: string, attributes: SpanAttributes = {}, kind: SpanKindName = 'internal'): TraceSpan | undefined {
    return this.exporting ? new TraceSpan(this.#start, name, KINDS[kind], attributes, ROOT_CONTEXT) : undefined
  }

  /** Sends the spans still queued; in the app's onClose. */
  async close (): Promise<void> {
    await this.#shutdown()
  }
}

export async function createTracing (config: TracingConfig, log: FastifyBaseLogger): Promise<Tracing> {
  if (config.exportUrl === undefined) return new Tracing(propagateOnly, false, async () => {})
  // Loaded only when spans are exported: without an exporter, start-up and memory do not pay for the SDK.
  const { startExporting } = await import('./tracing-sdk.js')
  const sdk = startExporting(config, config.exportUrl, log)
  return new Tracing((name, kind, attributes, parent) => sdk.tracer.startSpan(name, { kind, attributes }, parent), true, sdk.shutdown)
}
