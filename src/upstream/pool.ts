import { Pool, type buildConnector } from 'undici'

/** A connection may take at most this long to open, whatever the request's own deadline. */
export const CONNECT_TIMEOUT_CAP_MS = 3000

export interface PoolOptions {
  /** The whole exchange's deadline: undici's 300 s defaults would outlive any request. */
  timeoutMs: number
  connections: number
  keepAliveTimeoutMs: number
  /** A connector of its own (mTLS material swapped on SIGHUP); it carries its own connect timeout. */
  connector?: buildConnector.connector | undefined
}

/** An undici Pool owned by the app (never the global dispatcher), with explicit timeouts. */
export function createPool (origin: string, options: PoolOptions): Pool {
  return new Pool(origin, {
    connections: options.connections,
    pipelining: 1,
    connect: options.connector ?? { timeout: connectTimeoutMs(options.timeoutMs) },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    keepAliveTimeout: options.keepAliveTimeoutMs,
    keepAliveMaxTimeout: Math.max(options.keepAliveTimeoutMs, 60_000)
  })
}

export function connectTimeoutMs (timeoutMs: number): number {
  return Math.min(CONNECT_TIMEOUT_CAP_MS, timeoutMs)
}
