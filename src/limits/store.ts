import { LRUCache } from 'lru-cache'
import type { Redis } from 'ioredis'
import type { Clock } from '../clock.js'
import { BrokerError } from '../errors.js'
import { scripted, type ScriptedRedis } from '../redis/index.js'

// Each limiter gets its own `child` namespace, bounded separately: a flood of one cannot evict the other's counters.

export interface WindowCount { current: number, ttl: number }
type Callback = (error: Error | null, result?: WindowCount) => void

/** The store contract @fastify/rate-limit calls (`read` serves `{ increment: false }`). */
export interface RateLimitStore {
  incr (key: string, callback: Callback, timeWindow: number, max: number): void
  read (key: string, callback: Callback, timeWindow: number, max: number): void
  child (params: { groupId?: string, cache?: number }): RateLimitStore
}

/** Entries per namespace when a limiter does not say (`cache`). */
export const DEFAULT_STORE_ENTRIES = 10_000

interface Window { count: number, resetAt: number }

export class MemoryRateLimitStore implements RateLimitStore {
  readonly maxEntries: number
  readonly #clock: Clock
  /** LRU: when full, the least recently seen key is forgotten (its next request starts a fresh window). */
  readonly #windows: LRUCache<string, Window>
  readonly #children = new Map<string, MemoryRateLimitStore>()

  constructor (options: { clock: Clock, maxEntries?: number }) {
    this.#clock = options.clock
    this.maxEntries = options.maxEntries ?? DEFAULT_STORE_ENTRIES
    this.#windows = new LRUCache({ max: this.maxEntries })
  }

  incr (key: string, callback: Callback, timeWindow: number): void {
    const now = this.#clock.now()
    let window = this.#windows.get(key)
    if (window === undefined || window.resetAt <= now) {
      window = { count: 0, resetAt: now + timeWindow }
      this.#windows.set(key, window)
    }
    window.count += 1
    callback(null, { current: window.count, ttl: window.resetAt - now })
  }

  read (key: string, callback: Callback): void {
    const now = this.#clock.now()
    const window = this.#windows.peek(key)
    if (window === undefined || window.resetAt <= now) return callback(null, { current: 0, ttl: 0 })
    callback(null, { current: window.count, ttl: window.resetAt - now })
  }

  child (params: { groupId?: string, cache?: number }): MemoryRateLimitStore {
    const name = params.groupId ?? ''
    let child = this.#children.get(name)
    if (child === undefined) {
      child = new MemoryRateLimitStore({ clock: this.#clock, maxEntries: params.cache ?? this.maxEntries })
      this.#children.set(name, child)
    }
    return child
  }

  get size (): number {
    return this.#windows.size
  }

  namespace (groupId: string): MemoryRateLimitStore | undefined {
    return this.#children.get(groupId)
  }
}

// Fails closed: no token without a working limit. A dependency's outage, so 503 with Retry-After.
function storeUnavailable (cause: unknown): BrokerError {
  return new BrokerError('shared_state_unavailable', 'The broker\'s shared state cannot be reached right now; try again shortly.', { cause, retryAfterS: 5, logFields: { rateLimitStore: 'redis' } })
}

/** Keys `<keyPrefix>rl:<groupId>:<key>`, each expiring with its window. */
export class RedisRateLimitStore implements RateLimitStore {
  readonly #redis: ScriptedRedis
  readonly #namespace: string

  constructor (redis: Redis, namespace = 'rl:') {
    this.#redis = scripted(redis)
    this.#namespace = namespace
  }

  incr (key: string, callback: Callback, timeWindow: number): void {
    this.#redis.brokerRateLimitIncr(this.#namespace + key, timeWindow).then(
      ([current, ttl]) => callback(null, { current, ttl }),
      (err: unknown) => callback(storeUnavailable(err))
    )
  }

  read (key: string, callback: Callback): void {
    this.#redis.brokerRateLimitRead(this.#namespace + key).then(
      ([current, ttl]) => callback(null, { current, ttl }),
      (err: unknown) => callback(storeUnavailable(err))
    )
  }

  child (params: { groupId?: string }): RedisRateLimitStore {
    return new RedisRateLimitStore(this.#redis, `${this.#namespace}${params.groupId ?? 'default'}:`)
  }
}
