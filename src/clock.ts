/** Milliseconds since the epoch. Injected wherever expiry is computed, so tests control time. */
export interface Clock {
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }
