/**
 * `npm run bench:instructions`: the instructions a token request costs each target, counted by
 * valgrind's callgrind. Wall-clock figures on a shared machine move by ±15 % between runs of the
 * same build; an instruction count does not (five runs of one build agreed within 1 %), so this
 * is the before/after for a change too small for `npm run bench` to see (BENCH_COMPARE_ENTRY).
 * It is not a speed: it leaves out cache misses, and valgrind hides the CPU's SHA extensions
 * (SHA-256 counts several times what it costs). Needs valgrind (Debian package `valgrind`).
 *
 * Each target runs under callgrind with instrumentation off, gets a warm-up (every user once,
 * then more, so the JIT has settled), and is counted over a fixed number of requests. The
 * figure is the main thread's (the one that runs JavaScript); all threads' is shown beside it.
 */
import { execFileSync } from 'node:child_process'
import { readdir, readFile, rm, mkdir, writeFile } from 'node:fs/promises'
import { availableParallelism, cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { integer, loadBenchConfig, text } from './config.js'
import { createSigningKey, signUserJwts, startJwksServer } from './jwks.js'
import { ensureWrk, runLoad, writeJwtFile } from './load.js'
import { startOtlpSink } from './otlp-sink.js'
import { freePort, startEmulatorProcess, startListeningProcess, type Proc } from './processes.js'
import { OUT, ROOT, baselineEnv, brokerEnv, emulatorEnv, prepare, say } from './setup.js'

const config = loadBenchConfig(process.env, join(ROOT, 'bench', 'RESULTS.md'))
/** Distinct users: enough for every per-user path to be taken. */
const USERS = integer(process.env, 'BENCH_INSTR_USERS', 500, 1)
/**
 * Requests before counting starts (at least one per user), with other users' JWTs. After 6,000
 * one build still ran code V8 had not optimised yet: its count held inline-cache misses and
 * baseline-tier builtins, 16 k instructions more than after 20,000.
 */
const WARMUP = Math.max(integer(process.env, 'BENCH_INSTR_WARMUP', 20_000, 1), USERS)
/** Requests counted per target: few enough to be counted well within the verify cache's age at callgrind's pace. */
const REQUESTS = integer(process.env, 'BENCH_INSTR_REQUESTS', 1000, 1)
/**
 * The counted JWTs are each verified once just before counting, and the counting must end this
 * long after that began: every counted request then finds its JWT verified, as in steady state.
 * Builds before the verify cache followed the key set (a compare build may be one) reused a
 * verification for at most 60 s: with the warm-up's JWTs counted, verifications expired midway,
 * and one slow machine counted anything from 433 k to 655 k instructions for the same build.
 */
const COUNT_WITHIN_MS = 50_000
const DIR = join(OUT, 'instructions')
/** The report; BENCH_INSTR_RESULTS_FILE writes it elsewhere (e.g. while developing). */
const RESULTS_FILE = text(process.env, 'BENCH_INSTR_RESULTS_FILE') ?? join(ROOT, 'bench', 'INSTRUCTIONS.md')
try {
  execFileSync('valgrind', ['--version'], { stdio: 'ignore' })
} catch {
  throw new Error('valgrind is not installed (Debian: apt-get install valgrind)')
}

interface Counted { name: string, requests: number, mainThread: number, allThreads: number }

/**
 * callgrind_control finds a process through a file named after the user and host variables
 * of that process's environment: it must be run with the same ones.
 */
function control (proc: Proc, env: Record<string, string>, ...args: string[]): void {
  const same = { PATH: process.env.PATH ?? '', ...(env.HOST === undefined ? {} : { HOST: env.HOST }) }
  execFileSync('callgrind_control', [...args, String(proc.pid)], { env: same, stdio: 'ignore' })
}

/** Sums the `summary:` line of each thread's dump; thread 1 is the main thread. */
async function readDump (prefix: string): Promise<{ mainThread: number, allThreads: number }> {
  let mainThread = 0
  let allThreads = 0
  for (const file of await readdir(DIR)) {
    const thread = file.startsWith(`${prefix}.1-`) ? file.slice(prefix.length + 3) : undefined
    if (thread === undefined) continue
    const summary = /^summary: (\d+)$/m.exec(await readFile(join(DIR, file), 'utf8'))?.[1]
    if (summary === undefined) throw new Error(`no summary in ${file}`)
    allThreads += Number(summary)
    if (Number(thread) === 1) mainThread = Number(summary)
  }
  if (mainThread === 0) throw new Error(`no callgrind dump for ${prefix}`)
  return { mainThread, allThreads }
}

/** The two sets of users, each a file of JWTs for wrk, and how many there are in each. */
interface Users { warm: string, counted: string, count: number }

async function measure (name: string, start: (port: number, wrapper: string[]) => Promise<{ proc: Proc, env: Record<string, string> }>, users: Users): Promise<Counted> {
  const prefix = `${name}.out`
  const wrapper = ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${join(DIR, prefix)}`]
  const { proc, env } = await start(await freePort(), wrapper)
  try {
    // Under valgrind a run takes far longer than in `npm run bench`.
    const limits = { connections: config.connections, timeLimitS: 3600 }
    const warm = await runLoad(proc.url, { ...limits, amount: WARMUP, jwtFile: users.warm })
    if (warm.ok !== WARMUP) throw new Error(`${name}: ${WARMUP - warm.ok} of the warm-up requests failed`)
    const primedAt = performance.now()
    const primed = await runLoad(proc.url, { ...limits, amount: users.count, jwtFile: users.counted })
    if (primed.ok !== users.count) throw new Error(`${name}: ${users.count - primed.ok} of the priming requests failed`)
    control(proc, env, '--instr=on')
    // wrk sends exactly REQUESTS requests, then leaves its connections idle: none is counted unanswered.
    const run = await runLoad(proc.url, { ...limits, amount: REQUESTS, jwtFile: users.counted })
    control(proc, env, '--dump')
    control(proc, env, '--instr=off')
    if (run.ok !== REQUESTS) throw new Error(`${name}: ${REQUESTS - run.ok} of the counted requests failed`)
    const tookMs = performance.now() - primedAt
    if (tookMs > COUNT_WITHIN_MS) {
      throw new Error(`${name}: priming and counting took ${(tookMs / 1000).toFixed(0)} s under callgrind, past ${COUNT_WITHIN_MS / 1000} s: verifications may have expired and been counted; set BENCH_INSTR_REQUESTS or BENCH_INSTR_USERS lower`)
    }
    const { mainThread, allThreads } = await readDump(prefix)
    say(`${name}: ${(mainThread / REQUESTS / 1000).toFixed(1)} k instructions per request on the main thread, ${(allThreads / REQUESTS / 1000).toFixed(1)} k on all threads`)
    return { name, requests: REQUESTS, mainThread, allThreads }
  } finally {
    await proc.stop()
  }
}

function render (rows: Counted[], brokerDescription: string): string {
  const baseline = rows.find((row) => row.name === 'baseline') as Counted
  const per = (value: number): string => `${(value / 1000).toFixed(1)} k`
  const lines = [
    '# Instructions per token request',
    '',
    `Written by \`npm run bench:instructions\` on ${new Date().toISOString()}: Node ${process.version}, ${availableParallelism()} CPUs (${cpus()[0]?.model ?? 'unknown'}), valgrind's callgrind.`,
    `Broker: ${brokerDescription}. ${config.connections} connections; each target warmed up with ${WARMUP} requests of ${USERS} users, then ${USERS} other users' JWTs each verified once, then counted over ${REQUESTS} requests of those (no verification among them: the counted phase ends within ${COUNT_WITHIN_MS / 1000} s of their first).`,
    '',
    '| target | main thread, per request | all threads, per request | main thread / baseline |',
    '|---|---|---|---|',
    ...rows.map((row) => `| ${row.name} | ${per(row.mainThread / row.requests)} | ${per(row.allThreads / row.requests)} | ${(row.mainThread / row.requests / (baseline.mainThread / baseline.requests)).toFixed(2)}× |`),
    '',
    'Instructions, not time: cache misses are not in them, and under valgrind the CPU\'s SHA extensions are hidden, so SHA-256 counts several times what it costs.',
    ''
  ]
  return lines.join('\n')
}

