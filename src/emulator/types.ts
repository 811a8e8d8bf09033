import type { Clock } from '../clock.js'

export interface QuotaWindow { limit: number, periodS: number }

/** Which header tells a quota window's use: see EmulatorOptions.rateLimitHeaderStyle. */
export type RateLimitHeaderStyle = 'made' | 'limit' | 'none'

export interface EmulatorOptions {
  clientId: string
  apiKey: string
  /** Default '127.0.0.1'. */
  host?: string
  /** Default 0 (an ephemeral port). */
  port?: number
  /** `expires_in` of bearers, default 1200 (Sandbox). */
  bearerTtlS?: number
  /** `token_type` returned by /oauth/token, default 'bearer' (the doc example is lower-case). */
  bearerTokenType?: string
  /** `expires_in` of embedded tokens, default 900. */
  embeddedTtlS?: number
  /** Default: Mangopay's 2300/900s, 4500/1800s, 8800/3600s, 105600/86400s. */
  quota?: QuotaWindow[]
  /**
   * How the calls made in each window are told: `X-RateLimit` (default, as Mangopay's docs show
   * today), `X-RateLimit-Limit` with the window sizes instead (as its docs once named it), or not
   * at all (only `-Remaining` and `-Reset`, the two the SPEC names).
   */
  rateLimitHeaderStyle?: RateLimitHeaderStyle

  /** Drives bearer expiry, token expiry and quota windows; default systemClock. */
  clock?: Clock
  /** Expose the HTTP control API under /__emulator (default false). */
  controlEnabled?: boolean
  /** Serve HTTPS (like Mangopay's api-mtls hosts); with `requestCert`, only clients with a certificate signed by `ca` get through. */
  tls?: EmulatorTls
}

export interface EmulatorTls {
  cert: string
  key: string
  /** The CA that client certificates must chain to. */
  ca?: string
  requestCert?: boolean
}

export interface Emulator {
  /** e.g. 'http://127.0.0.1:41234' */
  url: string
  control: EmulatorControl
  /** Closes the server and destroys open or hanging sockets promptly. */
  close(): Promise<void>
}

export type EndpointName = 'oauth' | 'recipient' | 'checkout'

export interface ReceivedRequest {
  endpoint: EndpointName | 'other'
  method: string
  path: string
  headers: Record<string, string>
  rawBody: string
  at: number
}

export interface MintedToken {
  kind: 'recipient' | 'checkout'
  token: string
  userId: string
  clientId: string
  expiresAt: number
  bearer: string
}

export interface IssuedBearer { token: string, expiresAt: number, revoked: boolean }

export type FaultTarget = EndpointName | 'embedded' | 'any'

export type Fault =
  /** Delay, then answer normally. */
  | { kind: 'latency', ms: number }
  /** Answer this instead (body: object → JSON, string → as is). */
  | { kind: 'status', status: number, body?: unknown, headers?: Record<string, string> }
  /** Destroy the socket without any response. */
  | { kind: 'reset' }
  /** Send 200 headers and half of a JSON body, then destroy the socket. */
  | { kind: 'reset-mid-body' }
  /** Never answer (until close). */
  | { kind: 'hang' }
  /** 200, JSON content type, invalid JSON body. */
  | { kind: 'malformed' }
  /** The normal answer, its body sent a few bytes at a time. */
  | { kind: 'trickle', chunkDelayMs: number }
  /** 302 (default) with Location. */
  | { kind: 'redirect', status?: number, location: string }

/** `target` defaults to 'any', `times` to Infinity. */
export interface FaultRule { target?: FaultTarget, times?: number, fault: Fault }

export interface EmulatorControl {
  /** Every request received per endpoint, faulted ones included. */
  readonly calls: Record<EndpointName, number> & { total: number }
  readonly received: readonly ReceivedRequest[]
  readonly minted: readonly MintedToken[]
  readonly bearers: readonly IssuedBearer[]
  /** Rules are checked in order; the first matching rule with times left applies and is decremented. */
  inject (rule: FaultRule): void
  clearFaults (): void
  /** Every bearer issued so far becomes invalid (embedded endpoints answer 401). */
  revokeBearers (): void
  /** Key rotation: from now on only this key is accepted. */
  setApiKey (apiKey: string): void
  /** Force the remaining calls of each quota window (index = window). */
  setRemaining (remaining: number[]): void
  /** Counters, records, faults and quota usage back to start; bearers stay valid unless revoked. */
  reset (): void
}
