import { createHash, hkdfSync } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../clock.js'
import { RedisLock, scripted, type ScriptedRedis } from '../redis/index.js'
import { HARD_MARGIN_MS, type Bearer, type SharedBearers } from './bearer-store.js'
import { open, seal, sealingKey } from './sealed-bearer.js'

// SPEC §5: one OAuth call per bearer for the whole fleet. One bearer and lock per API key (rolling rotations);
// Redis trouble means a local fetch, never a failed request.

const KEY_ID_INFO = 'mangopay-token-broker bearer key id v1'
const KEY_ID_BYTES = 6
const POLL_MS = 50
/** After a Redis failure, bearers are fetched locally without asking Redis for this long. */
const REDIS_BACKOFF_MS = 5000

// Client id and a hash of the base URL: sandbox and production, or two clients, never share state.
export function sharedStateScope (clientId: string, baseUrl: string): string {
  // Normalised, so instances configured with and without a trailing slash still meet.
  const url = URL.canParse(baseUrl) ? new URL(baseUrl).href : baseUrl
  return `${clientId}:${createHash('sha256').update(url).digest('hex').slice(0, 12)}`
}

/** Names an API key in Redis key names without revealing it (HKDF, 48 bits). */
export function apiKeyId (apiKey: string, clientId: string): string {
  return Buffer.from(hkdfSync('sha256', apiKey, clientId, KEY_ID_INFO, KEY_ID_BYTES)).toString('hex')
}

interface KeySlot {
  key: Buffer
  valueKey: string
  lockKey: string
}

export interface RedisSharedBearersOptions {
  /** The app's client: REDIS_KEY_PREFIX is its keyPrefix. */
  redis: Redis
  clock: Clock
  log: FastifyBaseLogger
  clientId: string
  baseUrl: string
  apiKey: string
  /** How long one OAuth exchange may take (MANGOPAY_TIMEOUT_MS): the lock outlives it a little. */
  timeoutMs: number
  pollMs?: number
}

export class RedisSharedBearers implements SharedBearers {
  readonly #redis: ScriptedRedis
  readonly #lock: RedisLock
  readonly #clock: Clock
  readonly #log: FastifyBaseLogger
  readonly #clientId: string
  readonly #scope: string
  readonly #timeoutMs: number
  readonly #pollMs: number
  /** Replaced, never changed, on a rotation: a call that captured it keeps it. */
  #slot: KeySlot
  #skipRedisUntil = -Infinity
  #warned = false
  #lastUnreadable: string | undefined

  constructor (options: RedisSharedBearersOptions) {
    this.#redis = scripted(options.redis)
    // The OAuth call has its own deadline (retries included); the margin covers Redis.
    this.#lock = new RedisLock(this.#redis, { ttlMs: options.timeoutMs + 2000, log: options.log })
    this.#clock = options.clock
    this.#log = options.log
    this.#clientId = options.clientId
    this.#scope = sharedStateScope(options.clientId, options.baseUrl)
    this.#timeoutMs = options.timeoutMs
    this.#pollMs = options.pollMs ?? POLL_MS
    this.#slot = this.#slotFor(options.apiKey)
  }

  setApiKey (apiKey: string): void {
    this.#slot = this.#slotFor(apiKey)
  }

