import { EventEmitter } from 'node:events'

// Speed: undici takes an EventEmitter as `signal`; an AbortController with its timer and
// listeners cost about 4 % of a token request's CPU. See docs/benchmark.md#fast-paths.

/**
 * A request's overall deadline for its calls out: aborts by itself when time is up (reason: a
 * DOMException named TimeoutError, like `AbortSignal.timeout()`'s) or on `abort()`.
 */
export class Deadline extends EventEmitter<{ abort: [] }> {
  /** `performance.now()` instant at which the deadline passes. */
  readonly at: number
  aborted = false
  reason: unknown = undefined
  readonly #timer: NodeJS.Timeout

  constructor (timeoutMs: number) {
    super()
    this.at = performance.now() + timeoutMs
    // Unref'd: a deadline nobody waits on any more must not keep the process alive.
    this.#timer = setTimeout(() => this.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), timeoutMs).unref()
  }

  abort (reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    clearTimeout(this.#timer)
    this.emit('abort')
  }

  /** Clears the timer: the work is over, nothing will wait on this deadline again. */
  dispose (): void {
    clearTimeout(this.#timer)
  }

  /** True when the deadline aborted because its time was up. */
  get timedOut (): boolean {
    return this.aborted && (this.reason as Error | undefined)?.name === 'TimeoutError'
  }
}
