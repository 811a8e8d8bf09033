import { setTimeout as sleep } from 'node:timers/promises'
import type { Tracer } from '@opentelemetry/api'
import { ExportResultCode, type ExportResult } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOffSampler, AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler,
  type ReadableSpan, type Sampler, type SpanExporter
} from '@opentelemetry/sdk-trace-base'
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions'
import type { FastifyBaseLogger } from 'fastify'
import type { TracingConfig } from '../config/index.js'

// The OpenTelemetry SDK, imported only when spans are exported (tracing.ts).

function sampler ({ name, ratio }: TracingConfig['sampler']): Sampler {
  switch (name) {
    case 'always_on': return new AlwaysOnSampler()
    case 'always_off': return new AlwaysOffSampler()
    case 'traceidratio': return new TraceIdRatioBasedSampler(ratio)
    case 'parentbased_always_off': return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case 'parentbased_traceidratio': return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) })
    case 'parentbased_always_on': return new ParentBasedSampler({ root: new AlwaysOnSampler() })
  }
}

/** Logs a batch that could not be sent: OpenTelemetry would tell only its global diagnostic logger. */
class ReportingExporter implements SpanExporter {
  readonly #inner: SpanExporter
  readonly #log: FastifyBaseLogger

  constructor (inner: SpanExporter, log: FastifyBaseLogger) {
    this.#inner = inner
    this.#log = log
  }

  export (spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.#inner.export(spans, result => {
      if (result.code !== ExportResultCode.SUCCESS) {
        const error = result.error as { name?: string, code?: unknown } | undefined
        this.#log.warn({ tracing: { spans: spans.length, error: error?.name, code: error?.code } }, 'spans could not be exported')
      }
      done(result)
    })
  }

  async shutdown (): Promise<void> {
    await this.#inner.shutdown()
  }

  async forceFlush (): Promise<void> {
    await this.#inner.forceFlush?.()
  }
}

// The last batch may not hold up shutdown: a collector that never answers would otherwise use up the grace period.
export const LAST_EXPORT_MS = 3000
const TIMED_OUT = Symbol('timed out')

export function startExporting (config: TracingConfig, url: string, log: FastifyBaseLogger): { tracer: Tracer, shutdown: () => Promise<void> } {
  const resource = defaultResource().merge(resourceFromAttributes({ ...config.resourceAttributes, [ATTR_SERVICE_NAME]: config.serviceName }))
  const exporter = new ReportingExporter(new OTLPTraceExporter({ url }), log)
  const provider = new BasicTracerProvider({ resource, sampler: sampler(config.sampler), spanProcessors: [new BatchSpanProcessor(exporter)] })
  return {
    tracer: provider.getTracer('mangopay-token-broker'),
    shutdown: async () => {
      try {
        const outcome = await Promise.race([provider.shutdown(), sleep(LAST_EXPORT_MS, TIMED_OUT, { ref: false })])
        if (outcome === TIMED_OUT) log.warn({ tracing: { error: 'timeout', waitedMs: LAST_EXPORT_MS } }, 'the last spans could not be exported')
      } catch (err) {
        log.warn({ tracing: { error: (err as Error).name } }, 'the last spans could not be exported')
      }
    }
  }
}
