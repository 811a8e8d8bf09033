import { randomInt } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { Agent, request } from 'undici'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config/index.js'
import { seededRandom } from '../src/emulator/chaos.js'
import type { Emulator, Fault, FaultTarget } from '../src/emulator/index.js'
import { STATUS, type ErrorCode } from '../src/errors.js'
import { ownRedis, Progress } from './chaos-helpers.js'
import {
  API_KEY, CLIENT_ID, assertNoSecrets, baseEnv, captureLogs, issuedJwts, startTestEmulator, tokenFor, type LogCapture, type TestContext
} from './helpers.js'

/**
 * Issue item 12, chaos under load: two brokers sharing a Redis of their own, in front of the
 * emulator over loopback, serve concurrent token traffic from several clients while Mangopay
 * resets connections, hangs and answers 500 and 429 at random, and Redis is killed and started
 * again twice. No one gets another user's token, no secret reaches a log line, every answer is
 * a documented code, and once the faults stop every user is served again.
 * Replay a run with CHAOS_SEED=<the seed printed first> npx tap test/chaos.test.ts.
 */

const seed = process.env.CHAOS_SEED === undefined ? randomInt(2 ** 31) : Number(process.env.CHAOS_SEED)
if (!Number.isSafeInteger(seed)) throw new Error(`CHAOS_SEED must be an integer, got ${String(process.env.CHAOS_SEED)}`)
const USERS = 24
const CLIENTS = 4
const LOOPS_PER_CLIENT = 3
/** After this many answers Redis is killed, started again, killed, started again; then traffic stops. */
const REDIS_STEPS = [60, 90, 150, 180]
const TOTAL_ANSWERS = 240
const RECOVERY_TRIES = 100
const CHANCES = { reset: 0.08, hang: 0.04, error: 0.08, rate_limited: 0.04 }
const FIRST_FAULTS: Array<[FaultTarget, Fault]> = [
  ['oauth', { kind: 'reset' }],
  ['recipient', { kind: 'hang' }],
  ['checkout', { kind: 'status', status: 500 }],
  ['embedded', { kind: 'rate-limited', resetInS: 1 }]
]

// internal_error is in the table but not in SPEC §2: under chaos it would be a bug.
const DOCUMENTED = new Set(Object.keys(STATUS).filter(code => code !== 'internal_error'))

type Kind = 'recipients' | 'checkout'
interface Sent { user: number, named: string | undefined, kind: Kind }
interface Answer extends Sent { status: number, headers: IncomingHttpHeaders, body: string }

const userId = (user: number): string => `user_m_CHAOS${String(user).padStart(4, '0')}`

interface Broker { app: FastifyInstance, url: string, logs: LogCapture }

