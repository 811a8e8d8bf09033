import type { FastifyRequest } from 'fastify'
import type { JWTPayload } from 'jose'

/** Who is asking, as established by the verified credential — never by the request body alone. */
export interface Session {
  /** The identity provider's subject, for the audit log. */
  subject: string
  /** The Mangopay users this session may get tokens for (SPEC §3.2). */
  mangopayUserIds: string[]
}

/** Where a request's credential is: a cookie credential is subject to the CSRF rules (SPEC §3.4). */
export type CredentialSource = 'header' | 'cookie'

/** Turns a request's credentials into a verified Session, or refuses with 401. */
export interface Authenticator {
  authenticate (request: FastifyRequest): Promise<Session>
  /**
   * Where the request's credential would be read from, without verifying it, so the CSRF rules
   * apply before any verification work; undefined when the request presents none.
   */
  credentialSource (request: FastifyRequest): CredentialSource | undefined
  /** Readiness of the identity provider the mode depends on; absent when it needs none (a fixed key). */
  ready?: () => Promise<boolean>
}

export type JwtVerifier = (token: string) => Promise<JWTPayload>

/**
 * Which keys tokens are verified with now: a number that changes when they change (a key set
 * fetched with different keys), or undefined while there are none to verify with.
 */
export type KeysVersion = () => number | undefined
