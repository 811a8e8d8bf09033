import type { Clock } from '../clock.js'
import { ChaosDraw, noChaosCounts } from './chaos.js'
import { QuotaTracker } from './quota.js'
import { BoundedLog } from './records.js'
import type {
  ChaosCounts, ChaosPlan, EmulatorControl, EndpointName, Fault, FaultTarget, FaultRule, IssuedBearer, MintedToken, QuotaWindow, RateLimitHeaderStyle, ReceivedRequest
} from './types.js'

export const RECORD_LIMIT = 10_000

export interface BearerRecord extends IssuedBearer { clientId: string }

interface ActiveRule { target: FaultTarget, left: number, fault: Fault }

function targets (target: FaultTarget, endpoint: EndpointName): boolean {
  return target === 'any' || target === endpoint || (target === 'embedded' && endpoint !== 'oauth')
}

/** Everything the emulator remembers; the object tests receive as `control`. */
export class EmulatorState implements EmulatorControl {
  readonly quota: QuotaTracker
  #apiKey: string
  #calls = { oauth: 0, recipient: 0, checkout: 0, total: 0 }
  readonly #received = new BoundedLog<ReceivedRequest>(RECORD_LIMIT)
  readonly #minted = new BoundedLog<MintedToken>(RECORD_LIMIT)
  #mintedCount = 0
  // Insertion-ordered, so the oldest bearer is the first key when the bound is reached.
  readonly #bearers = new Map<string, BearerRecord>()
  #bearerCount = 0
  #rules: ActiveRule[] = []
  #chaos: ChaosDraw | undefined
  #chaosCounts = noChaosCounts()

  constructor (apiKey: string, quota: readonly QuotaWindow[], clock: Clock, rateLimitHeaderStyle?: RateLimitHeaderStyle) {
    this.#apiKey = apiKey
    this.quota = new QuotaTracker(quota, clock, rateLimitHeaderStyle)
  }

  get apiKey (): string {
    return this.#apiKey
  }

  get calls (): Record<EndpointName, number> & { total: number } {
    return { ...this.#calls }
  }

  get received (): readonly ReceivedRequest[] {
    return this.#received.items
  }

  get minted (): readonly MintedToken[] {
    return this.#minted.items
  }

  get bearers (): readonly IssuedBearer[] {
    return [...this.#bearers.values()]
  }

  /** Totals since start (or reset for minted), unbounded unlike the records. */
  get mintedCount (): number {
    return this.#mintedCount
  }

  get bearerCount (): number {
    return this.#bearerCount
  }

  inject (rule: FaultRule): void {
    this.#rules.push({ target: rule.target ?? 'any', left: rule.times ?? Infinity, fault: rule.fault })
  }

  chaos (plan: ChaosPlan): void {
    this.#chaos = new ChaosDraw(plan, this.#chaosCounts)
  }

  get chaosDrawn (): ChaosCounts {
    return { ...this.#chaosCounts }
  }

  clearFaults (): void {
    this.#rules = []
    this.#chaos = undefined
  }

  revokeBearers (): void {
    for (const bearer of this.#bearers.values()) bearer.revoked = true
  }

  setApiKey (apiKey: string): void {
    this.#apiKey = apiKey
  }

  setRemaining (remaining: number[]): void {
    this.quota.setRemaining(remaining)
  }

  reset (): void {
    this.#calls = { oauth: 0, recipient: 0, checkout: 0, total: 0 }
    this.#received.clear()
    this.#minted.clear()
    this.#mintedCount = 0
    this.#rules = []
    this.#chaos = undefined
    this.#chaosCounts = noChaosCounts()
    this.quota.reset()
  }

  recordRequest (request: ReceivedRequest): void {
    this.#received.push(request)
    if (request.endpoint !== 'other') {
      this.#calls[request.endpoint]++
      this.#calls.total++
    }
  }

  takeFault (endpoint: EndpointName): Fault | undefined {
    for (let i = 0; i < this.#rules.length; i++) {
      const rule = this.#rules[i]
      if (rule === undefined || rule.left <= 0 || !targets(rule.target, endpoint)) continue
      rule.left--
      if (rule.left <= 0) this.#rules.splice(i, 1)
      return rule.fault
    }
    return this.#chaos !== undefined && targets(this.#chaos.target, endpoint) ? this.#chaos.next() : undefined
  }

  addBearer (bearer: BearerRecord): void {
    this.#bearers.set(bearer.token, bearer)
    this.#bearerCount++
    if (this.#bearers.size > RECORD_LIMIT) {
      const oldest = this.#bearers.keys().next()
      if (oldest.done !== true) this.#bearers.delete(oldest.value)
    }
  }

  findBearer (token: string): BearerRecord | undefined {
    return this.#bearers.get(token)
  }

  recordMint (token: MintedToken): void {
    this.#minted.push(token)
    this.#mintedCount++
  }
}
