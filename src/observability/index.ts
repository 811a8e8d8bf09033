/** Logs (with the access and audit line) and metrics. */
export { CENSOR, createLogger, liveSecretsOf } from './logging.js'
export { LiveSecrets } from './live-secrets.js'
export { default as metricsPlugin, BrokerMetrics } from './metrics.js'
export { effectiveSettings } from './settings.js'
