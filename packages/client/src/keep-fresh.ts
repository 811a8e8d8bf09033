import { isRetryable } from './error-codes.js'
import { clearedError, TokenClientError } from './errors.js'
import type { EmbeddedToken, KeepFreshOptions } from './options.js'

/** A token as received: the broker's expiresIn counted from receipt, so client clock skew does not matter. */
export interface Received {
  token: EmbeddedToken
  expiresAtMs: number
}

export interface KeeperSettings {
  onToken: (token: EmbeddedToken) => void
  options: KeepFreshOptions
  now: () => number
  /** A token that outlives `newerThanMs`, sharing requests (and the cache) with other callers. */
  acquire: (signal: AbortSignal, newerThanMs: number) => Promise<Received>
  /** A fresh copy for the caller, expiresIn counted now. */
  view: (received: Received) => EmbeddedToken
  /** Called once, when the keeper stops for any reason. */
  stopped: () => void
}

export interface Keeper {
  readonly running: boolean
  /** Idempotent. */
  stop: () => void
  /** clear() was called: stop, and say so through onError. */
  cleared: () => void
}

const REFRESH_MARGIN_MS = 60_000
/** Timers stop counting while the machine sleeps: the wall clock is compared at least this often. */
const WAKE_CHECK_MS = 10_000
const FIRST_BACKOFF_MS = 1000
const MAX_BACKOFF_MS = 60_000
/** A broker answering with tokens about to expire must not make this loop hot. */
const MIN_REFRESH_MS = 1000

/** Exponential, with jitter (half to all of it), never before the broker's Retry-After. */
function backoffMs (failures: number, retryAfterS: number | undefined): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** failures)
  return Math.max(ceiling / 2 + Math.random() * ceiling / 2, (retryAfterS ?? 0) * 1000)
}

/** An exception in the page's callback must not stop the refreshes, nor vanish. */
function call (callback: () => void): void {
  try {
    callback()
  } catch (err) {
    // Where the page's other uncaught errors go (the console, window.onerror).
    if (typeof reportError === 'function') reportError(err)
    else setTimeout(() => { throw err }, 0)
  }
}

export function startKeeper (settings: KeeperSettings): Keeper {
  const { now, options } = settings
  const abort = new AbortController()
  let current: Received | undefined
  let dueAt = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  let fetching = false
  let failures = 0
  let lastError: TokenClientError | undefined
  // onError is called once per outage, not at every retry.
  let reported = false

  // Browsers only, looked up at start, not at import: safe in server-side rendering.
  const doc = typeof document === 'undefined' ? undefined : document
  const win = typeof window === 'undefined' ? undefined : window

  function stop (): void {
    if (abort.signal.aborted) return
    abort.abort()
    clearTimeout(timer)
    doc?.removeEventListener('visibilitychange', onVisible)
    win?.removeEventListener('pageshow', wake)
    win?.removeEventListener('online', onOnline)
    options.signal?.removeEventListener('abort', stop)
    settings.stopped()
  }

  function report (error: TokenClientError, stopped: boolean): void {
    const { onError } = options
    if (onError !== undefined) call(() => onError(error, { stopped }))
  }

  function arm (): void {
    clearTimeout(timer)
    timer = setTimeout(tick, Math.min(Math.max(0, dueAt - now()), WAKE_CHECK_MS))
  }

  function tick (): void {
    timer = undefined
    if (abort.signal.aborted || fetching) return
    if (now() >= dueAt) refresh()
    else arm()
  }

  /** Back from sleep or a hidden tab: the timer may be late, the wall clock is not. */
  function wake (): void {
    if (!abort.signal.aborted && !fetching && now() >= dueAt) refresh()
  }

  function onVisible (): void {
    if (doc?.visibilityState === 'visible') wake()
  }

  function onOnline (): void {
    // Offline is why the last attempt failed: no point waiting out the backoff.
    if (lastError?.code === 'network_error') dueAt = now()
    wake()
  }

  function received (fresh: Received): void {
    failures = 0
    lastError = undefined
    reported = false
    const same = current?.token.clientToken === fresh.token.clientToken
    current = fresh
    const at = now()
    dueAt = Math.max(fresh.expiresAtMs - REFRESH_MARGIN_MS, at + (fresh.expiresAtMs - at) / 2, at + MIN_REFRESH_MS)
    arm()
    // The broker may hand the same token again (EMBEDDED_TOKEN_REUSE_MIN_TTL_S): nothing new to give.
    if (!same) call(() => settings.onToken(settings.view(fresh)))
  }

  function failed (err: unknown): void {
    const error = err instanceof TokenClientError ? err : new TokenClientError('network_error', 'The token request failed.', { cause: err })
    if (!isRetryable(error)) {
      stop()
      report(error, true)
      return
    }
    lastError = error
    dueAt = now() + backoffMs(failures++, error.retryAfter)
    arm()
    // Reported once no token will be there: none yet, or the next try comes after this one expires.
    if (!reported && (current === undefined || dueAt >= current.expiresAtMs)) {
      reported = true
      report(error, false)
    }
  }

  function refresh (): void {
    clearTimeout(timer)
    fetching = true
    settings.acquire(abort.signal, current?.expiresAtMs ?? 0).then((fresh) => {
      fetching = false
      if (!abort.signal.aborted) received(fresh)
    }, (err: unknown) => {
      fetching = false
      if (!abort.signal.aborted) failed(err)
    })
  }

  const keeper: Keeper = {
    get running () { return !abort.signal.aborted },
    stop,
    cleared () {
      if (abort.signal.aborted) return
      stop()
      report(clearedError(), true)
    }
  }

  if (options.signal?.aborted === true) {
    abort.abort()
    return keeper
  }
  options.signal?.addEventListener('abort', stop, { once: true })
  doc?.addEventListener('visibilitychange', onVisible)
  win?.addEventListener('pageshow', wake)
  win?.addEventListener('online', onOnline)
  refresh()
  return keeper
}
