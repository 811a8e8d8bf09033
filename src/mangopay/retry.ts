import { sleepWithin, type Deadline } from '../upstream/index.js'
import { TransportError, upstreamTimeout, type UpstreamResponse } from './transport.js'
import type { RetryReason, RetrySkipped } from './types.js'

export type { RetryReason, RetrySkipped } from './types.js'

// SPEC §4: retries within the deadline and a budget, so an outage does not multiply the load on Mangopay.

/** An attempt is not started with less than this left before the deadline: it could not finish. */
export const MIN_ATTEMPT_MS = 100
export const DEFAULT_BASE_DELAY_MS = 100
export const MAX_RETRIES = 2

/** Certificate and handshake failures are configuration problems: retrying cannot fix them. */
const TLS_FAILURE = /^(ERR_SSL_|ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH)/

export function isRetryableStatus (status: number): boolean {
  return status >= 500 && status <= 599
}

/** A connection refused, reset or cut mid-body; not a timeout (the deadline is spent) nor a TLS refusal. */
export function isRetryableError (err: unknown): boolean {
  return err instanceof TransportError && err.code === 'upstream_unavailable' && !TLS_FAILURE.test(err.transportCode)
}

// Each call deposits `ratio` of a retry, each retry spends one: in a full outage retries stay
// under `ratio` × calls + `cap`, instead of `MAX_RETRIES` × calls.
export class RetryBudget {
  readonly #depositTenths: number
  readonly #capTenths: number
  #balanceTenths: number

  constructor ({ ratio = 0.1, cap = 10 }: { ratio?: number, cap?: number } = {}) {
    // Integers, so a thousand deposits of 0.1 make exactly 100 tenths.
    this.#depositTenths = Math.round(ratio * 10)
    this.#capTenths = Math.round(cap * 10)
    this.#balanceTenths = this.#capTenths
  }

  get balance (): number {
    return this.#balanceTenths / 10
  }

  recordCall (): void {
    this.#balanceTenths = Math.min(this.#capTenths, this.#balanceTenths + this.#depositTenths)
  }

  tryWithdraw (): boolean {
    if (this.#balanceTenths < 10) return false
    this.#balanceTenths -= 10
    return true
  }
}

/** Full jitter: uniform in [0, base × 2^(retry−1)). Spreads retries of many callers apart. */
export function backoffDelayMs (retry: number, baseDelayMs: number, random: () => number = Math.random): number {
  return Math.floor(random() * baseDelayMs * 2 ** (retry - 1))
}

export interface RetryContext {
  deadline: Deadline
  onRetry?: (retry: number, reason: RetryReason, delayMs: number) => void
  onSkipped?: (why: RetrySkipped, reason: RetryReason) => void
}

export interface RetryPolicyOptions {
  maxRetries: number
  budget: RetryBudget
  baseDelayMs?: number
  random?: () => number
}

export class RetryPolicy {
  readonly #maxRetries: number
  readonly #budget: RetryBudget
  readonly #baseDelayMs: number
  readonly #random: () => number

  constructor (options: RetryPolicyOptions) {
    this.#maxRetries = Math.min(MAX_RETRIES, Math.max(0, options.maxRetries))
    this.#budget = options.budget
    this.#baseDelayMs = options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS
    this.#random = options.random ?? Math.random
  }

  async run (attempt: () => Promise<UpstreamResponse>, ctx: RetryContext): Promise<UpstreamResponse> {
    this.#budget.recordCall()
    for (let retry = 1; ; retry++) {
      let response: UpstreamResponse | undefined
      let error: unknown
      try {
        response = await attempt()
      } catch (err) {
        error = err
      }
      const reason = this.#retryReason(response, error)
      const delayMs = reason === undefined ? 0 : backoffDelayMs(retry, this.#baseDelayMs, this.#random)
      const skipped = reason === undefined ? undefined : this.#skipReason(retry, delayMs, ctx)
      if (reason === undefined || skipped !== undefined) {
        if (reason !== undefined && skipped !== undefined) ctx.onSkipped?.(skipped, reason)
        if (response !== undefined) return response
        throw error
      }
      ctx.onRetry?.(retry, reason, delayMs)
      await sleepWithin(delayMs, ctx.deadline, () => upstreamTimeout(error))
    }
  }

  #retryReason (response: UpstreamResponse | undefined, error: unknown): RetryReason | undefined {
    if (response !== undefined) return isRetryableStatus(response.status) ? `status_${response.status}` : undefined
    return isRetryableError(error) ? 'network' : undefined
  }

  #skipReason (retry: number, delayMs: number, ctx: RetryContext): RetrySkipped | undefined {
    if (retry > this.#maxRetries) return 'max'
    if (ctx.deadline.aborted || ctx.deadline.at - performance.now() - delayMs < MIN_ATTEMPT_MS) return 'deadline'
    // Last: a retry that is not made must not spend the budget.
    if (!this.#budget.tryWithdraw()) return 'budget'
    return undefined
  }
}
