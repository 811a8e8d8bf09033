import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import { BrokerError } from '../errors.js'

export interface LoadSheddingOptions {
  /** Mean event-loop delay over a sample past which requests are refused; 0 = off. */
  maxEventLoopDelayMs: number
  /** Event-loop utilisation (0–1) over a sample past which requests are refused; 0 = off. */
  maxEventLoopUtilization: number
  sampleIntervalMs?: number | undefined
}

const RETRY_AFTER_S = 2

/**
 * A loaded event loop answers 503 `overloaded` at once rather than queue requests that would miss
 * their deadline anyway. Liveness still answers: a busy process is not a dead one.
 */
export async function loadShedding (app: FastifyInstance, options: LoadSheddingOptions): Promise<void> {
  await app.register(underPressure, {
    maxEventLoopDelay: options.maxEventLoopDelayMs,
    maxEventLoopUtilization: options.maxEventLoopUtilization,
    sampleInterval: options.sampleIntervalMs ?? 1000,
    pressureHandler: (request, _reply, type, value) => {
      if (request.routeOptions.url === '/healthz') return
      // Rejected: the one error handler answers it as problem+json with Retry-After.
      return Promise.reject(new BrokerError('overloaded', 'The broker is overloaded; try again shortly.', { retryAfterS: RETRY_AFTER_S, logFields: { pressure: { type, value } } }))
    }
  })
}
