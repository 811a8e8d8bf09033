import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../src/app.js'
import { loadConfig } from '../src/config/index.js'
import { ManualClock } from './manual-clock.js'
import type { SecretsReloadResult } from '../src/mangopay/index.js'
import {
  API_KEY, assertNoSecrets, baseEnv, buildTestApp, captureLogs, CLIENT_ID, post, serverEnv, startTestEmulator, tokenFor, USER_A, type TestApp, spawnServer, until
} from './helpers.js'

/**
 * Key rotation without downtime (SPEC §4–§5): on SIGHUP the API key file is read again and a
 * bearer is fetched with the new key at once; a key Mangopay refuses is reported clearly and
 * the previous key stays in use. Driven through `app.reloadSecrets()` (what the SIGHUP
 * handler calls), and once through a real SIGHUP to the server process.
 */

const NEW_KEY = 'sk_test_embedded_rotated_9f8e7d6c5b4a3210'
const WRONG_KEY = 'sk_test_embedded_typo_0000000000000000'
const basic = (key: string): string => `Basic ${Buffer.from(`${CLIENT_ID}:${key}`).toString('base64')}`
const REFUSED = 'the new Mangopay API key was refused by Mangopay: the previous key stays in use; fix MANGOPAY_API_KEY_FILE and send SIGHUP again'
const REDIS_URL = 'redis://127.0.0.1:6379'

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'broker-rotation-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

interface Rotating extends TestApp {
  keyFile: string
  clock: ManualClock
  mint: () => ReturnType<typeof post>
  oauthCredentials: () => Array<string | undefined>
  lastOAuthCredential: () => string | undefined
}

/** The logs must not hold the rotated keys either. */
function assertNoRotatedKeys (text: string): void {
  for (const secret of [NEW_KEY, WRONG_KEY, basic(NEW_KEY).slice(6), basic(WRONG_KEY).slice(6)]) {
    if (text.includes(secret)) throw new Error('a rotated key reached the logs')
  }
}

async function setup (t: Test, env: Record<string, string> = {}): Promise<Rotating> {
  const keyFile = join(tempDir(t), 'mangopay-api-key')
  writeFileSync(keyFile, `${API_KEY}\n`)
  const clock = new ManualClock()
  const built = await buildTestApp(t, { env: { MANGOPAY_API_KEY: undefined, MANGOPAY_API_KEY_FILE: keyFile, RATE_LIMIT_MAX: '1000', ...env }, deps: { clock }, emulator: { clock } })
  const jwt = await tokenFor(USER_A)
  t.teardown(() => assertNoRotatedKeys(built.logs.text()))
  const oauthCredentials = (): Array<string | undefined> => built.emulator.control.received.filter(r => r.endpoint === 'oauth').map(r => r.headers.authorization)
  return {
    ...built,
    keyFile,
    clock,
    mint: async () => await post(built.app, '/v1/tokens/recipients', { token: jwt }),
    oauthCredentials,
    lastOAuthCredential: () => oauthCredentials().at(-1)
  }
}

/**
 * Past the bearer's refresh point a token request starts a background refresh with the key in
 * use, which Mangopay is slow to answer: a SIGHUP right after finds it in flight.
 */
async function startSlowRefresh (t: Test, broker: Rotating): Promise<void> {
  const held = broker.app.mangopay.heldBearer()
  if (held === undefined) throw new Error('no bearer held')
  broker.clock.set(held.refreshAt + 1000)
  broker.emulator.control.inject({ target: 'oauth', times: 1, fault: { kind: 'latency', ms: 500 } })
  t.equal((await broker.mint()).statusCode, 200, 'served by the current bearer while the refresh runs')
}

t.test('a new key in the file: the next bearer is fetched with it, at once', async t => {
  const broker = await setup(t)
  t.equal((await broker.mint()).statusCode, 200)
  t.equal(broker.lastOAuthCredential(), basic(API_KEY))
  const oldBearer = broker.app.mangopay.heldBearer()?.token

  writeFileSync(broker.keyFile, `${NEW_KEY}\n`)
  broker.emulator.control.setApiKey(NEW_KEY)
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'rotated', tls: 'none' })
  t.equal(broker.emulator.control.calls.oauth, 2, 'one OAuth call, right after the reload')
  t.equal(broker.lastOAuthCredential(), basic(NEW_KEY), 'with the new Basic credential')
  t.ok(broker.logs.lines().some(l => l.msg === 'Mangopay API key rotated: a bearer was obtained with the new key'))

  const res = await broker.mint()
  t.equal(res.statusCode, 200)
  const newBearer = broker.app.mangopay.heldBearer()?.token
  t.not(newBearer, oldBearer)
  t.equal(broker.emulator.control.minted.at(-1)?.bearer, newBearer, 'tokens are minted with the new bearer')

  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'unchanged', tls: 'none' }, 'a SIGHUP with nothing new')
  t.equal(broker.emulator.control.calls.oauth, 2, 'makes no OAuth call')
})

