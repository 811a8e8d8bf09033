import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { Clock } from '../clock.js'
import { scripted, type ScriptedRedis } from '../redis/index.js'
import type { QuotaTracker } from './quota.js'

// SPEC §5: an instance that pauses Mangopay calls publishes until when; the others read it on a timer.

type BlockReason = 'reserve' | 'rate_limited'

const DEFAULT_SYNC_INTERVAL_MS = 1000

export interface SharedQuotaViewOptions {
  /** The app's client: REDIS_KEY_PREFIX is its keyPrefix. */
  redis: Redis
  clock: Clock
  log: FastifyBaseLogger
  /** `sharedStateScope(clientId, baseUrl)`: Mangopay's quota is per Client ID and environment. */
  scope: string
  intervalMs?: number
}

export class SharedQuotaView {
  readonly #redis: ScriptedRedis
  readonly #clock: Clock
  readonly #log: FastifyBaseLogger
  readonly #key: string
  readonly #intervalMs: number
  #timer: NodeJS.Timeout | undefined
  #syncing = false

  constructor (options: SharedQuotaViewOptions) {
    this.#redis = scripted(options.redis)
    this.#clock = options.clock
    this.#log = options.log
    this.#key = `quota:blocked:${options.scope}`
    this.#intervalMs = options.intervalMs ?? DEFAULT_SYNC_INTERVAL_MS
  }

  /** A block this instance decided: every instance pauses until `until`. Best effort. */
  publish (until: number, reason: BlockReason): void {
    const ttlMs = Math.ceil(until - this.#clock.now())
    if (ttlMs <= 0) return
    this.#redis.brokerQuotaBlock(this.#key, String(Math.ceil(until)), reason, String(ttlMs)).catch((err: unknown) => {
      this.#log.warn({ redis: { error: (err as NodeJS.ErrnoException)?.code ?? 'error' } }, 'the Mangopay quota pause could not be shared with the other instances')
    })
  }

  follow (quota: QuotaTracker): void {
    this.stop()
    this.#timer = setInterval(() => { this.sync(quota).catch(() => {}) }, this.#intervalMs)
    this.#timer.unref()
  }

  stop (): void {
    if (this.#timer !== undefined) clearInterval(this.#timer)
    this.#timer = undefined
  }

  async sync (quota: QuotaTracker): Promise<void> {
    if (this.#syncing) return
    this.#syncing = true
    try {
      const raw = await this.#redis.get(this.#key)
      const match = raw === null ? null : /^(\d+) (reserve|rate_limited)$/.exec(raw)
      if (match === null) return
      const until = Number(match[1])
      const reason = match[2] as BlockReason
      if (quota.adoptBlock(until, reason)) {
        this.#log.warn({ quota: { until: new Date(until).toISOString(), reason, source: 'shared' } }, 'Mangopay quota guard: another instance paused calls until the window resets')
      }
    } catch {
      // Unreachable Redis (logged by the client): the local view keeps working on its own.
    } finally {
      this.#syncing = false
    }
  }
}