  #slotFor (apiKey: string): KeySlot {
    const name = `bearer:${this.#scope}:${apiKeyId(apiKey, this.#clientId)}`
    return { key: sealingKey(apiKey, this.#clientId), valueKey: name, lockKey: `${name}:lock` }
  }

  async obtain (accept: (bearer: Bearer) => boolean, fetch: () => Promise<Bearer>): Promise<Bearer> {
    if (this.#clock.now() < this.#skipRedisUntil) return await fetch()
    const slot = this.#slot
    let found: { bearer?: Bearer, lock?: string }
    try {
      found = await this.#adoptOrLock(slot, accept)
      this.#reachable()
    } catch (err) {
      this.#unreachable(err)
      return await fetch()
    }
    if (found.bearer !== undefined) {
      this.#log.debug('Mangopay bearer adopted from the shared store')
      return found.bearer
    }
    const lock = found.lock
    // A rotation during the wait makes `fetch` use the new key under the old key's lock: store nothing then.
    const sealable = lock !== undefined && this.#slot === slot
    try {
      const bearer = await fetch()
      // Written before the lock goes, so the instances waiting on it find the bearer.
      if (sealable) await this.#write(slot, bearer)
      return bearer
    } finally {
      if (lock !== undefined) await this.#release(slot, lock)
    }
  }

  discard (token: string): void {
    if (this.#clock.now() < this.#skipRedisUntil) return
    this.#discard(this.#slot, token).catch((err: unknown) => this.#unreachable(err))
  }

  /** A shared bearer `accept` takes, or the lock to fetch one; neither when the wait took too long. */
  async #adoptOrLock (slot: KeySlot, accept: (bearer: Bearer) => boolean): Promise<{ bearer?: Bearer, lock?: string }> {
    // A live holder under the same deadline is done by then; sooner, a slow Mangopay would get a call per instance.
    const giveUpAt = performance.now() + this.#timeoutMs
    let lock: string | undefined
    try {
      for (;;) {
        const seen = await this.#read(slot)
        if (seen !== undefined && accept(seen)) {
          if (lock !== undefined) await this.#release(slot, lock)
          return { bearer: seen }
        }
        // Read once more after taking the lock: the previous holder may have just written.
        if (lock !== undefined) return { lock }
        lock = await this.#lock.tryAcquire(slot.lockKey)
        if (lock !== undefined) continue
        if (performance.now() >= giveUpAt) {
          this.#log.warn('no shared Mangopay bearer arrived in time from the instance fetching it; fetching one locally')
          return {}
        }
        await sleep(this.#pollMs)
      }
    } catch (err) {
      if (lock !== undefined) await this.#release(slot, lock)
      throw err
    }
  }

  async #release (slot: KeySlot, owner: string): Promise<void> {
    await this.#lock.release(slot.lockKey, owner).catch((err: unknown) => this.#unreachable(err))
  }

  async #read (slot: KeySlot): Promise<Bearer | undefined> {
    const raw = await this.#redis.get(slot.valueKey)
    if (raw === null) return undefined
    const bearer = open(slot.key, slot.valueKey, raw)
    if (bearer === undefined && raw !== this.#lastUnreadable) {
      this.#lastUnreadable = raw
      this.#log.warn('the shared Mangopay bearer cannot be decrypted with this API key (altered in Redis?); it will be replaced')
    }
    return bearer
  }

  async #write (slot: KeySlot, bearer: Bearer): Promise<void> {
    // Kept only while another instance could still use it.
    const ttlMs = Math.floor(bearer.expiresAt - HARD_MARGIN_MS - this.#clock.now())
    if (ttlMs <= 0) return
    try {
      await this.#redis.set(slot.valueKey, seal(slot.key, slot.valueKey, bearer), 'PX', ttlMs)
    } catch (err) {
      this.#unreachable(err)
    }
  }

  async #discard (slot: KeySlot, token: string): Promise<void> {
    const raw = await this.#redis.get(slot.valueKey)
    if (raw === null || open(slot.key, slot.valueKey, raw)?.token !== token) return
    await this.#redis.brokerCompareAndDelete(slot.valueKey, raw)
  }

  #unreachable (err: unknown): void {
    this.#skipRedisUntil = this.#clock.now() + REDIS_BACKOFF_MS
    if (this.#warned) return
    this.#warned = true
    const error = err as NodeJS.ErrnoException
    this.#log.warn({ redis: { error: error?.code ?? error?.name ?? 'error' } }, 'Redis is unreachable: the Mangopay bearer is fetched and kept locally until it is back')
  }

  #reachable (): void {
    if (!this.#warned) return
    this.#warned = false
    this.#log.info('Redis is reachable again: the Mangopay bearer is shared again')
  }
}
