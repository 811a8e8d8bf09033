import type { AddressInfo } from 'node:net'
import { createTokenClient, TokenClientError, type TokenClientOptions } from '../packages/client/src/index.js'
import type { AppDeps } from '../src/app.js'
import type { EmulatorOptions } from '../src/emulator/index.js'
import { buildTestApp, tokenFor, USER_A, type TestApp, type TestContext } from './helpers.js'

/**
 * For the browser helper's tests (packages/client, imported from its source): a real broker
 * listening on a socket, in front of the emulator, and the helper with Node's fetch. What the
 * emulator minted tells how many requests reached Mangopay.
 */

export interface Broker extends TestApp { baseUrl: string }

export async function startBroker (t: TestContext, env: Record<string, string> = {}, more: { emulator?: Partial<EmulatorOptions>, deps?: AppDeps } = {}): Promise<Broker> {
  // The helper tests make many calls for one user: the per-user limit is not under test here.
  const test = await buildTestApp(t, { env: { RATE_LIMIT_MAX: '1000', ...env }, ...more })
  await test.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = test.app.server.address() as AddressInfo
  return { ...test, baseUrl: `http://127.0.0.1:${port}` }
}

export interface Sent { url: string, init: RequestInit, status?: number, retryAfter?: string | null, at: number, answeredAt?: number }

/** Node's fetch, recording what the helper sent and what came back (the network edge, not the helper). */
export function recordingFetch (): { fetch: typeof fetch, sent: Sent[] } {
  const sent: Sent[] = []
  return {
    sent,
    fetch: async (input, init = {}) => {
      const entry: Sent = { url: String(input), init, at: Date.now() }
      sent.push(entry)
      const response = await fetch(input, init)
      entry.status = response.status
      entry.retryAfter = response.headers.get('retry-after')
      entry.answeredAt = Date.now()
      return response
    }
  }
}

export async function clientFor (broker: Broker, userIds: string | string[], options: Partial<TokenClientOptions> = {}) {
  const jwt = await tokenFor(userIds)
  return createTokenClient({ baseUrl: broker.baseUrl, getAuthorization: () => `Bearer ${jwt}`, ...options })
}

export async function rejection (promise: Promise<unknown>): Promise<TokenClientError> {
  try {
    await promise
  } catch (err) {
    if (err instanceof TokenClientError) return err
    throw err
  }
  throw new Error('expected a TokenClientError, the call succeeded')
}

/** A point in a request the test waits for: `reached` settles the first time `reach()` is called. */
export function checkpoint (): { reach: () => void, reached: Promise<void> } {
  let reach = (): void => {}
  const reached = new Promise<void>(resolve => { reach = resolve })
  return { reach, reached }
}

/** USER_A's client, its requests recorded, and a checkpoint reached as the first is sent. */
export async function recordedClient (broker: Broker, options: Partial<TokenClientOptions> = {}) {
  const recorder = recordingFetch()
  const sent = checkpoint()
  const client = await clientFor(broker, USER_A, {
    ...options,
    fetch: async (input, init) => {
      sent.reach()
      return await recorder.fetch(input, init)
    }
  })
  return { client, recorder, sent }
}

/** A 429 from Mangopay whose window resets `inS` seconds from now: the broker answers 503 + Retry-After. */
export function mangopayRateLimited (inS: number) {
  return {
    target: 'recipient' as const,
    times: 1,
    fault: {
      kind: 'status' as const,
      status: 429,
      headers: { 'X-RateLimit-Remaining': '0', 'X-RateLimit-Reset': String(Math.ceil(Date.now() / 1000) + inS) }
    }
  }
}
