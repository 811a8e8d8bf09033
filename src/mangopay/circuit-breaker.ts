import type { Clock } from '../clock.js'
import type { CircuitSettings } from '../config/index.js'

// SPEC §4. A failure is a network error, a timeout or a 5xx; a 4xx is a success: Mangopay answered.

export type CircuitState = 'closed' | 'open' | 'half_open'

export type CallOutcome = 'success' | 'failure' | 'ignored'

export interface CircuitTransition {
  from: CircuitState
  to: CircuitState
  reason: 'consecutive_failures' | 'failure_ratio' | 'probe_failed' | 'cooldown_elapsed' | 'probe_succeeded'
}

export interface CircuitBreakerOptions extends CircuitSettings {
  clock: Clock
  onTransition?: (transition: CircuitTransition) => void
}

/** One admitted call; settle it exactly once with what happened. */
export interface CircuitPermit {
  settle: (outcome: CallOutcome) => void
}

const BUCKETS = 10

interface Bucket { start: number, calls: number, failures: number }

export class CircuitBreaker {
  readonly #settings: CircuitSettings
  readonly #clock: Clock
  readonly #onTransition: (transition: CircuitTransition) => void
  readonly #bucketMs: number
  #state: CircuitState = 'closed'
  #openedUntil = 0
  #consecutiveFailures = 0
  #buckets: Bucket[] = []
  #probeInFlight = false

  constructor (options: CircuitBreakerOptions) {
    const { clock, onTransition, ...settings } = options
    this.#settings = settings
    this.#clock = clock
    this.#onTransition = onTransition ?? (() => {})
    this.#bucketMs = Math.max(1, Math.ceil(settings.windowMs / BUCKETS))
  }

  /** The state now: an open circuit whose cool-down is over reads as half-open. */
  get state (): CircuitState {
    this.#advance()
    return this.#state
  }

  retryAfterMs (): number {
    const state = this.state
    if (state === 'open') return Math.max(0, this.#openedUntil - this.#clock.now())
    // Half-open with a probe in flight: its answer is due within a request deadline.
    if (state === 'half_open' && this.#probeInFlight) return 1000
    return 0
  }

  tryAcquire (): CircuitPermit | undefined {
    const state = this.state
    if (state === 'closed') return this.#permit(false)
    if (state === 'open' || this.#probeInFlight) return undefined
    this.#probeInFlight = true
    return this.#permit(true)
  }

  #permit (probe: boolean): CircuitPermit {
    let settled = false
    return {
      settle: (outcome) => {
        if (settled) return
        settled = true
        if (probe) this.#settleProbe(outcome)
        else this.#record(outcome)
      }
    }
  }

  #settleProbe (outcome: CallOutcome): void {
    this.#probeInFlight = false
    if (outcome === 'success') {
      this.#consecutiveFailures = 0
      this.#buckets = []
      this.#move('closed', 'probe_succeeded')
    } else if (outcome === 'failure') {
      this.#open('probe_failed')
    }
    // 'ignored' (the caller's budget ran out, a non-network error) says nothing of Mangopay: the next call probes.
  }

  /** Outcomes of calls admitted while closed; late answers after opening change nothing. */
  #record (outcome: CallOutcome): void {
    if (this.#state !== 'closed' || outcome === 'ignored') return
    const now = this.#clock.now()
    const bucket = this.#bucketAt(now)
    bucket.calls++
    if (outcome === 'success') {
      this.#consecutiveFailures = 0
      return
    }
    bucket.failures++
    this.#consecutiveFailures++
    const { failureThreshold, failureRatio, minimumCalls } = this.#settings
    if (failureThreshold > 0 && this.#consecutiveFailures >= failureThreshold) {
      this.#open('consecutive_failures')
      return
    }
    if (failureRatio > 0) {
      let calls = 0
      let failures = 0
      for (const b of this.#buckets) {
        calls += b.calls
        failures += b.failures
      }
      if (calls >= minimumCalls && failures / calls >= failureRatio) this.#open('failure_ratio')
    }
  }

  #bucketAt (now: number): Bucket {
    const start = now - (now % this.#bucketMs)
    this.#buckets = this.#buckets.filter(b => b.start > now - this.#settings.windowMs)
    let bucket = this.#buckets.at(-1)
    if (bucket === undefined || bucket.start !== start) {
      bucket = { start, calls: 0, failures: 0 }
      this.#buckets.push(bucket)
    }
    return bucket
  }

  #open (reason: CircuitTransition['reason']): void {
    this.#openedUntil = this.#clock.now() + this.#settings.cooldownMs
    this.#consecutiveFailures = 0
    this.#buckets = []
    this.#move('open', reason)
  }

  #advance (): void {
    if (this.#state === 'open' && this.#clock.now() >= this.#openedUntil) this.#move('half_open', 'cooldown_elapsed')
  }

  #move (to: CircuitState, reason: CircuitTransition['reason']): void {
    const from = this.#state
    this.#state = to
    if (from !== to) this.#onTransition({ from, to, reason })
  }
}
