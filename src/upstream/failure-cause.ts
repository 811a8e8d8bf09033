import type { FastifyBaseLogger } from 'fastify'

// What an operator needs to fix a failing dependency: the root error code or the HTTP status, and where.

export interface FailureCause {
  /** The socket, DNS, TLS or undici code (ECONNREFUSED, ENOTFOUND, CERT_HAS_EXPIRED…), or `timeout`. */
  code?: string
  status?: number
  /** `host:port` only: never a path, a query or credentials. */
  host: string
}

/** `host:port` of a URL, with the scheme's port when none is written. */
export function hostPort (url: string | URL): string {
  const parsed = typeof url === 'string' ? new URL(url) : url
  const port = parsed.port !== '' ? parsed.port : parsed.protocol === 'https:' ? '443' : '80'
  return `${parsed.hostname}:${port}`
}

function ownCode (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' && code !== '' ? code : undefined
}

/**
 * The deepest string `code` under `err` (fetch wraps undici's error in `cause`; a connection tried on
 * several addresses fails with an AggregateError), else the error's name.
 */
export function rootCode (err: unknown): string {
  let found: string | undefined
  let current: unknown = err
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    found = ownCode(current) ?? found
    const inner = current as { cause?: unknown, errors?: unknown }
    current = inner.cause ?? (Array.isArray(inner.errors) ? inner.errors[0] : undefined)
  }
  return found ?? (err instanceof Error ? err.name : 'error')
}

function causeKey (cause: FailureCause): string {
  return `${cause.host} ${cause.code ?? ''} ${cause.status ?? ''}`
}

function describe (cause: FailureCause): string {
  return cause.code ?? `HTTP ${cause.status ?? '?'}`
}

/**
 * Logs a dependency's failures once per change of state: the first failure, a different cause, a
 * recovery. A run of identical failures (one per request while it lasts) writes one line.
 */
export class FailureCauseLog {
  readonly #upstream: string
  readonly #label: string
  readonly #log: FastifyBaseLogger | undefined
  #last: FailureCause | undefined

  constructor (options: { upstream: string, label: string, log: FastifyBaseLogger | undefined }) {
    this.#upstream = options.upstream
    this.#label = options.label
    this.#log = options.log
  }

  /** The cause of the failure now in progress, if any. */
  get last (): FailureCause | undefined {
    return this.#last
  }

  failed (cause: FailureCause, line: { fields?: Record<string, unknown>, message?: string, level?: 'warn' | 'error' } = {}): void {
    if (this.#last !== undefined && causeKey(this.#last) === causeKey(cause)) return
    this.#last = cause
    const message = line.message ?? `${this.#label} is failing`
    this.#log?.[line.level ?? 'error']({ ...line.fields, upstream: this.#upstream, cause }, `${message}: ${describe(cause)} from ${cause.host}`)
  }

  recovered (): void {
    const last = this.#last
    if (last === undefined) return
    this.#last = undefined
    this.#log?.info({ upstream: this.#upstream, recovered: { host: last.host, after: describe(last) } }, `${this.#label} answers again`)
  }
}
