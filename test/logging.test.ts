import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { AccessLog, auditTokenIssued, isoTime, type TokenAudit } from '../src/fast-paths/index.js'
import { setTimeout as sleep } from 'node:timers/promises'
import { CENSOR, censorLine } from '../src/observability/logging.js'
import { captureLogs } from './helpers.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

t.test('sensitive keys are censored at any depth, in arrays and in any letter case', async t => {
  const logs = captureLogs('info')
  logs.logger.info({
    request: { headers: { authorization: 'Bearer eyJ.secret.jwt', Cookie: 'session=abc', 'x-csrf': '1', accept: 'application/json' } },
    mangopay: { endpoint: 'oauth', response: { access_token: 'bearer-123', expires_in: 1200 } },
    upstream: [{ Token: 'tok-1' }, { note: 'kept' }],
    deep: { a: { b: { c: { d: { apiKey: 'key-1', passphrase: 'p', password: 'q', jwt: 'r', secret: 's' } } } } },
    res: { headers: { 'set-cookie': ['session=1', 'other=2'] } },
    clientToken: 'ct-1',
    accessToken: { nested: 'at-1' }
  }, 'a line with secrets in it')
  const [line] = logs.lines()
  t.same(line?.request, { headers: { authorization: CENSOR, Cookie: CENSOR, 'x-csrf': CENSOR, accept: 'application/json' } })
  t.same(line?.mangopay, { endpoint: 'oauth', response: { access_token: CENSOR, expires_in: 1200 } }, 'numbers and other fields are kept')
  t.same(line?.upstream, [{ Token: CENSOR }, { note: 'kept' }])
  t.same(line?.deep, { a: { b: { c: { d: { apiKey: CENSOR, passphrase: CENSOR, password: CENSOR, jwt: CENSOR, secret: CENSOR } } } } })
  t.same(line?.res, { headers: { 'set-cookie': CENSOR } }, 'a whole array is replaced')
  t.equal(line?.clientToken, CENSOR)
  t.equal(line?.accessToken, CENSOR, 'an object under a sensitive key is replaced whole')
  t.equal(line?.msg, 'a line with secrets in it')
  for (const secret of ['eyJ.secret.jwt', 'session=abc', 'bearer-123', 'tok-1', 'key-1', 'session=1', 'ct-1', 'at-1']) {
    t.notOk(logs.text().includes(secret), `${secret} is not in the output`)
  }
})

t.test('lines that name no sensitive key are written as pino made them', async t => {
  const plain = '{"level":30,"time":"2026-11-28T05:00:00.000Z","requestId":"r1","audit":{"fingerprint":"abc"},"msg":"say \\"token\\": not a key"}\n'
  t.equal(censorLine(plain), plain, 'a quoted "token": inside a string is not a key: the line is untouched')
  const similar = '{"level":30,"tokens":2,"mytoken":"x","token_type":"Bearer","msg":"m"}\n'
  t.equal(censorLine(similar), similar, 'only the exact key names count')
  t.equal(censorLine('{"level":30,"Token":"x"}\n'), `{"level":30,"Token":"${CENSOR}"}\n`)
})

t.test('every line carries the time it was written, in ISO 8601 UTC to the millisecond', async t => {
  const logs = captureLogs('info')
  const before = Date.now()
  logs.logger.info('first')
  await sleep(5)
  logs.logger.info('second')
  const after = Date.now()
  const times = logs.lines().map(line => line.time as string)
  t.equal(times.length, 2)
  for (const time of times) {
    t.match(time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
    t.ok(Date.parse(time) >= before && Date.parse(time) <= after, `${time} is when it was written`)
  }
  t.ok(Date.parse(times[1] as string) - Date.parse(times[0] as string) >= 4, 'a later line, a later time: the formatted time is not kept past its millisecond')
  t.match(isoTime(), /^,"time":"[^"]+"$/, 'the fragment pino splices into a line')
})

/** Runs a few lines of TypeScript in a child process with the broker's default (stdout) logger. */
async function childStdout (script: string): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  await new Promise(resolve => child.once('exit', resolve))
  return out
}

t.test('stdout: batched lines are all written when the process exits at once', async t => {
  const out = await childStdout(`
    import { createLogger } from './src/observability/logging.ts'
    const log = createLogger('info')
    for (let i = 0; i < 3; i++) log.info({ i }, 'line')
    process.exit(0)
  `)
  t.same(out.trim().split('\n').map(l => (JSON.parse(l) as { i: number }).i), [0, 1, 2])
})

