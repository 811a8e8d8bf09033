/** Logs (with the access and audit line), metrics and traces. */
export { CENSOR, createLogger, liveSecretsOf } from './logging.js'
export { LiveSecrets } from './live-secrets.js'
export { default as metricsPlugin, BrokerMetrics } from './metrics.js'
export { default as requestSpans } from './request-spans.js'
export { effectiveSettings } from './settings.js'
export { createTracing, type TraceSpan, type Tracing } from './tracing.js'
