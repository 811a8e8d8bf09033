import type { FastifyBaseLogger } from 'fastify'
import { withDeadline } from '../upstream/index.js'
import type { BearerGrant } from './bearer-store.js'
import type { MangopayCaller } from './caller.js'
import { checkOAuthTokenResponse } from './schemas.js'
import type { SecretSink } from './types.js'
import { invalidAnswer, parseAnswer, upstreamError } from './upstream-errors.js'

/** The client-credentials exchange (SPEC §1, step 1): the only place the API key is used. */
export class OAuthClient {
  readonly #clientId: string
  readonly #caller: MangopayCaller
  readonly #timeoutMs: number
  readonly #logger: FastifyBaseLogger
  readonly #secrets: SecretSink
  #basic: string

  constructor (options: { clientId: string, apiKey: string, caller: MangopayCaller, timeoutMs: number, logger: FastifyBaseLogger, secrets: SecretSink }) {
    this.#clientId = options.clientId
    this.#caller = options.caller
    this.#timeoutMs = options.timeoutMs
    this.#logger = options.logger
    this.#secrets = options.secrets
    this.#basic = this.#encode(options.apiKey)
  }

  /** Key rotation: the next bearer is fetched with this key. */
  setApiKey (apiKey: string): void {
    this.#basic = this.#encode(apiKey)
  }

  async requestBearer (): Promise<BearerGrant> {
    // Shared by every waiter, so it has its own deadline rather than any one request's.
    const response = await withDeadline(this.#timeoutMs, deadline => this.#caller.post('oauth', '/v2.01/oauth/token', {
      authorization: `Basic ${this.#basic}`,
      'content-type': 'application/x-www-form-urlencoded',
      accept: 'application/json'
    }, 'grant_type=client_credentials', deadline))
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
