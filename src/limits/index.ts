import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fastifyRateLimit, { normalizeIP, type FastifyRateLimitStoreCtor } from '@fastify/rate-limit'
import type { Redis } from 'ioredis'
import type { Clock } from '../clock.js'
import type { Config } from '../config/index.js'
import { BrokerError } from '../errors.js'
import type { QuotaWindows } from '../mangopay/index.js'
import type { BudgetRefusal } from './budget-store.js'
import { createFailedAuthLimit, type FailedAuthLimit, type RateLimitCounter } from './failed-auth.js'
import { MemoryRateLimitStore, RedisRateLimitStore, type RateLimitStore } from './store.js'
import { createTokenBudgets, type TokenBudgets } from './token-budgets.js'

export { limitFailedAuthentications } from './failed-auth.js'
export type { BudgetRefusal } from './budget-store.js'
export { BUDGET_ENTRIES, type TokenBudgets } from './token-budgets.js'

/**
 * SPEC §3.5 abuse limits, on @fastify/rate-limit (registered with `global: false`: nothing is
 * limited unless asked). Two limiters share one store, each in its own namespace:
 * - per Mangopay user, on both token routes together, keyed on the user id the request was
 *   authorised for (never a client-supplied value): a preHandler placed after authorization;
 * - per client address, on failed authentications (failed-auth.ts).
 * Beside them, the fair quota's budgets (token-budgets.ts) charge each Mangopay call to the user
 * and the session. With REDIS_URL the counters live in Redis and every instance shares them.
 */

/** In-memory bounds (LRU): beyond them the least recently seen user/address starts a fresh window. */
export const USER_LIMIT_ENTRIES = 50_000
export const FAILED_AUTH_LIMIT_ENTRIES = 50_000

export interface RateLimits {
  /** preHandler for the token routes; runs after the one that sets `request.tokenContext`. */
  perUser: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>
  failedAuth: FailedAuthLimit
  /** The counters (a MemoryRateLimitStore without Redis). */
  store: RateLimitStore
  /** Charged right before each embedded-token mint (the `beforeMint` of a Mangopay call). */
  budgets: TokenBudgets
}

export interface RateLimitOptions {
  limits: Config['rateLimit']
  clock: Clock
  redis?: Redis
  /** The Mangopay room's quota view and its scope, for the fair quota. */
  quota: () => QuotaWindows
  quotaScope: string
  onBudgetRefusal?: (reason: BudgetRefusal) => void
}

/** The plugin instantiates its store itself (`new store(params)`); this hands it the app's own. */
function provide (store: RateLimitStore): FastifyRateLimitStoreCtor {
  return function provideStore () { return store } as unknown as FastifyRateLimitStoreCtor
}

function verifiedUserId (request: FastifyRequest): string {
  const userId = request.tokenContext?.userId
  // Wiring error, not a caller's: the limiter must never fall back to anything the client sent.
  if (userId === undefined) throw new Error('the per-user rate limit ran before authorization')
  return userId
}

export async function setUpRateLimits (app: FastifyInstance, options: RateLimitOptions): Promise<RateLimits> {
  const { limits, clock, redis, quota, quotaScope } = options
  const store: RateLimitStore = redis === undefined ? new MemoryRateLimitStore({ clock }) : new RedisRateLimitStore(redis)
  await app.register(fastifyRateLimit, { global: false, store: provide(store) })

  const perUser = app.rateLimit({
    groupId: 'user',
    cache: USER_LIMIT_ENTRIES,
    max: limits.max,
    timeWindow: limits.windowMs,
    keyGenerator: verifiedUserId,
    errorResponseBuilder: (request, context) => {
      const retryAfterS = Math.max(1, Math.ceil(context.ttl / 1000))
      return new BrokerError('rate_limited', `Too many token requests for this Mangopay user; retry in ${retryAfterS} s.`, {
        retryAfterS,
        logFields: { rateLimit: { scope: 'tokens_per_user', mangopayUserId: request.tokenContext?.userId } }
      })
    }
  })

  // `groupId` and `cache` name and bound this limiter's namespace in the store (see child()).
  const failedAuthOptions = {
    groupId: 'auth-failure',
    cache: FAILED_AUTH_LIMIT_ENTRIES,
    max: limits.failedAuthMax,
    timeWindow: limits.failedAuthWindowMs,
    // IPv6 clients are counted per /64 (the block a subscriber usually holds), IPv4-mapped ones as IPv4.
    keyGenerator: (request: FastifyRequest) => normalizeIP(request.ip)
  }
  const failedAuth = createFailedAuthLimit(app.createRateLimit(failedAuthOptions) as RateLimitCounter)

  const budgets = createTokenBudgets({ budget: limits.budget, clock, redis, quota, quotaScope, onRefusal: options.onBudgetRefusal })
  return { perUser, failedAuth, store, budgets }
}
