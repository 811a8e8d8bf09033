/** Load generation: autocannon runs cycling through many users' JWTs, and the cold-start burst. */
import autocannon, { type Request, type Result } from 'autocannon'
import { Pool } from 'undici'

const PATHS = ['/v1/tokens/recipients', '/v1/tokens/checkout']

export interface LoadResult {
  /** 2xx responses per second over the run. */
  reqPerS: number
  p50Ms: number
  p99Ms: number
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  durationS: number
}

export interface LoadOptions {
  connections: number
  /** Run for this long… */
  durationS?: number
  /** …or until this many responses. */
  amount?: number
  /** Cycled through, one per request, across all connections; half the requests ask for each kind. */
  jwts: readonly string[]
}

function percentile (sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number
}

/**
 * One autocannon run. Latencies are kept at full precision from the `response` events
 * (autocannon's own histogram rounds to whole milliseconds, too coarse for a 2 ms target).
 */
export async function runLoad (url: string, options: LoadOptions): Promise<LoadResult> {
  const { jwts } = options
  let next = 0
  const request: Request = {
    method: 'POST',
    setupRequest: (req) => {
      const i = next++
      return { ...req, path: PATHS[i & 1], headers: { authorization: `Bearer ${jwts[i % jwts.length] ?? ''}` } }
    }
  }
  const latencies: number[] = []
  const result = await new Promise<Result>((resolve, reject) => {
    const instance = autocannon({
      url,
      connections: options.connections,
      pipelining: 1,
      timeout: 10,
      requests: [request],
      ...(options.amount === undefined ? { duration: options.durationS ?? 10 } : { amount: options.amount })
    }, (err, res) => { if (err === null) resolve(res); else reject(err) })
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime)
    })
  })
  const sorted = Float64Array.from(latencies).sort()
  return {
    reqPerS: result['2xx'] / result.duration,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    durationS: result.duration
  }
}

export interface BurstResult {
  requests: number
  ok: number
  /** Responses other than 200, and requests that got no response at all. */
  errors: number
  statuses: Record<string, number>
  /** From the first request sent to the last answer. */
  elapsedMs: number
}

/** `jwts.length` requests at once, each on its own connection. */
export async function burst (url: string, jwts: readonly string[]): Promise<BurstResult> {
  const pool = new Pool(url, { connections: jwts.length, pipelining: 1, connect: { timeout: 30_000 } })
  const statuses: Record<string, number> = {}
  const started = performance.now()
  try {
    await Promise.all(jwts.map(async (jwt, i) => {
      let key: string
      try {
        const response = await pool.request({
          method: 'POST',
          path: PATHS[i & 1] as string,
          headers: { authorization: `Bearer ${jwt}` },
          headersTimeout: 30_000,
          bodyTimeout: 30_000
        })
        await response.body.dump()
        key = String(response.statusCode)
      } catch (err) {
        key = (err as { code?: string }).code ?? 'error'
      }
      statuses[key] = (statuses[key] ?? 0) + 1
    }))
  } finally {
    await pool.close()
  }
  const ok = statuses['200'] ?? 0
  return { requests: jwts.length, ok, errors: jwts.length - ok, statuses, elapsedMs: performance.now() - started }
}
