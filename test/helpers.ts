import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Writable, type Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair, exportSPKI, SignJWT, type JWTPayload } from 'jose'
import type { Logger } from 'pino'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Test } from 'tap'
import { request } from 'undici'
import { buildApp, type AppDeps } from '../src/app.js'
import { loadConfig, type Config } from '../src/config/index.js'
import { createLogger } from '../src/observability/logging.js'
import { startEmulator, type Emulator, type EmulatorOptions } from '../src/emulator/index.js'

/** The tap test object, as much of it as the helpers need. */
export interface TestContext {
  teardown (fn: () => unknown): void
}

export const CLIENT_ID = 'acme-client'
export const API_KEY = 'sk_test_embedded_5b1f0c7e9d2a4f6b8c3e1a0d'
export const ISSUER = 'https://idp.example.test/'
export const AUDIENCE = 'mangopay-token-broker'
export const USER_A = 'user_m_01JP2X1PK52W8PYD99Q3CXDMAP'
export const USER_B = 'user_m_01JQ7BOBPERSONAL000000000A'
export const USER_C = 'user_m_01JQ7BOBBUSINESS000000000B'

/** One RSA key pair for the whole test file: generating one per test would be slow. */
const rsa = await generateKeyPair('RS256', { extractable: true })
export const RSA_PUBLIC_PEM = await exportSPKI(rsa.publicKey)
export const RSA_PRIVATE_KEY = rsa.privateKey

export interface JwtOptions {
  alg?: string
  key?: CryptoKey | Uint8Array
  issuer?: string
  audience?: string
  expiresIn?: string | number
  notBefore?: string | number
  subject?: string
  kid?: string
}

/** Every JWT a test signs, so the log check can look for each of them. */
export const issuedJwts: string[] = []

export async function signJwt (claims: JWTPayload, options: JwtOptions = {}): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? 'RS256', typ: 'JWT', ...(options.kid === undefined ? {} : { kid: options.kid }) })
    .setIssuer(options.issuer ?? ISSUER)
    .setAudience(options.audience ?? AUDIENCE)
    .setSubject(options.subject ?? 'idp|subject-1')
    .setIssuedAt()
  if (options.expiresIn !== null) jwt.setExpirationTime(options.expiresIn ?? '10m')
  if (options.notBefore !== undefined) jwt.setNotBefore(options.notBefore)
  const token = await jwt.sign(options.key ?? RSA_PRIVATE_KEY)
  issuedJwts.push(token)
  return token
}

export async function tokenFor (userIds: string | string[], extra: JWTPayload = {}, options: JwtOptions = {}): Promise<string> {
  return await signJwt({ mangopay_user_id: userIds, ...extra }, options)
}

export interface LogCapture {
  logger: Logger
  lines: () => Array<Record<string, unknown>>
  text: () => string
}

/** The broker's own logger (same redaction, same format), writing into memory. */
export function captureLogs (level = 'debug'): LogCapture {
  const chunks: string[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString())
      callback()
    }
  })
  const logger = createLogger(level, stream)
  return {
    logger,
    text: () => chunks.join(''),
    lines: () => chunks.join('').split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, unknown>)
  }
}

export function baseEnv (mangopayBaseUrl: string, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    MANGOPAY_BASE_URL: mangopayBaseUrl,
    MANGOPAY_CLIENT_ID: CLIENT_ID,
    MANGOPAY_API_KEY: API_KEY,
    MANGOPAY_TIMEOUT_MS: '2000',
    AUTH_MODE: 'jwt',
    AUTH_JWT_PUBLIC_KEY: RSA_PUBLIC_PEM,
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    LOG_LEVEL: 'debug',
    // Every broker a test builds gets a metrics port of its own (the default, 9464, would collide).
    METRICS_PORT: '0',
    // Most tests mint far more for one user than an honest page does, against tiny quotas: the fair
    // quota stays out of their way. test/fair-quota*.test.ts run it with the shipped defaults.
    TOKEN_BUDGET_PER_USER: '1000000',
    TOKEN_BUDGET_PER_SESSION: '1000000',
    TOKEN_BUDGET_FIRST_TOKEN_SHARE: '0',
    ...overrides
  }
}

