import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'

/**
 * Holds the one Mangopay OAuth bearer the broker uses for its whole life (Mangopay asks for
 * exactly that). Pure: no I/O of its own; `fetchBearer` does the OAuth call.
 *
 * - A bearer is never used in its last `HARD_MARGIN_MS` (Mangopay: renew 30 s before expiry).
 * - From `refreshAt` on, the first caller starts a refresh in the background and still gets
 *   the current bearer, so requests do not wait while the old one is valid.
 * - Single flight: any number of concurrent needs share one OAuth call.
 * - A failed call is never cached as a bearer; after a transient failure the next need tries
 *   again. Background refreshes back off after a failure so a failing OAuth endpoint is not
 *   called on every request.
 * - Mangopay answers repeated bad credentials with a temporary IP block, so a refusal is not
 *   met with an OAuth call per request: a refusal of the credentials is remembered for
 *   `REFUSAL_MEMORY_MS`, and the bearer that replaced a refused one, refused in turn within
 *   `YOUNG_BEARER_MS` of its issue, is kept.
 * - Optionally (REDIS_URL) the bearer is shared with other instances: a need first looks there
 *   (`SharedBearers`, see shared-bearer.ts), so the whole fleet makes one OAuth call.
 */

export interface BearerGrant {
  accessToken: string
  /** `expires_in` as Mangopay sent it: may be missing or odd, and is clamped here. */
  expiresIn: unknown
}

export interface Bearer {
  token: string
  obtainedAt: number
  expiresAt: number
  /** From this instant a background refresh is started. */
  refreshAt: number
}

export type BearerEvent =
  | { type: 'refreshed', background: boolean, lifetimeS: number, clamped: boolean }
  | { type: 'refresh_failed', background: boolean, error: unknown }
  | { type: 'invalidated' }

/**
 * Where other instances keep their bearer. `obtain` returns a shared bearer `accept` takes, or
 * else the result of `fetch` (which it then shares); it never fails because of itself. `fetch`
 * sends the credentials in use when it is called: its bearer is shared under those.
 */
export interface SharedBearers {
  obtain (accept: (bearer: Bearer) => boolean, fetch: () => Promise<Bearer>): Promise<Bearer>
  /** Mangopay refused `token`: remove it from the shared place, unless it was replaced there. */
  discard (token: string): void
}

export interface BearerStoreOptions {
  fetchBearer: () => Promise<BearerGrant>
  clock: Clock
  onEvent?: (event: BearerEvent) => void
  shared?: SharedBearers | undefined
}

export const HARD_MARGIN_MS = 30_000
export const MIN_LIFETIME_S = 60
export const MAX_LIFETIME_S = 24 * 3600
const BACKGROUND_RETRY_MIN_MS = 1000
const BACKGROUND_RETRY_MAX_MS = 30_000
/**
 * A bearer fetched to replace a refused one, and refused in turn within this long of its issue,
 * is kept, not replaced again (`isYoung`): the one new bearer SPEC §4 asks for after a 401 has
 * been fetched, and Mangopay refusing it (a key without embedded rights, say) would refuse the
 * next one too. So a persistent 401 costs at most one OAuth call per this interval.
 */
export const YOUNG_BEARER_MS = 10_000
/**
 * How long Mangopay's refusal of the credentials on the OAuth call is remembered: needs for a
 * bearer meanwhile get that refusal again without calling Mangopay. A key rotation still calls.
 */
export const REFUSAL_MEMORY_MS = 10_000

/**
 * Why a bearer is fetched. 'ahead': in the background, while the current one still serves;
 * 'need': someone waits for it; 'rotation': new credentials are being checked.
 */
type RefreshReason = 'ahead' | 'need' | 'rotation'

/** Mangopay refused the broker's credentials (400/401/403 on the OAuth call), as opposed to failing. */
function isCredentialRefusal (error: unknown): boolean {
  return error instanceof BrokerError && error.code === 'upstream_auth_failed'
}

/** From this instant a bearer is refreshed in the background: well before the hard margin. */
export function refreshAtFor (obtainedAt: number, expiresAt: number): number {
  const lifetimeMs = expiresAt - obtainedAt
  const refreshAhead = Math.max(HARD_MARGIN_MS * 2, lifetimeMs * 0.2)
  return Math.max(obtainedAt + lifetimeMs / 2, expiresAt - refreshAhead)
}

/** Clamps Mangopay's `expires_in` into a sane lifetime; says whether it had to. */
export function clampLifetime (expiresIn: unknown): { seconds: number, clamped: boolean } {
  const value = typeof expiresIn === 'string' && expiresIn.trim() !== '' ? Number(expiresIn) : expiresIn
  if (typeof value !== 'number' || !Number.isFinite(value) || value < MIN_LIFETIME_S) return { seconds: MIN_LIFETIME_S, clamped: true }
  if (value > MAX_LIFETIME_S) return { seconds: MAX_LIFETIME_S, clamped: true }
  return { seconds: Math.floor(value), clamped: false }
}

export class BearerStore {
  readonly #fetchBearer: () => Promise<BearerGrant>
  readonly #clock: Clock
  readonly #onEvent: (event: BearerEvent) => void
  readonly #shared: SharedBearers | undefined
  #bearer: Bearer | undefined
  /**
   * Whether a refresh ahead put the held bearer there: it replaced one that still served, so
   * unlike a bearer fetched for a need, it may predate a 401 on the one it replaced.
   */
  #heldFromRefreshAhead = false
  /** Set by invalidate(): the next bearer fetched for a need replaces a refused one. */
  #replacingRefused = false
  /** Whether the held bearer was fetched to replace a refused one. */
  #heldReplacesRefused = false
  /** The kinds of token Mangopay minted with the bearer held, while it is one that replaced a refused one. */
  readonly #acceptedFor = new Set<string>()
  /**
   * The last call Mangopay refused and its bearer: neither that bearer nor one obtained before the
   * call was sent (it may have been revoked with it) is adopted from the shared place.
   */
  #refusedCall: { token: string, sentAt: number } | undefined
  /** Mangopay's last refusal of the credentials, answered again until `until`. */
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

