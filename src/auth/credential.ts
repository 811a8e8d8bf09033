import { hash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { BrokerError } from '../errors.js'
import type { CredentialSource } from './types.js'

// Not counted as a failed sign-in (limits/failed-auth.ts): any page could make its visitors send these and lock them out.
export class MissingCredential extends BrokerError {
  constructor (detail: string, reason = 'missing') {
    super('unauthenticated', detail, { logFields: { auth: { reason } } })
  }
}

// A cookie set twice (a sibling subdomain can toss one in): which one the platform would read is anyone's guess.
export class AmbiguousCredential extends MissingCredential {
  constructor () {
    super('The session cookie is sent more than once; sign in again.', 'ambiguous')
  }
}

/** What a request presents, decided without verifying anything (SPEC §8 "Credentials"). */
export interface Presented {
  source: CredentialSource
  /** The Authorization header, or the session cookie's value (the whole Cookie header when no name is configured). */
  value: string
  /** With a cookie credential: the `name=value` pair to pass on, never the caller's other cookies. */
  cookiePair?: string
  /** The session cookie's name appears more than once. */
  ambiguous?: true
}

const BEARER_SCHEME = /^Bearer(?: |$)/i

/** Every value `name` has in a Cookie header, as sent (no decoding: a JWT or a session id needs none). */
function cookieValues (header: string, name: string): string[] {
  const values: string[] = []
  for (const pair of header.split(';')) {
    const eq = pair.indexOf('=')
    if (eq !== -1 && pair.slice(0, eq).trim() === name) values.push(pair.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1'))
  }
  return values
}

function cookieCredential (header: string | undefined, cookieName: string | undefined): Presented | undefined {
  if (header === undefined || header === '') return undefined
  if (cookieName === undefined) return { source: 'cookie', value: header, cookiePair: header }
  const values = cookieValues(header, cookieName)
  if (values.length > 1) return { source: 'cookie', value: '', ambiguous: true }
  const value = values[0]
  return value === undefined || value === '' ? undefined : { source: 'cookie', value, cookiePair: `${cookieName}=${value}` }
}

/**
 * Only `Authorization: Bearer` is a header credential: browsers attach cached Basic credentials by themselves, like
 * cookies. Any other request carrying the session cookie is a cookie credential; another scheme alone is a wrong one.
 * `anyCookie`: without a cookie name, the whole Cookie header is the credential (forward mode).
 */
export function presentedCredential (request: FastifyRequest, cookieName: string | undefined, anyCookie = false): Presented | undefined {
  const authorization = request.headers.authorization
  if (authorization !== undefined && BEARER_SCHEME.test(authorization)) return { source: 'header', value: authorization }
  const cookie = cookieName !== undefined || anyCookie ? cookieCredential(request.headers.cookie, cookieName) : undefined
  if (cookie !== undefined) return cookie
  return authorization !== undefined && authorization !== '' ? { source: 'header', value: authorization } : undefined
}

/** A digest naming a presented credential, so it can be remembered without being kept. */
export function credentialDigest (credential: Presented): string {
  return hash('sha256', `${credential.source}\n${credential.value}`, 'base64url')
}
