import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { build } from 'esbuild'
import t from 'tap'
import { PACKAGE_NAME as NAME, packAndInstall, ROOT, sh } from './client-tarball.js'

/**
 * The packed helper (see client-tarball.ts) in an empty project: imported by Node,
 * type-checked by tsc and bundled by esbuild.
 */

const { consumer, files: packedFiles } = await packAndInstall(t)

t.test('the tarball holds the build and its declarations, and nothing else', async t => {
  const files = [...packedFiles].sort()
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
  t.same(JSON.parse(keys), ['TokenClientError', 'createTokenClient', 'sdkOptions'])
})

t.test('its types check under strict TypeScript, with bundler and nodenext resolution', async t => {
  await writeFile(join(consumer, 'app.ts'), `import { createTokenClient, sdkOptions, TokenClientError, type EmbeddedToken, type MangopaySdkOptions, type TokenClientErrorCode } from '${NAME}'

const tokens = createTokenClient({ baseUrl: 'https://broker.example.com', cache: true, retry: { maxWaitS: 5 } })

export async function elementsOptions (): Promise<Pick<EmbeddedToken, 'clientId' | 'clientToken' | 'userId' | 'environment'>> {
  const { clientId, clientToken, userId, environment } = await tokens.recipientsToken({ userId: 'user_1' })
  return { clientId, clientToken, userId, environment }
}

export function codeOf (err: unknown): TokenClientErrorCode | undefined {
  return err instanceof TokenClientError ? err.code : undefined
}

// The Checkout SDK's options as Mangopay documents them: environment is 'SANDBOX' | 'PRODUCTION'.
interface CheckoutOptions { clientId: string, clientToken?: string, userId?: string, environment?: 'SANDBOX' | 'PRODUCTION', profilingMerchantId: string }
declare const checkout: { updateOptions (options: CheckoutOptions): void }
const controller = new AbortController()
export const stop: () => void = tokens.keepFresh('checkout', (token) => {
  const options: CheckoutOptions = { ...sdkOptions(token), profilingMerchantId: 'p' }
  checkout.updateOptions(options)
}, {
  signal: controller.signal,
  onError: (error, { stopped }) => { if (stopped && error.code === 'unauthenticated') stop() }
})

// @ts-expect-error the environment is 'SANDBOX' | 'PRODUCTION': the declarations were found, not \`any\`
export const environment: EmbeddedToken['environment'] = 'STAGING'
// @ts-expect-error exactly the four SDK fields: the token's expiry is not one of them
export const expiry: MangopaySdkOptions['expiresAt'] = ''
// @ts-expect-error keepFresh knows the two kinds
tokens.keepFresh('payouts', () => {})
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
