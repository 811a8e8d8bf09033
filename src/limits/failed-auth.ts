import type { FastifyRequest } from 'fastify'
import { BrokerError, isBrokerError } from '../errors.js'
import { MissingCredential, type Authenticator } from '../auth/index.js'

/**
 * SPEC §3.5: a per-IP limit on failed authentications, so credential spraying is slowed. Every
 * 401 for a credential that was presented counts against the client address (`request.ip`,
 * which believes X-Forwarded-For only from TRUST_PROXY); an address over the limit is refused
 * with 429 before any verification work, whatever credentials it sends, until its window ends.
 * A request with no credential at all is a 401 that does not count (see MissingCredential).
 */

/** What @fastify/rate-limit's `createRateLimit` returns, as much of it as is used here. */
export type RateLimitCounter = (request: FastifyRequest, options?: { increment?: boolean }) => Promise<
  | { isAllowed: true, key: string }
  | { isAllowed: false, key: string, remaining: number, ttlInSeconds: number }
>

/** An address's place in its current window. */
export interface FailedAuthStanding {
  /** The address exactly as the limiter keys it (IPv6 per /64). */
  address: string
  /** Failed authentications it may still make in this window. */
  remaining: number
  /** Until its window ends (0 while it has none). */
  ttlInSeconds: number
}

export interface FailedAuthLimit {
  /** Where the caller's address stands; counts nothing. */
  standing (request: FastifyRequest): Promise<FailedAuthStanding>
  /** Counts one failed authentication against the caller's address. */
  record (request: FastifyRequest): Promise<void>
}

export function createFailedAuthLimit (counter: RateLimitCounter): FailedAuthLimit {
  return {
    async standing (request) {
      const state = await counter(request, { increment: false })
      if (state.isAllowed) return { address: state.key, remaining: Infinity, ttlInSeconds: 0 }
      return { address: state.key, remaining: state.remaining, ttlInSeconds: state.ttlInSeconds }
    },
    async record (request) {
      await counter(request)
    }
  }
}

function tooManyFailures (request: FastifyRequest, standing: FailedAuthStanding): BrokerError {
  return new BrokerError('rate_limited', `Too many failed sign-in attempts from this address; retry in ${Math.max(1, standing.ttlInSeconds)} s.`, {
    retryAfterS: standing.ttlInSeconds,
    logFields: { rateLimit: { scope: 'auth_failures_per_ip', ip: request.ip } }
  })
}

/** A wrong credential; a request that presented none is not a sign-in attempt. */
function isFailedSignIn (err: unknown): boolean {
  return isBrokerError(err) && err.code === 'unauthenticated' && !(err instanceof MissingCredential)
}

/**
 * Requests from one address that may wait for a turn to authenticate; beyond, 429 at once. Each
 * is a request already holding a connection; 1,000 lets a cold start's burst from one proxy or
 * NAT through, while the failures it may cost stay bounded by `max`.
 */
export const MAX_WAITING_PER_ADDRESS = 1000

/** The authentications of one address in this instance: those running, and those waiting for a turn. */
interface Gate { running: number, waiting: Array<() => void> }

/**
 * Wraps an authenticator so that refused addresses do no verification work and failures count.
 *
 * A failure is recorded only once its verification is over, so the recorded count alone would let
 * a burst of parallel attempts all pass the check: any number of verifications (RSA checks,
 * session endpoint calls) instead of `max`. So an address runs at most as many authentications
 * at once as it has failures left; the others wait for a turn (they are not refused: a proxy or
 * a NAT's users signing in at once are no attack), and each looks at the address's standing
 * again when its turn comes, so once the failures are spent the waiting ones are refused. The
 * gates are per instance, in an in-process map whose entries live only while their address has
 * authentications running or waiting: nearly free, where a shared count would cost every request
 * two more Redis round trips and leak when an instance dies. Across N instances a burst still
 * runs at most N × `max` verifications.
 */
export function limitFailedAuthentications (authenticator: Authenticator, limit: FailedAuthLimit): Authenticator {
  const gates = new Map<string, Gate>()

  /** Ends a turn: handed straight to the next waiting request, or given back. */
  function release (address: string, gate: Gate): void {
    const next = gate.waiting.shift()
    if (next !== undefined) {
      next()
      return
    }
    if (--gate.running === 0) gates.delete(address)
  }

  /** Takes a turn for the caller's address, waiting for one if need be; 429 once its failures are spent. */
  async function turn (request: FastifyRequest): Promise<[string, Gate]> {
    let standing = await limit.standing(request)
    // No await from here to taking the turn: no other request can slip in between.
    let gate = gates.get(standing.address)
    if (gate === undefined) {
      gate = { running: 0, waiting: [] }
      gates.set(standing.address, gate)
    }
    if (gate.running < standing.remaining) {
      gate.running++
      return [standing.address, gate]
    }
    if (standing.remaining <= 0 || gate.waiting.length >= MAX_WAITING_PER_ADDRESS) {
      if (gate.running === 0 && gate.waiting.length === 0) gates.delete(standing.address)
      throw tooManyFailures(request, standing)
    }
    // The turn is handed over by release(): `running` already counts it, so from here on every
    // way out gives it back (the standing's store, Redis, may fail too).
    const address = standing.address
    await new Promise<void>(resolve => gate.waiting.push(resolve))
    try {
      standing = await limit.standing(request)
    } catch (err) {
      release(address, gate)
      throw err
    }
    if (gate.running > standing.remaining) {
      release(address, gate)
      throw tooManyFailures(request, standing)
    }
    return [address, gate]
  }

  return {
    credentialSource: request => authenticator.credentialSource(request),
    async authenticate (request) {
      const [address, gate] = await turn(request)
      try {
        return await authenticator.authenticate(request)
      } catch (err) {
        // Recorded before the turn ends, so the next one sees it.
        if (isFailedSignIn(err)) await limit.record(request)
        throw err
      } finally {
        release(address, gate)
      }
    }
  }
}
