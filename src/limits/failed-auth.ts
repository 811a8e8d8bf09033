import type { FastifyRequest } from 'fastify'
import { BrokerError, isBrokerError } from '../errors.js'
import { MissingCredential, type Authenticator } from '../auth/index.js'

// SPEC §3.5: an address over its failed-authentication limit gets 429 before any verification work.

/** What @fastify/rate-limit's `createRateLimit` returns, as much of it as is used here. */
export type RateLimitCounter = (request: FastifyRequest, options?: { increment?: boolean }) => Promise<
  | { isAllowed: true, key: string }
  | { isAllowed: false, key: string, remaining: number, ttlInSeconds: number }
>

export interface FailedAuthStanding {
  /** The address exactly as the limiter keys it (IPv6 per /64). */
  address: string
  remaining: number
  /** Until its window ends (0 while it has none). */
  ttlInSeconds: number
}

export interface FailedAuthLimit {
  /** Where the caller's address stands; counts nothing. */
  standing (request: FastifyRequest): Promise<FailedAuthStanding>
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

// Enough for a cold start's burst from one proxy or NAT to wait its turn; the failures stay bounded by `max`.
export const MAX_WAITING_PER_ADDRESS = 1000

interface Gate { running: number, waiting: Array<() => void> }

// A failure is recorded only once verified, so a parallel burst could run any number of verifications: an
// address runs at most as many at once as it has failures left, the rest wait (a NAT signing in is no attack).
export function limitFailedAuthentications (authenticator: Authenticator, limit: FailedAuthLimit): Authenticator {
  // Per instance, so N instances run at most N × `max`: a shared count would cost Redis round trips per request.
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
    // `running` already counts the turn release() hands over: from here on every way out gives it back.
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
