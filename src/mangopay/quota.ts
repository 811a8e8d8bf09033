import type { IncomingHttpHeaders } from 'node:http'
import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'

/**
 * Mangopay's quota (SPEC §4), shared with the rest of the platform: read from every answer's
 * X-RateLimit headers; calls stop while a window is down to the reserve, or after a 429.
 */

export interface QuotaWindow {
  /** Position in Mangopay's headers (0 = shortest window, 15 min today). */
  index: number
  made: number
  remaining: number
  limit: number
  /** Epoch ms when the window frees up. */
  resetAt: number
}

/** The broker's share of a window: its calls less the platform's reserve. */
export interface QuotaShare {
  window: number
  size: number
  /** Calls made in the window (the whole Client ID's, the broker's included), at most `size`. */
  spent: number
  resetAt: string
}

/** The windows as read, unfiltered and without formatting: for a decision on every mint. */
export interface QuotaWindows {
  reserve: number
  /** When the answer the windows come from was read (epoch ms); undefined before any. */
  observedAt: number | undefined
  windows: readonly QuotaWindow[]
}

export interface QuotaSnapshot {
  reserve: number
  windows: QuotaWindow[]
  /** When the answer the windows come from was read. */
  observedAt?: string
  /** The share of the window with the least of it left. */
  share?: QuotaShare
  /** Set while calls are refused: until when, and why. */
  blocked?: { until: string, reason: 'reserve' | 'rate_limited' }
}

export type QuotaEvent =
  | { type: 'blocked', until: number, reason: 'reserve' | 'rate_limited', windows: QuotaWindow[] }
  /** A block already in force now lasts longer (shared with the other instances, REDIS_URL). */
  | { type: 'extended', until: number, reason: 'reserve' | 'rate_limited' }

/** When a 429 carries no usable reset time, wait this long (Mangopay's shortest window is 15 min; be modest). */
const DEFAULT_429_BLOCK_MS = 60_000
/** No pause outlasts Mangopay's longest window (24 h), whatever a reset header says (milliseconds, garbage). */
export const MAX_BLOCK_MS = 24 * 60 * 60 * 1000

/** A header's comma-separated numbers, one per window; a blank entry is NaN (no window), not 0. */
function numbers (value: string | string[] | undefined): number[] {
  const text = Array.isArray(value) ? value.join(',') : value
  if (text === undefined || text.trim() === '') return []
  return text.split(',').map(entry => entry.trim() === '' ? Number.NaN : Number(entry))
}

/** Calls of a window kept for the rest of the platform. */
export function reserveFloor (limit: number, reserve: number): number {
  return Math.ceil(limit * reserve)
}

const usable = (value: number | undefined): value is number => value !== undefined && Number.isFinite(value) && value >= 0

/**
 * Parses the headers into windows; malformed or inconsistent entries are skipped. A window's
 * size is what `X-RateLimit` (calls made) plus what is left says, or else `X-RateLimit-Limit`
 * (the name Mangopay's docs once gave it). When neither tells it, `knownLimits[i]` (the most
 * ever seen left in that window) stands in: taken as the window's size, what is left would only
 * reach the reserve with one call to go.
 */
export function parseRateLimitHeaders (headers: IncomingHttpHeaders, knownLimits: readonly number[] = []): QuotaWindow[] {
  const made = numbers(headers['x-ratelimit'])
  const limits = numbers(headers['x-ratelimit-limit'])
  const remaining = numbers(headers['x-ratelimit-remaining'])
  const resets = numbers(headers['x-ratelimit-reset'])
  const windows: QuotaWindow[] = []
  for (let i = 0; i < Math.min(remaining.length, resets.length); i++) {
    const left = remaining[i] as number
    const reset = resets[i] as number
    if (!usable(left) || !Number.isFinite(reset) || reset <= 0) continue
    const used = made[i]
    const told = limits[i]
    const limit = usable(used) ? used + left : usable(told) && told >= left ? told : Math.max(left, knownLimits[i] ?? 0)
    windows.push({ index: i, made: limit - left, remaining: left, limit, resetAt: reset * 1000 })
  }
  return windows
}

export class QuotaTracker {
  readonly #reserve: number
  readonly #clock: Clock
  readonly #onEvent: (event: QuotaEvent) => void
  #windows: QuotaWindow[] = []
  /** Each window's size as last told, or the most seen left in it: for headers that do not tell it. */
  readonly #knownLimits: number[] = []
  #observedAt = 0
  #blockedUntil = 0
  #blockReason: 'reserve' | 'rate_limited' = 'reserve'