/** A broker listening on loopback; on teardown its logs are checked again, close included. */
async function startBroker (t: TestContext, emulator: Emulator, redisUrl: string, env: Record<string, string> = {}): Promise<Broker> {
  const logs = captureLogs()
  const config = loadConfig(baseEnv(emulator.url, {
    ...env,
    REDIS_URL: redisUrl,
    RATE_LIMIT_MAX: '1000000',
    MANGOPAY_TIMEOUT_MS: '1500',
    MANGOPAY_CIRCUIT_COOLDOWN_MS: '500',
    METRICS_PORT: '0'
  }))
  const app = await buildApp(config, { logger: logs.logger })
  t.teardown(async () => {
    await app.close()
    assertNoSecrets(logs.text(), emulator)
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  return { app, url: `http://127.0.0.1:${port}`, logs }
}

async function send (agent: Agent, broker: Broker, jwt: string, sent: Sent): Promise<Answer> {
  const res = await request(`${broker.url}/v1/tokens/${sent.kind}`, {
    method: 'POST',
    dispatcher: agent,
    headers: { authorization: `Bearer ${jwt}`, ...(sent.named === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(sent.named === undefined ? {} : { body: JSON.stringify({ userId: sent.named }) })
  })
  return { ...sent, status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

/** What is wrong with `answer`, given every token the emulator minted (none when all is well). */
function problems (answer: Answer, minted: Map<string, { userId: string, kind: string }>): string[] {
  const asker = userId(answer.user)
  const crossUser = answer.named !== undefined && answer.named !== asker
  const what = `${answer.status} to ${asker} (${answer.kind}${crossUser ? `, naming ${String(answer.named)}` : ''})`
  if (answer.headers['cache-control'] !== 'no-store') return [`${what}: without Cache-Control: no-store`]
  if (answer.status === 200) {
    const body = JSON.parse(answer.body) as { clientToken: string, userId: string }
    const token = minted.get(body.clientToken)
    const wrong: string[] = []
    if (crossUser) wrong.push(`${what}: a token for a user the session is not allowed`)
    if (token === undefined) wrong.push(`${what}: a token Mangopay never minted`)
    else if (token.userId !== asker) wrong.push(`${what}: a token minted for ${token.userId}`)
    else if (token.kind !== (answer.kind === 'checkout' ? 'checkout' : 'recipient')) wrong.push(`${what}: a token of the other kind`)
    if (body.userId !== asker) wrong.push(`${what}: told userId ${body.userId}`)
    return wrong
  }
  let code: string | undefined
  try {
    code = (JSON.parse(answer.body) as { code?: string }).code
  } catch {}
  if (!String(answer.headers['content-type']).startsWith('application/problem+json')) return [`${what}: not problem+json`]
  if (code === undefined || !DOCUMENTED.has(code)) return [`${what}: undocumented code ${String(code)}`]
  if (STATUS[code as ErrorCode] !== answer.status) return [`${what}: ${code} is documented as ${STATUS[code as ErrorCode]}`]
  if ((answer.status === 429 || answer.status === 503) && !/^[1-9]\d*$/.test(String(answer.headers['retry-after']))) {
    return [`${what}: ${code} without Retry-After`]
  }
  if (crossUser && answer.status < 500 && code !== 'forbidden_user') return [`${what}: ${code} for a user the session is not allowed`]
  return []
}

t.test('chaos under load: no crossed tokens, no leaked secrets, only documented codes, then recovery', async t => {
  t.comment(`chaos seed ${seed}: replay with CHAOS_SEED=${seed}`)
  const random = seededRandom(seed)
  const emulator = await startTestEmulator(t)
  const redis = await ownRedis(t)
  await redis.start()
  // The second broker hands a user's token again while it has 10 minutes left: shared mints under faults too.
  const brokers = [await startBroker(t, emulator, redis.url), await startBroker(t, emulator, redis.url, { EMBEDDED_TOKEN_REUSE_MIN_TTL_S: '600' })]
  const jwts = await Promise.all(Array.from({ length: USERS }, async (_, user) => await tokenFor(userId(user), {}, { subject: `idp|chaos-${user}` })))
  const agents = Array.from({ length: CLIENTS }, () => new Agent({ connections: LOOPS_PER_CLIENT, headersTimeout: 30_000, bodyTimeout: 30_000 }))
  t.teardown(async () => await Promise.all(agents.map(async agent => await agent.close())))

  const answers: Answer[] = []
  const failures: string[] = []
  const progress = new Progress()
  const run = { stopped: false }

  // Each loop draws from its own generator, so its sequence of requests replays from the seed.
  async function client (agent: Agent, loop: number): Promise<void> {
    const draw = seededRandom(seed + 1 + loop)
    while (!run.stopped) {
      const user = Math.floor(draw() * USERS)
      const roll = draw()
      const named = roll < 0.1 ? userId((user + 1 + Math.floor(draw() * (USERS - 1))) % USERS) : roll < 0.3 ? userId(user) : undefined
      const sent: Sent = { user, named, kind: draw() < 0.5 ? 'recipients' : 'checkout' }
      const broker = brokers[Math.floor(draw() * brokers.length)] as Broker
      try {
        answers.push(await send(agent, broker, jwts[user] as string, sent))
      } catch (err) {
        failures.push(`no answer to ${userId(user)}: ${(err as Error).message}`)
      }
      progress.answered()
    }
  }

  // One of each fault for sure, whatever the draws; then the seeded random ones.
  const callsBefore = emulator.control.calls.total
  for (const [target, fault] of FIRST_FAULTS) emulator.control.inject({ target, times: 1, fault })
  emulator.control.chaos({ seed: Math.floor(random() * 2 ** 31), chances: CHANCES })
  const traffic = agents.flatMap((agent, c) => Array.from({ length: LOOPS_PER_CLIENT }, async (_, l) => await client(agent, c * LOOPS_PER_CLIENT + l)))
  try {
    for (const [i, answered] of REDIS_STEPS.entries()) {
      await progress.reached(answered)
      if (i % 2 === 0) await redis.kill()
      else await redis.start()
    }
    await progress.reached(TOTAL_ANSWERS)
  } finally {
    run.stopped = true
    await Promise.all(traffic)
    emulator.control.clearFaults()
  }

  const tally: Record<string, number> = {}
  for (const answer of answers) {
    const key = answer.status === 200 ? '200' : `${answer.status} ${/"code":"(\w+)"/.exec(answer.body)?.[1] ?? '?'}`
    tally[key] = (tally[key] ?? 0) + 1
  }
  t.comment(`answers: ${JSON.stringify(tally)}; Mangopay faults drawn: ${JSON.stringify(emulator.control.chaosDrawn)}`)
  const { none, ...faults } = emulator.control.chaosDrawn
  t.ok(Object.values(faults).some(count => count > 0), `random faults were drawn (seed ${seed})`)
  // A call meets a rule with times left, or else draws: the calls not drawn for are the rules met.
  const drawn = none + Object.values(faults).reduce((sum, count) => sum + count, 0)
  t.equal(emulator.control.calls.total - callsBefore - drawn, FIRST_FAULTS.length, `each of the first faults was met (seed ${seed})`)
  t.ok(answers.some(a => a.status === 200) && answers.some(a => a.status >= 500), `the chaos both served and refused (seed ${seed})`)

  // Once the faults stop, each user is served by each broker within a bounded number of tries.
  const unrecovered: string[] = []
  await Promise.all(brokers.flatMap((broker, b) => jwts.map(async (jwt, user) => {
    for (let tries = 0; tries < RECOVERY_TRIES; tries++) {
      const answer = await send(agents[user % CLIENTS] as Agent, broker, jwt, { user, named: undefined, kind: user % 2 === 0 ? 'recipients' : 'checkout' })
      answers.push(answer)
      if (answer.status === 200) return
      await sleep(100)
    }
    unrecovered.push(`${userId(user)} on broker ${b}`)
  })))
  t.same(unrecovered, [], `every user gets a token from both brokers within ${RECOVERY_TRIES} tries (seed ${seed})`)
  for (const broker of brokers) {
    let ready = 0
    for (let tries = 0; tries < RECOVERY_TRIES && ready !== 200; tries++) {
      ready = (await broker.app.inject({ method: 'GET', url: '/readyz' })).statusCode
      if (ready !== 200) await sleep(100)
    }
    t.equal(ready, 200, `both brokers are ready again (seed ${seed})`)
  }

  const minted = new Map(emulator.control.minted.map(m => [m.token, m]))
  t.ok(minted.size < 10_000, 'the emulator still holds every minted token')
  t.same(failures, [], `every request got an answer (seed ${seed})`)
  t.same(answers.flatMap(answer => problems(answer, minted)), [], `every answer is the asker's token or a documented refusal (seed ${seed})`)

  const secrets = [API_KEY, Buffer.from(`${CLIENT_ID}:${API_KEY}`).toString('base64'), ...emulator.control.bearers.map(b => b.token), ...minted.keys(), ...issuedJwts]
  t.notOk(answers.some(a => a.status !== 200 && secrets.some(s => a.body.includes(s))), 'no secret in an error body')
  for (const [b, broker] of brokers.entries()) {
    t.doesNotThrow(() => assertNoSecrets(broker.logs.text(), emulator), `no secret in broker ${b}'s ${broker.logs.lines().length} log lines (seed ${seed})`)
  }
})
