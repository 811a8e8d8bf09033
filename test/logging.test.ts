import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { CENSOR, censorLine } from '../src/logging.js'
import { captureLogs } from './helpers.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

t.test('sensitive keys are censored at any depth, in arrays and in any letter case', async t => {
  const logs = captureLogs('info')
  logs.logger.info({
    req: { headers: { authorization: 'Bearer eyJ.secret.jwt', Cookie: 'session=abc', 'x-csrf': '1', accept: 'application/json' } },
    mangopay: { endpoint: 'oauth', response: { access_token: 'bearer-123', expires_in: 1200 } },
    upstream: [{ Token: 'tok-1' }, { note: 'kept' }],
    deep: { a: { b: { c: { d: { apiKey: 'key-1', passphrase: 'p', password: 'q', jwt: 'r', secret: 's' } } } } },
    res: { headers: { 'set-cookie': ['session=1', 'other=2'] } },
    clientToken: 'ct-1',
    accessToken: { nested: 'at-1' }
  }, 'a line with secrets in it')
  const [line] = logs.lines()
  t.same(line?.req, { headers: { authorization: CENSOR, Cookie: CENSOR, 'x-csrf': CENSOR, accept: 'application/json' } })
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
    import { createLogger } from './src/logging.ts'
    const log = createLogger('info')
    for (let i = 0; i < 3; i++) log.info({ i }, 'line')
    process.exit(0)
  `)
  t.same(out.trim().split('\n').map(l => (JSON.parse(l) as { i: number }).i), [0, 1, 2])
})

t.test('stdout: a quiet logger still writes its last line within a second', async t => {
  const out = await childStdout(`
    import { createLogger } from './src/logging.ts'
    const log = createLogger('info')
    log.info('only line')
    setTimeout(() => process.kill(process.pid, 'SIGKILL'), 1000)
  `)
  t.match(out, /"msg":"only line"/, 'written by the periodic flush, not by an exit handler (the process is killed)')
})
