import { randomUUID } from 'node:crypto'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../src/app.js'
import { loadConfig } from '../src/config/index.js'
import { ManualClock } from './manual-clock.js'
import { closeRedisClient, createRedisClient } from '../src/redis/index.js'
import { BearerStore, HARD_MARGIN_MS, refreshAtFor, type Bearer } from '../src/mangopay/bearer-store.js'
import { apiKeyId, RedisSharedBearers, sharedStateScope } from '../src/mangopay/shared-bearer.js'
import type { Emulator } from '../src/emulator/index.js'
import {
  API_KEY, CLIENT_ID, assertNoSecrets, assertProblem, baseEnv, buildTestApp, captureLogs, post, tokenFor,
  USER_A, type TestContext
} from './helpers.js'

/**
 * SPEC §5 "Horizontal scale": with REDIS_URL the bearer (encrypted at rest), its single-flight
 * lock and the quota view are shared by every instance. Real Redis on 127.0.0.1:6379, a fresh
 * key prefix per test, two brokers in front of one emulator.
 */

const REDIS_URL = 'redis://127.0.0.1:6379'
const CLOSED_PORT_URL = 'redis://127.0.0.1:1'
const RECIPIENTS = '/v1/tokens/recipients'
const CHECKOUT = '/v1/tokens/checkout'
const BASE_URL = 'http://127.0.0.1:9/'
const ROTATED_KEY = 'sk_test_embedded_rotated_9f8e7d6c5b4a3210'

/** A fresh prefix, and a plain client (no prefix) that removes everything under it afterwards. */
function redisForTest (t: TestContext): { prefix: string, redis: Redis } {
  const prefix = `broker-test-shared-${randomUUID()}:`
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  t.teardown(async () => {
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  })
  return { prefix, redis }
}

/** A second broker in front of the first one's emulator, its logs checked for secrets too. */
async function secondInstance (t: TestContext, emulator: Emulator, env: Record<string, string>, deps: AppDeps = {}): Promise<FastifyInstance> {
  const logs = captureLogs()
  const app = await buildApp(loadConfig(baseEnv(emulator.url, env)), { logger: logs.logger, ...deps })
  t.teardown(async () => {
    await app.close()
    assertNoSecrets(logs.text(), emulator)
  })
  return app
}

async function twoInstances (t: TestContext, deps: AppDeps = {}) {
  const { prefix, redis } = redisForTest(t)
  // A generous deadline: 200 requests at once on a busy 2-core machine must not time out.
  const env = { REDIS_URL, REDIS_KEY_PREFIX: prefix, RATE_LIMIT_MAX: '10000', MANGOPAY_TIMEOUT_MS: '30000' }
  const one = await buildTestApp(t, { env, deps })
  const two = await secondInstance(t, one.emulator, env, deps)
  return { a: one.app, b: two, emulator: one.emulator, logs: one.logs, prefix, redis }
}

/** Where the bearer of `apiKey` and its lock are kept: named by an id of the key, not the key. */
function bearerKeys (prefix: string, baseUrl: string, apiKey = API_KEY): { valueKey: string, lockKey: string } {
  const valueKey = `${prefix}bearer:${sharedStateScope(CLIENT_ID, baseUrl)}:${apiKeyId(apiKey, CLIENT_ID)}`
  return { valueKey, lockKey: `${valueKey}:lock` }
}

/** Waits (bounded) for a condition another process or timer makes true. */
async function eventually (condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const giveUpAt = performance.now() + timeoutMs
  while (performance.now() < giveUpAt) {
    if (await condition()) return true
    await sleep(10)
  }
  return await condition()
}

