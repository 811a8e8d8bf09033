import type { FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import { systemClock, type Clock } from '../clock.js'
import { BrokerError, isBrokerError } from '../errors.js'
import { MissingCredential, type Authenticator, type Session } from '../auth/index.js'

// SPEC §8 "Failed sign-ins": the per-address limit bounds the work spent on credentials that fail; a credential
// that verifies is always served. Where refusing costs only a local check (jwt, dev), every credential is verified
// and the limit answers failures alone; where it costs the platform a session call (forward), new credentials from
// an address that has spent its failures take turns.

/** What @fastify/rate-limit's `createRateLimit` returns, as much of it as is used here. */
export type RateLimitCounter = (request: FastifyRequest, options?: { increment?: boolean }) => Promise<
  | { isAllowed: true, key: string }
  | { isAllowed: false, key: string, remaining: number, ttlInSeconds: number, isExceeded: boolean }
>

export interface FailedAuthStanding {
  /** The address exactly as the limiter keys it (IPv6 per /64). */
  address: string
  remaining: number
  /** Until its window ends (0 while it has none). */
  ttlInSeconds: number
  /** More failures than the limit allows in this window. */
  exceeded: boolean
}

export interface FailedAuthLimit {
  /** Where the caller's address stands; counts nothing. */
  standing (request: FastifyRequest): Promise<FailedAuthStanding>
  /** Counts one failure; where the address stands after it. */
  record (request: FastifyRequest): Promise<FailedAuthStanding>
}

export function createFailedAuthLimit (counter: RateLimitCounter): FailedAuthLimit {
  const standing = (state: Awaited<ReturnType<RateLimitCounter>>): FailedAuthStanding => state.isAllowed
    ? { address: state.key, remaining: Infinity, ttlInSeconds: 0, exceeded: false }
    : { address: state.key, remaining: state.remaining, ttlInSeconds: state.ttlInSeconds, exceeded: state.isExceeded }
  return {
    standing: async request => standing(await counter(request, { increment: false })),
    record: async request => standing(await counter(request))
  }
}

function tooManyFailures (request: FastifyRequest, retryAfterS: number, cause?: unknown): BrokerError {
  return new BrokerError('rate_limited', `Too many failed sign-in attempts from this address; retry in ${Math.max(1, Math.ceil(retryAfterS))} s.`, {
    retryAfterS,
    cause,
    logFields: { rateLimit: { scope: 'auth_failures_per_ip', ip: request.ip } }
  })
}

/** A wrong credential; a request that presented none is not a sign-in attempt. */
function isFailedSignIn (err: unknown): boolean {
  return isBrokerError(err) && err.code === 'unauthenticated' && !(err instanceof MissingCredential)
}

// Enough for a cold start's burst from one proxy or NAT to wait its turn; the failures stay bounded by `max`.
export const MAX_WAITING_PER_ADDRESS = 1000
/** Credentials that verified lately, by digest: served without a turn, whatever their address has sent. */
const VERIFIED_CREDENTIALS = 10_000
/** Addresses whose failures are spent, each with its one-at-a-time lane. */
const SPENT_ADDRESSES = 50_000

export interface FailedAuthOptions {
  clock?: Clock
  /** After a failure in the lane of a spent address, it closes this long (the limit's pace: window / max). */
  paceMs?: number
  /** False: a request with X-Forwarded-For gets one warning that every client shares the proxy's address. */
  trustsProxy?: boolean
}

interface Gate { running: number, waiting: Array<() => void> }
interface Lane { busy: boolean, closedUntil: number }
/** Ends a turn; told whether the credential failed. */
type Release = (failed: boolean) => void

/** One warning, the first time a request arrives with X-Forwarded-For that is not believed. */
function sharedAddressWarning (trustsProxy: boolean | undefined): (request: FastifyRequest) => void {
  let warned = trustsProxy !== false
  return request => {
    if (warned || request.headers['x-forwarded-for'] === undefined) return
    warned = true
    request.log.warn('X-Forwarded-For is present but TRUST_PROXY is unset: every client counts as the proxy\'s address, for the failed sign-in limit too')
  }
}

export function limitFailedAuthentications (authenticator: Authenticator, limit: FailedAuthLimit, options: FailedAuthOptions = {}): Authenticator {
  const warn = sharedAddressWarning(options.trustsProxy)
  return authenticator.verifiesLocally === true
    ? verifyingEach(authenticator, limit, warn)
    : takingTurns(authenticator, limit, options, warn)
}

// A refusal costs one signature check, about what the request itself costs (docs/benchmark.md), so none is held
// back: past the limit, failures alone are answered 429.
function verifyingEach (authenticator: Authenticator, limit: FailedAuthLimit, warn: (request: FastifyRequest) => void): Authenticator {
  return {
    credentialSource: request => authenticator.credentialSource(request),
    async authenticate (request) {
      warn(request)
      try {
        return await authenticator.authenticate(request)
      } catch (err) {
        if (!isFailedSignIn(err)) throw err
        const after = await limit.record(request)
        if (after.exceeded) throw tooManyFailures(request, after.ttlInSeconds, err)
        throw err
      }
    }
  }
}

// While an address has failures left it runs at most that many authentications at once, the rest waiting. Once
// spent, a new credential goes through a lane of one, closed for `paceMs` after each failure: an attacker gets
// about 2 × max session calls per window, and an honest new credential still gets through between them.
function takingTurns (authenticator: Authenticator, limit: FailedAuthLimit, options: FailedAuthOptions, warn: (request: FastifyRequest) => void): Authenticator {
  const clock = options.clock ?? systemClock
  const paceMs = options.paceMs ?? 3000
  // Per instance, so N instances run at most N × `max`: a shared count would cost Redis round trips per request.
  const gates = new Map<string, Gate>()
  const lanes = new LRUCache<string, Lane>({ max: SPENT_ADDRESSES })
  const verified = new LRUCache<string, true>({ max: VERIFIED_CREDENTIALS })

  function release (address: string, gate: Gate): void {
    const next = gate.waiting.shift()
    if (next !== undefined) {
      next()
      return
    }
    if (--gate.running === 0) gates.delete(address)
  }

  function lane (request: FastifyRequest, address: string): Release {
    const now = clock.now()
    const current = lanes.get(address) ?? { busy: false, closedUntil: 0 }
    if (current.busy) throw tooManyFailures(request, 1)
    if (now < current.closedUntil) throw tooManyFailures(request, (current.closedUntil - now) / 1000)
    current.busy = true
    lanes.set(address, current)
    return failed => {
      current.busy = false
      if (failed) current.closedUntil = clock.now() + paceMs
    }
  }

  async function turn (request: FastifyRequest): Promise<Release> {
    let standing = await limit.standing(request)
    if (standing.remaining <= 0) return lane(request, standing.address)
    // No await from here to taking the turn: no other request can slip in between.
    const address = standing.address
    let gate = gates.get(address)
    if (gate === undefined) {
      gate = { running: 0, waiting: [] }
      gates.set(address, gate)
    }
    const taken = gate
    if (taken.running < standing.remaining) {
      taken.running++
      return () => release(address, taken)
    }
    if (taken.waiting.length >= MAX_WAITING_PER_ADDRESS) throw tooManyFailures(request, standing.ttlInSeconds)
    // `running` already counts the turn release() hands over: from here on every way out gives it back.
    await new Promise<void>(resolve => taken.waiting.push(resolve))
    try {
      standing = await limit.standing(request)
    } catch (err) {
      release(address, taken)
      throw err
    }
    if (taken.running > standing.remaining) {
      release(address, taken)
      if (standing.remaining <= 0) return lane(request, address)
      throw tooManyFailures(request, standing.ttlInSeconds)
    }
    return () => release(address, taken)
  }

  /** Recorded before the turn ends, so the next one sees it. */
  async function attempt (request: FastifyRequest, key: string | undefined): Promise<Session> {
    try {
      const session = await authenticator.authenticate(request)
      if (key !== undefined) verified.set(key, true)
      return session
    } catch (err) {
      if (isFailedSignIn(err)) {
        if (key !== undefined) verified.delete(key)
        await limit.record(request)
      }
      throw err
    }
  }

  return {
    credentialSource: request => authenticator.credentialSource(request),
    async authenticate (request) {
      warn(request)
      // Nothing to verify, so nothing to limit: the authenticator refuses it at once.
      if (authenticator.credentialSource(request) === undefined) return await authenticator.authenticate(request)
      const key = authenticator.credentialKey?.(request)
      if (key !== undefined && verified.has(key)) return await attempt(request, key)
      const done = await turn(request)
      let failed = false
      try {
        return await attempt(request, key)
      } catch (err) {
        failed = isFailedSignIn(err)
        throw err
      } finally {
        done(failed)
      }
    }
  }
}
