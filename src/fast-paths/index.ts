/**
 * Speed work: each piece replaced a plainer one for a measured gain of at least 2 % of a token
 * request's cost; the figures are in docs/benchmark.md#fast-paths.
 */
export { AccessLog, auditTokenIssued, type TokenAudit } from './access-line.js'
export { Deadline } from './deadline-signal.js'
export { isoFormatter, isoTime } from './iso-time.js'