  constructor (options: { reserve: number, clock: Clock, onEvent?: (event: QuotaEvent) => void }) {
    this.#reserve = options.reserve
    this.#clock = options.clock
    this.#onEvent = options.onEvent ?? (() => {})
  }

  /** Throws `upstream_unavailable` (503 + Retry-After) while Mangopay must not be called. */
  assertCallAllowed (): void {
    const now = this.#clock.now()
    if (now < this.#blockedUntil) {
      throw new BrokerError('upstream_unavailable', this.#blockReason === 'rate_limited'
        ? 'Mangopay\'s rate limit is reached; try again later.'
        : 'The broker\'s share of the Mangopay quota is used up; try again later.', {
        retryAfterS: (this.#blockedUntil - now) / 1000,
        logFields: { quota: this.snapshot() }
      })
    }
  }

  /** Feeds one Mangopay answer (any status) into the view. */
  observe (status: number, headers: IncomingHttpHeaders): void {
    const now = this.#clock.now()
    const windows = parseRateLimitHeaders(headers, this.#knownLimits)
    for (const w of windows) this.#knownLimits[w.index] = w.limit
    if (windows.length > 0) {
      this.#windows = windows
      this.#observedAt = now
    }
    if (status === 429) {
      const exhausted = windows.filter(w => w.remaining <= 0 && w.resetAt > now)
      const until = exhausted.length > 0 ? Math.max(...exhausted.map(w => w.resetAt)) : now + DEFAULT_429_BLOCK_MS
      this.#block(until, 'rate_limited', now)
      return
    }
    const atReserve = windows.filter(w => w.resetAt > now && w.remaining <= reserveFloor(w.limit, this.#reserve))
    if (atReserve.length > 0) this.#block(Math.max(...atReserve.map(w => w.resetAt)), 'reserve', now)
  }

  /**
   * A block another instance published (REDIS_URL): applied like one of ours, without an event
   * (it is not ours to publish again). True when it paused or lengthened the pause here.
   */
  adoptBlock (published: number, reason: 'reserve' | 'rate_limited'): boolean {
    const now = this.#clock.now()
    const until = Math.min(published, now + MAX_BLOCK_MS)
    if (until <= now || until <= this.#blockedUntil) return false
    this.#blockedUntil = until
    this.#blockReason = reason
    return true
  }

  windows (): QuotaWindows {
    return { reserve: this.#reserve, observedAt: this.#windows.length > 0 ? this.#observedAt : undefined, windows: this.#windows }
  }

  snapshot (): QuotaSnapshot {
    const now = this.#clock.now()
    const windows = this.#windows.filter(w => w.resetAt > now)
    const snapshot: QuotaSnapshot = { reserve: this.#reserve, windows }
    if (windows.length > 0) {
      snapshot.observedAt = new Date(this.#observedAt).toISOString()
      snapshot.share = this.#tightestShare(windows)
    }
    if (now < this.#blockedUntil) snapshot.blocked = { until: new Date(this.#blockedUntil).toISOString(), reason: this.#blockReason }
    return snapshot
  }

  #tightestShare (windows: QuotaWindow[]): QuotaShare {
    const shares = windows.map(w => {
      const size = w.limit - reserveFloor(w.limit, this.#reserve)
      return { window: w.index, size, spent: Math.min(size, w.made), resetAt: new Date(w.resetAt).toISOString() }
    })
    const leftRatio = (s: QuotaShare): number => s.size <= 0 ? 0 : (s.size - s.spent) / s.size
    return shares.reduce((tightest, s) => leftRatio(s) < leftRatio(tightest) ? s : tightest)
  }

  #block (requested: number, reason: 'reserve' | 'rate_limited', now: number): void {
    const until = Math.min(requested, now + MAX_BLOCK_MS)
    if (until <= now) return
    const wasBlocked = now < this.#blockedUntil
    const extended = wasBlocked && until > this.#blockedUntil
    if (!wasBlocked || until > this.#blockedUntil) {
      this.#blockedUntil = until
      this.#blockReason = reason
    }
    if (!wasBlocked) this.#onEvent({ type: 'blocked', until, reason, windows: this.#windows })
    else if (extended) this.#onEvent({ type: 'extended', until, reason })
  }
}
