import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../clock.js'
import { HARD_MARGIN_MS, refreshAtFor, type Bearer, type SharedBearers } from './bearer-store.js'

/**
 * The bearer shared by every instance through Redis (SPEC §5, REDIS_URL), so a fleet makes one
 * OAuth call per bearer, not one per instance.
 *
 * - Encrypted at rest: AES-256-GCM under a key derived (HKDF-SHA256) from the API key, which
 *   Redis never sees; only instances holding the same key can read the bearer. A value that
 *   does not decrypt (another key, after a rotation) is ignored and replaced.
 * - One fetch at a time across the fleet: a Redis lock (`SET NX PX`, released only by its
 *   owner). The others poll for the holder's result, and take the lock themselves if the
 *   holder disappears (the lock expires).
 * - Redis trouble never fails a token request: the bearer is then fetched and kept locally
 *   (one warning per outage), and Redis is left alone for a few seconds.
 */

const HKDF_INFO = 'mangopay-token-broker bearer v1'
const IV_BYTES = 12
const TAG_BYTES = 16
const POLL_MS = 50
/** After a Redis failure, bearers are fetched locally without asking Redis for this long. */
const REDIS_BACKOFF_MS = 5000

// Deletes a key only if it still holds what the caller saw: a lock it owns, a bearer it refused.
const COMPARE_AND_DELETE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`

interface CompareAndDelete {
  brokerCompareAndDelete (key: string, expected: string): Promise<number>
}

/** What Redis holds: no plaintext bearer. */
interface StoredBearer { iv: string, tag: string, data: string, obtainedAt: number, expiresAt: number }

function isStoredBearer (value: unknown): value is StoredBearer {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return typeof v.iv === 'string' && typeof v.tag === 'string' && typeof v.data === 'string' &&
    typeof v.obtainedAt === 'number' && Number.isFinite(v.obtainedAt) &&
    typeof v.expiresAt === 'number' && Number.isFinite(v.expiresAt) && v.expiresAt > v.obtainedAt
}

/**
 * Names this Mangopay client's shared state: the client id (not secret) and a short hash of the
 * base URL, so sandbox and production, or two clients, never share a bearer or a quota view.
 */
export function sharedStateScope (clientId: string, baseUrl: string): string {
  // Normalised, so instances configured with and without a trailing slash still meet.
  const url = URL.canParse(baseUrl) ? new URL(baseUrl).href : baseUrl
  return `${clientId}:${createHash('sha256').update(url).digest('hex').slice(0, 12)}`
}

function bearerKey (apiKey: string, clientId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', apiKey, clientId, HKDF_INFO, 32))
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
  /** How often an instance waiting for another's OAuth call looks for its result. */
  pollMs?: number
}

export class RedisSharedBearers implements SharedBearers {
  readonly #redis: Redis & CompareAndDelete
  readonly #clock: Clock
  readonly #log: FastifyBaseLogger
  readonly #clientId: string
  readonly #valueKey: string
  readonly #lockKey: string
  readonly #lockMs: number
  readonly #pollMs: number
  #key: Buffer
  #skipRedisUntil = -Infinity
  #warned = false
  #lastUnreadable: string | undefined

  constructor (options: RedisSharedBearersOptions) {
    if (!('brokerCompareAndDelete' in options.redis)) {
      options.redis.defineCommand('brokerCompareAndDelete', { numberOfKeys: 1, lua: COMPARE_AND_DELETE })
    }
    this.#redis = options.redis as Redis & CompareAndDelete
    this.#clock = options.clock
    this.#log = options.log
    this.#clientId = options.clientId
    const scope = sharedStateScope(options.clientId, options.baseUrl)
    this.#valueKey = `bearer:${scope}`
    this.#lockKey = `bearer:${scope}:lock`
    // The OAuth call has its own deadline (timeoutMs, retries included); the margin covers Redis.
    this.#lockMs = options.timeoutMs + 2000
    this.#pollMs = options.pollMs ?? POLL_MS
    this.#key = bearerKey(options.apiKey, options.clientId)
  }

  /** Key rotation: bearers are sealed with, and only opened with, the new key from now on. */
  setApiKey (apiKey: string): void {
    this.#key = bearerKey(apiKey, this.#clientId)
  }

  async obtain (accept: (bearer: Bearer) => boolean, fetch: () => Promise<Bearer>): Promise<Bearer> {
    if (this.#clock.now() < this.#skipRedisUntil) return await fetch()
    let found: { bearer?: Bearer, lock?: string }
    try {
      found = await this.#adoptOrLock(accept)
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
    try {
      const bearer = await fetch()
      // Written before the lock goes, so the instances waiting on it find the bearer.
      if (lock !== undefined) await this.#write(bearer)
      return bearer
    } finally {
      if (lock !== undefined) await this.#release(lock)
    }
  }

  discard (token: string): void {
    if (this.#clock.now() < this.#skipRedisUntil) return
    this.#discard(token).catch((err: unknown) => this.#unreachable(err))
  }

  /**
   * A shared bearer `accept` takes; or the lock, for this instance to fetch one; or neither,
   * when waiting for another instance's fetch took too long (then fetch without sharing).
   */
  async #adoptOrLock (accept: (bearer: Bearer) => boolean): Promise<{ bearer?: Bearer, lock?: string }> {
    const giveUpAt = performance.now() + 2 * this.#lockMs
    let lock: string | undefined
    try {
      for (;;) {
        const seen = await this.#read()
        if (seen !== undefined && accept(seen)) {
          if (lock !== undefined) await this.#release(lock)
          return { bearer: seen }
        }
        // Read once more after taking the lock: the previous holder may have just written.
        if (lock !== undefined) return { lock }
        lock = await this.#tryLock()
        if (lock !== undefined) continue
        if (performance.now() >= giveUpAt) {
          this.#log.warn('no shared Mangopay bearer arrived in time from the instance fetching it; fetching one locally')
          return {}
        }
        await sleep(this.#pollMs)
      }
    } catch (err) {
      if (lock !== undefined) await this.#release(lock)
      throw err
    }
  }

  async #tryLock (): Promise<string | undefined> {
    const owner = randomUUID()
    const taken = await this.#redis.set(this.#lockKey, owner, 'PX', this.#lockMs, 'NX')
    return taken === 'OK' ? owner : undefined
  }

  /** Best effort: an unreleased lock expires by itself. */
  async #release (owner: string): Promise<void> {
    try {
      await this.#redis.brokerCompareAndDelete(this.#lockKey, owner)
    } catch (err) {
      this.#unreachable(err)
    }
  }

  async #read (): Promise<Bearer | undefined> {
    const raw = await this.#redis.get(this.#valueKey)
    if (raw === null) return undefined
    const bearer = this.#open(raw)
    if (bearer === undefined && raw !== this.#lastUnreadable) {
      this.#lastUnreadable = raw
      this.#log.info('the shared Mangopay bearer cannot be decrypted with this API key (rotation?); it will be replaced')
    }
    return bearer
  }

  /** Best effort: without it the other instances fetch a bearer of their own. */
  async #write (bearer: Bearer): Promise<void> {
    // Kept only while another instance could still use it.
    const ttlMs = Math.floor(bearer.expiresAt - HARD_MARGIN_MS - this.#clock.now())
    if (ttlMs <= 0) return
    try {
      await this.#redis.set(this.#valueKey, this.#seal(bearer), 'PX', ttlMs)
    } catch (err) {
      this.#unreachable(err)
    }
  }

  async #discard (token: string): Promise<void> {
    const raw = await this.#redis.get(this.#valueKey)
    if (raw === null || this.#open(raw)?.token !== token) return
    await this.#redis.brokerCompareAndDelete(this.#valueKey, raw)
  }

  /** The times are bound to the ciphertext, so they cannot be changed in Redis unnoticed. */
  #aad (obtainedAt: number, expiresAt: number): Buffer {
    return Buffer.from(`${this.#valueKey}|${obtainedAt}|${expiresAt}`)
  }

  #seal (bearer: Bearer): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES })
    cipher.setAAD(this.#aad(bearer.obtainedAt, bearer.expiresAt))
    const data = Buffer.concat([cipher.update(bearer.token, 'utf8'), cipher.final()])
    const stored: StoredBearer = {
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      data: data.toString('base64'),
      expiresAt: bearer.expiresAt,
      obtainedAt: bearer.obtainedAt
    }
    return JSON.stringify(stored)
  }

  #open (raw: string): Bearer | undefined {
    try {
      const stored: unknown = JSON.parse(raw)
      if (!isStoredBearer(stored)) return undefined
      const iv = Buffer.from(stored.iv, 'base64')
      const tag = Buffer.from(stored.tag, 'base64')
      if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) return undefined
      const decipher = createDecipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_BYTES })
      decipher.setAAD(this.#aad(stored.obtainedAt, stored.expiresAt))
      decipher.setAuthTag(tag)
      const token = Buffer.concat([decipher.update(Buffer.from(stored.data, 'base64')), decipher.final()]).toString('utf8')
      if (token === '') return undefined
      return { token, obtainedAt: stored.obtainedAt, expiresAt: stored.expiresAt, refreshAt: refreshAtFor(stored.obtainedAt, stored.expiresAt) }
    } catch {
      return undefined
    }
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
