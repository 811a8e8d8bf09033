import { randomBytes } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { Clock } from '../clock.js'
import {
  invalidCredentials, jsonReply, mangopayError, oauthError, paramError, type Reply
} from './replies.js'
import type { BearerRecord, EmulatorState } from './state.js'
import type { EndpointName } from './types.js'

export type EmbeddedKind = 'recipient' | 'checkout'

export interface EndpointSettings {
  clientId: string
  bearerTtlS: number
  bearerTokenType: string
  embeddedTtlS: number
}

export interface HandlerContext { settings: EndpointSettings, state: EmulatorState, clock: Clock }

export interface IncomingCall { headers: IncomingHttpHeaders, rawBody: string }

const EMBEDDED = {
  recipient: { prefix: 'rec_', scope: 'bankaccounts:r bankaccounts:w' },
  checkout: { prefix: 'chk_', scope: 'checkout.session:r checkout.session:w' }
} as const

const MALFORMED_BASIC = 'The authorization header was malformed or not recognized'
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/

function hex32 (): string {
  return randomBytes(16).toString('hex')
}

function mediaType (header: string | undefined): string {
  return (header ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
}

function basicCredentials (header: string | undefined): { id: string, key: string } | undefined {
  const match = /^Basic +(\S+)$/i.exec(header ?? '')
  const encoded = match?.[1]
  if (encoded === undefined || !BASE64.test(encoded)) return undefined
  const decoded = Buffer.from(encoded, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { id: decoded.slice(0, colon), key: decoded.slice(colon + 1) }
}

function bearerToken (header: string | undefined): string | undefined {
  return /^Bearer +(\S+)$/i.exec(header ?? '')?.[1]
}

export function handleOAuth (call: IncomingCall, { settings, state, clock }: HandlerContext): Reply {
  const credentials = basicCredentials(call.headers.authorization)
  if (credentials === undefined) return oauthError(401, 'invalid_client', MALFORMED_BASIC)
  // Mangopay does not say which of id and key is wrong.
  if (credentials.id !== settings.clientId || credentials.key !== state.apiKey) return oauthError(401, 'invalid_client')
  if (mediaType(call.headers['content-type']) !== 'application/x-www-form-urlencoded') return oauthError(400, 'invalid_request')
  const grantType = new URLSearchParams(call.rawBody).get('grant_type')
  if (grantType === null || grantType === '') return oauthError(400, 'invalid_request')
  if (grantType !== 'client_credentials') return oauthError(400, 'unsupported_grant_type')

  const bearer: BearerRecord = {
    token: hex32(),
    expiresAt: clock.now() + settings.bearerTtlS * 1000,
    revoked: false,
    clientId: settings.clientId
  }
  state.addBearer(bearer)
  return jsonReply(200, bearerBody(bearer.token, settings), { 'Cache-Control': 'no-store', Pragma: 'no-cache' })
}

function bearerBody (token: string, settings: EndpointSettings): object {
  return { access_token: token, token_type: settings.bearerTokenType, expires_in: settings.bearerTtlS }
}

function embeddedBody (kind: EmbeddedKind, token: string, settings: EndpointSettings): object {
  return { access_token: token, token_type: 'Bearer', expires_in: settings.embeddedTtlS, scope: EMBEDDED[kind].scope }
}

type BodyCheck = { ok: true, clientId: string, userId: string } | { ok: false, errors: Record<string, string> }

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function checkString (errors: Record<string, string>, field: string, value: unknown): void {
  if (value === undefined) errors[field] = `The ${field} field is required.`
  else if (typeof value !== 'string' || value === '') errors[field] = `The ${field} field must be a non-empty string.`
}

function rejectUnknown (errors: Record<string, string>, value: Record<string, unknown>, known: string[], prefix: string): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) errors[prefix + key] = `The ${prefix + key} field is not allowed.`
  }
}

/** The body must be exactly `{clientId, claims: {userId}}`, so a broker sending anything else is caught. */
function checkEmbeddedBody (raw: string): BodyCheck {
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch {
    return { ok: false, errors: { body: 'The request body is not valid JSON.' } }
  }
  if (!isObject(value)) return { ok: false, errors: { body: 'The request body must be a JSON object.' } }

  const errors: Record<string, string> = {}
  rejectUnknown(errors, value, ['clientId', 'claims'], '')
  const { clientId, claims } = value
  checkString(errors, 'clientId', clientId)
  let userId: unknown
  if (claims === undefined) errors.claims = 'The claims field is required.'
  else if (!isObject(claims)) errors.claims = 'The claims field must be an object.'
  else {
    rejectUnknown(errors, claims, ['userId'], 'claims.')
    userId = claims.userId
    checkString(errors, 'claims.userId', userId)
  }
  if (Object.keys(errors).length > 0 || typeof clientId !== 'string' || typeof userId !== 'string') return { ok: false, errors }
  return { ok: true, clientId, userId }
}

export function handleEmbedded (kind: EmbeddedKind, call: IncomingCall, { settings, state, clock }: HandlerContext): Reply {
  const now = clock.now()
  const token = bearerToken(call.headers.authorization)
  const bearer = token === undefined ? undefined : state.findBearer(token)
  if (bearer === undefined || bearer.revoked || now >= bearer.expiresAt) return invalidCredentials(now)
  if (mediaType(call.headers['content-type']) !== 'application/json') {
    return paramError(now, { 'Content-Type': 'The request content type must be application/json.' })
  }
  const body = checkEmbeddedBody(call.rawBody)
  if (!body.ok) return paramError(now, body.errors)
  if (body.clientId !== bearer.clientId) {
    return mangopayError(403, 'forbidden_ressource', 'The clientId does not match the authenticated client', now)
  }

  const minted = `${EMBEDDED[kind].prefix}${hex32()}`
  state.recordMint({
    kind, token: minted, userId: body.userId, clientId: body.clientId, expiresAt: now + settings.embeddedTtlS * 1000, bearer: bearer.token
  })
  return jsonReply(200, embeddedBody(kind, minted, settings), { 'Cache-Control': 'no-store' })
}

export function previewBody (endpoint: EndpointName, settings: EndpointSettings): string {
  if (endpoint === 'oauth') return JSON.stringify(bearerBody(hex32(), settings))
  return JSON.stringify(embeddedBody(endpoint, `${EMBEDDED[endpoint].prefix}${hex32()}`, settings))
}
