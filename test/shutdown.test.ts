import { connect, type AddressInfo } from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import { Agent, request } from 'undici'
import {
  USER_A, assertNoSecrets, assertProblem, baseEnv, buildTestApp, startTestEmulator, tokenFor, spawnServer, unusedPort, until
} from './helpers.js'

/**
 * SPEC §5 graceful shutdown, on the real server process: on SIGTERM readiness turns 503 at
 * once, a request already in flight still completes, and the process exits 0. Its JSON log
 * lines on stdout carry no secret.
 */

// Generous on purpose (2 cores, several test runs at once): the readiness probe must land
// inside the delay, and the in-flight request must outlast it so closing has to wait for it.
const SHUTDOWN_DELAY_MS = 1500
const UPSTREAM_LATENCY_MS = 3000

t.test('SIGTERM: readiness 503 during the delay, the in-flight request completes, exit 0', async t => {
  const emulator = await startTestEmulator(t)
  const port = await unusedPort()
  const base = `http://127.0.0.1:${port}`
  const agent = new Agent()
  t.teardown(async () => await agent.close())

  const server = spawnServer(t, baseEnv(emulator.url, {
    HOST: '127.0.0.1',
    PORT: String(port),
    LOG_LEVEL: 'info',
    SHUTDOWN_DELAY_MS: String(SHUTDOWN_DELAY_MS),
    MANGOPAY_TIMEOUT_MS: '15000'
  }))
  const { child } = server
  const exited = server.exited

  const get = async (path: string) => {
    const res = await request(base + path, { dispatcher: agent, reset: true, headersTimeout: 10_000, bodyTimeout: 10_000 })
    return { statusCode: res.statusCode, headers: res.headers as Record<string, unknown>, body: await res.body.text() }
  }

  await until('the server to listen', async () => {
    if (child.exitCode !== null) throw new Error(`the server exited early (${child.exitCode}): ${server.stderr()}`)
    try {
      return (await get('/healthz')).statusCode === 200
    } catch {
      return false
    }
  }, 60_000)

  // The next embedded call is held upstream, so the token request stays in flight.
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'latency', ms: UPSTREAM_LATENCY_MS } })
  const token = await tokenFor(USER_A)
  const inflight = request(`${base}/v1/tokens/recipients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
    dispatcher: agent,
    headersTimeout: 30_000,
    bodyTimeout: 30_000
  }).then(async res => ({ statusCode: res.statusCode, body: await res.body.json() as Record<string, unknown> }))
  await until('the token request to reach Mangopay', () => emulator.control.calls.recipient >= 1, 30_000)

  t.ok(child.kill('SIGTERM'), 'SIGTERM sent')

  // Poll readiness until the shutdown shows (the signal takes a moment to be handled).
  let shutdownAnswer: Awaited<ReturnType<typeof get>> | undefined
  await until('readiness to report the shutdown', async () => {
    try {
      const res = await get('/readyz')
      if (res.statusCode === 503) shutdownAnswer = res
      return shutdownAnswer !== undefined
    } catch {
      return true // no longer accepting: the delay passed without a 503 seen (asserted below)
    }
  }, SHUTDOWN_DELAY_MS * 4)
  t.ok(shutdownAnswer, 'readiness answered while draining')
  if (shutdownAnswer !== undefined) {
    const body = assertProblem(t, shutdownAnswer, 503, 'shutting_down')
    t.same(body.failing, ['shutdown'], 'failing: shutdown: the readiness route itself answered, during the delay')
  }
  t.equal(emulator.control.minted.length, 0, 'the in-flight request is still waiting on Mangopay')

  const done = await inflight
  t.equal(done.statusCode, 200, 'the in-flight request completed')
  t.equal(done.body.userId, USER_A)
  t.equal(done.body.clientToken, emulator.control.minted[0]?.token)

  const [code, signal] = await exited
  t.equal(code, 0, 'exit code 0', { stdoutTail: server.stdout().slice(-3000), stderr: server.stderr() })
  t.equal(signal, null)
  t.notMatch(server.stderr(), /killed by timeout|Error/, 'nothing went wrong on the way out')

  const lines = server.stdout().split('\n').filter(l => l.trim() !== '')
  const records: Array<Record<string, any>> = []
  for (const line of lines) {
    try {
      records.push(JSON.parse(line))
    } catch {
      t.fail(`a stdout line is not JSON: ${line.slice(0, 80)}`)
    }
  }
  t.ok(records.some(r => r.msg === 'shutting down' && r.signal === 'SIGTERM'), 'the shutdown is logged')
  t.ok(records.some(r => r.audit?.event === 'embedded_token_issued'), 'the in-flight request\'s audit line made it out before exit')
  t.ok(records.every(r => typeof r.level === 'number' && typeof r.time === 'string'), 'pino JSON lines')
  t.doesNotThrow(() => assertNoSecrets(server.stdout() + server.stderr(), emulator), 'no secret in the server\'s output')
  t.notOk((server.stdout() + server.stderr()).includes(token), 'the JWT is not logged')
})

t.test('app.close() drains like SIGTERM: the answer in flight closes its connection, a request pipelined behind it mints nothing', async t => {
  const { app, emulator, logs } = await buildTestApp(t)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const jwt = await tokenFor(USER_A)
  // The first request is held at Mangopay, so close() has to wait for it.
  emulator.control.inject({ target: 'embedded', times: 1, fault: { kind: 'latency', ms: 800 } })
  const one = `POST /v1/tokens/recipients HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${jwt}\r\nContent-Length: 0\r\n\r\n`
  const socket = connect(port, '127.0.0.1')
  let received = ''
  socket.on('data', d => { received += d.toString() })
  const socketClosed = once(socket, 'close')
  socket.write(one)
  await until('the first request to reach Mangopay', () => emulator.control.calls.recipient >= 1, 5000)
  const closing = app.close()
  await until('close() to begin', () => app.lifecycle.closing, 5000)

  // A second request pipelined on the busy connection: Node starts it at once, but its answer
  // cannot follow the first one, which closes the connection.
  socket.write(one)
  await closing
  await socketClosed
  const answers = received.split(/(?=HTTP\/1\.1 )/)
  t.equal(answers.length, 1, 'one answer on that connection')
  t.match(answers[0], /^HTTP\/1\.1 200 /, 'the request in flight completed')
  t.match(answers[0], /\r\nconnection: close\r\n/i, 'and closed its connection')
  t.equal(emulator.control.calls.recipient, 1, 'the pipelined request made no Mangopay call: no quota spent on an answer nobody gets')
  t.equal(emulator.control.minted.length, 1)
  const refused = logs.lines().find(l => l.code === 'shutting_down')
  t.ok(refused, 'the pipelined request was refused with shutting_down, in the log')
})
