import { Deadline } from '../fast-paths/index.js'

export { Deadline }

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
