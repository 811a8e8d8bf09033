import { pino, type DestinationStream, type Logger } from 'pino'

/**
 * Secrets never reach a log line. The code logs no credentials or tokens in the first place
 * (only fingerprints), and every finished line is checked once more: a value under one of these
 * keys, at any depth and in any letter case, is replaced by "[redacted]". The test suite
 * captures every line and checks it.
 */
export const SENSITIVE_KEYS: ReadonlySet<string> = new Set([
  'authorization',
  'cookie',
  'set-cookie',
  'x-csrf',
  'apikey',
  'api_key',
  'access_token',
  'accesstoken',
  'clienttoken',
  'token',
  'jwt',
  'secret',
  'password',
  'passphrase'
])

export const CENSOR = '[redacted]'

const escape = (key: string): string => key.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&')
/**
 * A sensitive key as it appears in a JSON line. Inside a JSON string a quote is always escaped,
 * so `"token":` can only be a key: a line without a match has nothing to censor.
 */
const SENSITIVE_KEY_IN_JSON = new RegExp(`"(?:${[...SENSITIVE_KEYS].map(escape).join('|')})":`, 'i')

function censorValues (value: unknown, depth: number): void {
  if (value === null || typeof value !== 'object' || depth > 32) return
  if (Array.isArray(value)) {
    for (const item of value) censorValues(item, depth + 1)
    return
  }
  const record = value as Record<string, unknown>
  for (const key of Object.keys(record)) {
    if (SENSITIVE_KEYS.has(key.toLowerCase())) record[key] = CENSOR
    else censorValues(record[key], depth + 1)
  }
}

/**
 * pino's last step before a line is written. Lines that name no sensitive key (every line of a
 * normal request) pass untouched after one regular-expression test; the rare one that does is
 * parsed, censored and written again. Cheaper than pino's path-based `redact`, which cloned and
 * walked every logged object (about 40 % of a line's cost), and it covers every depth.
 */
export function censorLine (line: string): string {
  if (!SENSITIVE_KEY_IN_JSON.test(line)) return line
  let parsed: unknown
  try {
    parsed = JSON.parse(line)
  } catch {
    // Not JSON (cannot happen with pino): keep nothing that might hold a secret.
    return '{"level":50,"msg":"a log line that could not be censored was dropped"}\n'
  }
  censorValues(parsed, 0)
  return `${JSON.stringify(parsed)}\n`
}

/** Log lines are written in batches of this many bytes, and at least this often. */
const LOG_BATCH_BYTES = 4096
const LOG_FLUSH_INTERVAL_MS = 250

/**
 * stdout, in batches of LOG_BATCH_BYTES (or every LOG_FLUSH_INTERVAL_MS when quiet) rather than
 * one write per line, each batch one synchronous write: no hand-off to libuv's thread pool per
 * write, which costs more than the write itself on a busy machine. What is left is written when
 * the process exits.
 */
function standardOutput (): DestinationStream {
  const stdout = pino.destination({ dest: 1, sync: true, minLength: LOG_BATCH_BYTES, periodicFlush: LOG_FLUSH_INTERVAL_MS })
  process.once('exit', () => {
    try {
      stdout.flushSync()
    } catch {
      // stdout is gone (EPIPE): nothing left to write to.
    }
  })
  return stdout
}

let formattedAt = Number.NaN
let formatted = ''

/**
 * pino's `isoTime` (`,"time":"2026-11-28T07:00:00.000Z"`), formatted once per millisecond: under
 * load many lines share a millisecond, and formatting a date costs more than the rest of a line's
 * fixed part.
 */
export function isoTime (): string {
  const now = Date.now()
  if (now !== formattedAt) {
    formattedAt = now
    formatted = `,"time":"${new Date(now).toISOString()}"`
  }
  return formatted
}

/**
 * The URL as logged: the path, and `?[redacted]` for a query string. No route reads one, and
 * one may carry a credential a frontend put there by mistake (RFC 6750 allows `access_token=`).
 */
export function loggedUrl (url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : `${url.slice(0, query)}?${CENSOR}`
}

/**
 * `req` in an access line: what was asked and by whom (`ip` believes X-Forwarded-For only from
 * TRUST_PROXY). Replaces Fastify's own, which adds the Host header, the client port and an
 * `accept-version` header: three fields less to read and write on every line.
 */
function requestFields (request: { method: string, url: string, ip: string }): { method: string, url: string, remoteAddress: string } {
  return { method: request.method, url: loggedUrl(request.url), remoteAddress: request.ip }
}

export function createLogger (level: string, destination: DestinationStream = standardOutput()): Logger {
  return pino({
    level,
    base: { service: 'mangopay-token-broker' },
    timestamp: isoTime,
    serializers: { req: requestFields },
    hooks: { streamWrite: censorLine }
  }, destination)
}
