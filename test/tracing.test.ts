import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { request } from 'undici'
import { ConfigError, loadConfig } from '../src/config/index.js'
import { LAST_EXPORT_MS } from '../src/observability/tracing-sdk.js'
import type { Emulator, ReceivedRequest } from '../src/emulator/index.js'
import {
  USER_A, assertNoSecrets, baseEnv, buildTestApp, post, serverEnv, startTestEmulator, spawnServer, tokenFor, until, type TestContext
} from './helpers.js'

/**
 * SPEC §8 "Tracing", through real sockets: the broker listening on loopback, the emulator as
 * Mangopay, and an OTLP/HTTP receiver that keeps every batch the exporter sends.
 */

interface OtlpValue { stringValue?: string, intValue?: number | string, boolValue?: boolean }
interface OtlpAttribute { key: string, value: OtlpValue }
interface OtlpSpan {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  attributes?: OtlpAttribute[]
  status?: { code?: number, message?: string }
}
interface OtlpExport { resourceSpans: Array<{ resource: { attributes: OtlpAttribute[] }, scopeSpans: Array<{ spans: OtlpSpan[] }> }> }

const SERVER = 2
const CLIENT = 3
const INTERNAL = 1
const STATUS_ERROR = 2

interface Receiver {
  url: string
  /** Every request body received on POST /v1/traces, as sent. */
  bodies: string[]
  exports: () => OtlpExport[]
  spans: () => OtlpSpan[]
}

/** `status`: what it answers each batch (a collector refusing them with 400). */
async function startReceiver (t: TestContext, status = 200): Promise<Receiver> {
  const bodies: string[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !String(req.headers['content-type']).startsWith('application/json')) {
        res.writeHead(404).end()
        return
      }
      bodies.push(Buffer.concat(chunks).toString('utf8'))
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise(resolve => server.close(resolve)))
  const exports = (): OtlpExport[] => bodies.map(body => JSON.parse(body) as OtlpExport)
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bodies,
    exports,
    spans: () => exports().flatMap(e => e.resourceSpans.flatMap(r => r.scopeSpans.flatMap(s => s.spans)))
  }
}

function attribute (attributes: OtlpAttribute[] | undefined, key: string): string | number | boolean | undefined {
  const value = attributes?.find(a => a.key === key)?.value
  if (value === undefined) return undefined
  return value.stringValue ?? (value.intValue === undefined ? value.boolValue : Number(value.intValue))
}

async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
}

async function postToken (base: string, path: string, headers: Record<string, string>): Promise<number> {
  const res = await request(`${base}${path}`, { method: 'POST', headers })
  await res.body.dump()
  return res.statusCode
}

function traceparent (traceId: string, spanId: string, flags = '01'): string {
  return `00-${traceId}-${spanId}-${flags}`
}

const newTraceId = (): string => randomBytes(16).toString('hex')
const newSpanId = (): string => randomBytes(8).toString('hex')

/** The Mangopay calls the emulator received, without the control ones. */
function mangopayCalls (emulator: Emulator): ReceivedRequest[] {
  return emulator.control.received.filter(r => r.endpoint !== 'other')
}

t.test('without an exporter, an incoming traceparent goes on to every Mangopay call of that request', async t => {
  const { app, emulator } = await buildTestApp(t)
  const base = await listen(app)
  const traceId = newTraceId()
  const parentId = newSpanId()
  const jwt = await tokenFor(USER_A)

  t.equal(await postToken(base, '/v1/tokens/recipients', { authorization: `Bearer ${jwt}`, traceparent: traceparent(traceId, parentId), tracestate: 'acme=1,other=2' }), 200)
  const calls = mangopayCalls(emulator)
  t.same(calls.map(c => c.endpoint), ['oauth', 'recipient'], 'the bearer fetch and the mint, both for this request')
  const spanIds = new Set<string>()
  for (const call of calls) {
    const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(call.headers.traceparent ?? '')
    t.ok(sent, `${call.endpoint}: a traceparent, sampled as it came`)
    t.equal(sent?.[1], traceId, `${call.endpoint}: the incoming trace id`)
    t.not(sent?.[2], parentId, `${call.endpoint}: a parent span id of the broker's, not the caller's`)
    spanIds.add(sent?.[2] ?? '')
    t.equal(call.headers.tracestate, 'acme=1,other=2', `${call.endpoint}: tracestate passed on`)
  }
  t.equal(spanIds.size, 2, 'each call its own parent span id')

  emulator.control.reset()
  t.equal(await postToken(base, '/v1/tokens/checkout', { authorization: `Bearer ${jwt}` }), 200)
  t.equal(await postToken(base, '/v1/tokens/checkout', { authorization: `Bearer ${jwt}`, traceparent: 'not-a-traceparent' }), 200, 'an invalid traceparent is ignored, not refused')
  const untraced = mangopayCalls(emulator)
  t.equal(untraced.length, 2)
  t.ok(untraced.every(c => c.headers.traceparent === undefined && c.headers.tracestate === undefined), 'no trace came in, none is exported: nothing is sent')
})

