import { mock } from 'node:test'
import { createTokenClient, type EmbeddedToken, type TokenClientOptions } from '../packages/client/src/index.js'
import type { TokenClientError } from '../packages/client/src/errors.js'
import type { TestContext } from './helpers.js'

/**
 * keepFresh's timing, with Node's mock timers as the clock (setTimeout and Date) and a scripted
 * broker as the network edge: its answers are written by each test, one per request.
 */

export const BASE_URL = 'https://broker.example.test'
export const START = Date.UTC(2026, 10, 28, 10, 0, 0)
export const USER = 'user_m_01JP2X1PK52W8PYD99Q3CXDMAP'

/** What the scripted broker does with one request: answer, fail like fetch, or hang until aborted. */
export type Outcome = Response | 'offline' | 'hang'

export function tokenAnswer (n: number, expiresIn = 900, userId = USER): Response {
  const body = {
    clientToken: `chk_${n}`,
    tokenType: 'Bearer',
    expiresIn,
    expiresAt: new Date(Date.now() + expiresIn * 1000).toISOString(),
    scope: 'checkout',
    clientId: 'acme-client',
    userId,
    environment: 'SANDBOX'
  }
  return new Response(JSON.stringify(body), { headers: { 'content-type': 'application/json' } })
}

export function problem (status: number, code: string, retryAfterS?: number): Response {
  const headers: Record<string, string> = { 'content-type': 'application/problem+json' }
  if (retryAfterS !== undefined) headers['retry-after'] = String(retryAfterS)
  return new Response(JSON.stringify({ type: 'about:blank', title: 'Error', status, code, detail: `a ${code} for the test`, requestId: 'r-1' }), { status, headers })
}

export interface Request { at: number, url: string, body: unknown }

/** A broker that answers `script(n)` to its n-th request (1-based), recording when each came. */
export function scriptedBroker (script: (n: number) => Outcome) {
  const requests: Request[] = []
  const fetch: typeof globalThis.fetch = async (input, init = {}) => {
    requests.push({ at: Date.now(), url: String(input), body: init.body })
    const outcome = script(requests.length)
    if (outcome === 'offline') throw new TypeError('fetch failed')
    if (outcome === 'hang') {
      return await new Promise<Response>((_resolve, reject) => {
        init.signal?.addEventListener('abort', () => reject(init.signal?.reason), { once: true })
      })
    }
    return outcome
  }
  return { fetch, requests }
}

export interface Seen { tokens: EmbeddedToken[], errors: Array<{ error: TokenClientError, stopped: boolean, at: number }> }

/** onToken and onError, recorded. */
export function watcher () {
  const seen: Seen = { tokens: [], errors: [] }
  return {
    seen,
    onToken: (token: EmbeddedToken) => { seen.tokens.push(token) },
    onError: (error: TokenClientError, state: { stopped: boolean }) => { seen.errors.push({ error, stopped: state.stopped, at: Date.now() }) }
  }
}

// How far the wall clock ran ahead of the timers (a sleep): timers count only while awake.
let sleptMs = 0

/** Mock timers from START; a fresh client talking to `fetch`, its wall clock the mocked Date plus any sleep. */
export function setUp (t: TestContext, fetch: typeof globalThis.fetch, options: Partial<TokenClientOptions> = {}) {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: START })
  sleptMs = 0
  t.teardown(() => mock.timers.reset())
  return createTokenClient({ baseUrl: BASE_URL, fetch, now: () => Date.now() + sleptMs, ...options })
}

/** Lets answered requests reach the helper: promise jobs and the I/O of reading a Response body. */
export async function settle (): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise(resolve => setImmediate(resolve))
}

/** Moves the clock `ms` forward a step at a time, letting each step's requests settle. */
export async function advance (ms: number, stepMs = 1000): Promise<void> {
  for (let left = ms; left > 0; left -= stepMs) {
    mock.timers.tick(Math.min(stepMs, left))
    await settle()
  }
}

/** A machine waking up: the wall clock has moved on, and the timers have not. */
export function sleep (ms: number): void {
  sleptMs += ms
}

/** Seconds since START, for readable assertions. */
export function secondsAt (request: { at: number } | undefined): number {
  return request === undefined ? Number.NaN : (request.at - START) / 1000
}
