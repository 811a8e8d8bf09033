import { chaosPlanProblem } from './chaos.js'
import { jsonReply, type Reply } from './replies.js'
import type { EmulatorState } from './state.js'
import type { ChaosPlan, Fault, FaultRule, FaultTarget } from './types.js'

export const CONTROL_PREFIX = '/__emulator'

const TARGETS: readonly string[] = ['oauth', 'recipient', 'checkout', 'embedded', 'any'] satisfies FaultTarget[]
const NO_CONTENT: Reply = { status: 204, body: '' }

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isCount (value: unknown, min: number): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= min
}

function isStringMap (value: unknown): value is Record<string, string> {
  return isObject(value) && Object.values(value).every((v) => typeof v === 'string')
}

function parseFault (value: unknown): Fault | undefined {
  if (!isObject(value)) return undefined
  switch (value.kind) {
    case 'latency':
      return isCount(value.ms, 0) ? { kind: 'latency', ms: value.ms } : undefined
    case 'status':
      if (!Number.isInteger(value.status) || !isCount(value.status, 100) || value.status > 599) return undefined
      if (value.headers !== undefined && !isStringMap(value.headers)) return undefined
      return { kind: 'status', status: value.status, body: value.body, headers: value.headers }
    case 'reset':
    case 'reset-mid-body':
    case 'hang':
    case 'malformed':
      return { kind: value.kind }
    case 'trickle':
      return isCount(value.chunkDelayMs, 0) ? { kind: 'trickle', chunkDelayMs: value.chunkDelayMs } : undefined
    case 'redirect':
      if (typeof value.location !== 'string') return undefined
      if (value.status !== undefined && (!Number.isInteger(value.status) || !isCount(value.status, 300) || value.status > 399)) return undefined
      return { kind: 'redirect', location: value.location, status: value.status }
    case 'rate-limited':
      return Number.isInteger(value.resetInS) && isCount(value.resetInS, 1) ? { kind: 'rate-limited', resetInS: value.resetInS } : undefined
    case 'echo-credentials':
      if (!Number.isInteger(value.status) || !isCount(value.status, 400) || value.status > 599) return undefined
      return { kind: 'echo-credentials', status: value.status }
    default:
      return undefined
  }
}

/** Validates a FaultRule sent as JSON (where `times` cannot be Infinity, so it is left out instead). */
export function parseFaultRule (value: unknown): FaultRule | undefined {
  if (!isObject(value)) return undefined
  const { target, times } = value
  if (target !== undefined && (typeof target !== 'string' || !TARGETS.includes(target))) return undefined
  if (times !== undefined && (!Number.isInteger(times) || !isCount(times, 1))) return undefined
  const fault = parseFault(value.fault)
  if (fault === undefined) return undefined
  return { target: target as FaultTarget | undefined, times, fault }
}

function parseChaosPlan (value: unknown): ChaosPlan | undefined {
  if (!isObject(value)) return undefined
  const { seed, target, chances, rateLimitResetS } = value
  if (typeof seed !== 'number' || !isObject(chances)) return undefined
  if (target !== undefined && (typeof target !== 'string' || !TARGETS.includes(target))) return undefined
  if (rateLimitResetS !== undefined && typeof rateLimitResetS !== 'number') return undefined
  const plan: ChaosPlan = { seed, target: target as FaultTarget | undefined, chances: chances as ChaosPlan['chances'], rateLimitResetS }
  return chaosPlanProblem(plan) === undefined ? plan : undefined
}

function parseJson (raw: string): unknown {
  try {
    return JSON.parse(raw)
  } catch {
    return undefined
  }
}

function invalid (detail: string): Reply {
  return jsonReply(400, { error: 'invalid_request', detail })
}

/** The small HTTP twin of EmulatorControl, for the demo and for processes other than the tests. */
export function handleControl (method: string, path: string, rawBody: string, state: EmulatorState): Reply {
  const route = `${method} ${path.slice(CONTROL_PREFIX.length)}`
  switch (route) {
    case 'GET /state':
      return jsonReply(200, { calls: state.calls, minted: state.mintedCount, bearers: state.bearerCount })
    case 'POST /faults': {
      const rule = parseFaultRule(parseJson(rawBody))
      if (rule === undefined) return invalid('expected a FaultRule: {target?, times?, fault: {kind, ...}}')
      state.inject(rule)
      return NO_CONTENT
    }
    case 'POST /chaos': {
      const plan = parseChaosPlan(parseJson(rawBody))
      if (plan === undefined) return invalid('expected a ChaosPlan: {seed, target?, chances: {reset?, hang?, error?, rate_limited?}, rateLimitResetS?}')
      state.chaos(plan)
      return NO_CONTENT
    }
    case 'GET /chaos':
      return jsonReply(200, state.chaosDrawn)
    case 'DELETE /faults':
      state.clearFaults()
      return NO_CONTENT
    case 'POST /revoke':
      state.revokeBearers()
      return NO_CONTENT
    case 'POST /reset':
      state.reset()
      return NO_CONTENT
    case 'POST /remaining': {
      const body = parseJson(rawBody)
      const remaining = isObject(body) ? body.remaining : undefined
      if (!Array.isArray(remaining) || !remaining.every((n) => isCount(n, 0))) return invalid('expected {remaining: number[]}')
      state.setRemaining(remaining)
      return NO_CONTENT
    }
    default:
      return jsonReply(404, { error: 'not_found' })
  }
}