  /** The bearer to use now; waits only when none is usable. */
  async current (): Promise<string> {
    return this.usable() ?? (await this.#refresh('need')).token
  }

  /**
   * The bearer to use now if one is usable, without waiting (undefined: call `current()`). Past
   * its refresh point it still serves while a background refresh starts.
   */
  usable (): string | undefined {
    const now = this.#clock.now()
    const bearer = this.#bearer
    if (bearer === undefined || now >= bearer.expiresAt - HARD_MARGIN_MS) return undefined
    if (now >= bearer.refreshAt && this.#inflight === undefined && now >= this.#nextBackgroundAttemptAt) {
      this.#refresh('ahead').catch(() => {}) // reported through onEvent; the current bearer keeps serving
    }
    return bearer.token
  }

  /** The usable bearer held now, if any (readiness). */
  peek (): Bearer | undefined {
    const bearer = this.#bearer
    return bearer !== undefined && this.#clock.now() < bearer.expiresAt - HARD_MARGIN_MS ? bearer : undefined
  }

  /**
   * Mangopay minted a token of `kind` with `token`: a later 401 on it for that kind is a new
   * refusal (a revocation, a key reset), to be met with a new bearer, not the one refusal
   * `isYoung` stands for. Per kind: a key with Recipients rights but without Checkout ones must
   * not turn every Checkout 401 into an OAuth call because Recipients calls succeed.
   */
  accepted (token: string, kind: string): void {
    if (this.#heldReplacesRefused && this.#bearer?.token === token) this.#acceptedFor.add(kind)
  }

  /**
   * Whether `token` is the bearer held, was fetched to replace a refused one, has not been
   * accepted for `kind` since, and was obtained less than `YOUNG_BEARER_MS` before `at`: then a
   * 401 on it is not met with yet another.
   */
  isYoung (token: string, at: number, kind: string): boolean {
    const held = this.#bearer
    return held?.token === token && this.#heldReplacesRefused && !this.#acceptedFor.has(kind) && at - held.obtainedAt < YOUNG_BEARER_MS
  }

  /**
   * Mangopay refused `token` in a call sent at `sentAt`: forget it. If it was already replaced,
   * the new bearer stays when a concurrent request re-authenticated or it was obtained after that
   * call; one a refresh ahead put in its place, obtained before, is forgotten too: it may be
   * another instance's, revoked with the refused one (a key reset revokes them all).
   */
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

  /** Starts (or joins) a refresh whatever the current bearer's age: used at boot and by readiness. */
  async refresh (): Promise<Bearer> {
    return await this.#refresh('need')
  }

  /**
   * Key rotation: an OAuth call with the credentials as they are now, so its outcome says whether
   * they work. A refresh in flight may carry the old ones: it is waited for, whatever its outcome,
   * not joined. Nor is a shared bearer adopted: one another instance obtained earlier does not
   * say whether Mangopay accepts the key now. A remembered refusal (of the old credentials) does
   * not hold it back, and its own is not remembered: the caller then puts the previous
   * credentials back.
   */
  async refreshAfterCredentialChange (): Promise<Bearer> {
    while (this.#inflight !== undefined) await this.#inflight.catch(() => {})
    return await this.#refresh('rotation')
  }

  #refresh (reason: RefreshReason): Promise<Bearer> {
    if (this.#inflight !== undefined) return this.#inflight
    const refusal = this.#credentialsRefused
    if (reason === 'need' && refusal !== undefined && this.#clock.now() < refusal.until) return Promise.reject(refusal.error)
    const background = reason === 'ahead'
    const adoptable = reason === 'rotation' ? () => false : this.#adoptable()
    let fetched: { seconds: number, clamped: boolean } | undefined
    const fetchNew = async (): Promise<Bearer> => {
      const requestedAt = this.#clock.now()
      return await this.#fetchBearer().then(grant => {
        const { seconds, clamped } = clampLifetime(grant.expiresIn)
        fetched = { seconds, clamped }
        // Expiry counts from when the request left, not when the answer came back: conservative.
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
        // A bearer adopted from another instance was not an OAuth call of ours: no event.
        if (fetched !== undefined) this.#onEvent({ type: 'refreshed', background, lifetimeS: fetched.seconds, clamped: fetched.clamped })
        return bearer
      },
      (error: unknown) => {
        if (background) {
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

  /**
   * Which shared bearer a refresh may adopt instead of calling Mangopay. Replacing a bearer
   * that still serves (refresh ahead, an explicit refresh) takes only a newer, still-fresh one;
   * otherwise any usable bearer will do, except the one Mangopay refused and any obtained before
   * the refused call was sent (a key reset revokes every bearer: another instance's may be stale).
   */
  #adoptable (): (candidate: Bearer) => boolean {
    const held = this.peek()
    return candidate => {
      const now = this.#clock.now()
      // Read when a candidate is seen, not now: a 401 may come back while a refresh is in flight.
      const refused = this.#refusedCall
      if (refused !== undefined && (candidate.token === refused.token || candidate.obtainedAt <= refused.sentAt)) return false
      if (now >= candidate.expiresAt - HARD_MARGIN_MS) return false
      return held === undefined || (candidate.token !== held.token && now < candidate.refreshAt)
    }
  }
}