t.test('two instances, 200 concurrent cold requests: one OAuth call, one bearer, never in clear in Redis', async t => {
  const { a, b, emulator, prefix, redis } = await twoInstances(t)
  const jwt = await tokenFor(USER_A)
  const answers = await Promise.all(Array.from({ length: 200 }, async (_, i) => await post(i % 2 === 0 ? a : b, i % 3 === 0 ? CHECKOUT : RECIPIENTS, { token: jwt })))
  t.same(answers.filter(r => r.statusCode !== 200).map(r => r.statusCode), [], 'every request succeeds')
  t.equal(emulator.control.calls.oauth, 1, 'exactly one OAuth call for both instances')
  t.equal(emulator.control.minted.length, 200)
  t.equal(new Set(emulator.control.minted.map(m => m.bearer)).size, 1, 'every token was minted with the same bearer')
  t.equal(a.mangopay.heldBearer()?.token, b.mangopay.heldBearer()?.token, 'both instances hold it')

  const bearer = emulator.control.bearers[0]?.token ?? 'missing'
  const keys = await redis.keys(`${prefix}*`)
  const { valueKey, lockKey } = bearerKeys(prefix, new URL(emulator.url).href)
  t.ok(keys.includes(valueKey), 'the bearer key is named by client id, a hash of the base URL and an id of the API key')
  t.match(valueKey, /:[0-9a-f]{12}$/, 'a short id')
  t.notOk(keys.includes(lockKey), 'the lock was released')
  for (const key of keys) {
    t.notOk(key.includes(API_KEY), `${key}: no API key in the name`)
    if (await redis.type(key) !== 'string') continue
    const value = await redis.get(key) ?? ''
    for (const issued of emulator.control.bearers) {
      t.notOk(value.includes(issued.token) || value.includes(Buffer.from(issued.token).toString('base64')), `${key}: no bearer in clear`)
    }
    t.notOk(value.includes(API_KEY), `${key}: no API key`)
  }
  const stored = JSON.parse(await redis.get(valueKey) ?? '{}')
  t.same(Object.keys(stored).sort(), ['data', 'expiresAt', 'iv', 'obtainedAt', 'tag'])
  t.equal(Buffer.from(stored.iv, 'base64').length, 12, 'a 96-bit IV')
  t.equal(Buffer.from(stored.tag, 'base64').length, 16, 'a GCM tag')
  t.notOk(Buffer.from(stored.data, 'base64').toString('latin1').includes(bearer), 'the ciphertext is not the bearer')
  const ttl = await redis.pttl(valueKey)
  t.ok(ttl > 0 && ttl <= 1200_000 - HARD_MARGIN_MS, `kept only while usable (${ttl} ms)`)
})

t.test('after Mangopay revokes the bearer, both instances recover, with one OAuth call each', async t => {
  const clock = new ManualClock()
  const { a, b, emulator } = await twoInstances(t, { clock })
  const jwt = await tokenFor(USER_A)
  t.equal((await post(a, RECIPIENTS, { token: jwt })).statusCode, 200)
  t.equal((await post(b, RECIPIENTS, { token: jwt })).statusCode, 200)
  t.equal(emulator.control.calls.oauth, 1)
  const revoked = a.mangopay.heldBearer()?.token

  emulator.control.revokeBearers()
  const answers = await Promise.all(Array.from({ length: 40 }, async (_, i) => await post(i % 2 === 0 ? a : b, CHECKOUT, { token: jwt })))
  t.same(answers.filter(r => r.statusCode !== 200).map(r => r.statusCode), [], 'every request recovers')
  // The clock stands still: neither instance's new bearer was obtained after the other's
  // refused calls were sent, so neither can tell it from one revoked with the old bearer.
  t.equal(emulator.control.calls.oauth, 3, 'one re-authentication per instance, not one per request')
  const renewed = [a.mangopay.heldBearer()?.token, b.mangopay.heldBearer()?.token]
  t.notOk(renewed.includes(revoked), 'neither holds the revoked bearer')
  const lastMinted = emulator.control.minted.slice(-20)
  t.ok(lastMinted.every(m => renewed.includes(m.bearer)), 'the tokens after recovery were minted with the new bearers')
})

