import { pino, type DestinationStream, type Logger } from 'pino'
import { isoFormatter } from '../clock.js'

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

/** Log lines are written in batches of about this many characters, and at least this often. */
const LOG_BATCH_CHARS = 4096
const LOG_FLUSH_INTERVAL_MS = 250

/**
 * Collects lines and hands them to sonic-boom as one string per batch. sonic-boom batches too
 * (`minLength`), but it measures the batch's UTF-8 length again on every line it adds, which
 * flattens and scans the whole batch each time: more work per line the larger the batch. Here a
 * line costs an array push, and the batch is joined once. sonic-boom still does the writing
 * (partial writes, EAGAIN on a pipe, `flushSync`).
 */
class LineBatches implements DestinationStream {
  readonly #out: ReturnType<typeof pino.destination>
  #lines: string[] = []
  #chars = 0

  constructor (out: ReturnType<typeof pino.destination>) {
    this.#out = out
  }

  write (line: string): void {
    this.#lines.push(line)
    this.#chars += line.length
    if (this.#chars >= LOG_BATCH_CHARS) this.#handOver()
  }

  /**
   * Writes what is collected (pino's `logger.flush()` lands here too). The write is synchronous,
   * so a callback is called at once, with no error: a failed write is sonic-boom's 'error' event.
   */
  flush (callback?: (err?: Error) => void): void {
    this.#handOver()
    if (callback !== undefined) this.#out.flush(callback)
  }

  flushSync (): void {
    this.#handOver()
    this.#out.flushSync()
  }

  #handOver (): void {
    if (this.#lines.length === 0) return
    const batch = this.#lines.length === 1 ? this.#lines[0] as string : this.#lines.join('')
    this.#lines = []
    this.#chars = 0
    this.#out.write(batch)
  }
}

/**
 * stdout, in batches of LOG_BATCH_CHARS (or every LOG_FLUSH_INTERVAL_MS when quiet) rather than
 * one write per line, each batch one synchronous write: no hand-off to libuv's thread pool per
 * write, which costs more than the write itself on a busy machine. What is left is written when
 * the process exits.
 */
function standardOutput (): DestinationStream {
  const stdout = new LineBatches(pino.destination({ dest: 1, sync: true }))
  setInterval(() => stdout.flush(), LOG_FLUSH_INTERVAL_MS).unref()
  process.once('exit', () => {
    try {
      stdout.flushSync()
    } catch {
      // The destination is closed or was never opened: nothing left to write to.
    }
  })
  return stdout
}

const toIso = isoFormatter()

/**
 * pino's `isoTime` (`,"time":"2026-11-28T07:00:00.000Z"`), with the cheaper formatter: V8's own
 * `toISOString` cost more than the rest of a line's fixed part.
 */
export function isoTime (): string {
  return `,"time":"${toIso(Date.now())}"`
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
