import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import type { Dispatcher } from 'undici'
import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'
import { createPool, FailureCauseLog, hostPort, readBounded, rootCode, withDeadline, type Deadline } from '../upstream/index.js'
import { AmbiguousCredential, credentialDigest, MissingCredential, presentedCredential, type Presented } from './credential.js'
import { mangopayUserIdsFromClaim } from './session.js'
import type { Authenticator, CredentialSource, Session } from './types.js'

// AUTH_MODE=forward (SPEC §3.1): the platform's session endpoint, sent only the credential whose rules were applied
// (a Bearer header, or the session cookie), names the caller. Any non-2xx answer is a 401, but a timeout or a 5xx is
// the platform's outage: 503, never a token.

export interface ForwardAuthOptions {
  url: string
  timeoutMs: number
  /** 0 = ask every time. */
  cacheTtlMs: number
  userIdClaim: string
  /** Only this cookie is forwarded (and it must appear once); unset, the whole Cookie header is. */
  cookieName?: string | undefined
  clock: Clock
  dispatcher?: Dispatcher
  cacheMaxEntries?: number
  log?: FastifyBaseLogger | undefined
}

/** Readiness trusts an answer of the session endpoint this recent, and asks it otherwise. */
export const FORWARD_READY_RECENT_MS = 30_000

/** Bound of the answer cache (LRU), lookups in flight included: about 0.3 KiB each. */
export const FORWARD_CACHE_MAX_ENTRIES = 10_000
const MAX_ANSWER_BYTES = 16 * 1024

type Answer =
  | { ok: true, subject: string, mangopayUserIds: string[] }
  | { ok: false, status: number }

interface Credentials { cookie: string | undefined, authorization: string | undefined }

function unauthenticated (logFields: Record<string, unknown>): BrokerError {
  return new BrokerError('unauthenticated', 'Sign in first: the session was not accepted.', { logFields: { authForward: logFields } })
}

function unavailable (cause: unknown, logFields: Record<string, unknown>): BrokerError {
  return new BrokerError('auth_unavailable', 'The sign-in service cannot be reached right now; try again shortly.', {
    cause,
    retryAfterS: 5,
    logFields: { authForward: logFields }
  })
}

function subjectOf (body: Record<string, unknown>): string {
  for (const field of ['sub', 'id']) {
    const value = body[field]
    if (typeof value === 'string' && value !== '') return value.slice(0, 256)
    if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  }
  return 'unknown'
}

// The session endpoint sees exactly the credential the CSRF rules were decided on, so it cannot pick another one.
function credentialsOf (presented: Presented): Credentials {
  return presented.source === 'header'
    ? { cookie: undefined, authorization: presented.value }
    : { cookie: presented.cookiePair, authorization: undefined }
}

export class ForwardAuthenticator implements Authenticator {
  readonly #url: URL
  readonly #timeoutMs: number
  readonly #userIdClaim: string
  readonly #dispatcher: Dispatcher
  readonly #ownsDispatcher: boolean
  /** Lookups in flight, and (with a TTL) sessions and 401s: an outage is never remembered as an answer. */
  readonly #answers: LRUCache<string, Answer, Credentials>
  readonly #cacheAnswers: boolean
  readonly #clock: Clock
  readonly #causes: FailureCauseLog
  readonly #cookieName: string | undefined
  #answeredAt = -Infinity

