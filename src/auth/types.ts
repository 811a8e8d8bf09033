import type { FastifyRequest } from 'fastify'
import type { JWTPayload } from 'jose'

/** Who is asking, as established by the verified credential — never by the request body alone. */
export interface Session {
  /** The identity provider's subject, for the audit log. */
  subject: string
  /** The Mangopay users this session may get tokens for (SPEC §3.2). */
  mangopayUserIds: string[]
  /** The claim (jwt) or field (forward) the ids came from: a 403 for a session without any names it. */
  userIdClaim?: string
}

/** Where a request's credential is: a cookie credential is subject to the CSRF rules (SPEC §3.4). */
export type CredentialSource = 'header' | 'cookie'

export interface Authenticator {
  authenticate (request: FastifyRequest): Promise<Session>
  /** Without verifying anything, so the CSRF rules apply before any verification work. */
  credentialSource (request: FastifyRequest): CredentialSource | undefined
  /** A digest naming the presented credential (never the credential), so a verified one can be recognised. */
  credentialKey? (request: FastifyRequest): string | undefined
  /** Refusing a wrong credential costs only a local check (keys are refetched at most every 30 s): every one is verified. */
  verifiesLocally?: boolean
  /** Readiness of the identity provider the mode depends on; absent when it needs none (a fixed key). */
  ready?: () => Promise<boolean>
}

export type JwtVerifier = (token: string) => Promise<JWTPayload>

/** Changes when the verifying keys change; undefined while there are none to verify with. */
export type KeysVersion = () => number | undefined
