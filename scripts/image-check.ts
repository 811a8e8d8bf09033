/**
 * `npm run image:check`: builds the image, runs it against the emulator as it would run in
 * production (read-only root, no capabilities, secrets from files), gets a token through the
 * HTTP API, and checks the user, the health check and what the image carries.
 * Exit 0: passed. 1: the project failed a check. 2: no container engine here (see container-engine.sh).
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { SignJWT } from 'jose'
import { startEmulator } from '../src/emulator/index.js'

const ROOT = join(import.meta.dirname, '..')
const IMAGE = process.env.IMAGE_CHECK_TAG ?? 'mangopay-token-broker:check'
const CONTAINER = `broker-image-check-${process.pid}`
const CLIENT_ID = 'image-check-client'
const USER_ID = 'user_m_image_check'

class CheckFailed extends Error {}

interface Run { code: number | null, stdout: string, stderr: string }

async function run (command: string, args: string[], options: { env?: NodeJS.ProcessEnv, echo?: boolean } = {}): Promise<Run> {
  const child = spawn(command, args, { cwd: ROOT, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); if (options.echo === true) process.stdout.write(chunk) })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); if (options.echo === true) process.stderr.write(chunk) })
  const [code] = await once(child, 'close') as [number | null]
  return { code, stdout, stderr }
}

async function docker (...args: string[]): Promise<string> {
  const result = await run('docker', args)
  if (result.code !== 0) throw new CheckFailed(`docker ${args[0] ?? ''} failed: ${result.stderr.trim()}`)
  return result.stdout.trim()
}

function check (condition: boolean, what: string): void {
  if (!condition) throw new CheckFailed(what)
  console.log(`  ok: ${what}`)
}

async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

async function poll<T> (what: string, timeoutMs: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const value = await attempt()
    if (value !== undefined) return value
    if (performance.now() > deadline) throw new CheckFailed(`timed out waiting for ${what}`)
    await sleep(500)
  }
}

const timings: Array<[string, number]> = []
async function step<T> (name: string, body: () => Promise<T>): Promise<T> {
  console.log(`- ${name}`)
  const started = performance.now()
  try {
    return await body()
  } finally {
    timings.push([name, (performance.now() - started) / 1000])
  }
}

async function main (): Promise<number> {
  const engine = await step('container engine and base image', async () => await run('bash', ['scripts/container-engine.sh'], { echo: true }))
  if (engine.code === 2) return 2
  if (engine.code !== 0) throw new CheckFailed('scripts/container-engine.sh failed')

  await step(`docker build -t ${IMAGE}`, async () => {
    const build = await run('docker', ['build', '--network', 'host', '-t', IMAGE, '.'], { env: { ...process.env, DOCKER_BUILDKIT: '0' } })
    if (build.code !== 0) throw new CheckFailed(`the image did not build:\n${build.stdout.slice(-4000)}${build.stderr.slice(-4000)}`)
  })

  await step('what the image carries', async () => {
    check(await docker('image', 'inspect', '-f', '{{.Config.User}}', IMAGE) === 'node', 'it runs as the node user')
    const files = (await docker('run', '--rm', '--network', 'none', '--entrypoint', 'find', IMAGE, '/app', '-path', '/app/node_modules', '-prune', '-o', '-type', 'f', '-print')).split('\n')
    check(files.includes('/app/dist/server.js') && files.includes('/app/dist/healthcheck.js'), 'the compiled server and its health check')
    check(!files.some(file => /\/(emulator|demo)\/|\.ts$/.test(file) && !file.endsWith('.d.ts')), 'no emulator, demo or TypeScript source')
    const devOnly = await docker('run', '--rm', '--network', 'none', '--entrypoint', 'sh', IMAGE, '-c', 'ls -d node_modules/typescript node_modules/tsx node_modules/tap 2>/dev/null || true')
    check(devOnly === '', 'no development dependencies')
  })

  const emulatorKey = randomBytes(24).toString('base64url')
  const jwtSecret = randomBytes(32).toString('base64url')
  const emulator = await startEmulator({ host: '127.0.0.1', port: 0, clientId: CLIENT_ID, apiKey: emulatorKey })
  const secrets = await mkdtemp(join(tmpdir(), 'broker-image-check-'))
  try {
    // Readable by the container's uid 1000: throwaway values, like mounted Kubernetes secrets.
    await chmod(secrets, 0o755)
    await writeFile(join(secrets, 'api-key'), `${emulatorKey}\n`, { mode: 0o644 })
    await writeFile(join(secrets, 'jwt-secret'), jwtSecret, { mode: 0o644 })
    const [port, metricsPort] = [await freePort(), await freePort()]
    const base = `http://127.0.0.1:${port}`

    await step('docker run (read-only root, no capabilities, .env.example as its env file)', async () => {
      await docker('run', '-d', '--name', CONTAINER, '--network', 'host', '--read-only', '--tmpfs', '/tmp', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
        '--health-interval', '2s', '--health-start-period', '0s',
        '--env-file', '.env.example', '-v', `${secrets}:/run/secrets/broker:ro`,
        '-e', 'HOST=127.0.0.1', '-e', `PORT=${port}`, '-e', `METRICS_PORT=${metricsPort}`, '-e', 'LOG_LEVEL=info',
        '-e', `MANGOPAY_BASE_URL=${emulator.url}`, '-e', `MANGOPAY_CLIENT_ID=${CLIENT_ID}`,
        '-e', 'MANGOPAY_API_KEY_FILE=/run/secrets/broker/api-key', '-e', 'AUTH_MODE=jwt',
        '-e', 'AUTH_JWT_SECRET_FILE=/run/secrets/broker/jwt-secret', '-e', 'AUTH_ISSUER=https://idp.image-check.test/',
        '-e', 'AUTH_AUDIENCE=mangopay-token-broker', IMAGE)
    })

    const jwt = await new SignJWT({ mangopay_user_id: USER_ID }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setIssuer('https://idp.image-check.test/').setAudience('mangopay-token-broker').setSubject('image-check')
      .setIssuedAt().setExpirationTime('10m').sign(new TextEncoder().encode(jwtSecret))

    const answer = await step('a token through the HTTP API', async () => await poll('the broker to answer', 60_000, async () => {
      if (await docker('inspect', '-f', '{{.State.Running}}', CONTAINER) !== 'true') throw new CheckFailed('the container stopped')
      try {
        const response = await fetch(`${base}/v1/tokens/recipients`, { method: 'POST', headers: { authorization: `Bearer ${jwt}` } })
        return { status: response.status, body: await response.json() as Record<string, unknown> }
      } catch {
        return undefined
      }
    }))
    check(answer.status === 200, `POST /v1/tokens/recipients answers 200 (got ${answer.status})`)
    check(answer.body.userId === USER_ID && emulator.control.minted.some(m => m.token === answer.body.clientToken), 'with the token the emulator minted for the user')

    await step('user and health check', async () => {
      const uid = await docker('exec', CONTAINER, 'id', '-u')
      check(uid !== '0' && uid !== '', `the process runs as uid ${uid}, not root`)
      const health = await poll('the health check to settle', 60_000, async () => {
        const status = await docker('inspect', '-f', '{{.State.Health.Status}}', CONTAINER)
        return status === 'healthy' || status === 'unhealthy' ? status : undefined
      })
      check(health === 'healthy', `the HEALTHCHECK reports ${health}`)
    })

    const logs = await run('docker', ['logs', CONTAINER])
    const output = logs.stdout + logs.stderr
    const leaked = [emulatorKey, jwtSecret, jwt, ...emulator.control.minted.map(m => m.token), ...emulator.control.bearers.map(b => b.token)]
    check(!leaked.some(secret => output.includes(secret)), 'its logs hold no secret')
    check(output.includes('embedded token issued'), 'and the audit line of the token')
  } catch (err) {
    const logs = await run('docker', ['logs', '--tail', '40', CONTAINER])
    if (logs.code === 0) console.error(`the container's last lines:\n${logs.stdout}${logs.stderr}`)
    throw err
  } finally {
    await run('docker', ['rm', '-f', CONTAINER])
    await emulator.close()
    await rm(secrets, { recursive: true, force: true })
  }
  return 0
}

const started = performance.now()
let code: number
try {
  code = await main()
} catch (err) {
  console.error(`image check FAILED: ${err instanceof CheckFailed ? err.message : String(err)}`)
  code = 1
}
for (const [name, seconds] of timings) console.log(`  ${seconds.toFixed(1).padStart(6)} s  ${name}`)
console.log(code === 0 ? `image check passed in ${((performance.now() - started) / 1000).toFixed(0)} s` : code === 2 ? 'image check skipped: no container engine on this machine' : 'image check failed')
process.exitCode = code
