import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { buildTestApp } from './helpers.js'

/**
 * The container's HEALTHCHECK (`dist/healthcheck.js`, built from src/healthcheck.ts) reports
 * what a load balancer's probe of the public port would see: ready, not merely alive.
 */

async function healthcheck (env: Record<string, string>): Promise<number | null> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/healthcheck.ts'], {
    cwd: join(import.meta.dirname, '..'),
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: 'ignore'
  })
  const [code] = await once(child, 'exit') as [number | null]
  return code
}

async function listeningBroker (t: Parameters<typeof buildTestApp>[0], host: string) {
  const broker = await buildTestApp(t)
  await broker.app.listen({ host, port: 0 })
  return { ...broker, port: String((broker.app.server.address() as AddressInfo).port) }
}

t.test('healthy when the broker is ready', async t => {
  const { port, emulator } = await listeningBroker(t, '127.0.0.1')
  t.equal(await healthcheck({ HOST: '127.0.0.1', PORT: port }), 0)
  t.equal(emulator.control.calls.oauth, 1, 'readiness was asked: it obtained a bearer')
})

t.test('unhealthy while the broker serves but is not ready (Mangopay refuses its key)', async t => {
  const { app, port, emulator } = await listeningBroker(t, '127.0.0.1')
  emulator.control.setApiKey('another-key')
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'alive')
  t.equal(await healthcheck({ HOST: '127.0.0.1', PORT: port }), 1, 'but no traffic should reach it')
})

t.test('a wildcard HOST is probed on loopback', async t => {
  const { port } = await listeningBroker(t, '0.0.0.0')
  t.equal(await healthcheck({ HOST: '0.0.0.0', PORT: port }), 0)
})

t.test('unhealthy when nothing listens on HOST:PORT', async t => {
  const { app, port } = await listeningBroker(t, '127.0.0.1')
  await app.close()
  t.equal(await healthcheck({ HOST: '127.0.0.1', PORT: port }), 1)
})