t.test('after a 401, a bearer another instance obtained before the refused call is not adopted: a new one is fetched', async t => {
  const clock = new ManualClock()
  const { a, b, emulator } = await twoInstances(t, { clock })
  const jwt = await tokenFor(USER_A)
  t.equal((await post(a, RECIPIENTS, { token: jwt })).statusCode, 200)
  t.equal((await post(b, RECIPIENTS, { token: jwt })).statusCode, 200)
  const first = a.mangopay.heldBearer()
  if (first === undefined) throw new Error('no bearer held')

  // A refreshes ahead and shares its new bearer; B, idle meanwhile, still holds the first one.
  clock.set(first.refreshAt + 1000)
  t.equal((await post(a, RECIPIENTS, { token: jwt })).statusCode, 200)
  t.ok(await eventually(() => a.mangopay.heldBearer()?.token !== first.token), 'A refreshed')
  t.equal(b.mangopay.heldBearer()?.token, first.token)

  // Mangopay revokes every bearer (a key reset, an incident): A's new one too.
  emulator.control.revokeBearers()
  const oauthBefore = emulator.control.calls.oauth
  const res = await post(b, RECIPIENTS, { token: jwt })
  t.equal(res.statusCode, 200, 'B re-authenticates and is served')
  t.equal(emulator.control.calls.oauth - oauthBefore, 1, 'with an OAuth call of its own')
  const renewed = b.mangopay.heldBearer()?.token
  t.not(renewed, a.mangopay.heldBearer()?.token, 'not A\'s bearer, revoked too')
  t.equal(emulator.control.minted.at(-1)?.bearer, renewed, 'the token was minted with the new bearer')
})

t.test('a quota pause on one instance pauses the other without any Mangopay call', async t => {
  const { a, b, emulator, prefix, redis } = await twoInstances(t, { quotaSyncIntervalMs: 50 })
  const jwt = await tokenFor(USER_A)
  t.equal((await post(a, RECIPIENTS, { token: jwt })).statusCode, 200)
  t.equal((await post(b, RECIPIENTS, { token: jwt })).statusCode, 200)
  t.equal(b.mangopay.quota().blocked, undefined, 'B is not paused by what it saw itself')

  emulator.control.setRemaining([0, 4000, 8000, 100000])
  const limited = await post(a, RECIPIENTS, { token: jwt })
  assertProblem(t, limited, 503, 'upstream_unavailable')
  const scope = sharedStateScope(CLIENT_ID, new URL(emulator.url).href)
  t.ok(await eventually(async () => /^\d+ rate_limited$/.test(await redis.get(`${prefix}quota:blocked:${scope}`) ?? '')), 'A published until when and why')
  t.ok(await redis.pttl(`${prefix}quota:blocked:${scope}`) > 0, 'the pause expires with the window')

  t.ok(await eventually(() => b.mangopay.quota().blocked !== undefined), 'B picks the pause up within a sync interval')
  t.equal(b.mangopay.quota().blocked?.until, a.mangopay.quota().blocked?.until, 'until the same instant')
  const calls = emulator.control.calls.total
  const refused = await post(b, CHECKOUT, { token: jwt })
  assertProblem(t, refused, 503, 'upstream_unavailable')
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(retryAfter > 0 && retryAfter <= 901, `Retry-After up to the reset (whole seconds) (${retryAfter})`)
  t.equal(emulator.control.calls.total, calls, 'B did not call Mangopay')
})

