import { LRUCache } from 'lru-cache'
import type { Clock } from '../clock.js'

/**
 * The decision behind the fair quota (SPEC §8), kept free of I/O: a user's and a session's
 * budget per window, and the part of the broker's share of each Mangopay window kept for users
 * asking for their first token. `RedisBudgetStore` runs the same steps in one Lua script.
 */

export type BudgetRefusal = 'user_budget' | 'session_budget' | 'first_tokens_first' | 'reserve'

/** One Mangopay window: calls left above the platform's reserve, and how many of them first tokens keep. */
export interface ShareWindow { left: number, kept: number, resetAt: number }

/** The windows as of one Mangopay answer. */
export interface ShareView { observedAt: number, windows: ShareWindow[] }

export interface BudgetLimits { perUser: number, perSession: number, windowMs: number }

export interface AdmissionRequest {
  userKey: string
  sessionKey: string
  /** This instance's latest view; the store keeps whichever is freshest. */
  view: ShareView | undefined
}

export type Admission =
  | { admitted: true, firstOfWindow: boolean }
  | { admitted: false, reason: BudgetRefusal, retryAfterMs: number }

export interface BudgetStore {
  admit (request: AdmissionRequest, limits: BudgetLimits): Promise<Admission>
}

/** A view and the calls admitted since it was observed: what is left is estimated until the next answer. */
export interface HeldView extends ShareView { admitted: number }

/** The fresher of the held view and the one just passed; a newer answer restarts the estimate. */
export function freshest (held: HeldView | undefined, view: ShareView | undefined): HeldView | undefined {
  if (view === undefined || (held !== undefined && held.observedAt >= view.observedAt)) return held
  return { ...view, admitted: 0 }
}

/** Until when the reserve is reached, or the share is down to the part kept for first tokens (0: not). */
export function shareState (view: HeldView | undefined, now: number): { reserveUntil: number, lowUntil: number } {
  let reserveUntil = 0
  let lowUntil = 0
  for (const w of view?.windows ?? []) {
    if (w.resetAt <= now) continue
    const left = w.left - (view?.admitted ?? 0)
    if (left <= 0) reserveUntil = Math.max(reserveUntil, w.resetAt)
    else if (left <= w.kept) lowUntil = Math.max(lowUntil, w.resetAt)
  }
  return { reserveUntil, lowUntil }
}

interface Window { count: number, endsAt: number }

/** Per instance; entries are bounded (LRU): a forgotten user or session starts a fresh window. */
export class MemoryBudgetStore implements BudgetStore {
  readonly #clock: Clock
  readonly #users: LRUCache<string, Window>
  readonly #sessions: LRUCache<string, Window>
  #view: HeldView | undefined

  constructor (options: { clock: Clock, maxEntries: number }) {
    this.#clock = options.clock
    this.#users = new LRUCache({ max: options.maxEntries })
    this.#sessions = new LRUCache({ max: options.maxEntries })
  }

  async admit (request: AdmissionRequest, limits: BudgetLimits): Promise<Admission> {
    const now = this.#clock.now()
    const user = this.#window(this.#users, request.userKey, now, limits.windowMs)
    if (user.count >= limits.perUser) return { admitted: false, reason: 'user_budget', retryAfterMs: user.endsAt - now }
    const session = this.#window(this.#sessions, request.sessionKey, now, limits.windowMs)
    if (session.count >= limits.perSession) return { admitted: false, reason: 'session_budget', retryAfterMs: session.endsAt - now }
    const view = freshest(this.#view, request.view)
    const { reserveUntil, lowUntil } = shareState(view, now)
    if (reserveUntil > 0) return { admitted: false, reason: 'reserve', retryAfterMs: reserveUntil - now }
    if (lowUntil > 0 && user.count > 0) return { admitted: false, reason: 'first_tokens_first', retryAfterMs: lowUntil - now }
    this.#users.set(request.userKey, { count: user.count + 1, endsAt: user.endsAt })
    this.#sessions.set(request.sessionKey, { count: session.count + 1, endsAt: session.endsAt })
    if (view !== undefined) this.#view = { ...view, admitted: view.admitted + 1 }
    return { admitted: true, firstOfWindow: user.count === 0 }
  }

  get size (): { users: number, sessions: number } {
    return { users: this.#users.size, sessions: this.#sessions.size }
  }

  #window (cache: LRUCache<string, Window>, key: string, now: number, windowMs: number): Window {
    const held = cache.get(key)
    return held === undefined || held.endsAt <= now ? { count: 0, endsAt: now + windowMs } : held
  }
}
