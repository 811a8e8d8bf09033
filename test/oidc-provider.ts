import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair } from 'jose'
import Provider, { errors } from 'oidc-provider'
import { AUDIENCE, USER_A, issuedJwts, type TestContext } from './helpers.js'

/** The API the platform registers for the broker at its identity provider (RFC 8707 resource indicator). */
export const RESOURCE = 'https://broker.example.test/'
export const PLATFORM_CLIENT_ID = 'platform-backend'
const PLATFORM_CLIENT_SECRET = 'platform-backend-secret-for-the-test-provider'

/** One signing key for the file: RSA generation is slow. */
const signing = await generateKeyPair('RS256', { extractable: true })
const signingJwk = { ...await exportJWK(signing.privateKey), kid: 'idp-key-1', alg: 'RS256', use: 'sig' }

export interface OidcProvider {
  issuer: string
  /** `host:port` of the provider. */
  where: string
  /** The paths asked for, in order. */
  requests: string[]
  /** Paths the server answers itself, before the provider sees them: a status and a JSON body. */
  canned: Map<string, { status: number, body?: unknown }>
  /** An access token from the token endpoint (client credentials), registered for the log check. */
  accessToken: () => Promise<string>
}

export interface OidcProviderOptions {
  /** The issuer's path (e.g. `/tenant-a`); the provider is mounted there. */
  path?: string
  /** Serve only RFC 8414's `oauth-authorization-server` document, as some OAuth servers do. */
  rfc8414Only?: boolean
}

function createProvider (issuer: string): Provider {
  return new Provider(issuer, {
    clients: [{ client_id: PLATFORM_CLIENT_ID, client_secret: PLATFORM_CLIENT_SECRET, grant_types: ['client_credentials'], redirect_uris: [], response_types: [] }],
    jwks: { keys: [signingJwk] },
    cookies: { keys: ['cookie-signing-key-for-the-test-provider'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== RESOURCE) throw new errors.InvalidTarget()
          return { scope: 'tokens', audience: AUDIENCE, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }
        }
      }
    },
    ttl: { ClientCredentials: 600 },
    extraTokenClaims: async () => ({ mangopay_user_id: USER_A })
  })
}

/**
 * panva's oidc-provider on a loopback port: the client credentials grant with a resource indicator
 * gives RFC 9068 `at+jwt` access tokens for the broker's audience, `sub` being the client id and
 * `mangopay_user_id` added through `extraTokenClaims`.
 */
export async function startOidcProvider (t: TestContext, options: OidcProviderOptions = {}): Promise<OidcProvider> {
  const mount = options.path ?? ''
  const requests: string[] = []
  const canned = new Map<string, { status: number, body?: unknown }>()
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const where = `127.0.0.1:${(server.address() as AddressInfo).port}`
  const issuer = `http://${where}${mount}`
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  const provider = createProvider(issuer)
  const handle = provider.callback()
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] as string
    requests.push(path)
    const answer = canned.get(path)
    if (answer !== undefined) {
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body === undefined ? '' : JSON.stringify(answer.body))
      return
    }
    // The provider serves its metadata at the OIDC place; RFC 8414's place (before the path) is routed to it.
    const oidcPlace = `${mount}/.well-known/openid-configuration`
    let url = req.url ?? '/'
    if (path === `/.well-known/oauth-authorization-server${mount}`) url = oidcPlace
    else if (path === oidcPlace && options.rfc8414Only === true) url = '/not-here'
    if (!url.startsWith(`${mount}/`)) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}')
      return
    }
    // How oidc-provider learns its mount path (as in its documentation's hapi example).
    if (mount !== '') Object.assign(req, { originalUrl: url })
    req.url = url.slice(mount.length)
    handle(req, res).catch(() => {})
  })

  async function accessToken (): Promise<string> {
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${PLATFORM_CLIENT_ID}:${PLATFORM_CLIENT_SECRET}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded'
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: RESOURCE, scope: 'tokens' }).toString()
    })
    const body = await res.json() as { access_token?: string, error?: string, error_description?: string }
    if (body.access_token === undefined) throw new Error(`the token endpoint refused: ${body.error ?? res.status} ${body.error_description ?? ''}`)
    issuedJwts.push(body.access_token)
    return body.access_token
  }

  return { issuer, where, requests, canned, accessToken }
}
