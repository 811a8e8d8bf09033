import type { Redis } from 'ioredis'
import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'
import { scripted, type ScriptedRedis } from '../redis/index.js'
import type { Admission, AdmissionRequest, BudgetLimits, BudgetRefusal, BudgetStore } from './budget-store.js'

// REDIS_URL: one admission for the whole fleet, in one round trip (redis/scripts.ts, brokerTokenBudgetAdmit).

const REFUSALS: ReadonlySet<string> = new Set<BudgetRefusal>(['user_budget', 'session_budget', 'first_tokens_first', 'reserve'])

/** Keys `<keyPrefix>tb:user:<id>`, `tb:session:<hash>` and `tb:share:<scope>`. */
export class RedisBudgetStore implements BudgetStore {
  readonly #redis: ScriptedRedis
  readonly #clock: Clock
  readonly #viewKey: string

  constructor (options: { redis: Redis, clock: Clock, scope: string }) {
    this.#redis = scripted(options.redis)
    this.#clock = options.clock
    this.#viewKey = `tb:share:${options.scope}`
  }

  async admit (request: AdmissionRequest, limits: BudgetLimits): Promise<Admission> {
    const windows = request.view?.windows.flatMap(w => [w.left, w.kept, w.resetAt]) ?? []
    let answer: [string, number]
    try {
      answer = await this.#redis.brokerTokenBudgetAdmit(
        `tb:user:${request.userKey}`, `tb:session:${request.sessionKey}`, this.#viewKey,
        ...[this.#clock.now(), limits.windowMs, limits.perUser, limits.perSession, request.view?.observedAt ?? 0, ...windows].map(n => String(Math.round(n)))
      )
    } catch (cause) {
      // Fails closed like the rate limits: without the shared count, no budget holds for the fleet.
      throw new BrokerError('shared_state_unavailable', 'The broker\'s shared state cannot be reached right now; try again shortly.', { cause, retryAfterS: 5, logFields: { tokenBudgetStore: 'redis' } })
    }
    const [outcome, value] = answer
    if (outcome === 'ok') return { admitted: true, firstOfWindow: value === 1 }
    if (!REFUSALS.has(outcome)) throw new Error(`unexpected token budget answer: ${outcome}`)
    return { admitted: false, reason: outcome as BudgetRefusal, retryAfterMs: value }
  }
}
