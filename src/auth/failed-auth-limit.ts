import type { FastifyRequest } from 'fastify'
import { BrokerError, isBrokerError } from '../errors.js'
import type { Authenticator } from './authenticator.js'

/**
 * SPEC §3.5: a per-IP limit on failed authentications, so credential spraying is slowed. Every
 * 401 from authentication counts against the client address (`request.ip`, which believes
 * X-Forwarded-For only from TRUST_PROXY); an address over the limit is refused with 429 before
 * any verification work, whatever credentials it sends, until its window ends.
 */

/** What @fastify/rate-limit's `createRateLimit` returns, as much of it as is used here. */
export type RateLimitCounter = (request: FastifyRequest, options?: { increment?: boolean }) => Promise<
  | { isAllowed: true }
  | { isAllowed: false, remaining: number, ttlInSeconds: number }
>

export interface FailedAuthLimit {
  /** Throws 429 `rate_limited` when the caller's address has no failed attempts left. */
  check (request: FastifyRequest): Promise<void>
  /** Counts one failed authentication against the caller's address. */
  record (request: FastifyRequest): Promise<void>
}

export function createFailedAuthLimit (counter: RateLimitCounter): FailedAuthLimit {
  return {
    async check (request) {
      const state = await counter(request, { increment: false })
      if (state.isAllowed || state.remaining > 0) return
      throw new BrokerError('rate_limited', `Too many failed sign-in attempts from this address; retry in ${Math.max(1, state.ttlInSeconds)} s.`, {
        retryAfterS: state.ttlInSeconds,
        logFields: { rateLimit: { scope: 'auth_failures_per_ip', ip: request.ip } }
      })
    },
    async record (request) {
      await counter(request)
    }
  }
}

/** Wraps an authenticator so that refused addresses do no verification work and failures count. */
export function limitFailedAuthentications (authenticator: Authenticator, limit: FailedAuthLimit): Authenticator {
  return {
    async authenticate (request) {
      await limit.check(request)
      try {
        return await authenticator.authenticate(request)
      } catch (err) {
        if (isBrokerError(err) && err.code === 'unauthenticated') await limit.record(request)
        throw err
      }
    }
  }
}
