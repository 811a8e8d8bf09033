import type { Clock } from '../clock.js'
import type { QuotaWindow, RateLimitHeaderStyle } from './types.js'

/** Mangopay's documented windows, in the order its headers list them. */
export const MANGOPAY_QUOTA: readonly QuotaWindow[] = [
  { limit: 2300, periodS: 900 },
  { limit: 4500, periodS: 1800 },
  { limit: 8800, periodS: 3600 },
  { limit: 105600, periodS: 86400 }
]

export type RateLimitHeaders = Record<string, string>

export interface QuotaOutcome { exhausted: boolean, headers: RateLimitHeaders }

interface WindowState { limit: number, periodMs: number, used: number, startedAt: number | undefined }

// Fixed windows from their first call: the same headers as Mangopay's sliding ones, and predictable in tests.
export class QuotaTracker {
  readonly #clock: Clock
  readonly #windows: WindowState[]

  readonly #style: RateLimitHeaderStyle

  constructor (windows: readonly QuotaWindow[], clock: Clock, style: RateLimitHeaderStyle = 'made') {
    this.#clock = clock
    this.#style = style
    this.#windows = windows.map((w) => ({ limit: w.limit, periodMs: w.periodS * 1000, used: 0, startedAt: undefined }))
  }

  /** Counts one call against every window, unless one is spent (then nothing is counted). */
  consume (): QuotaOutcome {
    const now = this.#clock.now()
    this.#expire(now)
    const exhausted = this.#windows.some((w) => w.used >= w.limit)
    if (!exhausted) {
      for (const w of this.#windows) {
        w.startedAt ??= now
        w.used++
      }
    }
    return { exhausted, headers: this.#headers(now) }
  }

  peek (): RateLimitHeaders {
    const now = this.#clock.now()
    this.#expire(now)
    return this.#headers(now)
  }

  setRemaining (remaining: readonly number[]): void {
    const now = this.#clock.now()
    this.#expire(now)
    remaining.forEach((left, i) => {
      const w = this.#windows[i]
      if (w === undefined) return
      w.used = Math.min(w.limit, Math.max(0, w.limit - Math.floor(left)))
      w.startedAt ??= now
    })
  }

  reset (): void {
    for (const w of this.#windows) {
      w.used = 0
      w.startedAt = undefined
    }
  }

  #expire (now: number): void {
    for (const w of this.#windows) {
      if (w.startedAt !== undefined && now >= w.startedAt + w.periodMs) {
        w.used = 0
        w.startedAt = undefined
      }
    }
  }

  #headers (now: number): RateLimitHeaders {
    if (this.#windows.length === 0) return {}
    const made: number[] = []
    const left: number[] = []
    const reset: number[] = []
    for (const w of this.#windows) {
      made.push(w.used)
      left.push(w.limit - w.used)
      reset.push(Math.ceil(((w.startedAt ?? now) + w.periodMs) / 1000))
    }
    const told: RateLimitHeaders = this.#style === 'made'
      ? { 'X-RateLimit': made.join(', ') }
      : this.#style === 'limit' ? { 'X-RateLimit-Limit': this.#windows.map((w) => w.limit).join(', ') } : {}
    return {
      ...told,
      'X-RateLimit-Remaining': left.join(', '),
      'X-RateLimit-Reset': reset.join(', ')
    }
  }
}
