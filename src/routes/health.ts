import type { FastifyInstance } from 'fastify'
import { sendProblem } from '../http/problem.js'
import type { ReadinessReport } from './readiness.js'

export { createReadiness, type ReadinessOptions, type ReadinessReport } from './readiness.js'

export interface HealthRoutesOptions {
  readiness: () => Promise<ReadinessReport>
}

// SPEC §2 and §8 "Ports": on the public port, readiness tells the status and what fails, no figures.
export async function healthRoutes (app: FastifyInstance, options: HealthRoutesOptions): Promise<void> {
  const { readiness } = options

  app.get('/healthz', async () => ({ status: 'ok' }))

  app.get('/readyz', async (_request, reply) => {
    const report = await readiness()
    if (!report.ready) return sendProblem(reply, report.error, { failing: report.failing })
    return { status: 'ready' }
  })
}
