import { LRUCache } from 'lru-cache'
import type { Clock } from '../clock.js'
import type { EmbeddedKind, EmbeddedToken } from './client.js'

/**
 * Optional reuse of embedded tokens (`EMBEDDED_TOKEN_REUSE_MIN_TTL_S`, SPEC §4): a token minted
 * for a user and kind is handed again while it has at least `minTtlS` seconds left, and
 * concurrent requests for the same user and kind share one Mangopay call. Bounded (LRU); time
 * from the injected clock. A reused token keeps its original `issuedAt`, so the `expiresIn`
 * the browser sees is the truth.
 */

export interface ReuseOptions {
  clock: Clock
  minTtlS: number
  maxEntries?: number
}

export const DEFAULT_MAX_ENTRIES = 10_000

export class EmbeddedTokenReuse {
  readonly #clock: Clock
  readonly #minTtlMs: number
  readonly #cache: LRUCache<string, EmbeddedToken>
  readonly #inflight = new Map<string, Promise<EmbeddedToken>>()

  constructor (options: ReuseOptions) {
    this.#clock = options.clock
    this.#minTtlMs = options.minTtlS * 1000
    this.#cache = new LRUCache({ max: options.maxEntries ?? DEFAULT_MAX_ENTRIES })
  }

  get size (): number {
    return this.#cache.size
  }

  /**
   * A held token with enough life left, the answer of a call already in flight for the same
   * user and kind, or a new one from `mint`. `reused` is false only for the caller whose call minted it.
   */
  async get (kind: EmbeddedKind, userId: string, mint: () => Promise<EmbeddedToken>): Promise<EmbeddedToken> {
    const key = `${kind}\u0000${userId}`
    const held = this.#cache.get(key)
    if (held !== undefined) {
      if (this.#remainingMs(held) >= this.#minTtlMs) return { ...held, reused: true }
      this.#cache.delete(key)
    }
    const pending = this.#inflight.get(key)
    if (pending !== undefined) return { ...await pending, reused: true }

    const call = mint().then(token => {
      this.#cache.set(key, token)
      return token
    }).finally(() => {
      this.#inflight.delete(key)
    })
    this.#inflight.set(key, call)
    return { ...await call, reused: false }
  }

  #remainingMs (token: EmbeddedToken): number {
    return token.issuedAt + token.expiresInS * 1000 - this.#clock.now()
  }
}
