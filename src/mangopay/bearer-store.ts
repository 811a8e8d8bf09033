import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'
import type { CallSpan } from './trace.js'

// The one OAuth bearer the broker uses (Mangopay asks for exactly one): refresh-ahead, single
// flight, and no OAuth call per request while Mangopay refuses. Pure: `fetchBearer` does the I/O.

export interface BearerGrant {
  accessToken: string
  /** `expires_in` as Mangopay sent it: may be missing or odd; clamped here. */
  expiresIn: unknown
}

export interface Bearer {
  token: string
  obtainedAt: number
  expiresAt: number
  refreshAt: number
}

export type BearerEvent =
  | { type: 'refreshed', background: boolean, lifetimeS: number, clamped: boolean }
  | { type: 'refresh_failed', background: boolean, error: unknown }
  | { type: 'invalidated' }

// Bearers shared across instances (REDIS_URL). `obtain` returns a shared bearer `accept` takes, else
// `fetch`'s, shared under the credentials `fetch` sent; it never fails because of itself.
export interface SharedBearers {
  obtain (accept: (bearer: Bearer) => boolean, fetch: () => Promise<Bearer>): Promise<Bearer>
  /** Mangopay refused `token`: remove it from the shared place, unless it was replaced there. */
  discard (token: string): void
}

export interface BearerStoreOptions {
  /** `trace`: the span of the request that needs the bearer, if any. */
  fetchBearer: (trace?: CallSpan) => Promise<BearerGrant>
  clock: Clock
  onEvent?: (event: BearerEvent) => void
  shared?: SharedBearers | undefined
}

// Mangopay: renew 30 s before expiry. A bearer is never used in its last 30 s.
export const HARD_MARGIN_MS = 30_000
export const MIN_LIFETIME_S = 60
export const MAX_LIFETIME_S = 24 * 3600
const BACKGROUND_RETRY_MIN_MS = 1000
const BACKGROUND_RETRY_MAX_MS = 30_000
// SPEC §4 gets one new bearer after a 401. If Mangopay refuses that one too within this long, it is kept:
// the next would be refused as well (a key without embedded rights), so a steady 401 costs one call per interval.
export const YOUNG_BEARER_MS = 10_000
// Mangopay meets repeated bad credentials with an IP block: its refusal is replayed this long without a call.
export const REFUSAL_MEMORY_MS = 10_000

// 'ahead': while the current bearer still serves; 'need': someone waits; 'rotation': new credentials.
type RefreshReason = 'ahead' | 'need' | 'rotation'

function isCredentialRefusal (error: unknown): boolean {
  return error instanceof BrokerError && error.code === 'upstream_auth_failed'
}

export function refreshAtFor (obtainedAt: number, expiresAt: number): number {
  const lifetimeMs = expiresAt - obtainedAt
  const refreshAhead = Math.max(HARD_MARGIN_MS * 2, lifetimeMs * 0.2)
  return Math.max(obtainedAt + lifetimeMs / 2, expiresAt - refreshAhead)
}

export function clampLifetime (expiresIn: unknown): { seconds: number, clamped: boolean } {
  const value = typeof expiresIn === 'string' && expiresIn.trim() !== '' ? Number(expiresIn) : expiresIn
  if (typeof value !== 'number' || !Number.isFinite(value) || value < MIN_LIFETIME_S) return { seconds: MIN_LIFETIME_S, clamped: true }
  if (value > MAX_LIFETIME_S) return { seconds: MAX_LIFETIME_S, clamped: true }
  return { seconds: Math.floor(value), clamped: false }
}

export class BearerStore {
  readonly #fetchBearer: (trace?: CallSpan) => Promise<BearerGrant>
  readonly #clock: Clock
  readonly #onEvent: (event: BearerEvent) => void
  readonly #shared: SharedBearers | undefined
  #bearer: Bearer | undefined
  // A refresh ahead replaced a bearer that still served, so its bearer may predate a 401 on that one.
  #heldFromRefreshAhead = false
  // Set by invalidate(): the next bearer fetched for a need replaces a refused one.
  #replacingRefused = false
  #heldReplacesRefused = false
  readonly #acceptedFor = new Set<string>()
  #refusedCall: { token: string, sentAt: number } | undefined
  #credentialsRefused: { error: unknown, until: number } | undefined
  #inflight: Promise<Bearer> | undefined
  #backgroundFailures = 0
  #nextBackgroundAttemptAt = 0

  constructor (options: BearerStoreOptions) {
    this.#fetchBearer = options.fetchBearer
    this.#clock = options.clock
    this.#onEvent = options.onEvent ?? (() => {})
    this.#shared = options.shared
  }

