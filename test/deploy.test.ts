import { readFile } from 'node:fs/promises'
import t from 'tap'

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
