/** Logs (with the access and audit line), metrics and traces. */
export { CENSOR, createLogger } from './logging.js'
export { default as metricsPlugin, BrokerMetrics } from './metrics.js'
export { default as requestSpans } from './request-spans.js'
export { createTracing, type TraceSpan, type Tracing } from './tracing.js'
