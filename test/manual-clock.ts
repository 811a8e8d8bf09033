import type { Clock } from '../src/clock.js'

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  #now: number

  constructor (start = Date.UTC(2026, 10, 28, 10, 0, 0)) {
    this.#now = start
  }

  now (): number {
    return this.#now
  }

  advance (ms: number): void {
    this.#now += ms
  }

  set (ms: number): void {
    this.#now = ms
  }
}
