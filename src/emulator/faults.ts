import type { ServerResponse } from 'node:http'
import { genericError, JSON_TYPE, mangopayError, oauthError, rateLimited, responseHeaders, send, writable, type Reply } from './replies.js'
import type { EndpointName, Fault } from './types.js'

const TRICKLE_BYTES = 8

/** setTimeout with a registry, so close() can cancel delayed answers instead of waiting for them. */
export class Timers {
  readonly #pending = new Set<NodeJS.Timeout>()

  after (ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#pending.delete(timer)
      fn()
    }, ms)
    this.#pending.add(timer)
  }

  clear (): void {
    for (const timer of this.#pending) clearTimeout(timer)
    this.#pending.clear()
  }
}

export interface FaultContext {
  res: ServerResponse
  endpoint: EndpointName
  /** The request's Authorization header, for the fault that echoes it. */
  authorization: string | undefined
  rateHeaders: Record<string, string>
  timers: Timers
  now: number
  /** The answer the endpoint would give without the fault; computed only when needed (it may mint). */
  answer: () => Reply
  /** A success-shaped body that mints nothing, for bodies cut short. */
  preview: () => string
}

export function applyFault (fault: Fault, ctx: FaultContext): void {
  const { res, rateHeaders } = ctx
  switch (fault.kind) {
    case 'latency':
      ctx.timers.after(fault.ms, () => send(res, ctx.answer(), rateHeaders))
      return
    case 'status':
      send(res, statusReply(fault, ctx.now), rateHeaders)
      return
    case 'reset':
      // An RST rather than a FIN: what a dropped connection looks like to the client.
      res.socket?.resetAndDestroy()
      return
    case 'reset-mid-body':
      resetMidBody(ctx)
      return
    case 'hang':
      // Nothing is written; close() destroys the socket.
      return
    case 'malformed':
      send(res, { status: 200, body: '{"access_token":"' }, rateHeaders)
      return
    case 'trickle':
      trickle(ctx, fault.chunkDelayMs)
      return
    case 'redirect':
      send(res, { status: fault.status ?? 302, body: '', headers: { Location: fault.location } }, rateHeaders)
      return
    case 'rate-limited':
      send(res, rateLimited(ctx.now), spendShortestWindow(rateHeaders, ctx.now, fault.resetInS))
      return
    case 'echo-credentials':
      send(res, echoCredentials(fault.status, ctx), rateHeaders)
  }
}

/** The rate headers with the first (shortest) window spent and reset `resetInS` from now; the others unchanged. */
function spendShortestWindow (rateHeaders: Record<string, string>, now: number, resetInS: number): Record<string, string> {
  const list = (name: string): string[] => (rateHeaders[name] ?? '').split(',').map(value => value.trim())
  const remaining = list('X-RateLimit-Remaining')
  const reset = list('X-RateLimit-Reset')
  const left = Number(remaining[0])
  if (remaining[0] === '' || !Number.isFinite(left)) return rateHeaders
  const spent = { ...rateHeaders }
  if (rateHeaders['X-RateLimit'] !== undefined) {
    const made = list('X-RateLimit')
    made[0] = String(Number(made[0]) + left)
    spent['X-RateLimit'] = made.join(', ')
  }
  remaining[0] = '0'
  reset[0] = String(Math.ceil(now / 1000) + resetInS)
  spent['X-RateLimit-Remaining'] = remaining.join(', ')
  spent['X-RateLimit-Reset'] = reset.join(', ')
  return spent
}

/** The header as sent, and for Basic its decoded `ClientId:ApiKey` too. */
function echoCredentials (status: number, { endpoint, authorization, now }: FaultContext): Reply {
  const sent = authorization ?? '(none)'
  const basic = /^Basic (.+)$/i.exec(sent)?.[1]
  const decoded = basic === undefined ? '' : ` (${Buffer.from(basic, 'base64').toString()})`
  const text = `Authorization: ${sent}${decoded} was not accepted`
  return endpoint === 'oauth'
    ? oauthError(status, 'invalid_client', text)
    : mangopayError(status, 'forbidden_ressource', text, now)
}

function statusReply (fault: Extract<Fault, { kind: 'status' }>, now: number): Reply {
  const base = fault.body === undefined
    ? genericError(fault.status, now)
    : { status: fault.status, body: typeof fault.body === 'string' ? fault.body : JSON.stringify(fault.body) }
  return fault.headers === undefined ? base : { ...base, headers: { ...base.headers, ...fault.headers } }
}

function resetMidBody ({ res, rateHeaders, preview }: FaultContext): void {
  if (!writable(res)) return
  const body = Buffer.from(preview())
  res.writeHead(200, responseHeaders({ status: 200, body: '', headers: { 'Content-Type': JSON_TYPE } }, body.length, rateHeaders))
  res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.destroy())
}

function trickle ({ res, rateHeaders, timers, answer }: FaultContext, delayMs: number): void {
  if (!writable(res)) return
  const reply = answer()
  const body = Buffer.from(reply.body)
  res.writeHead(reply.status, responseHeaders(reply, body.length, rateHeaders))
  let offset = 0
  const step = (): void => {
    if (!writable(res)) return
    const chunk = body.subarray(offset, offset + TRICKLE_BYTES)
    offset += chunk.length
    if (offset >= body.length) {
      res.end(chunk)
      return
    }
    res.write(chunk)
    timers.after(delayMs, step)
  }
  step()
}
