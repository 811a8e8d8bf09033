import { Type } from 'typebox'
import { Compile } from 'typebox/compile'
import type { Dispatcher } from 'undici'
import { checkUrl } from '../config/index.js'
import { hostPort, readBounded, rootCode, withDeadline, type FailureCause } from '../upstream/index.js'

// OpenID Connect Discovery 1.0 and RFC 8414: where an issuer publishes its metadata, and the one field the broker needs.

/** Real documents are a few KiB (Entra, Keycloak); this bounds what a broken or hostile one makes the broker buffer. */
const MAX_DOCUMENT_BYTES = 64 * 1024

const ProviderMetadata = Type.Object({
  issuer: Type.String({ minLength: 1, maxLength: 2048 }),
  jwks_uri: Type.Optional(Type.String({ minLength: 1, maxLength: 2048 }))
})
const checkProviderMetadata = Compile(ProviderMetadata)

/** The document could not be read, or names another issuer or an unusable key set: no keys from it. */
export class DiscoveryFailed extends Error {
  /** Where the document was asked for and what failed, in short: a run of the same failure is logged once. */
  readonly failure: FailureCause
  /** The issuer's own settings are wrong (not an outage): logged as an error. */
  readonly refused: boolean

  constructor (message: string, failure: FailureCause, options: { refused?: boolean, cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'DiscoveryFailed'
    this.failure = failure
    this.refused = options.refused ?? false
  }
}

/**
 * OIDC appends its well-known segment to the issuer's path; RFC 8414 inserts its own between the
 * host and that path. For an issuer without a path both sit at the root.
 */
export function discoveryUrls (issuer: string): URL[] {
  const url = new URL(issuer)
  const path = url.pathname.replace(/\/$/, '')
  return [
    new URL(`${url.origin}${path}/.well-known/openid-configuration`),
    new URL(`${url.origin}/.well-known/oauth-authorization-server${path}`)
  ]
}

/** The document's body, or undefined when this URL has none (any status below 500 but 200: the next URL is tried). */
async function fetchDocument (dispatcher: Dispatcher, url: URL, timeoutMs: number): Promise<unknown> {
  const where = hostPort(url)
  return await withDeadline(timeoutMs, async deadline => {
    const unreadable = (what: string, err: unknown): DiscoveryFailed => {
      const failure = { host: where, code: deadline.timedOut ? 'timeout' : rootCode(err) }
      return new DiscoveryFailed(`the discovery document at ${where} ${what} (${failure.code})`, failure, { cause: err })
    }
    let response: Dispatcher.ResponseData
    try {
      // undici's `request` follows no redirect: a 3xx is "not here".
      response = await dispatcher.request({ origin: url.origin, path: url.pathname, method: 'GET', headers: { accept: 'application/json' }, signal: deadline })
    } catch (err) {
      throw unreadable('cannot be fetched', err)
    }
    if (response.statusCode !== 200) {
      await response.body.dump({ limit: MAX_DOCUMENT_BYTES }).catch(() => {})
      if (response.statusCode >= 500) throw new DiscoveryFailed(`the discovery document at ${where} answered ${response.statusCode}`, { host: where, status: response.statusCode })
      return undefined
    }
    let text: string | undefined
    try {
      text = await readBounded(response.body, MAX_DOCUMENT_BYTES)
    } catch (err) {
      throw unreadable('was cut off', err)
    }
    if (text === undefined) throw new DiscoveryFailed(`the discovery document at ${where} is larger than ${MAX_DOCUMENT_BYTES} bytes`, { host: where, code: 'too_large' })
    try {
      return JSON.parse(text) as unknown
    } catch {
      throw new DiscoveryFailed(`the discovery document at ${where} is not JSON`, { host: where, code: 'not_json' })
    }
  })
}

/**
 * Reads the issuer's metadata (OIDC first, then RFC 8414) and returns its `jwks_uri`, once the
 * document names exactly this issuer (OIDC Discovery §4.3, RFC 8414 §3.3) and the key set's URL is
 * https (or loopback).
 */
export async function discoverJwksUri (dispatcher: Dispatcher, issuer: string, timeoutMs: number): Promise<string> {
  const urls = discoveryUrls(issuer)
  for (const url of urls) {
    const body = await fetchDocument(dispatcher, url, timeoutMs)
    if (body === undefined) continue
    const where = hostPort(url)
    if (!checkProviderMetadata.Check(body)) throw new DiscoveryFailed(`the discovery document at ${where} is not provider metadata (no "issuer")`, { host: where, code: 'not_metadata' }, { refused: true })
    if (body.issuer !== issuer) {
      throw new DiscoveryFailed(`the discovery document at ${where} names the issuer "${body.issuer.slice(0, 256)}", not AUTH_ISSUER exactly`, { host: where, code: 'other_issuer' }, { refused: true })
    }
    if (body.jwks_uri === undefined) throw new DiscoveryFailed(`the discovery document at ${where} has no jwks_uri`, { host: where, code: 'no_jwks_uri' }, { refused: true })
    const problems: string[] = []
    const jwksUri = checkUrl('its jwks_uri', body.jwks_uri, problems)
    if (jwksUri === undefined) throw new DiscoveryFailed(`the discovery document at ${where}: ${problems.join('; ')}`, { host: where, code: 'bad_jwks_uri' }, { refused: true })
    return jwksUri
  }
  const where = hostPort(urls[0] as URL)
  throw new DiscoveryFailed(`no discovery document at ${where} (${urls.map(u => u.pathname).join(', ')})`, { host: where, code: 'not_found' }, { refused: true })
}
