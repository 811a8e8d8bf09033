/**
 * The container's HEALTHCHECK: asks `/readyz` on the public port, as a load balancer would, so
 * "healthy" means "would be sent traffic". Exit 0 when ready, 1 otherwise.
 * Like server.ts an edge that reads the environment, but only HOST and PORT: a probe loads no secrets.
 */
import { isIP } from 'node:net'

const WILDCARDS: Record<string, string> = { '0.0.0.0': '127.0.0.1', '::': '::1' }

function readyzUrl (env: NodeJS.ProcessEnv): string {
  const host = env.HOST === undefined || env.HOST === '' ? '127.0.0.1' : env.HOST
  // A wildcard listener is reached on loopback like on any other interface.
  const target = WILDCARDS[host] ?? host
  const port = env.PORT === undefined || env.PORT === '' ? '3000' : env.PORT
  return `http://${isIP(target) === 6 ? `[${target}]` : target}:${port}/readyz`
}

async function ready (url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2500), redirect: 'manual' })
    await response.body?.cancel()
    return response.status === 200
  } catch {
    return false
  }
}

process.exitCode = await ready(readyzUrl(process.env)) ? 0 : 1
