/** Logs (with the access and audit line) and metrics. */
export { CENSOR, createLogger } from './logging.js'
export { default as metricsPlugin, BrokerMetrics } from './metrics.js'
export { effectiveSettings } from './settings.js'