  constructor (options: ForwardAuthOptions) {
    this.#clock = options.clock
    this.#url = new URL(options.url)
    this.#causes = new FailureCauseLog({ upstream: 'identity_provider', label: 'The session endpoint (AUTH_FORWARD_URL)', log: options.log })
    this.#timeoutMs = options.timeoutMs
    this.#userIdClaim = options.userIdClaim
    this.#cookieName = options.cookieName
    this.#ownsDispatcher = options.dispatcher === undefined
    this.#dispatcher = options.dispatcher ?? createPool(this.#url.origin, { timeoutMs: options.timeoutMs, connections: 32, keepAliveTimeoutMs: 10_000 })
    this.#cacheAnswers = options.cacheTtlMs > 0
    this.#answers = new LRUCache<string, Answer, Credentials>({
      max: options.cacheMaxEntries ?? FORWARD_CACHE_MAX_ENTRIES,
      // 0: no TTL at all; such entries are deleted as soon as their lookup is over (see #lookup).
      ttl: options.cacheTtlMs,
      // TTLs follow the injected clock, checked on every read (no timers).
      perf: { now: () => options.clock.now() },
      ttlResolution: 0,
      ignoreFetchAbort: true,
      fetchMethod: async (_key, _stale, { context }) => await this.#ask(context)
    })
  }

  credentialSource (request: FastifyRequest): CredentialSource | undefined {
    return presentedCredential(request, this.#cookieName, true)?.source
  }

  credentialKey (request: FastifyRequest): string | undefined {
    const presented = presentedCredential(request, this.#cookieName, true)
    return presented === undefined || presented.ambiguous === true ? undefined : credentialDigest(presented)
  }

  async authenticate (request: FastifyRequest): Promise<Session> {
    const presented = presentedCredential(request, this.#cookieName, true)
    if (presented === undefined) throw new MissingCredential('Sign in first: send the session cookie or "Authorization: Bearer <token>".')
    if (presented.ambiguous === true) throw new AmbiguousCredential()
    // Another scheme (Basic…) is not passed on: the browser may have attached it by itself.
    if (presented.source === 'header' && !/^Bearer /i.test(presented.value)) throw unauthenticated({ scheme: 'not Bearer' })
    const answer = await this.#lookup(presented)
    if (!answer.ok) throw unauthenticated({ status: answer.status })
    return { subject: answer.subject, mangopayUserIds: answer.mangopayUserIds, userIdClaim: this.#userIdClaim }
  }

  /** SPEC §2: answered lately, or answers now without credentials (any status below 500 shows it is up). */
  async ready (): Promise<boolean> {
    if (this.#clock.now() - this.#answeredAt < FORWARD_READY_RECENT_MS) return true
    try {
      await this.#ask({ cookie: undefined, authorization: undefined })
      return true
    } catch {
      return false
    }
  }

  get cacheSize (): number {
    return this.#cacheAnswers ? this.#answers.size : 0
  }

  async close (): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close()
  }

  /** Concurrent lookups of the same credential share one call (lru-cache's `fetch`). */
  async #lookup (presented: Presented): Promise<Answer> {
    // The key is the digest the failed sign-in limit knows the credential by: no cookie or token is kept as a key.
    const key = credentialDigest(presented)
    const answer = await this.#answers.fetch(key, { context: credentialsOf(presented) }) as Answer
    // A 403, 404 or 3xx more likely means a misconfigured endpoint than a bad session: asked again.
    if (!this.#cacheAnswers || !(answer.ok || answer.status === 401)) this.#answers.delete(key)
    return answer
  }

  async #ask (credentials: Credentials): Promise<Answer> {
    return await withDeadline(this.#timeoutMs, deadline => this.#exchange(credentials, deadline))
  }

  async #exchange (credentials: Credentials, deadline: Deadline): Promise<Answer> {
    const headers: Record<string, string> = { accept: 'application/json' }
    if (credentials.cookie !== undefined) headers.cookie = credentials.cookie
    if (credentials.authorization !== undefined) headers.authorization = credentials.authorization
    let response: Dispatcher.ResponseData
    try {
      // undici's `request` never follows redirects: a 3xx is an answer like any other.
      response = await this.#dispatcher.request({
        origin: this.#url.origin,
        path: this.#url.pathname + this.#url.search,
        method: 'GET',
        headers,
        signal: deadline
      })
    } catch (err) {
      const network = deadline.timedOut ? 'timeout' : rootCode(err)
      this.#causes.failed({ code: network, host: hostPort(this.#url) })
      throw unavailable(err, { network })
    }

    const status = response.statusCode
    if (status < 500) {
      this.#answeredAt = this.#clock.now()
      this.#causes.recovered()
    } else {
      this.#causes.failed({ status, host: hostPort(this.#url) })
    }
    if (status < 200 || status >= 300) {
      await response.body.dump({ limit: MAX_ANSWER_BYTES }).catch(() => {})
      if (status >= 500) throw unavailable(undefined, { status })
      return { ok: false, status }
    }

    let text: string | undefined
    try {
      text = await readBounded(response.body, MAX_ANSWER_BYTES)
    } catch (err) {
      throw unavailable(err, { status, network: (err as { code?: string }).code ?? (err as Error).name })
    }
    let body: unknown
    try {
      body = text === undefined ? undefined : JSON.parse(text)
    } catch {}
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: false, status }
    const session = body as Record<string, unknown>
    return { ok: true, subject: subjectOf(session), mangopayUserIds: mangopayUserIdsFromClaim(session[this.#userIdClaim]) }
  }
}
