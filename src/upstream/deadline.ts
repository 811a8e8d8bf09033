import { EventEmitter } from 'node:events'

/**
 * A request's overall deadline for its calls out (Mangopay, the session endpoint of forward
 * mode): it aborts on its own when time is up
 * (reason: a DOMException named TimeoutError, like `AbortSignal.timeout()`'s) or when `abort()`
 * is called. It is what undici receives as `signal`, which may be an EventEmitter as well as an
 * AbortSignal: an AbortController, its timer and its listeners cost about 10 µs per request in
 * Node 20, this under 1 µs. The timer is cleared by `dispose()` as soon as the answer is in,
 * so a busy broker does not leave one timer per request behind.
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

/** Runs `work` under a new deadline of `timeoutMs`, cleared as soon as the work settles. */
export async function withDeadline<T> (timeoutMs: number, work: (deadline: Deadline) => Promise<T>): Promise<T> {
  const deadline = new Deadline(timeoutMs)
  try {
    return await work(deadline)
  } finally {
    deadline.dispose()
  }
}

/**
 * Waits for `promise` but stops waiting with `timedOut()` when `deadline` aborts; the work
 * itself goes on (others may share it).
 */
export async function withinDeadline<T> (promise: Promise<T>, deadline: Deadline, timedOut: () => Error): Promise<T> {
  if (deadline.aborted) throw timedOut()
  let onAbort: () => void = () => {}
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(timedOut())
    deadline.once('abort', onAbort)
  })
  try {
    return await Promise.race([promise, aborted])
  } finally {
    deadline.removeListener('abort', onAbort)
  }
}

/** Sleeps `ms`, or rejects with `timedOut()` as soon as `deadline` aborts. */
export async function sleepWithin (ms: number, deadline: Deadline, timedOut: () => Error): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await withinDeadline(new Promise<void>(resolve => { timer = setTimeout(resolve, ms) }), deadline, timedOut)
  } finally {
    clearTimeout(timer)
  }
}
