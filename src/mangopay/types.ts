import type { FastifyBaseLogger } from 'fastify'
import type { Deadline } from '../upstream/index.js'
import type { BearerEvent } from './bearer-store.js'
import type { CircuitTransition } from './circuit-breaker.js'
import type { CallSpan } from './trace.js'

export type EmbeddedKind = 'recipient' | 'checkout'
export type RetryReason = 'network' | `status_${number}`
export type RetrySkipped = 'budget' | 'deadline' | 'max'
export type MangopayEndpoint = 'oauth' | EmbeddedKind

export interface EmbeddedToken {
  accessToken: string
  tokenType: 'Bearer'
  expiresInS: number
  scope: string
  /** When the request that minted it left: Mangopay's clock starts no earlier, so expiry is never overstated. */
  issuedAt: number
  /** Set when reuse is on: true when this token was handed out before (or minted by a concurrent request). */
  reused?: boolean
}

export interface CallOptions {
  /** The browser request's overall deadline: no retry starts that cannot finish before it. */
  deadline: Deadline
  log: FastifyBaseLogger
  /** Runs before a token is minted, not when a held one is handed again; it may refuse (the fair quota). */
  beforeMint?: () => Promise<void>
  /** The request's span: the Mangopay calls made for it carry its trace (SPEC §8 "Tracing"). */
  trace?: CallSpan | undefined
}

/** What the resilience policy did, for metrics (the client logs it too). */
export type CallEvent =
  | { type: 'failed', endpoint: MangopayEndpoint, failure: 'timeout' | 'network', durationMs: number }
  | { type: 'retry', endpoint: MangopayEndpoint, reason: RetryReason }
  | { type: 'retry_skipped', endpoint: MangopayEndpoint, why: RetrySkipped }
  | { type: 'circuit', transition: CircuitTransition }
  | { type: 'circuit_rejected', endpoint: MangopayEndpoint }

/** Told of every Mangopay answer and of what the bearer store and the resilience policy do (metrics). */
export interface MangopayObserver {
  response (endpoint: MangopayEndpoint, status: number, durationMs: number): void
  bearer (event: BearerEvent): void
  call (event: CallEvent): void
}

/** Told of every secret value the room uses, so the logs can be scrubbed of it (SPEC §8 "Logs"). */
export interface SecretSink {
  /** An API key or a Basic value. */
  credential (value: string): void
  bearer (value: string): void
  /** A minted embedded token. */
  token (value: string): void
}
