import type { Clock } from '../clock.js'

export interface QuotaWindow { limit: number, periodS: number }

export type RateLimitHeaderStyle = 'made' | 'limit' | 'none'

export interface EmulatorOptions {
  clientId: string
  apiKey: string
  host?: string
  port?: number
  bearerTtlS?: number
  /** `token_type` returned by /oauth/token, default 'bearer' (the doc example is lower-case). */
  bearerTokenType?: string
  embeddedTtlS?: number
  quota?: QuotaWindow[]
  /** 'made': `X-RateLimit` (Mangopay's docs today); 'limit': `X-RateLimit-Limit` sizes (their old name); 'none'. */
  rateLimitHeaderStyle?: RateLimitHeaderStyle

  clock?: Clock
  controlEnabled?: boolean
  /** Serve HTTPS (like Mangopay's api-mtls hosts); with `requestCert`, only clients with a certificate signed by `ca` get through. */
  tls?: EmulatorTls
}

export interface EmulatorTls {
  cert: string
  key: string
  ca?: string
  requestCert?: boolean
}

export interface Emulator {
  url: string
  control: EmulatorControl
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
  | { kind: 'latency', ms: number }
  /** Answer this instead (body: object → JSON, string → as is). */
  | { kind: 'status', status: number, body?: unknown, headers?: Record<string, string> }
  | { kind: 'reset' }
  /** 200 headers and half of a JSON body, then the socket is destroyed. */
  | { kind: 'reset-mid-body' }
  | { kind: 'hang' }
  | { kind: 'malformed' }
  | { kind: 'trickle', chunkDelayMs: number }
  | { kind: 'redirect', status?: number, location: string }
  /** Mangopay's 429, its headers showing the shortest window spent until `resetInS` from now. */
  | { kind: 'rate-limited', resetInS: number }
  /** An error in the endpoint's dialect whose text repeats the request's credentials (a careless upstream). */
  | { kind: 'echo-credentials', status: number }

/** `target` defaults to 'any', `times` to Infinity. */
export interface FaultRule { target?: FaultTarget, times?: number, fault: Fault }

/** reset: connection reset; hang: no answer; error: a 500; rate_limited: a 429 (see the 'rate-limited' fault). */
export type ChaosMode = 'reset' | 'hang' | 'error' | 'rate_limited'

/**
 * Random faults, drawn per call from a generator seeded with `seed`: the same seed and the same
 * order of calls give the same faults, so a failing run can be replayed.
 */
export interface ChaosPlan {
  seed: number
  /** Default 'any'. */
  target?: FaultTarget
  /** Each mode's chance per call, together at most 1; the other calls are answered normally. */
  chances: Partial<Record<ChaosMode, number>>
  /** How far ahead a random 429 puts the spent window's reset (default 1 s). */
  rateLimitResetS?: number
}

export type ChaosCounts = Record<ChaosMode | 'none', number>

export interface EmulatorControl {
  /** Every request received per endpoint, faulted ones included. */
  readonly calls: Record<EndpointName, number> & { total: number }
  readonly received: readonly ReceivedRequest[]
  readonly minted: readonly MintedToken[]
  readonly bearers: readonly IssuedBearer[]
  /** Rules are checked in order; the first matching rule with times left applies and is decremented. */
  inject (rule: FaultRule): void
  /** Starts random faults, replacing an earlier plan; checked after the injected rules. */
  chaos (plan: ChaosPlan): void
  /** What the chaos plans drew so far, per mode ('none': answered normally). */
  readonly chaosDrawn: ChaosCounts
  /** Removes the rules and ends the chaos plan. */
  clearFaults (): void
  /** Every bearer issued so far becomes invalid (embedded endpoints answer 401). */
  revokeBearers (): void
  setApiKey (apiKey: string): void
  /** Force the remaining calls of each quota window (index = window). */
  setRemaining (remaining: number[]): void
  /** Counters, records, faults and quota usage back to start; bearers stay valid unless revoked. */
  reset (): void
}
