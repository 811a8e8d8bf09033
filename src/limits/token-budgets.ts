import { hash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { Session } from '../auth/index.js'
import type { Clock } from '../clock.js'
import type { Config } from '../config/index.js'
import { BrokerError } from '../errors.js'
import { reserveFloor, type QuotaWindows } from '../mangopay/index.js'
import { MemoryBudgetStore, type BudgetRefusal, type BudgetStore, type ShareView } from './budget-store.js'
import { RedisBudgetStore } from './budget-store-redis.js'

/**
 * SPEC §8 "Fair quota": every Mangopay call for an embedded token is charged to the Mangopay
 * user and to the session before it is made; while the broker's share of a window is running
 * low, only users without a token in their window are served. A token handed again costs none.
 */

/**
 * In-memory bound (LRU) of the user and of the session windows. Only a mint makes an entry, and
 * Mangopay allows about 2,300 calls per 15 minutes: beyond this, windows of users long gone go first.
 */
export const BUDGET_ENTRIES = 10_000

/** What auth/ names a session whose credential carried no subject: such sessions are told apart by their users. */
const NO_SUBJECT = 'unknown'

export interface TokenBudgets {
  /** Charges one mint to `userId` and the session, or throws 429 `rate_limited` (503 once the reserve is reached). */
  admit (who: { userId: string, session: Session }, log: FastifyBaseLogger): Promise<void>
  /** User and session windows held in memory (none with Redis, where they expire by themselves). */
  held (): { users: number, sessions: number }
}

export interface TokenBudgetOptions {
  budget: Config['rateLimit']['budget']
  clock: Clock
  redis?: Redis | undefined
  /** The Mangopay room's quota windows (`mangopay.quotaWindows()`). */
  quota: () => QuotaWindows
  /** Mangopay's quota is per Client ID and environment: the shared view is kept per scope. */
  quotaScope: string
  onRefusal?: (reason: BudgetRefusal) => void
}

/** Each window's calls left above the reserve, and the part of its share kept for first tokens. */
export function shareView (snapshot: QuotaWindows, firstTokenShare: number): ShareView | undefined {
  if (snapshot.observedAt === undefined || snapshot.windows.length === 0) return undefined
  return {
    observedAt: snapshot.observedAt,
    windows: snapshot.windows.map(w => {
      const floor = reserveFloor(w.limit, snapshot.reserve)
      return { left: w.remaining - floor, kept: Math.ceil((w.limit - floor) * firstTokenShare), resetAt: w.resetAt }
    })
  }
}

/** Never a client-supplied value: the verified subject, hashed to bound the key's length. */
export function sessionKey (session: Session): string {
  const identity = session.subject === NO_SUBJECT ? `users:${[...session.mangopayUserIds].sort().join(',')}` : `subject:${session.subject}`
  return hash('sha256', identity, 'base64url').slice(0, 22)
}

const DETAILS: Record<BudgetRefusal, (retryS: number) => string> = {
  user_budget: s => `This Mangopay user has had its share of tokens for now; retry in ${s} s.`,
  session_budget: s => `This session has had its share of tokens for now; retry in ${s} s.`,
  first_tokens_first: s => `The broker's share of the Mangopay quota is running low and is kept for users' first tokens; retry in ${s} s.`,
  reserve: () => 'The broker\'s share of the Mangopay quota is used up; try again later.'
}

export function createTokenBudgets (options: TokenBudgetOptions): TokenBudgets {
  const { budget, clock, redis, quota, onRefusal } = options
  const memory = redis === undefined ? new MemoryBudgetStore({ clock, maxEntries: BUDGET_ENTRIES }) : undefined
  const store: BudgetStore = memory ?? new RedisBudgetStore({ redis: redis as Redis, clock, scope: options.quotaScope })
  const limits = { perUser: budget.perUser, perSession: budget.perSession, windowMs: budget.windowMs }

  return {
    held: () => memory?.size ?? { users: 0, sessions: 0 },
    async admit ({ userId, session }, log) {
      const admission = await store.admit({ userKey: userId, sessionKey: sessionKey(session), view: shareView(quota(), budget.firstTokenShare) }, limits)
      if (admission.admitted) {
        log.debug({ tokenBudget: { firstOfWindow: admission.firstOfWindow } }, 'Mangopay call admitted')
        return
      }
      onRefusal?.(admission.reason)
      const retryAfterS = Math.max(1, Math.ceil(admission.retryAfterMs / 1000))
      const logFields = { rateLimit: { scope: 'token_budget', reason: admission.reason, mangopayUserId: userId, subject: session.subject } }
      // At the reserve the answer is the quota guard's own: the platform's calls come first.
      throw new BrokerError(admission.reason === 'reserve' ? 'upstream_unavailable' : 'rate_limited', DETAILS[admission.reason](retryAfterS), { retryAfterS, logFields })
    }
  }
}