  async current (trace?: CallSpan): Promise<string> {
    return this.usable() ?? (await this.#refresh('need', trace)).token
  }

  /** Without waiting; past `refreshAt` the bearer still serves while a background refresh runs. */
  usable (): string | undefined {
    const now = this.#clock.now()
    const bearer = this.#bearer
    if (bearer === undefined || now >= bearer.expiresAt - HARD_MARGIN_MS) return undefined
    if (now >= bearer.refreshAt && this.#inflight === undefined && now >= this.#nextBackgroundAttemptAt) {
      this.#refresh('ahead').catch(() => {}) // reported through onEvent; the current bearer keeps serving
    }
    return bearer.token
  }

  /** For readiness: unlike usable(), starts no refresh. */
  peek (): Bearer | undefined {
    const bearer = this.#bearer
    return bearer !== undefined && this.#clock.now() < bearer.expiresAt - HARD_MARGIN_MS ? bearer : undefined
  }

  // After a success, a 401 for that kind is a new refusal (revocation, key reset), not the one isYoung() absorbs.
  // Per kind: a key with Recipients rights but not Checkout ones must not make every Checkout 401 an OAuth call.
  accepted (token: string, kind: string): void {
    if (this.#heldReplacesRefused && this.#bearer?.token === token) this.#acceptedFor.add(kind)
  }

  /** A 401 on a young bearer is not met with yet another (YOUNG_BEARER_MS). */
  isYoung (token: string, at: number, kind: string): boolean {
    const held = this.#bearer
    return held?.token === token && this.#heldReplacesRefused && !this.#acceptedFor.has(kind) && at - held.obtainedAt < YOUNG_BEARER_MS
  }

  // A bearer that already replaced `token` stays, unless a refresh ahead obtained it before `sentAt`:
  // it may be another instance's, revoked with `token` (a key reset revokes them all).
  invalidate (token: string, sentAt = this.#clock.now()): void {
    const held = this.#bearer
    if (held === undefined) return
    if (held.token !== token && (!this.#heldFromRefreshAhead || held.obtainedAt > sentAt)) return
    this.#bearer = undefined
    this.#replacingRefused = true
    this.#refusedCall = { token, sentAt }
    this.#shared?.discard(token)
    this.#onEvent({ type: 'invalidated' })
  }

  async refresh (): Promise<Bearer> {
    return await this.#refresh('need')
  }

  // Its outcome must say whether the new key works: so it joins no refresh in flight (old key), adopts no
  // shared bearer, and neither replays nor remembers a refusal (the caller then puts the old key back).
  async refreshAfterCredentialChange (): Promise<Bearer> {
    while (this.#inflight !== undefined) await this.#inflight.catch(() => {})
    return await this.#refresh('rotation')
  }

  #refresh (reason: RefreshReason, trace?: CallSpan): Promise<Bearer> {
    if (this.#inflight !== undefined) return this.#inflight
    const refusal = this.#credentialsRefused
    if (reason === 'need' && refusal !== undefined && this.#clock.now() < refusal.until) return Promise.reject(refusal.error)
    const background = reason === 'ahead'
    const adoptable = reason === 'rotation' ? () => false : this.#adoptable()
    let fetched: { seconds: number, clamped: boolean } | undefined
    const fetchNew = async (): Promise<Bearer> => {
      const requestedAt = this.#clock.now()
      return await this.#fetchBearer(trace).then(grant => {
        const { seconds, clamped } = clampLifetime(grant.expiresIn)
        fetched = { seconds, clamped }
        // Counted from when the request left: conservative.
        const expiresAt = requestedAt + seconds * 1000
        return { token: grant.accessToken, obtainedAt: requestedAt, expiresAt, refreshAt: refreshAtFor(requestedAt, expiresAt) }
      })
    }
    const obtained = this.#shared === undefined ? fetchNew() : this.#shared.obtain(adoptable, fetchNew)
    const inflight = obtained.then(
      bearer => {
        this.#bearer = bearer
        this.#heldFromRefreshAhead = background
        this.#heldReplacesRefused = reason === 'need' && this.#replacingRefused
        this.#acceptedFor.clear()
        if (reason === 'need') this.#replacingRefused = false
        this.#credentialsRefused = undefined
        this.#backgroundFailures = 0
        this.#nextBackgroundAttemptAt = 0
        // Adopted from another instance: not an OAuth call of ours.
        if (fetched !== undefined) this.#onEvent({ type: 'refreshed', background, lifetimeS: fetched.seconds, clamped: fetched.clamped })
        return bearer
      },
      (error: unknown) => {
        if (background) {
          // Backs off, so a failing OAuth endpoint is not called on every request.
          this.#backgroundFailures++
          const backoff = Math.min(BACKGROUND_RETRY_MAX_MS, BACKGROUND_RETRY_MIN_MS * 2 ** (this.#backgroundFailures - 1))
          this.#nextBackgroundAttemptAt = this.#clock.now() + backoff
        }
        if (reason === 'need' && isCredentialRefusal(error)) this.#credentialsRefused = { error, until: this.#clock.now() + REFUSAL_MEMORY_MS }
        this.#onEvent({ type: 'refresh_failed', background, error })
        throw error
      }
    ).finally(() => {
      this.#inflight = undefined
    })
    this.#inflight = inflight
    return inflight
  }

  // Replacing a bearer that still serves takes only a newer, still-fresh one. Never the refused bearer
  // nor one obtained before the refused call was sent: a key reset revokes every instance's.
  #adoptable (): (candidate: Bearer) => boolean {
    const held = this.peek()
    return candidate => {
      const now = this.#clock.now()
      // Read per candidate: a 401 may come back while the refresh is in flight.
      const refused = this.#refusedCall
      if (refused !== undefined && (candidate.token === refused.token || candidate.obtainedAt <= refused.sentAt)) return false
      if (now >= candidate.expiresAt - HARD_MARGIN_MS) return false
      return held === undefined || (candidate.token !== held.token && now < candidate.refreshAt)
    }
  }
}