t.test('a rolling key rotation: instances on the old key and on the new one each share a bearer, neither replaces the other\'s', async t => {
  const { prefix, redis } = redisForTest(t)
  const env = { REDIS_URL, REDIS_KEY_PREFIX: prefix }
  const one = await buildTestApp(t, { env: { ...env, MANGOPAY_API_KEY: ROTATED_KEY } })
  const emulator = one.emulator
  const [oldOne, rotatedTwo, oldTwo] = await Promise.all([
    secondInstance(t, emulator, env),
    secondInstance(t, emulator, { ...env, MANGOPAY_API_KEY: ROTATED_KEY }),
    secondInstance(t, emulator, env)
  ])
  const jwt = await tokenFor(USER_A)
  // The emulator accepts one key at a time; Mangopay accepts both until the old one is revoked.
  const mintWith = async (app: FastifyInstance, apiKey: string): Promise<number> => {
    emulator.control.setApiKey(apiKey)
    return (await post(app, RECIPIENTS, { token: jwt })).statusCode
  }
  t.equal(await mintWith(one.app, ROTATED_KEY), 200, 'a rotated instance fetches a bearer with the new key')
  t.equal(await mintWith(oldOne, API_KEY), 200, 'one not rotated yet fetches one with the old key')
  t.equal(await mintWith(rotatedTwo, ROTATED_KEY), 200)
  t.equal(await mintWith(oldTwo, API_KEY), 200)
  t.equal(emulator.control.calls.oauth, 2, 'one OAuth call per key, not one per instance')
  const [newKeyBearer, oldKeyBearer] = emulator.control.bearers.map(b => b.token)
  t.equal(rotatedTwo.mangopay.heldBearer()?.token, newKeyBearer, 'the second rotated instance adopted the new key\'s bearer')
  t.equal(oldTwo.mangopay.heldBearer()?.token, oldKeyBearer, 'the second old-key instance the old key\'s')
  t.notOk(one.logs.text().includes(ROTATED_KEY), 'the rotated key is not logged')

  const baseUrl = new URL(emulator.url).href
  t.same((await redis.keys(`${prefix}bearer:*`)).sort(), [bearerKeys(prefix, baseUrl).valueKey, bearerKeys(prefix, baseUrl, ROTATED_KEY).valueKey].sort(), 'a bearer stored per key')
})

/** The shared store on its own, for cases the HTTP surface cannot reach precisely. */
function sharedBearers (t: TestContext, options: { prefix: string, url?: string, clock?: ManualClock, apiKey?: string }) {
  const logs = captureLogs()
  const redis = createRedisClient({ url: options.url ?? REDIS_URL, keyPrefix: options.prefix }, logs.logger)
  t.teardown(async () => await closeRedisClient(redis))
  const clock = options.clock ?? new ManualClock()
  const shared = new RedisSharedBearers({ redis, clock, log: logs.logger, clientId: CLIENT_ID, baseUrl: BASE_URL, apiKey: options.apiKey ?? API_KEY, timeoutMs: 1000 })
  return { shared, clock, logs }
}

function bearerAt (clock: ManualClock, token: string, lifetimeS = 1200): Bearer {
  const obtainedAt = clock.now()
  const expiresAt = obtainedAt + lifetimeS * 1000
  return { token, obtainedAt, expiresAt, refreshAt: refreshAtFor(obtainedAt, expiresAt) }
}

/**
 * A TCP proxy in front of Redis that can hold back its `+OK` answers (a lock SET's) past the
 * client's commandTimeout, as a congested link does: Redis has set the key, the client never
 * hears it. Hold only once the client's handshake (CLIENT SETINFO answers +OK too) is over:
 * its ready check's INFO answer has gone through.
 */
interface SlowOkProxy { url: string, handshakeDone: () => boolean, holdOkMs: number }

