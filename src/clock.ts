/** Milliseconds since the epoch. Injected wherever expiry is computed, so tests control time. */
export interface Clock {
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

const DAY_MS = 86_400_000
/** 10000-01-01: from there on an ISO year has more than four digits. */
const YEAR_10000_MS = 253_402_300_800_000

const pad2 = (n: number): string => n < 10 ? `0${n}` : `${n}`
const pad3 = (n: number): string => n < 10 ? `00${n}` : n < 100 ? `0${n}` : `${n}`

/**
 * `new Date(ms).toISOString()`, made cheaper: the date part is formatted once per UTC day (by
 * `toISOString` itself) and the time of day is plain arithmetic. V8 formats an ISO date through
 * snprintf, which costs more than a token response's other fields together. Each caller gets
 * its own formatter, so two callers on different UTC days (a token's expiry, a log line's time)
 * do not keep replacing each other's day.
 */
export function isoFormatter (): (ms: number) => string {
  let dayStart = Number.NaN
  let datePart = ''
  return function toIso (ms) {
    if (!Number.isInteger(ms) || ms < 0 || ms >= YEAR_10000_MS) return new Date(ms).toISOString()
    const timeOfDay = ms % DAY_MS
    if (ms - timeOfDay !== dayStart) {
      dayStart = ms - timeOfDay
      datePart = new Date(dayStart).toISOString().slice(0, 11)
    }
    const seconds = Math.floor(timeOfDay / 1000)
    return `${datePart}${pad2(Math.floor(seconds / 3600))}:${pad2(Math.floor(seconds / 60) % 60)}:${pad2(seconds % 60)}.${pad3(timeOfDay % 1000)}Z`
  }
}
