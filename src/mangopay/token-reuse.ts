import { LRUCache } from 'lru-cache'
import type { Clock } from '../clock.js'
import type { EmbeddedKind, EmbeddedToken } from './types.js'

// SPEC §4. A reused token keeps its `issuedAt`, so the `expiresIn` the browser sees is the truth.

export interface ReuseOptions {
  clock: Clock
  minTtlS: number
  maxEntries?: number
}

export const DEFAULT_MAX_ENTRIES = 10_000

type Mint = () => Promise<EmbeddedToken>

export class EmbeddedTokenReuse {
  readonly #clock: Clock
  readonly #minTtlMs: number
  readonly #cache: LRUCache<string, EmbeddedToken, Mint>

  constructor (options: ReuseOptions) {
    this.#clock = options.clock
    this.#minTtlMs = options.minTtlS * 1000
    this.#cache = new LRUCache<string, EmbeddedToken, Mint>({
      max: options.maxEntries ?? DEFAULT_MAX_ENTRIES,
      // Entry lifetimes follow the injected clock, read on every lookup.
      perf: { now: () => this.#clock.now() },
      ttlResolution: 0,
      // An evicted call still answers the requests waiting for it.
      ignoreFetchAbort: true,
      fetchMethod: async (_key, _stale, { context: mint, options: entry }) => {
        const token = await mint()
        // Served while it has at least the minimum left; 0 would mean "for ever", so never below 1.
        entry.ttl = Math.max(1, this.#expiresAt(token) - this.#minTtlMs - this.#clock.now())
        return token
      }
    })
  }

  get size (): number {
    return this.#cache.size
  }

  /** A held token, the one a concurrent call is minting, or a new one; `reused` is false only for the caller that minted it. */
  async get (kind: EmbeddedKind, userId: string, mint: Mint): Promise<EmbeddedToken> {
    const key = `${kind}\u0000${userId}`
    const status: LRUCache.Status<string, EmbeddedToken, Mint> = {}
    const token = await this.#cache.fetch(key, { context: mint, status }) as EmbeddedToken
    // Minted with less than the minimum left: handed out once, never again.
    if (this.#expiresAt(token) - this.#clock.now() < this.#minTtlMs) this.#cache.delete(key)
    return { ...token, reused: status.fetch !== 'miss' }
  }

  #expiresAt (token: EmbeddedToken): number {
    return token.issuedAt + token.expiresInS * 1000
  }
}
