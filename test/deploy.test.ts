import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { relative } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { loadConfig } from '../src/config/index.js'
import { EnvSchema } from '../src/config/schema.js'

/** The container and `npm start` run the compiled server with the same `node` flags (the benchmark measures those). */
t.test('the Dockerfile CMD and npm start run node with the same flags', async t => {
  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8')
  const { scripts } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1]
  if (cmd === undefined) throw new Error('the Dockerfile has no exec-form CMD')
  t.same(JSON.parse(cmd), scripts.start.split(/\s+/), 'CMD is the start script, word for word')
  t.ok(scripts.start.endsWith(' dist/server.js'), 'and runs the compiled server')
  t.match(scripts.start, /--max-semi-space-size=\d+/, 'with the young generation the benchmark was tuned with')
})

/** GET /v1/client.js serves the helper package's built entry: the image builds it and carries that file alone. */
t.test('the image builds the browser helper and carries only its built file', async t => {
  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8')
  const [build = '', runtime = ''] = dockerfile.split(/^FROM /m).slice(1)
  const root = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { build: string } }
  const client = JSON.parse(await readFile(new URL('../packages/client/package.json', import.meta.url), 'utf8')) as { exports: Record<string, { default?: string }> }

  t.match(build, /^COPY packages\/client \.\/packages\/client$/m, 'the build stage has the helper\'s sources')
  t.match(build, /^RUN npm run build$/m)
  t.match(root.scripts.build, /npm run build --workspace=packages\/client/, 'and `npm run build` builds the helper')

  const entry = client.exports['.']?.default
  t.equal(entry, './dist/index.js')
  const copies = [...runtime.matchAll(/^COPY (.*)$/gm)].map(match => match[1])
  t.same(copies.filter(line => line?.includes('packages/client')), [
    'packages/client/package.json ./packages/client/',
    '--from=build /app/packages/client/dist/index.js ./packages/client/dist/index.js'
  ], 'the runtime stage gets the helper\'s manifest (its workspace link) and built entry, no sources')

  const install = /^RUN (npm ci .*)$/m.exec(runtime)?.[1] ?? ''
  t.match(install, '--omit=dev', 'no esbuild or TypeScript in the image')
  t.match(install, '--ignore-scripts', 'the root\'s prepare, building the helper, needs the dev dependencies')
  const lock = JSON.parse(await readFile(new URL('../package-lock.json', import.meta.url), 'utf8')) as { packages: Record<string, { dev?: boolean, devOptional?: boolean, hasInstallScript?: boolean }> }
  const scripted = Object.entries(lock.packages).filter(([, pkg]) => pkg.hasInstallScript === true && pkg.dev !== true && pkg.devOptional !== true).map(([path]) => path)
  t.same(scripted, [], 'so no production dependency may need its install script')
})

/** `docker run --env-file`'s reading: `#` starts a comment only at the start of a line; a value is everything after `=`. */
function readLikeDockerEnvFile (text: string): Array<[string, string]> {
  return text.split('\n').map(line => line.trimStart()).filter(line => line !== '' && !line.startsWith('#')).map(line => {
    const at = line.indexOf('=')
    return at === -1 ? [line, ''] : [line.slice(0, at), line.slice(at + 1)]
  })
}

t.test('.env.example, read the way docker run --env-file reads it, configures the broker', async t => {
  const text = await readFile(new URL('../.env.example', import.meta.url), 'utf8')
  const entries = readLikeDockerEnvFile(text)
  for (const [name, value] of entries) {
    t.match(name, /^[A-Z][A-Z0-9_]*$/, `${name}: a plain name`)
    t.notMatch(value, /\s|#|^["']/, `${name}: no space, comment or quote in its value`)
  }
  const env = Object.fromEntries(entries)
  t.notOk('HOST' in env, 'no HOST line: it would undo the image\'s HOST=0.0.0.0')
  const config = loadConfig({
    ...env,
    MANGOPAY_API_KEY: 'sk_test_from_a_secret',
    AUTH_JWT_SECRET: 'a-hmac-secret-of-at-least-32-bytes!!',
    AUTH_ISSUER: 'https://idp.example.test/',
    AUTH_AUDIENCE: 'mangopay-token-broker'
  })
  t.equal(config.server.port, 3000)
  t.equal(config.logLevel, 'info')
  t.equal(config.mangopay.clientId, env.MANGOPAY_CLIENT_ID)
})

t.test('.env.example names every variable of the schema', async t => {
  const text = await readFile(new URL('../.env.example', import.meta.url), 'utf8')
  const named = new Set([...text.matchAll(/^(?:# )?([A-Z][A-Z0-9_]*)=/gm)].map(match => match[1]))
  t.same(Object.keys(EnvSchema.properties).filter(name => !named.has(name)), [], 'each one, set or commented out')
})

t.test('the image\'s compiled code holds the server and its health check, no emulator or demo', async t => {
  const root = new URL('..', import.meta.url).pathname
  const { stdout } = await promisify(execFile)(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', '--listFilesOnly'], { cwd: root, maxBuffer: 16 * 1024 * 1024 })
  const compiled = stdout.split('\n').filter(file => file.startsWith(root)).map(file => relative(root, file)).filter(file => !file.startsWith('node_modules/'))
  t.ok(compiled.includes('src/server.ts'))
  t.ok(compiled.includes('src/healthcheck.ts'))
  t.same(compiled.filter(file => /^src\/(emulator|demo)\//.test(file)), [], 'not compiled, not imported by what is')

  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8')
  const healthcheck = /^HEALTHCHECK (.*) CMD (\[.*\])$/m.exec(dockerfile)
  t.same(JSON.parse(healthcheck?.[2] ?? 'null'), ['node', 'dist/healthcheck.js'], 'HEALTHCHECK asks readiness through the compiled probe')
  t.match(dockerfile, /^USER node$/m, 'the runtime runs as the non-root node user')
})

t.test('Node: engines admit 22 and 24, and CI runs the image\'s major', async t => {
  const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { engines: { node: string }, devDependencies: Record<string, string> }
  t.equal(pkg.engines.node, '>=22', '20 is end-of-life')
  t.match(pkg.devDependencies['@types/node'], /^\^22\./, 'typed for the oldest Node it supports')
  const dockerfile = await readFile(new URL('../Dockerfile', import.meta.url), 'utf8')
  const bases = [...dockerfile.matchAll(/^FROM node:(\d+)-/gm)].map(match => match[1])
  t.same(bases, ['24', '24'], 'both stages on Node 24')
  const ci = await readFile(new URL('../.ci/run', import.meta.url), 'utf8')
  t.match(ci, /npm install --prefix "\$node_tools" .*node@24\b/, 'CI fetches the registry\'s node@24')
  t.match(ci, /export PATH="\$node_tools\/node_modules\/node\/bin:\$PATH"/, 'and puts it first on PATH')
  t.ok(ci.indexOf('export PATH="$node_tools') < ci.indexOf('\nnpm ci '), 'before npm ci and the tests')
})