t.test('a key Mangopay refuses: a clear error, and the current bearer keeps serving', async t => {
  const broker = await setup(t)
  t.equal((await broker.mint()).statusCode, 200)
  const bearer = broker.app.mangopay.heldBearer()?.token

  writeFileSync(broker.keyFile, WRONG_KEY)
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'refused', tls: 'none' })
  t.equal(broker.lastOAuthCredential(), basic(WRONG_KEY), 'the new key was tried at once')
  t.equal(broker.emulator.control.calls.oauth, 2, 'once (a 401 is not retried)')
  t.match(broker.logs.lines().find(l => l.msg === REFUSED), { level: 50 }, 'an error line that says what to do')

  for (let i = 0; i < 3; i++) t.equal((await broker.mint()).statusCode, 200, 'token requests still succeed')
  t.equal(broker.app.mangopay.heldBearer()?.token, bearer, 'with the same bearer, not invalidated')
  t.equal(broker.emulator.control.minted.at(-1)?.bearer, bearer)
  t.equal(broker.emulator.control.calls.oauth, 2, 'and no further OAuth call')
  t.equal((await broker.app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200, 'still ready')

  // Fixed file, second SIGHUP: rotated.
  writeFileSync(broker.keyFile, NEW_KEY)
  broker.emulator.control.setApiKey(NEW_KEY)
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'rotated', tls: 'none' })
})

t.test('a refused key is not kept: the previous key fetches the next bearer, and the same file is checked again', async t => {
  const broker = await setup(t)
  t.equal((await broker.mint()).statusCode, 200)
  writeFileSync(broker.keyFile, WRONG_KEY)
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'refused', tls: 'none' })

  // The bearer held ages past its hard margin: the next token request needs a new one.
  const held = broker.app.mangopay.heldBearer()
  broker.clock.set((held?.expiresAt ?? 0) - 10_000)
  t.equal((await broker.mint()).statusCode, 200, 'token requests still succeed')
  t.same(broker.oauthCredentials(), [basic(API_KEY), basic(WRONG_KEY), basic(API_KEY)], 'the new bearer was fetched with the previous key')

  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'refused', tls: 'none' }, 'a SIGHUP with the same file checks it again')
  t.equal(broker.lastOAuthCredential(), basic(WRONG_KEY))

  writeFileSync(broker.keyFile, NEW_KEY)
  broker.emulator.control.setApiKey(NEW_KEY)
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'rotated', tls: 'none' }, 'the corrected file rotates')
  t.equal(broker.lastOAuthCredential(), basic(NEW_KEY))
})

t.test('Mangopay unavailable at the SIGHUP: unverified, and the new key stays for the next bearer', async t => {
  const broker = await setup(t)
  t.equal((await broker.mint()).statusCode, 200)
  writeFileSync(broker.keyFile, NEW_KEY)
  broker.emulator.control.setApiKey(NEW_KEY)
  broker.emulator.control.inject({ target: 'oauth', times: 3, fault: { kind: 'status', status: 503 } })
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'unverified', tls: 'none' })
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'unchanged', tls: 'none' }, 'the new key is the one in use')

  const held = broker.app.mangopay.heldBearer()
  broker.clock.set((held?.expiresAt ?? 0) - 10_000)
  t.equal((await broker.mint()).statusCode, 200)
  t.equal(broker.lastOAuthCredential(), basic(NEW_KEY), 'the next bearer was fetched with it')
})

