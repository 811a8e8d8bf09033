import type { ChaosCounts, ChaosMode, ChaosPlan, Fault, FaultTarget } from './types.js'

export const CHAOS_MODES: readonly ChaosMode[] = ['reset', 'hang', 'error', 'rate_limited']

const DEFAULT_RATE_LIMIT_RESET_S = 1

/** mulberry32: small and seedable; `Math.random()` cannot replay a run. */
export function seededRandom (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let mixed = Math.imul(state ^ (state >>> 15), state | 1)
    mixed ^= mixed + Math.imul(mixed ^ (mixed >>> 7), mixed | 61)
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296
  }
}

export function noChaosCounts (): ChaosCounts {
  return { reset: 0, hang: 0, error: 0, rate_limited: 0, none: 0 }
}

/** Why `plan` cannot run, or undefined when it can. */
export function chaosPlanProblem (plan: ChaosPlan): string | undefined {
  if (!Number.isSafeInteger(plan.seed)) return 'seed must be an integer'
  const chances = Object.entries(plan.chances)
  if (!chances.every(([mode, chance]) => CHAOS_MODES.includes(mode as ChaosMode) && typeof chance === 'number' && chance >= 0 && chance <= 1)) {
    return `chances must map ${CHAOS_MODES.join(', ')} to numbers from 0 to 1`
  }
  if (chances.reduce((sum, [, chance]) => sum + (chance ?? 0), 0) > 1) return 'chances must add up to at most 1'
  const resetS = plan.rateLimitResetS
  if (resetS !== undefined && (!Number.isInteger(resetS) || resetS < 1)) return 'rateLimitResetS must be a positive integer'
  return undefined
}

/** One plan in force: one draw per call it targets. */
export class ChaosDraw {
  readonly target: FaultTarget
  readonly #plan: ChaosPlan
  readonly #random: () => number
  readonly #counts: ChaosCounts

  constructor (plan: ChaosPlan, counts: ChaosCounts) {
    const problem = chaosPlanProblem(plan)
    if (problem !== undefined) throw new RangeError(`invalid chaos plan: ${problem}`)
    this.target = plan.target ?? 'any'
    this.#plan = plan
    this.#random = seededRandom(plan.seed)
    this.#counts = counts
  }

  next (): Fault | undefined {
    let roll = this.#random()
    for (const mode of CHAOS_MODES) {
      const chance = this.#plan.chances[mode] ?? 0
      if (roll < chance) {
        this.#counts[mode]++
        return this.#fault(mode)
      }
      roll -= chance
    }
    this.#counts.none++
    return undefined
  }

  #fault (mode: ChaosMode): Fault {
    switch (mode) {
      case 'reset': return { kind: 'reset' }
      case 'hang': return { kind: 'hang' }
      case 'error': return { kind: 'status', status: 500 }
      case 'rate_limited': return { kind: 'rate-limited', resetInS: this.#plan.rateLimitResetS ?? DEFAULT_RATE_LIMIT_RESET_S }
    }
  }
}
