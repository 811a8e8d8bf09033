/** Prepares what the benchmark runs: the compiled broker and plain-JavaScript helper processes. */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { basename, join } from 'node:path'
import ts from 'typescript'

export interface BuildOutcome {
  /** The file bench/broker-process loads: the compiled server.js, or src/server.ts under tsx. */
  entry: string
  /** tsc's complaints, when it emitted anyway. */
  warnings: string
}

/**
 * Compiles src/ with the production tsconfig into `outDir` (not dist/, which belongs to the
 * build), so the benchmark measures the JavaScript that is deployed.
 */
export async function buildBroker (root: string, outDir: string): Promise<BuildOutcome> {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const { code, output } = await new Promise<{ code: number | null, output: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', outDir, '--declaration', 'false', '--sourceMap', 'false'], { cwd: root })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    child.once('error', reject)
    child.once('exit', (exitCode) => resolve({ code: exitCode, output }))
  })
  const entry = join(outDir, 'server.js')
  // tsc emits despite type errors; a colleague's work in progress should not stop a benchmark.
  if (!existsSync(entry)) throw new Error(`tsc did not produce ${entry} (exit ${code}):\n${output}`)
  return { entry, warnings: code === 0 ? '' : output.trim() }
}

/**
 * The `node` flags the broker is deployed with: those of `npm start` (package.json), which the
 * Dockerfile's CMD repeats (test/deploy.test.ts checks they agree).
 */
export async function deployedNodeFlags (root: string): Promise<string[]> {
  const { scripts } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { scripts?: { start?: string } }
  const words = (scripts?.start ?? '').split(/\s+/)
  if (words[0] !== 'node') throw new Error(`the start script does not run node: ${JSON.stringify(scripts?.start)}`)
  return words.slice(1).filter((word) => word.startsWith('--'))
}

/**
 * Type-strips a bench helper to `outDir/<name>.mjs`, so it runs under plain `node`: under tsx,
 * source maps would be enabled for the whole process, which is not how the broker is deployed.
 */
export async function transpileHelper (file: string, outDir: string): Promise<string> {
  const source = await readFile(file, 'utf8')
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
    fileName: file
  })
  await mkdir(outDir, { recursive: true })
  const out = join(outDir, basename(file).replace(/\.ts$/, '.mjs'))
  await writeFile(out, outputText)
  return out
}