t.test('a SIGHUP while a refresh with the old key is in flight tries the new key once it is done', async t => {
  t.test('a good key: rotated', async t => {
    const broker = await setup(t)
    t.equal((await broker.mint()).statusCode, 200)
    await startSlowRefresh(t, broker)
    writeFileSync(broker.keyFile, NEW_KEY)
    broker.emulator.control.setApiKey(NEW_KEY)
    t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'rotated', tls: 'none' })
    t.same(broker.oauthCredentials(), [basic(API_KEY), basic(API_KEY), basic(NEW_KEY)], 'the new key was sent after the refresh in flight')
    t.equal((await broker.mint()).statusCode, 200)
    t.equal(broker.emulator.control.minted.at(-1)?.bearer, broker.emulator.control.bearers.at(-1)?.token, 'tokens are minted with the bearer the new key obtained')
  })

  t.test('a wrong key: refused, though the refresh in flight succeeds', async t => {
    const broker = await setup(t)
    t.equal((await broker.mint()).statusCode, 200)
    await startSlowRefresh(t, broker)
    writeFileSync(broker.keyFile, WRONG_KEY)
    t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'refused', tls: 'none' })
    t.same(broker.oauthCredentials(), [basic(API_KEY), basic(API_KEY), basic(WRONG_KEY)], 'the wrong key was sent after the refresh in flight')
  })
})

