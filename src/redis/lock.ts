import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyBaseLogger } from 'fastify'
import type { ScriptedRedis } from './scripts.js'

const RELEASE_RETRY_MS = 200

// A lock held unknowingly (an answer lost) is released once Redis answers, not left to expire while others wait.
export class RedisLock {
  readonly #redis: ScriptedRedis
  readonly #ttlMs: number
  readonly #log: FastifyBaseLogger

  constructor (redis: ScriptedRedis, options: { ttlMs: number, log: FastifyBaseLogger }) {
    this.#redis = redis
    this.#ttlMs = options.ttlMs
    this.#log = options.log
  }

  /** The owner's token when taken, undefined when another holds it; throws when Redis does not answer. */
  async tryAcquire (key: string): Promise<string | undefined> {
    // Chosen before the SET is sent, so that a SET whose answer is lost can still be undone.
    const owner = randomUUID()
    let taken: string | null
    try {
      taken = await this.#redis.set(key, owner, 'PX', this.#ttlMs, 'NX')
    } catch (err) {
      // No answer is not "not set": Redis may hold this lock now.
      this.#releaseInBackground(key, owner)
      throw err
    }
    return taken === 'OK' ? owner : undefined
  }

  /** Throws when Redis does not answer; the release is then retried in the background. */
  async release (key: string, owner: string): Promise<void> {
    try {
      await this.#redis.brokerCompareAndDelete(key, owner)
    } catch (err) {
      this.#releaseInBackground(key, owner)
      throw err
    }
  }

  // ioredis sends a client's commands in order, so this runs after a SET still queued. Retried until
  // Redis answers, for a lock's lifetime at most (it has expired by then).
  #releaseInBackground (key: string, owner: string): void {
    const giveUpAt = performance.now() + this.#ttlMs
    const attempt = async (): Promise<void> => {
      for (;;) {
        try {
          const released = await this.#redis.brokerCompareAndDelete(key, owner)
          if (released === 1) this.#log.info({ redis: { lock: key } }, 'a Redis lock this instance lost track of was released')
          return
        } catch {
          if (this.#redis.status === 'end' || performance.now() >= giveUpAt) return
          await sleep(RELEASE_RETRY_MS, undefined, { ref: false })
        }
      }
    }
    attempt().catch(() => {})
  }
}
