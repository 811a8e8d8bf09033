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
 *   does not decrypt (altered in Redis) is ignored and replaced.
 * - One bearer and one lock per API key: their names carry a short id derived from the key, so
 *   during a rolling rotation the instances on the old key and those on the new one each share
 *   theirs instead of replacing each other's. The old key's expire by their TTL.
 * - A bearer is stored under the key its OAuth call was sent with: a rotation (SIGHUP) while a
 *   call with the old key runs does not get that bearer sealed under, and adopted with, the new.
 * - One fetch at a time across the fleet: a Redis lock (`SET NX PX`, released only by its
 *   owner). The others poll for the holder's result, and fetch a bearer themselves if none
 *   arrives within their deadline (the holder died) or the lock goes without one.
 * - A lock this instance may hold without knowing it (its SET or its release got no answer) is
 *   released in the background as soon as Redis answers, not left to expire.
 * - Redis trouble never fails a token request: the bearer is then fetched and kept locally
 *   (one warning per outage), and Redis is left alone for a few seconds.
 */

const HKDF_INFO = 'mangopay-token-broker bearer v1'
const KEY_ID_INFO = 'mangopay-token-broker bearer key id v1'
const KEY_ID_BYTES = 6
const IV_BYTES = 12
const TAG_BYTES = 16
const POLL_MS = 50
/** Between attempts to release a lock whose SET or release got no answer. */
const RELEASE_RETRY_MS = 200
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

/**
 * Names an API key in Redis key names without revealing it: HKDF output under its own info
 * string, independent of the encryption key; 48 bits, so an old and a new key never meet.
 */
export function apiKeyId (apiKey: string, clientId: string): string {
  return Buffer.from(hkdfSync('sha256', apiKey, clientId, KEY_ID_INFO, KEY_ID_BYTES)).toString('hex')
}

/** Where and how the bearer of one API key is kept. */
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
  /** How often an instance waiting for another's OAuth call looks for its result. */
  pollMs?: number
}