t.test('with an OTLP endpoint, the request, authentication, bearer fetch and mint spans are exported, with no secret or user id', async t => {
  const receiver = await startReceiver(t)
  const { app, emulator } = await buildTestApp(t, {
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_SERVICE_NAME: 'broker-under-test',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,team=pay%20ments'
    }
  })
  const base = await listen(app)
  const jwt = await tokenFor(USER_A)
  const traced = { traceId: newTraceId(), parentId: newSpanId() }
  const refused = newTraceId()
  const unsampled = newTraceId()

  t.equal(await postToken(base, '/v1/tokens/recipients', { authorization: `Bearer ${jwt}`, traceparent: traceparent(traced.traceId, traced.parentId) }), 200)
  const [oauthCall, recipientCall] = mangopayCalls(emulator)
  const otherIssuer = await tokenFor(USER_A, {}, { issuer: 'https://elsewhere.example.test/' })
  t.equal(await postToken(base, '/v1/tokens/recipients', { authorization: `Bearer ${otherIssuer}`, traceparent: traceparent(refused, newSpanId()) }), 401)
  t.equal(await postToken(base, '/v1/tokens/checkout', { authorization: `Bearer ${jwt}` }), 200)
  const checkoutCall = mangopayCalls(emulator).find(c => c.endpoint === 'checkout')
  t.equal(await postToken(base, '/v1/tokens/checkout', { authorization: `Bearer ${jwt}`, traceparent: traceparent(unsampled, newSpanId(), '00') }), 200)
  const unsampledCall = mangopayCalls(emulator).filter(c => c.endpoint === 'checkout')[1]
  // Closing flushes the spans still queued.
  await app.close()

  const spans = receiver.spans()
  const named = (traceId: string, name: string): OtlpSpan | undefined => spans.find(s => s.traceId === traceId && s.name === name)

  const server = named(traced.traceId, 'POST /v1/tokens/recipients')
  const authenticate = named(traced.traceId, 'authenticate')
  const mint = named(traced.traceId, 'mangopay.embedded_token')
  const oauth = named(traced.traceId, 'mangopay.oauth_token')
  t.equal(server?.kind, SERVER, 'the request: a server span named after its route')
  t.equal(server?.parentSpanId, traced.parentId, 'continuing the incoming trace')
  t.equal(attribute(server?.attributes, 'http.route'), '/v1/tokens/recipients')
  t.equal(attribute(server?.attributes, 'http.response.status_code'), 200)
  t.equal(authenticate?.kind, INTERNAL)
  t.equal(authenticate?.parentSpanId, server?.spanId, 'authentication within the request')
  t.equal(attribute(authenticate?.attributes, 'broker.credential'), 'header')
  t.equal(mint?.kind, CLIENT)
  t.equal(mint?.parentSpanId, server?.spanId, 'the mint within the request')
  t.equal(attribute(mint?.attributes, 'mangopay.endpoint'), 'recipient')
  t.equal(attribute(mint?.attributes, 'http.response.status_code'), 200)
  t.equal(oauth?.parentSpanId, mint?.spanId, 'the bearer fetch within the mint that needed it')
  t.equal(recipientCall?.headers.traceparent, traceparent(traced.traceId, mint?.spanId ?? '?'), 'Mangopay saw the mint span as the parent of its call')
  t.equal(oauthCall?.headers.traceparent, traceparent(traced.traceId, oauth?.spanId ?? '?'), '...and the bearer fetch span as the parent of the OAuth call')

  const refusedServer = named(refused, 'POST /v1/tokens/recipients')
  const refusedAuth = named(refused, 'authenticate')
  t.equal(attribute(refusedServer?.attributes, 'error.type'), 'unauthenticated', 'a refusal: its problem code on the request span')
  t.equal(attribute(refusedServer?.attributes, 'http.response.status_code'), 401)
  t.not(refusedServer?.status?.code, STATUS_ERROR, 'a 4xx is not the server span\'s error')
  t.equal(refusedAuth?.status?.code, STATUS_ERROR, 'the authentication span failed...')
  t.equal(refusedAuth?.status?.message, 'unauthenticated', '...with the problem code')
  t.notOk(named(refused, 'mangopay.embedded_token'), 'no mint for a refused request')

  const rootServer = spans.find(s => s.name === 'POST /v1/tokens/checkout')
  t.ok(rootServer !== undefined && rootServer.parentSpanId === undefined, 'without a traceparent, the request starts a trace')
  t.ok(![traced.traceId, refused, unsampled].includes(rootServer?.traceId ?? ''), 'a new trace id')
  const rootMint = spans.find(s => s.traceId === rootServer?.traceId && s.name === 'mangopay.embedded_token')
  t.equal(checkoutCall?.headers.traceparent, traceparent(rootServer?.traceId ?? '?', rootMint?.spanId ?? '?'), 'and Mangopay gets it')

  t.equal(spans.filter(s => s.traceId === unsampled).length, 0, 'a trace the caller did not sample is not exported (parentbased_always_on)...')
  t.match(unsampledCall?.headers.traceparent ?? '', new RegExp(`^00-${unsampled}-[0-9a-f]{16}-00$`), '...but still passed on, unsampled')

  const resource = receiver.exports()[0]?.resourceSpans[0]?.resource.attributes
  t.equal(attribute(resource, 'service.name'), 'broker-under-test', 'OTEL_SERVICE_NAME')
  t.equal(attribute(resource, 'deployment.environment.name'), 'test', 'OTEL_RESOURCE_ATTRIBUTES')
  t.equal(attribute(resource, 'team'), 'pay ments', 'values percent-decoded')

  const exported = receiver.bodies.join('\n')
  t.doesNotThrow(() => assertNoSecrets(exported, emulator), 'no API key, Basic value, bearer, minted token or JWT in any exported byte')
  for (const [what, value] of [['the Mangopay user id', USER_A], ['the subject', 'idp|subject-1'], ['a JWT header', 'eyJ']] as const) {
    t.notOk(exported.includes(value), `${what} is in no exported byte`)
  }
})