/** A fresh Redis key prefix; everything under it is removed once the test's apps are closed. */
function redisPrefix (t: Test): string {
  const prefix = `broker-test-rotation-${randomUUID()}:`
  // Registered before the apps: teardowns run last first.
  t.teardown(async () => {
    const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
    const keys = await redis.keys(`${prefix}*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  })
  return prefix
}

/** Another broker on the same Redis, emulator and clock, with the key given inline. */
async function otherInstance (t: Test, broker: Rotating, prefix: string, apiKey: string): Promise<FastifyInstance> {
  const logs = captureLogs()
  const env = { REDIS_URL, REDIS_KEY_PREFIX: prefix, RATE_LIMIT_MAX: '1000', MANGOPAY_API_KEY: apiKey }
  const app = await buildApp(loadConfig(baseEnv(broker.emulator.url, env)), { logger: logs.logger, clock: broker.clock })
  t.teardown(async () => {
    await app.close()
    assertNoSecrets(logs.text(), broker.emulator)
    assertNoRotatedKeys(logs.text())
  })
  return app
}

/**
 * A SIGHUP while a refresh with the old key is in flight, both it and the rotation's own OAuth
 * call slow. The emulator knows one key at a time (Mangopay accepts both until the old one is
 * revoked): it takes `acceptedKey` once the old key's call is answered. Resolves while the
 * rotation's call is in flight, with the reload's outcome to come.
 */
async function rotateDuringSlowRefresh (t: Test, broker: Rotating, newKey: string, acceptedKey: string): Promise<{ reloading: Promise<SecretsReloadResult> }> {
  const held = broker.app.mangopay.heldBearer()
  if (held === undefined) throw new Error('no bearer held')
  broker.clock.set(held.refreshAt + 1000)
  broker.emulator.control.inject({ target: 'oauth', times: 2, fault: { kind: 'latency', ms: 800 } })
  t.equal((await broker.mint()).statusCode, 200, 'served by the current bearer while the refresh runs')
  await until('the refresh with the old key', () => broker.oauthCredentials().length === 2, 5000)
  writeFileSync(broker.keyFile, newKey)
  const reloading = broker.app.mangopay.reloadSecrets()
  await until('the rotation\'s call', () => broker.oauthCredentials().length === 3, 5000)
  broker.emulator.control.setApiKey(acceptedKey)
  return { reloading }
}

t.test('with REDIS_URL, a SIGHUP while a refresh with the old key is in flight shares that refresh\'s bearer under the old key only', async t => {
  t.test('a good key: an instance on the new key does not adopt the bearer obtained with the old one', async t => {
    const prefix = redisPrefix(t)
    const broker = await setup(t, { REDIS_URL, REDIS_KEY_PREFIX: prefix })
    t.equal((await broker.mint()).statusCode, 200)
    const rotated = await otherInstance(t, broker, prefix, NEW_KEY)
    const { reloading } = await rotateDuringSlowRefresh(t, broker, NEW_KEY, NEW_KEY)

    // While the rotation's call is in flight, an instance already on the new key needs a bearer.
    const res = await post(rotated, '/v1/tokens/recipients', { token: await tokenFor(USER_A) })
    t.same(await reloading, { apiKey: 'rotated', tls: 'none' })
    t.equal(res.statusCode, 200)
    t.same(broker.oauthCredentials(), [basic(API_KEY), basic(API_KEY), basic(NEW_KEY)], 'no OAuth call of its own')
    const [, oldKeyRefresh, newKeyBearer] = broker.emulator.control.bearers.map(b => b.token)
    t.equal(broker.emulator.control.minted.at(-1)?.bearer, newKeyBearer, 'its token was minted with the bearer the new key obtained')
    t.not(rotated.mangopay.heldBearer()?.token, oldKeyRefresh, 'not with the one the old key\'s refresh obtained')
  })

  t.test('a wrong key: an instance on the old key adopts the refresh\'s bearer', async t => {
    const prefix = redisPrefix(t)
    const broker = await setup(t, { REDIS_URL, REDIS_KEY_PREFIX: prefix })
    t.equal((await broker.mint()).statusCode, 200)
    const { reloading } = await rotateDuringSlowRefresh(t, broker, WRONG_KEY, API_KEY)
    t.same(await reloading, { apiKey: 'refused', tls: 'none' })
    const oldKeyRefresh = broker.emulator.control.bearers[1]?.token
    t.equal(broker.app.mangopay.heldBearer()?.token, oldKeyRefresh, 'the broker keeps the bearer its refresh obtained')

    const cold = await otherInstance(t, broker, prefix, API_KEY)
    t.equal((await post(cold, '/v1/tokens/recipients', { token: await tokenFor(USER_A) })).statusCode, 200)
    t.same(broker.oauthCredentials(), [basic(API_KEY), basic(API_KEY), basic(WRONG_KEY)], 'a cold instance on the old key makes no OAuth call')
    t.equal(cold.mangopay.heldBearer()?.token, oldKeyRefresh, 'it adopted that bearer, readable with the old key')
  })
})

t.test('an unreadable or empty key file: the current key stays', async t => {
  const broker = await setup(t)
  t.equal((await broker.mint()).statusCode, 200)
  rmSync(broker.keyFile)
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'unreadable', tls: 'none' })
  t.match(broker.logs.lines().find(l => l.msg === 'MANGOPAY_API_KEY_FILE cannot be read; the current key stays in use'), { level: 50, code: 'ENOENT' })
  writeFileSync(broker.keyFile, '\n')
  t.same(await broker.app.mangopay.reloadSecrets(), { apiKey: 'unreadable', tls: 'none' })
  await broker.app.mangopay.warmUp()
  t.equal(broker.lastOAuthCredential(), basic(API_KEY), 'the next bearer still uses the key that works')
})

t.test('a key given inline: nothing to re-read', async t => {
  const { app, emulator } = await buildTestApp(t)
  t.same(await app.mangopay.reloadSecrets(), { apiKey: 'inline', tls: 'none' })
  t.equal(emulator.control.calls.oauth, 0)
})

t.test('a real SIGHUP to the server process: rotated, and the process keeps serving', async t => {
  const emulator = await startTestEmulator(t)
  const keyFile = join(tempDir(t), 'mangopay-api-key')
  writeFileSync(keyFile, API_KEY)
  const server = spawnServer(t, serverEnv(emulator.url, {
    MANGOPAY_API_KEY: undefined,
    MANGOPAY_API_KEY_FILE: keyFile
  }))
  const { child } = server
  const exited = server.exited
  const logged = (msg: string) => () => {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}): ${server.stderr()}`)
    return server.stdout().split('\n').some(line => line.includes(`"msg":"${msg}"`))
  }
  const oauthCredentials = () => emulator.control.received.filter(r => r.endpoint === 'oauth').map(r => r.headers.authorization)

  // The server warms its bearer at start-up, with the key from the file.
  await until('the start-up bearer', logged('Mangopay bearer obtained'), 60_000)
  t.same(oauthCredentials(), [basic(API_KEY)])

  writeFileSync(keyFile, NEW_KEY)
  emulator.control.setApiKey(NEW_KEY)
  t.ok(child.kill('SIGHUP'), 'SIGHUP sent')
  await until('the rotation', logged('secrets reload: reloaded'), 30_000)
  t.ok(server.stdout().includes('"reload":{"outcome":"reloaded","mangopayKey":"rotated","tls":"none"}'), 'the SIGHUP line shows its outcome')
  t.same(oauthCredentials(), [basic(API_KEY), basic(NEW_KEY)], 'the next OAuth call used the new key')
  t.equal(child.exitCode, null, 'SIGHUP did not stop the server')
  t.notOk(server.stdout().includes('shutting down'), 'and did not start a shutdown')

  t.ok(child.kill('SIGTERM'))
  const [code] = await exited
  t.equal(code, 0)
  for (const secret of [API_KEY, NEW_KEY, basic(NEW_KEY).slice(6)]) t.notOk(server.stdout().includes(secret) || server.stderr().includes(secret), 'no key in the output')
})
