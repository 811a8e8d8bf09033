import { readFile } from 'node:fs/promises'
import Fastify from 'fastify'
import t from 'tap'
import { clientScriptRoutes } from '../src/routes/client-script.js'
import { tokenFor, USER_A } from './helpers.js'
import { startBroker } from './client-helpers.js'

/** `GET /v1/client.js`: the helper package's build, read at start-up and served as a cacheable module. */

const BUILT = new URL('../packages/client/dist/index.js', import.meta.url)

t.test('GET /v1/client.js serves the helper as a cacheable ES module', async t => {
  const broker = await startBroker(t)
  const res = await fetch(`${broker.baseUrl}/v1/client.js`)
  t.equal(res.status, 200)
  t.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8')
  t.equal(res.headers.get('cache-control'), 'public, max-age=300', 'its own cache policy, not no-store')
  const etag = res.headers.get('etag') ?? ''
  t.match(etag, /^"[\w-]{20,}"$/, 'a strong ETag')
  const script = await res.text()
  t.equal(script, await readFile(BUILT, 'utf8'), 'the package\'s own build, byte for byte')
  t.notMatch(script, /^\s*(interface|type) \w+/m, 'plain JavaScript, no TypeScript left')
  t.notMatch(script, 'sourceMappingURL', 'no pointer to a source map that is not served')
  t.notMatch(script, /^\s*import\b/m, 'one self-contained module: nothing else to load')

  // The served file is the working helper: import it as a module and get a token with it.
  const served = await import(`data:text/javascript;base64,${Buffer.from(script).toString('base64')}`) as typeof import('../packages/client/src/index.js')
  t.same(Object.keys(served).sort(), ['TokenClientError', 'createTokenClient', 'sdkOptions'], 'the package\'s public API')
  const jwt = await tokenFor(USER_A)
  const token = await served.createTokenClient({ baseUrl: broker.baseUrl, getAuthorization: () => jwt }).recipientsToken()
  t.equal(token.clientToken, broker.emulator.control.minted[0]?.token)

  for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
    const again = await fetch(`${broker.baseUrl}/v1/client.js`, { headers: { 'if-none-match': ifNoneMatch } })
    t.equal(again.status, 304, `If-None-Match: ${ifNoneMatch}`)
    t.equal(await again.text(), '')
    t.equal(again.headers.get('etag'), etag)
    t.equal(again.headers.get('cache-control'), 'public, max-age=300')
  }
  const changed = await fetch(`${broker.baseUrl}/v1/client.js`, { headers: { 'if-none-match': '"stale"' } })
  t.equal(changed.status, 200, 'another version: the full script')
  t.equal(await changed.text(), script, 'the same bytes every time')

  const tokenRoute = await fetch(`${broker.baseUrl}/v1/tokens/recipients`, { method: 'POST' })
  t.equal(tokenRoute.headers.get('cache-control'), 'no-store', 'every other answer stays no-store')
  await tokenRoute.body?.cancel()
})

t.test('a broker whose helper is not built refuses to start, and says how to build it', async t => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  const starting = async () => {
    await app.register(clientScriptRoutes, { file: new URL('./no-such-build/index.js', BUILT) })
    await app.ready()
  }
  await t.rejects(starting, /\/v1\/client\.js is not built .*no-such-build.*ENOENT.*Run "npm run build"/)
})