async function main (): Promise<void> {
  ensureWrk()
  await rm(DIR, { recursive: true, force: true })
  await mkdir(DIR, { recursive: true })
  const prepared = await prepare(config)
  const key = createSigningKey()
  const users: Users = {
    warm: await writeJwtFile(join(DIR, 'jwts-warm.txt'), await signUserJwts(prepared.signWorker, key, 'user_warm_', USERS, 3600)),
    counted: await writeJwtFile(join(DIR, 'jwts-counted.txt'), await signUserJwts(prepared.signWorker, key, 'user_instr_', USERS, 3600)),
    count: USERS
  }
  const jwks = await startJwksServer(key)
  const emulator = await startEmulatorProcess(ROOT, emulatorEnv(config.bearerTtlS))
  const otlp = config.tracing ? await startOtlpSink() : undefined
  try {
    const broker = (label: string, entry: string) => async (port: number, wrapper: string[]) => {
      const env = brokerEnv({ entry, port, logLevel: config.brokerLogLevel, emulatorUrl: emulator.url, jwksUrl: jwks.url, otlpUrl: otlp?.url })
      const nodeArgs = [...prepared.brokerNodeFlags, ...config.brokerNodeArgs, ...(entry.endsWith('.ts') ? ['--import', 'tsx'] : []), prepared.brokerHelper]
      const proc = await startListeningProcess({ name: label, cwd: ROOT, nodeArgs, env, wrapper, logFile: join(DIR, `${label}.log`), startTimeoutMs: 300_000 }, port)
      return { proc, env }
    }
    const rows: Counted[] = []
    rows.push(await measure('broker', broker('broker', prepared.brokerEntry), users))
    if (config.compareEntry !== undefined) rows.push(await measure('compare', broker('compare', resolve(config.compareEntry)), users))
    rows.push(await measure('baseline', async (port, wrapper) => {
      const env = baselineEnv({ port, emulatorUrl: emulator.url })
      const proc = await startListeningProcess({ name: 'baseline', cwd: ROOT, nodeArgs: [prepared.baselineHelper], env, wrapper, startTimeoutMs: 300_000 }, port)
      return { proc, env }
    }, users))
    const markdown = render(rows, config.brokerEntry ?? 'src/ compiled with tsconfig.build.json, with the flags of `npm start`')
    await writeFile(RESULTS_FILE, markdown)
    process.stdout.write(`\n${markdown}\n`)
    say(`wrote ${RESULTS_FILE}`)
  } finally {
    await emulator.stop()
    await jwks.close()
    if (otlp !== undefined) say(`spans exported: ${otlp.received().batches} batches, ${(otlp.received().bytes / 1e6).toFixed(1)} MB`)
    await otlp?.close()
  }
}

await main()