async function slowOkProxy (t: TestContext): Promise<SlowOkProxy> {
  const sockets = new Set<Socket>()
  let infoSeen = false
  const proxy: SlowOkProxy = { url: '', handshakeDone: () => infoSeen, holdOkMs: 0 }
  const server = createServer(client => {
    const upstream = connect(6379, '127.0.0.1')
    sockets.add(client).add(upstream)
    client.on('data', (chunk: Buffer) => upstream.write(chunk))
    // Answers keep their order: each chunk waits for the one before it.
    let previous = Promise.resolve()
    upstream.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1')
      if (text.includes('redis_version:')) infoSeen = true
      const holdMs = text.startsWith('+OK') ? proxy.holdOkMs : 0
      previous = previous.then(async () => {
        if (holdMs > 0) await sleep(holdMs)
        if (!client.destroyed) client.write(chunk)
      })
    })
    const end = (): void => {
      client.destroy()
      upstream.destroy()
    }
    for (const socket of [client, upstream]) socket.on('error', end).on('close', end)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  proxy.url = `redis://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  return proxy
}

t.test('a lock whose SET answer came too late is released once Redis answers: the other instances are served within their deadline', async t => {
  const { prefix, redis } = redisForTest(t)
  const proxy = await slowOkProxy(t)
  // The lock lives 3000 + 2000 ms: left to expire, it would outlast B's request (3000 ms).
  const env = { REDIS_KEY_PREFIX: prefix, RATE_LIMIT_MAX: '1000', MANGOPAY_TIMEOUT_MS: '3000' }
  const one = await buildTestApp(t, { env: { ...env, REDIS_URL: proxy.url } })
  const b = await secondInstance(t, one.emulator, { ...env, REDIS_URL })
  const jwt = await tokenFor(USER_A)
  t.ok(await eventually(proxy.handshakeDone), 'A is connected to Redis through the proxy')

  // Redis sets A's lock, but its answer reaches A after A's commandTimeout (1000 ms).
  proxy.holdOkMs = 1500
  t.equal((await post(one.app, RECIPIENTS, { token: jwt })).statusCode, 200, 'A fetches a bearer of its own')
  proxy.holdOkMs = 0
  t.ok(one.logs.lines().some(l => l.msg === 'Redis is unreachable: the Mangopay bearer is fetched and kept locally until it is back'))

  const res = await post(b, RECIPIENTS, { token: jwt })
  t.equal(res.statusCode, 200, 'B, needing a bearer, is not held past its deadline by the lock A lost track of')
  t.equal(one.emulator.control.calls.oauth, 2, 'A\'s OAuth call and B\'s')
  t.equal(one.emulator.control.minted.at(-1)?.bearer, b.mangopay.heldBearer()?.token)
  t.equal(await redis.exists(bearerKeys(prefix, new URL(one.emulator.url).href).lockKey), 0, 'no lock left behind')
  // Redis ran A's release at once; its answer reaches A behind the held-back one.
  t.ok(await eventually(() => one.logs.lines().some(l => l.msg === 'a Redis lock this instance lost track of was released')), 'A released it')
})

t.test('a dead holder\'s lock is waited on until the waiting request\'s deadline, not until it expires', async t => {
  const { prefix, redis } = redisForTest(t)
  // MANGOPAY_TIMEOUT_MS 1000: a lock lives 3000 ms.
  const { shared, clock, logs } = sharedBearers(t, { prefix })
  const { lockKey } = bearerKeys(prefix, BASE_URL)
  await redis.set(lockKey, 'crashed-instance', 'PX', 3000)
  let lockSeenByFetch: string | null = 'not fetched'
  const bearer = await shared.obtain(() => true, async () => {
    lockSeenByFetch = await redis.get(lockKey)
    return bearerAt(clock, 'bearer-local')
  })
  t.equal(bearer.token, 'bearer-local')
  t.equal(lockSeenByFetch, 'crashed-instance', 'fetched while the dead holder\'s lock was still there')
  t.ok(logs.lines().some(l => l.msg === 'no shared Mangopay bearer arrived in time from the instance fetching it; fetching one locally'))
})

t.test('Redis unreachable: the bearer is fetched locally, with one warning, and never fails because of Redis', async t => {
  const clock = new ManualClock()
  const { shared, logs } = sharedBearers(t, { prefix: 'broker-test-shared-down:', url: CLOSED_PORT_URL, clock })
  let fetches = 0
  const fetch = async (): Promise<Bearer> => bearerAt(clock, `local-${++fetches}`)

  t.equal((await shared.obtain(() => true, fetch)).token, 'local-1', 'the local OAuth call answers')
  t.equal((await shared.obtain(() => true, fetch)).token, 'local-2', 'and again, without waiting on Redis')
  shared.discard('local-2')
  const warnings = logs.lines().filter(l => l.msg === 'Redis is unreachable: the Mangopay bearer is fetched and kept locally until it is back')
  t.equal(warnings.length, 1, 'one warning for the outage')

  const oauthDown = new Error('oauth refused')
  await t.rejects(shared.obtain(() => true, async () => { throw oauthDown }), oauthDown, 'an OAuth failure is still reported as such')

  const store = new BearerStore({ clock, shared, fetchBearer: async () => ({ accessToken: 'bearer-local', expiresIn: 1200 }) })
  t.equal(await store.current(), 'bearer-local', 'the bearer store works through it')
  store.invalidate('bearer-local')
  t.equal(await store.current(), 'bearer-local')
})

t.test('across instances: one fetch under the lock, the others wait for it and adopt it', async t => {
  const { prefix } = redisForTest(t)
  const clock = new ManualClock()
  const one = sharedBearers(t, { prefix, clock })
  const two = sharedBearers(t, { prefix, clock })
  let release: (bearer: Bearer) => void = () => {}
  let fetchesOne = 0
  let fetchesTwo = 0
  const first = one.shared.obtain(() => true, async () => {
    fetchesOne++
    return await new Promise<Bearer>(resolve => { release = resolve })
  })
  t.ok(await eventually(() => fetchesOne === 1), 'the first instance fetches')
  const second = two.shared.obtain(() => true, async () => { fetchesTwo++; return bearerAt(clock, 'bearer-two') })
  await sleep(150)
  t.equal(fetchesTwo, 0, 'the second instance waits for the lock holder instead of calling Mangopay')
  release(bearerAt(clock, 'bearer-one'))
  t.equal((await first).token, 'bearer-one')
  t.equal((await second).token, 'bearer-one', 'and adopts its bearer')
  t.equal(fetchesTwo, 0)
})

t.test('a lock holder that disappears does not block the others: its lock expires and they fetch', async t => {
  const { prefix, redis } = redisForTest(t)
  const { shared, clock } = sharedBearers(t, { prefix })
  const { lockKey } = bearerKeys(prefix, BASE_URL)
  await redis.set(lockKey, 'crashed-instance', 'PX', 300)
  let lockSeenByFetch: string | null = 'not fetched'
  const bearer = await shared.obtain(() => true, async () => {
    lockSeenByFetch = await redis.get(lockKey)
    return bearerAt(clock, 'bearer-after-crash')
  })
  t.equal(bearer.token, 'bearer-after-crash')
  t.not(lockSeenByFetch, 'crashed-instance', 'the fetch ran only once the dead holder\'s lock had expired')
  t.type(lockSeenByFetch, 'string', 'and under a lock of its own')
  t.equal(await redis.exists(lockKey), 0, 'which it released')

  const failing = new Error('oauth refused')
  await t.rejects(shared.obtain(() => false, async () => { throw failing }), failing, 'a failed OAuth call is reported')
  t.equal(await redis.exists(lockKey), 0, 'and releases the lock too')
})

t.test('each API key has a bearer of its own; a stored bearer that does not decrypt (tampered times) is ignored and replaced', async t => {
  const { prefix, redis } = redisForTest(t)
  const clock = new ManualClock()
  const current = sharedBearers(t, { prefix, clock })
  const rotated = sharedBearers(t, { prefix, clock, apiKey: ROTATED_KEY })
  const unexpected = async (): Promise<Bearer> => bearerAt(clock, 'unexpected')
  await current.shared.obtain(() => true, async () => bearerAt(clock, 'bearer-old-key'))

  let fetched = 0
  const adopted = await rotated.shared.obtain(() => true, async () => { fetched++; return bearerAt(clock, 'bearer-new-key') })
  t.equal(adopted.token, 'bearer-new-key', 'another key does not see it: a new bearer is fetched')
  t.equal(fetched, 1)
  t.equal((await rotated.shared.obtain(() => true, unexpected)).token, 'bearer-new-key', 'and shared from then on')
  t.equal((await current.shared.obtain(() => true, unexpected)).token, 'bearer-old-key', 'the old key\'s stays, for the instances still on it')

  const { valueKey } = bearerKeys(prefix, BASE_URL, ROTATED_KEY)
  const stored = JSON.parse(await redis.get(valueKey) ?? '{}')
  await redis.set(valueKey, JSON.stringify({ ...stored, expiresAt: stored.expiresAt + 3600_000 }), 'PX', 60_000)
  const afterTamper = await rotated.shared.obtain(() => true, async () => bearerAt(clock, 'bearer-after-tamper'))
  t.equal(afterTamper.token, 'bearer-after-tamper', 'a value whose expiry was changed is not trusted')
  t.ok(rotated.logs.lines().some(l => l.msg === 'the shared Mangopay bearer cannot be decrypted with this API key (altered in Redis?); it will be replaced'))

  current.shared.setApiKey(ROTATED_KEY)
  t.equal((await current.shared.obtain(() => true, unexpected)).token, 'bearer-after-tamper', 'once rotated, an instance shares the new key\'s bearer')
})

t.test('a rotation while waiting for the lock: the bearer then fetched with the new key is not stored under the old one', async t => {
  const { prefix, redis } = redisForTest(t)
  const { shared, clock } = sharedBearers(t, { prefix })
  const oldKey = bearerKeys(prefix, BASE_URL)
  await redis.set(oldKey.lockKey, 'other-instance', 'PX', 5000)
  let fetches = 0
  const obtained = shared.obtain(() => true, async () => { fetches++; return bearerAt(clock, 'bearer-new-key') })
  await sleep(100)
  shared.setApiKey(ROTATED_KEY)
  // The other instance gives up without a bearer: the waiter takes the old key's lock and fetches.
  await redis.del(oldKey.lockKey)
  t.equal((await obtained).token, 'bearer-new-key')
  t.equal(fetches, 1)
  t.equal(await redis.exists(oldKey.valueKey), 0, 'nothing stored under the old key')
  t.equal(await redis.exists(oldKey.lockKey), 0, 'and its lock released')
  t.equal(await redis.exists(bearerKeys(prefix, BASE_URL, ROTATED_KEY).valueKey), 0, 'nor under the new key, whose lock it did not hold')
})

t.test('discard removes the shared bearer only while it is still the refused one', async t => {
  const { prefix, redis } = redisForTest(t)
  const { shared, clock } = sharedBearers(t, { prefix })
  const { valueKey } = bearerKeys(prefix, BASE_URL)
  await shared.obtain(() => true, async () => bearerAt(clock, 'bearer-2'))
  shared.discard('bearer-1')
  await sleep(100)
  t.equal(await redis.exists(valueKey), 1, 'a stale refusal leaves its replacement in place')
  shared.discard('bearer-2')
  t.ok(await eventually(async () => await redis.exists(valueKey) === 0), 'the refused bearer is removed')
})

t.test('bearer stores on two instances: refresh ahead, rotation and 401 share one OAuth call each', async t => {
  const { prefix } = redisForTest(t)
  const clock = new ManualClock()
  const start = clock.now()
  let fetches = 0
  const store = (shared: RedisSharedBearers) => new BearerStore({ clock, shared, fetchBearer: async () => ({ accessToken: `bearer-${++fetches}`, expiresIn: 1200 }) })
  const a = store(sharedBearers(t, { prefix, clock }).shared)
  const b = store(sharedBearers(t, { prefix, clock }).shared)

  t.equal(await a.current(), 'bearer-1')
  t.equal(await b.current(), 'bearer-1', 'a cold instance adopts the shared bearer')
  t.equal(fetches, 1)
  t.equal(b.peek()?.expiresAt, a.peek()?.expiresAt, 'with its real expiry')

  clock.set(start + 960_000)
  t.equal(await a.current(), 'bearer-1', 'refresh ahead: the old bearer serves meanwhile')
  t.ok(await eventually(() => a.peek()?.token === 'bearer-2'))
  t.equal(await b.current(), 'bearer-1')
  t.ok(await eventually(() => b.peek()?.token === 'bearer-2'), 'the other instance adopts the refreshed bearer')
  t.equal(fetches, 2, 'one OAuth call for the refresh of both')

  t.equal((await a.refresh()).token, 'bearer-3', 'an explicit refresh (key rotation) does call Mangopay')
  t.equal(fetches, 3)

  // Both refused calls were sent before A re-authenticates: B may adopt what A gets.
  const sentAt = clock.now()
  clock.advance(1)
  a.invalidate('bearer-3', sentAt)
  b.invalidate('bearer-2', sentAt)
  t.equal(await a.current(), 'bearer-4', 'after a 401 the refused bearer is not adopted again')
  t.equal(await b.current(), 'bearer-4', 'one obtained after the refused call is')
  t.equal(fetches, 4)

  clock.set(start + 960_000 + 1200_000)
  t.equal(await b.current(), 'bearer-5', 'an expired shared bearer is never used')
  t.equal(await a.current(), 'bearer-5')
  t.equal(fetches, 5)
})