t.test('the server process exports its last spans when it stops', async t => {
  const receiver = await startReceiver(t)
  const emulator = await startTestEmulator(t)
  const server = spawnServer(t, serverEnv(emulator.url, {
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`
  }))
  let base: string | undefined
  await until('the server to listen', () => {
    if (server.child.exitCode !== null) throw new Error(`the server exited early: ${server.stderr()}`)
    const address = /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(server.stdout())?.[1]
    base = address
    return address !== undefined
  }, 60_000)
  const traceId = newTraceId()
  t.equal(await postToken(base ?? '', '/v1/tokens/recipients', { authorization: `Bearer ${await tokenFor(USER_A)}`, traceparent: traceparent(traceId, newSpanId()) }), 200)
  server.child.kill('SIGTERM')
  const [code] = await server.exited
  t.equal(code, 0)
  const spans = receiver.spans()
  t.same(new Set(spans.filter(s => s.traceId === traceId).map(s => s.name)),
    new Set(['POST /v1/tokens/recipients', 'authenticate', 'mangopay.embedded_token']), 'the request\'s spans were sent by the time it exited')
  const warmUp = spans.find(s => s.name === 'mangopay.oauth_token')
  t.ok(warmUp !== undefined && warmUp.parentSpanId === undefined && warmUp.traceId !== traceId, 'the bearer fetched at start-up: a trace of its own')
})

t.test('the OTEL_* variables: endpoints, switches and refusals', async t => {
  const tracing = (env: Record<string, string>) => loadConfig(baseEnv('http://127.0.0.1:1', env)).tracing
  t.equal(tracing({}).exportUrl, undefined, 'no endpoint: nothing exported')
  t.equal(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }).exportUrl, 'http://collector:4318/v1/traces', 'the general endpoint gets v1/traces')
  t.equal(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://otel.example.com/otlp/' }).exportUrl, 'https://otel.example.com/otlp/v1/traces')
  t.equal(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:4318/custom' }).exportUrl, 'http://b:4318/custom', 'the traces endpoint is used as given')
  t.equal(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_SDK_DISABLED: 'true' }).exportUrl, undefined, 'OTEL_SDK_DISABLED')
  t.equal(tracing({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_TRACES_EXPORTER: 'none' }).exportUrl, undefined, 'OTEL_TRACES_EXPORTER=none')
  t.same(tracing({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }).sampler, { name: 'parentbased_traceidratio', ratio: 0.25 })
  t.equal(tracing({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attributes' }).serviceName, 'from-attributes')
  t.equal(tracing({ OTEL_RESOURCE_ATTRIBUTES: 'service.name=from-attributes', OTEL_SERVICE_NAME: 'named' }).serviceName, 'named', 'OTEL_SERVICE_NAME wins')
  t.equal(tracing({}).serviceName, 'mangopay-token-broker')

  const problems = (env: Record<string, string>): string[] => {
    try {
      loadConfig(baseEnv('http://127.0.0.1:1', env))
    } catch (err) {
      if (err instanceof ConfigError) return err.problems
      throw err
    }
    return []
  }
  t.match(problems({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), [/OTEL_EXPORTER_OTLP_ENDPOINT must be an http or https URL/])
  t.match(problems({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://user:pw@collector:4318/v1/traces' }), [/OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must not contain credentials/])
  t.match(problems({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), [/OTEL_EXPORTER_OTLP_PROTOCOL: only http\/json is supported/])
  t.match(problems({ OTEL_TRACES_SAMPLER: 'sometimes' }), [/OTEL_TRACES_SAMPLER must be one of always_on, always_off, traceidratio/])
  t.match(problems({ OTEL_TRACES_SAMPLER_ARG: '2' }), [/OTEL_TRACES_SAMPLER_ARG/])
  t.match(problems({ OTEL_RESOURCE_ATTRIBUTES: 'novalue' }), [/OTEL_RESOURCE_ATTRIBUTES must be comma-separated key=value pairs/])
  t.match(problems({ OTEL_SDK_DISABLED: 'yes' }), [/OTEL_SDK_DISABLED/])
})

t.test('a batch the collector refuses is logged at warn; the request it traced is unaffected', async t => {
  const collector = await startReceiver(t, 400)
  const { app, logs } = await buildTestApp(t, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url } })
  t.equal((await post(app, '/v1/tokens/recipients', { token: await tokenFor(USER_A) })).statusCode, 200)
  await app.close()
  const lost = logs.lines().filter(l => l.msg === 'spans could not be exported') as Array<{ level: number, tracing: { spans: number } }>
  t.ok(lost.length > 0 && lost.every(l => l.level === 40), 'logged at warn')
  t.match(lost[0], { tracing: { error: 'OTLPExporterError', code: 400 } }, 'with what the collector answered')
  t.equal(lost.reduce((sum, l) => sum + l.tracing.spans, 0), 4, 'every span of the request counted: request, authentication, mint, bearer fetch')
})

t.test('a collector that never answers does not hold up shutdown: the last batch is given up and logged', async t => {
  // Accepts the connection and never says a word.
  const silent = createServer(() => {})
  silent.listen(0, '127.0.0.1')
  await once(silent, 'listening')
  t.teardown(() => { silent.closeAllConnections(); silent.close() })
  const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`
  const { app, logs } = await buildTestApp(t, { env: { OTEL_EXPORTER_OTLP_ENDPOINT: url } })
  t.equal((await post(app, '/v1/tokens/recipients', { token: await tokenFor(USER_A) })).statusCode, 200)
  await app.close()
  const given = logs.lines().filter(l => l.msg === 'the last spans could not be exported')
  t.match(given, [{ level: 40, tracing: { error: 'timeout', waitedMs: LAST_EXPORT_MS } }], 'one warning, naming the wait')
})
