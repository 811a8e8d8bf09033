import { execFile } from 'node:child_process'
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { TestContext } from './helpers.js'

/**
 * The browser helper as a user gets it: `npm pack` in packages/client (its `prepack` builds it),
 * the tarball installed into an empty project. The package is packed from a copy, so the build
 * starts from nothing and does not rewrite the dist/ that other test files serve meanwhile.
 */

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const PACKAGE_NAME = 'mangopay-token-broker-client'
const run = promisify(execFile)

/** The commands run as a user would run them, not with the settings of the `npm test` around us. */
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)))

export async function sh (cwd: string, command: string, args: string[]): Promise<string> {
  const { stdout } = await run(command, args, { cwd, env, maxBuffer: 16 * 1024 * 1024 })
  return stdout
}

export interface InstalledTarball {
  /** The project the tarball is installed in (`node_modules/mangopay-token-broker-client`). */
  consumer: string
  /** What `npm pack` put in the tarball. */
  files: string[]
}

export async function packAndInstall (t: TestContext): Promise<InstalledTarball> {
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

  const consumer = join(work, 'consumer')
  await mkdir(consumer)
  await writeFile(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }))
  await sh(consumer, 'npm', ['install', join(work, packed.filename), '--offline', '--no-audit', '--no-fund'])
  return { consumer, files: packed.files.map(file => file.path) }
}
