import { pino, type DestinationStream, type Logger } from 'pino'
import { isoTime } from '../fast-paths/index.js'
import { LiveSecrets } from './live-secrets.js'

/** Every finished line is checked: a value under one of these keys, at any depth and in any case, is replaced. */
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
/** Inside a JSON string a quote is escaped, so `"token":` can only be a key: no match, nothing to censor. */
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
 * pino's last step before a line is written: a line naming no sensitive key passes after one
 * test; one that does is parsed and censored. Unlike pino's `redact`, it covers every depth.
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

/** Log lines go out in synchronous writes of about 4 KB, and at least every 250 ms when quiet. */
function standardOutput (): DestinationStream {
  const stdout = pino.destination({ dest: 1, sync: true, minLength: 4096, periodicFlush: 250 })
  process.once('exit', () => {
    try {
      stdout.flushSync()
    } catch {
      // The destination is closed or was never opened: nothing left to write to.
    }
  })
  return stdout
}

/** The path, and `?[redacted]` for a query: no route reads one, and it may carry a credential (RFC 6750's `access_token=`). */
export function loggedUrl (url: string): string {
  const query = url.indexOf('?')
  return query === -1 ? url : `${url.slice(0, query)}?${CENSOR}`
}

/** `req` in an access line: what was asked and by whom (`ip` believes X-Forwarded-For only from TRUST_PROXY). */
function requestFields (request: { method: string, url: string, ip: string }): { method: string, url: string, remoteAddress: string } {
  return { method: request.method, url: loggedUrl(request.url), remoteAddress: request.ip }
}

const liveSecrets = new WeakMap<Logger, LiveSecrets>()

/** The secrets a logger made by createLogger scrubs from every line; the Mangopay room tells it which. */
export function liveSecretsOf (logger: Logger): LiveSecrets | undefined {
  return liveSecrets.get(logger)
}

export function createLogger (level: string, destination: DestinationStream = standardOutput()): Logger {
  const secrets = new LiveSecrets()
  const logger = pino({
    level,
    base: { service: 'mangopay-token-broker' },
    timestamp: isoTime,
    serializers: { req: requestFields },
    hooks: { streamWrite: line => censorLine(secrets.scrub(line)) }
  }, destination)
  liveSecrets.set(logger, secrets)
  return logger
}