export class RedisSharedBearers implements SharedBearers {
  readonly #redis: Redis & CompareAndDelete
  readonly #clock: Clock
  readonly #log: FastifyBaseLogger
  readonly #clientId: string
  readonly #scope: string
  readonly #lockMs: number
  readonly #timeoutMs: number
  readonly #pollMs: number
  /** Replaced, never changed, on a rotation: a call that captured it keeps it. */
  #slot: KeySlot
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
    this.#scope = sharedStateScope(options.clientId, options.baseUrl)
    // The OAuth call has its own deadline (timeoutMs, retries included); the margin covers Redis.
    this.#lockMs = options.timeoutMs + 2000
    this.#timeoutMs = options.timeoutMs
    this.#pollMs = options.pollMs ?? POLL_MS
    this.#slot = this.#slotFor(options.apiKey)
  }

  /** Key rotation: the next calls read, lock and store the new key's bearer; those running keep theirs. */
  setApiKey (apiKey: string): void {
    this.#slot = this.#slotFor(apiKey)
  }

  #slotFor (apiKey: string): KeySlot {
    const name = `bearer:${this.#scope}:${apiKeyId(apiKey, this.#clientId)}`
    return { key: bearerKey(apiKey, this.#clientId), valueKey: name, lockKey: `${name}:lock` }
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
    // Stored under the key it is fetched with: `fetch` sends the credentials in use when it is
    // called (MangopayClient.setApiKey changes them and the slot together), so a rotation from
    // here on leaves it in this slot. After one while this call waited for the lock, the new key
    // fetches it under the old key's lock: then it is not stored at all.
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

  /**
   * A shared bearer `accept` takes; or the lock, for this instance to fetch one; or neither,
   * when waiting for another instance's fetch took too long (then fetch without sharing).
   */
  async #adoptOrLock (slot: KeySlot, accept: (bearer: Bearer) => boolean): Promise<{ bearer?: Bearer, lock?: string }> {
    // Waiting ends at the deadline of the request that waits (MANGOPAY_TIMEOUT_MS). A live
    // holder's OAuth call started about when this wait did, under that same deadline: by then its
    // bearer is here, or its lock is gone and taken over below, unless the holder died. Waiting
    // for a dead holder's lock to expire (2 s later) would fail needs with 504 for 2 s longer;
    // giving up sooner, to serve the first request, would make every waiting instance call
    // Mangopay whenever Mangopay is merely slow, when one call for the fleet matters most.
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
        lock = await this.#tryLock(slot)
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

  async #tryLock (slot: KeySlot): Promise<string | undefined> {
    // Chosen before the SET is sent, so that a SET whose answer is lost can still be undone.
    const owner = randomUUID()
    let taken: string | null
    try {
      taken = await this.#redis.set(slot.lockKey, owner, 'PX', this.#lockMs, 'NX')
    } catch (err) {
      // No answer (commandTimeout, a dropped connection) is not "not set": Redis may hold this
      // lock, and every instance needing a bearer would wait for it to expire.
      this.#releaseInBackground(slot, owner)
      throw err
    }
    return taken === 'OK' ? owner : undefined
  }

  async #release (slot: KeySlot, owner: string): Promise<void> {
    try {
      await this.#redis.brokerCompareAndDelete(slot.lockKey, owner)
    } catch (err) {
      this.#unreachable(err)
      this.#releaseInBackground(slot, owner)
    }
  }

  /**
   * Deletes a lock this instance may hold, without making a request wait. ioredis sends one
   * client's commands in order, wherever they are queued, so an attempt runs after the SET even
   * if that is still queued. Attempts go on until Redis answers one, for a lock's lifetime at
   * most: a lock Redis set has expired by then, and a SET still queued has an attempt behind it.
   */
  #releaseInBackground (slot: KeySlot, owner: string): void {
    const giveUpAt = performance.now() + this.#lockMs
    const attempt = async (): Promise<void> => {
      for (;;) {
        try {
          const released = await this.#redis.brokerCompareAndDelete(slot.lockKey, owner)
          if (released === 1) this.#log.info('a Mangopay bearer lock this instance lost track of was released')
          return
        } catch {
          if (this.#redis.status === 'end' || performance.now() >= giveUpAt) return
          await sleep(RELEASE_RETRY_MS, undefined, { ref: false })
        }
      }
    }
    attempt().catch(() => {})
  }

  async #read (slot: KeySlot): Promise<Bearer | undefined> {
    const raw = await this.#redis.get(slot.valueKey)
    if (raw === null) return undefined
    const bearer = this.#open(slot, raw)
    if (bearer === undefined && raw !== this.#lastUnreadable) {
      this.#lastUnreadable = raw
      this.#log.warn('the shared Mangopay bearer cannot be decrypted with this API key (altered in Redis?); it will be replaced')
    }
    return bearer
  }

  /** Best effort: without it the other instances fetch a bearer of their own. */
  async #write (slot: KeySlot, bearer: Bearer): Promise<void> {
    // Kept only while another instance could still use it.
    const ttlMs = Math.floor(bearer.expiresAt - HARD_MARGIN_MS - this.#clock.now())
    if (ttlMs <= 0) return
    try {
      await this.#redis.set(slot.valueKey, this.#seal(slot, bearer), 'PX', ttlMs)
    } catch (err) {
      this.#unreachable(err)
    }
  }

  async #discard (slot: KeySlot, token: string): Promise<void> {
    const raw = await this.#redis.get(slot.valueKey)
    if (raw === null || this.#open(slot, raw)?.token !== token) return
    await this.#redis.brokerCompareAndDelete(slot.valueKey, raw)
  }

  /** The times are bound to the ciphertext, so they cannot be changed in Redis unnoticed. */
  #aad (slot: KeySlot, obtainedAt: number, expiresAt: number): Buffer {
    return Buffer.from(`${slot.valueKey}|${obtainedAt}|${expiresAt}`)
  }

  #seal (slot: KeySlot, bearer: Bearer): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', slot.key, iv, { authTagLength: TAG_BYTES })
    cipher.setAAD(this.#aad(slot, bearer.obtainedAt, bearer.expiresAt))
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

  #open (slot: KeySlot, raw: string): Bearer | undefined {
    try {
      const stored: unknown = JSON.parse(raw)
      if (!isStoredBearer(stored)) return undefined
      const iv = Buffer.from(stored.iv, 'base64')
      const tag = Buffer.from(stored.tag, 'base64')
      if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) return undefined
      const decipher = createDecipheriv('aes-256-gcm', slot.key, iv, { authTagLength: TAG_BYTES })
      decipher.setAAD(this.#aad(slot, stored.obtainedAt, stored.expiresAt))
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
