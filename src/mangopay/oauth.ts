import type { FastifyBaseLogger } from 'fastify'
import { withDeadline } from '../upstream/index.js'
import type { BearerGrant } from './bearer-store.js'
import type { MangopayCaller } from './caller.js'
import { checkOAuthTokenResponse } from './schemas.js'
import type { SecretSink } from './types.js'
import type { CallSpan, CallTracer } from './trace.js'
import { invalidAnswer, parseAnswer, upstreamError } from './upstream-errors.js'

const SPAN_NAME = 'mangopay.oauth_token'

/** The client-credentials exchange (SPEC §1, step 1): the only place the API key is used. */
export class OAuthClient {
  readonly #clientId: string
  readonly #caller: MangopayCaller
  readonly #timeoutMs: number
  readonly #logger: FastifyBaseLogger
  readonly #secrets: SecretSink
  readonly #tracer: CallTracer | undefined
  #basic: string

  constructor (options: { clientId: string, apiKey: string, caller: MangopayCaller, timeoutMs: number, logger: FastifyBaseLogger, secrets: SecretSink, tracer?: CallTracer | undefined }) {
    this.#clientId = options.clientId
    this.#caller = options.caller
    this.#timeoutMs = options.timeoutMs
    this.#logger = options.logger
    this.#secrets = options.secrets
    this.#tracer = options.tracer
    this.#basic = this.#encode(options.apiKey)
  }

  /** Key rotation: the next bearer is fetched with this key. */
  setApiKey (apiKey: string): void {
    this.#basic = this.#encode(apiKey)
  }

  /** `parent`: the span of the request that needs the bearer; without one, a trace of its own when spans are exported. */
  async requestBearer (parent?: CallSpan): Promise<BearerGrant> {
    const attributes = { 'mangopay.endpoint': 'oauth', 'http.request.method': 'POST' }
    const span = parent === undefined ? this.#tracer?.root(SPAN_NAME, attributes, 'client') : parent.child(SPAN_NAME, attributes, 'client')
    if (span === undefined) return await this.#request(undefined)
    try {
      return await this.#request(span)
    } catch (err) {
      span.fail(err)
      throw err
    } finally {
      span.end()
    }
  }

  async #request (span: CallSpan | undefined): Promise<BearerGrant> {
    // Shared by every waiter, so it has its own deadline rather than any one request's.
    const response = await withDeadline(this.#timeoutMs, deadline => this.#caller.post('oauth', '/v2.01/oauth/token', {
      authorization: `Basic ${this.#basic}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json',
      ...span?.headers()
    }, 'grant_type=client_credentials', deadline))
    span?.setAttribute('http.response.status_code', response.status)
    if (response.status !== 200) {
      const error = upstreamError('oauth', response)
      this.#logger.error({ mangopay: error.logFields?.mangopay }, 'Mangopay OAuth token request failed')
      throw error
    }
    const parsed = parseAnswer('oauth', response.text)
    if (!checkOAuthTokenResponse.Check(parsed)) throw invalidAnswer('oauth')
    this.#secrets.bearer(parsed.access_token)
    return { accessToken: parsed.access_token, expiresIn: parsed.expires_in }
  }

  /** Known to the log scrubber before it is ever sent, so an answer echoing it is scrubbed too. */
  #encode (apiKey: string): string {
    const basic = Buffer.from(`${this.#clientId}:${apiKey}`).toString('base64')
    this.#secrets.credential(apiKey)
    this.#secrets.credential(basic)
    return basic
  }
}