t.test('stdout: lines over many batches come out whole and in order', async t => {
  const out = await childStdout(`
    import { createLogger } from './src/observability/logging.ts'
    const log = createLogger('info')
    for (let i = 0; i < 500; i++) log.info({ i, text: 'é'.repeat(i % 90) }, 'line')
    setTimeout(() => process.exit(0), 20)
  `)
  const lines = out.trim().split('\n').map(l => JSON.parse(l) as { i: number, text: string })
  t.same(lines.map(l => l.i), Array.from({ length: 500 }, (_, i) => i))
  t.ok(lines.every(l => l.text === 'é'.repeat(l.i % 90)), 'multi-byte text intact')
})

t.test('stdout: a quiet logger still writes its last line within a second', async t => {
  const out = await childStdout(`
    import { createLogger } from './src/observability/logging.ts'
    const log = createLogger('info')
    log.info('only line')
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 1000)
  `)
  t.match(out, /"msg":"only line"/, 'written by the periodic flush, not by an exit handler (the process is killed)')
})

/** An app with a token-like route that is answered, one whose connection is cut, and a plain one; all three asked once. */
async function auditedRequests (t: Test, level: string) {
  const logs = captureLogs(level)
  const app = Fastify({ loggerInstance: logs.logger, logController: new AccessLog({ requestIdLogLabel: 'requestId' }) })
  app.decorateRequest('tokenAudit', null)
  const audit = (kind: string): TokenAudit => ({ event: 'embedded_token_issued', kind, mangopayUserId: 'user_1', subject: 'sub', expiresAt: '2026-11-28T08:00:00.000Z', fingerprint: 'abcdefabcdef' })
  app.get('/answered', async (request, reply) => {
    auditTokenIssued(request, reply, audit('answered'))
    return { ok: true }
  })
  app.get('/cut', async (request, reply) => {
    auditTokenIssued(request, reply, audit('cut'))
    // The connection drops after the token was handed to the response, before it is written.
    request.raw.socket.destroy()
    await sleep(20)
    return { ok: true }
  })
  app.get('/plain', async () => ({ ok: true }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => await app.close())
  const { port } = app.server.address() as AddressInfo
  t.equal((await request(`http://127.0.0.1:${port}/answered`)).statusCode, 200)
  t.equal((await request(`http://127.0.0.1:${port}/plain`)).statusCode, 200)
  await t.rejects(request(`http://127.0.0.1:${port}/cut`), 'the caller sees the connection drop')
  await sleep(100)
  return {
    audits: logs.lines().filter(l => l.msg === 'embedded token issued'),
    completed: logs.lines().filter(l => l.msg === 'request completed')
  }
}

t.test('a token\'s audit line is written exactly once, with the access line or, when the answer never finishes, on its own', async t => {
  const { audits, completed } = await auditedRequests(t, 'info')
  t.same(audits.map(l => (l.audit as TokenAudit).kind).sort(), ['answered', 'cut'], 'one audit line per token')
  const answered = audits.find(l => (l.audit as TokenAudit).kind === 'answered')
  t.match(answered, { res: { statusCode: 200 }, responseTime: Number }, 'an answered token\'s audit line is its access line')
  t.same(answered?.req, { method: 'GET', url: '/answered', remoteAddress: '127.0.0.1' }, 'with what was asked and by whom, nothing more')
  t.notOk('delivered' in (answered ?? {}))
  t.match(audits.find(l => (l.audit as TokenAudit).kind === 'cut'), { delivered: false, req: { url: '/cut' } }, 'a cut one says it was not delivered')
  t.same(completed.map(l => (l.req as { url: string }).url), ['/plain'], 'no second line for a token request')
  t.notOk('audit' in (completed[0] ?? {}), 'and no audit on a request that was handed no token')
})

t.test('audit lines are written whatever LOG_LEVEL says, but silent', async t => {
  for (const level of ['warn', 'error']) {
    t.test(level, async t => {
      const { audits, completed } = await auditedRequests(t, level)
      t.same(audits.map(l => (l.audit as TokenAudit).kind).sort(), ['answered', 'cut'], 'one audit line per token (SPEC §5)')
      t.ok(audits.every(l => l.level === 30 && typeof l.requestId === 'string'), 'at info level, with the request id')
      t.same(completed, [], 'the other access lines follow LOG_LEVEL')
    })
  }
  t.test('silent', async t => {
    const { audits, completed } = await auditedRequests(t, 'silent')
    t.same([...audits, ...completed], [], 'silent is silent')
  })
})
