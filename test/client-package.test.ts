import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { build } from 'esbuild'
import t from 'tap'

/**
 * The browser helper as a user gets it: `npm pack` in packages/client (its `prepack` builds it),
 * the tarball installed into an empty project, then imported by Node, type-checked by tsc and
 * bundled by esbuild. The package is packed from a copy, so the build starts from nothing and does
 * not rewrite the dist/ that other test files serve meanwhile.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NAME = 'mangopay-token-broker-client'
const run = promisify(execFile)

/** The commands run as a user would run them, not with the settings of the `npm test` around us. */
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)))

async function sh (cwd: string, command: string, args: string[]): Promise<string> {
  const { stdout } = await run(command, args, { cwd, env, maxBuffer: 16 * 1024 * 1024 })
  return stdout
}

const work = await mkdtemp(join(tmpdir(), 'client-package-'))
t.teardown(async () => await rm(work, { recursive: true, force: true }))

// What building the package reads: its own folder (less any earlier build) and the server's wire types.
const repo = join(work, 'repo')
await cp(join(ROOT, 'packages', 'client'), join(repo, 'packages', 'client'), {
  recursive: true,
  filter: (source) => !/[\\/](dist|node_modules)$/.test(source)
})
await cp(join(ROOT, 'src', 'wire.ts'), join(repo, 'src', 'wire.ts'))
await symlink(join(ROOT, 'node_modules'), join(repo, 'node_modules'), 'dir')

const [packed] = JSON.parse(await sh(join(repo, 'packages', 'client'), 'npm', ['pack', '--json', '--pack-destination', work])) as Array<{ filename: string, files: Array<{ path: string }> }>
if (packed === undefined) throw new Error('npm pack reported no tarball')
const tarball = join(work, packed.filename)

const consumer = join(work, 'consumer')
await mkdir(consumer)
await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }))
await sh(consumer, 'npm', ['install', tarball, '--offline', '--no-audit', '--no-fund'])

t.test('the tarball holds the build and its declarations, and nothing else', async t => {
  const files = packed.files.map(file => file.path).sort()
  t.same(files.filter(path => !path.startsWith('dist/')), ['LICENSE', 'README.md', 'package.json'])
  t.ok(files.includes('dist/index.js'), 'the one ES module')
  t.ok(files.includes('dist/types/src/wire.d.ts'), 'the server\'s wire types, declared inside the package')
  t.same(files.filter(path => /\.ts$/.test(path) && !/\.d\.ts$/.test(path)), [], 'no TypeScript sources')
  t.same(files.filter(path => path.endsWith('.map')), [], 'no source maps')

  const manifest = JSON.parse(await readFile(join(consumer, 'node_modules', NAME, 'package.json'), 'utf8')) as Record<string, unknown>
  t.equal(manifest.dependencies, undefined, 'no runtime dependencies')
  t.equal(manifest.sideEffects, false)
  t.equal(manifest.type, 'module')
  const scripts = Object.keys(manifest.scripts as Record<string, string>)
  t.same(scripts.filter(name => /^(preinstall|install|postinstall|prepare)$/.test(name)), [], 'nothing runs when it is installed (npm would ask the user to approve it)')
})

t.test('Node imports it from the installed package', async t => {
  const keys = await sh(consumer, process.execPath, ['--input-type=module', '-e', `const m = await import('${NAME}'); console.log(JSON.stringify(Object.keys(m).sort()))`])
  t.same(JSON.parse(keys), ['TokenClientError', 'createTokenClient'])
})

t.test('its types check under strict TypeScript, with bundler and nodenext resolution', async t => {
  await writeFile(join(consumer, 'app.ts'), `import { createTokenClient, TokenClientError, type EmbeddedToken, type TokenClientErrorCode } from '${NAME}'

const tokens = createTokenClient({ baseUrl: 'https://broker.example.com', cache: true, retry: { maxWaitS: 5 } })

export async function elementsOptions (): Promise<Pick<EmbeddedToken, 'clientId' | 'clientToken' | 'userId' | 'environment'>> {
  const { clientId, clientToken, userId, environment } = await tokens.recipientsToken({ userId: 'user_1' })
  return { clientId, clientToken, userId, environment }
}

export function codeOf (err: unknown): TokenClientErrorCode | undefined {
  return err instanceof TokenClientError ? err.code : undefined
}

// @ts-expect-error the environment is 'SANDBOX' | 'PRODUCTION': the declarations were found, not \`any\`
export const environment: EmbeddedToken['environment'] = 'STAGING'
`)
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  // Both at once: each is a separate compiler process, and they take most of this file's time.
  await Promise.all([['esnext', 'bundler'], ['nodenext', 'nodenext']].map(async ([module, moduleResolution]) => {
    const config = `tsconfig.${moduleResolution}.json`
    await writeFile(join(consumer, config), JSON.stringify({
      // The package's declarations are checked; TypeScript's own lib files are not (slow, and not ours).
      compilerOptions: { strict: true, noEmit: true, skipLibCheck: false, skipDefaultLibCheck: true, target: 'es2022', lib: ['es2022', 'dom'], types: [], module, moduleResolution },
      files: ['app.ts']
    }))
    try {
      await sh(consumer, process.execPath, [tsc, '-p', config])
      t.pass(`tsc, moduleResolution ${moduleResolution}`)
    } catch (err) {
      t.fail(`tsc, moduleResolution ${moduleResolution}: ${(err as { stdout?: string }).stdout ?? String(err)}`)
    }
  }))
})

t.test('esbuild bundles it for the browser, and the bundle works', async t => {
  await writeFile(join(consumer, 'page.js'), `import { createTokenClient } from '${NAME}'
export const tokens = (fetch) => createTokenClient({ baseUrl: 'https://broker.example.com', fetch })
`)
  await writeFile(join(consumer, 'errors-only.js'), `export { TokenClientError } from '${NAME}'\n`)
  const bundle = async (entry: string) => {
    const result = await build({ entryPoints: [entry], absWorkingDir: consumer, bundle: true, format: 'esm', platform: 'browser', write: false, logLevel: 'silent' })
    return result.outputFiles[0]?.text ?? ''
  }

  const page = await bundle('page.js')
  t.notMatch(page, new RegExp(`from ['"]${NAME}`), 'the helper is inside the bundle')
  const { tokens } = await import(`data:text/javascript;base64,${Buffer.from(page).toString('base64')}`) as { tokens: (fetch: typeof globalThis.fetch) => { checkoutToken: () => Promise<{ clientToken: string }> } }
  const answer = { clientToken: 'chk_1', tokenType: 'Bearer', expiresIn: 900, expiresAt: '2026-01-01T00:15:00.000Z', scope: 's', clientId: 'c', userId: 'u', environment: 'SANDBOX' }
  const asked: string[] = []
  const token = await tokens(async (input) => {
    asked.push(String(input))
    return new Response(JSON.stringify(answer), { headers: { 'content-type': 'application/json' } })
  }).checkoutToken()
  t.same(asked, ['https://broker.example.com/v1/tokens/checkout'])
  t.equal(token.clientToken, 'chk_1')

  const errorsOnly = await bundle('errors-only.js')
  t.match(errorsOnly, 'TokenClientError = class')
  t.notMatch(errorsOnly, '/v1/tokens/', 'a page importing only the error class gets none of the client')
})