/** `baseEnv` for a server process of its own: a port the kernel picks, info logs, no shutdown delay. */
export function serverEnv (mangopayBaseUrl: string, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return baseEnv(mangopayBaseUrl, { HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', SHUTDOWN_DELAY_MS: '0', ...overrides })
}

/** A loopback port nothing listens on: bound once, then released. */
export async function unusedPort (): Promise<number> {
  const probe = createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as AddressInfo
  probe.close()
  await once(probe, 'close')
  return port
}

export async function startTestEmulator (t: TestContext, options: Partial<EmulatorOptions> = {}): Promise<Emulator> {
  const emulator = await startEmulator({ clientId: CLIENT_ID, apiKey: API_KEY, ...options })
  t.teardown(async () => await emulator.close())
  return emulator
}

export interface TestApp {
  app: FastifyInstance
  emulator: Emulator
  logs: LogCapture
  config: Config
}

/**
 * A fresh broker in front of a fresh emulator on port 0. On teardown, the captured logs are
 * checked for every secret the test could have leaked: API key, Basic credential, bearers,
 * minted tokens and JWTs.
 */
export async function buildTestApp (t: TestContext, options: { env?: Record<string, string | undefined>, emulator?: Partial<EmulatorOptions>, deps?: AppDeps } = {}): Promise<TestApp> {
  const emulator = await startTestEmulator(t, options.emulator)
  const config = loadConfig(baseEnv(emulator.url, options.env))
  const logs = captureLogs()
  const app = await buildApp(config, { logger: logs.logger, ...options.deps })
  t.teardown(async () => {
    await app.close()
    assertNoSecrets(logs.text(), emulator)
  })
  return { app, emulator, logs, config }
}

export class SecretLeak extends Error {}

/** Throws if any secret the emulator or the tests produced appears in `text`. */
export function assertNoSecrets (text: string, emulator: Emulator): void {
  const secrets = [
    API_KEY,
    Buffer.from(`${CLIENT_ID}:${API_KEY}`).toString('base64'),
    ...emulator.control.bearers.map(b => b.token),
    ...emulator.control.minted.map(m => m.token),
    ...issuedJwts
  ]
  for (const secret of secrets) {
    if (text.includes(secret)) throw new SecretLeak(`a secret (${secret.slice(0, 6)}…) reached the logs`)
  }
}

/** Forward mode (SPEC §3.1) against the session endpoint at `url`, its answers not cached. */
export function forwardModeEnv (url: string): Record<string, string> {
  return { AUTH_MODE: 'forward', AUTH_FORWARD_URL: url, AUTH_FORWARD_CACHE_TTL_MS: '0' }
}

export function post (app: FastifyInstance, url: string, options: { token?: string, body?: unknown, headers?: Record<string, string> } = {}): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { ...options.headers }
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
  if (options.body !== undefined) headers['content-type'] ??= 'application/json'
  return app.inject({
    method: 'POST',
    url,
    headers,
    ...(options.body === undefined ? {} : { payload: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) })
  })
}

/** What `assertProblem` needs of a response: app.inject's answer, or a real one with its body read. */
export interface AnswerLike { statusCode: number, headers: Record<string, unknown>, body: string }

/**
 * Asserts an SPEC §2 refusal: the status and `code`, application/problem+json, no-store, the
 * request id echoed in the body, and nothing a frontend must never see (stack frames, file
 * paths, the API key, a JWT). Returns the parsed body.
 */
export function assertProblem (t: Test, res: AnswerLike, status: number, code: string): Record<string, any> {
  t.equal(res.statusCode, status, `status ${status}`)
  t.match(String(res.headers['content-type']), /^application\/problem\+json/, 'problem+json')
  t.equal(res.headers['cache-control'], 'no-store', 'cache-control: no-store')
  let body: Record<string, any> = {}
  try {
    body = JSON.parse(res.body)
  } catch {
    t.fail(`the body is not JSON: ${res.body.slice(0, 80)}`)
  }
  t.equal(body.code, code, `code ${code}`)
  t.equal(body.status, status)
  t.equal(body.type, 'about:blank')
  t.type(body.title, 'string')
  t.type(body.detail, 'string')
  t.equal(body.requestId, res.headers['x-request-id'], 'requestId matches x-request-id')
  t.notMatch(res.body, /\bat \S+ \(|\n\s+at |(?:\/|\\)(?:src|node_modules|work)(?:\/|\\)|\.[cm]?[jt]s:\d+/, 'no stack frames or file paths')
  for (const secret of [API_KEY, ...issuedJwts]) {
    if (res.body.includes(secret)) t.fail('a secret reached the problem body')
  }
  return body
}

/** GET on the METRICS_PORT listener (SPEC §8 "Ports"): `/metrics`, or the detailed `/readyz`. */
export async function opsGet (app: FastifyInstance, path: string): Promise<AnswerLike & { json: () => any }> {
  await app.ready()
  const port = app.metrics.listeningOn?.port
  if (port === undefined) throw new Error('the metrics port is not listening')
  const res = await request(`http://127.0.0.1:${String(port)}${path}`)
  const body = await res.body.text()
  return { statusCode: res.statusCode, headers: res.headers, body, json: () => JSON.parse(body) }
}

export interface ServerProcess {
  child: ChildProcessByStdio<null, Readable, Readable>
  /** Resolves with the exit code and signal. */
  exited: Promise<[number | null, NodeJS.Signals | null]>
  stdout: () => string
  stderr: () => string
}

/**
 * The real server (`src/server.ts`) as a child process with exactly `env` (plus PATH and HOME;
 * undefined values are left out, so `baseEnv(url, { MANGOPAY_API_KEY: undefined })` unsets one),
 * its output collected; killed on teardown if still running.
 */
export function spawnServer (t: TestContext, env: Record<string, string | undefined>): ServerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: join(import.meta.dirname, '..'),
    env: Object.fromEntries(Object.entries({ PATH: process.env.PATH, HOME: process.env.HOME, ...env }).filter(([, v]) => v !== undefined)),
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  return { child, exited, stdout: () => stdout, stderr: () => stderr }
}

/** Polls `condition` every 20 ms until it holds; fails with `what` after `timeoutMs` (of real time: tests move Date.now). */
export async function until (what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}
