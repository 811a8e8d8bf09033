/**
 * `npm run bench`: what a token costs. Starts the emulator, then the broker as deployed and a
 * bare pass-through baseline as separate processes, loads them in alternation, measures a cold
 * start and memory over many users, and writes bench/RESULTS.md. Knobs: see bench/config.ts.
 */
import { rm, writeFile } from 'node:fs/promises'
import { cpus, availableParallelism, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { BrokerRun, profileFlags, waitReady, type Setup } from './broker-run.js'
import { loadBenchConfig } from './config.js'
import { createSigningKey, signUserJwts, startJwksServer } from './jwks.js'
import { burst, ensureWrk, runLoad, writeJwtFile } from './load.js'
import { startOtlpSink } from './otlp-sink.js'
import { SETTLE_MS, counted, describe, measured } from './measure.js'
import { freePort, readMemory, startEmulatorProcess, startListeningProcess, type Proc } from './processes.js'
import { renderMarkdown, verdicts, type BenchResults, type ColdStart, type MeasuredRun, type MemoryPhase } from './report.js'
import { OUT, ROOT, baselineEnv, emulatorEnv, prepare, say } from './setup.js'

const config = loadBenchConfig(process.env, join(ROOT, 'bench', 'RESULTS.md'))
const startedAt = Date.now()
/** How to stop what has been started, newest first. */
const stops: Array<() => Promise<unknown>> = []

async function stopAll (): Promise<void> {
  for (const stop of stops.splice(0)) await stop().catch(() => {})
}

// Interrupted (Ctrl-C, a CI timeout): leave no broker, baseline or emulator behind.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping`)
    stopAll().finally(() => process.exit(130))
  })
}

/** The JWTs the load generator cycles through: one file per set of users, in bench/out. */
const JWT_FILES = { users: join(OUT, 'jwts-users.txt'), memory: join(OUT, 'jwts-memory.txt') }

async function coldStart (setup: Setup, broker: BrokerRun, jwts: readonly string[]): Promise<ColdStart> {
  const fetchesBefore = setup.jwks.fetches()
  const { value: result, calls } = await counted(setup, async () => {
    const proc = await broker.start(setup)
    return await burst(proc.url, jwts)
  })
  broker.record(result.ok, calls)
  return { burst: result, calls, jwksFetches: setup.jwks.fetches() - fetchesBefore }
}

interface Target { name: MeasuredRun['target'], proc: Proc, broker?: BrokerRun }

async function throughput (setup: Setup, targets: Target[], users: number): Promise<MeasuredRun[]> {
  const shape = { connections: config.connections, jwtFile: JWT_FILES.users }
  // Warm-up: every user fetches one token (JIT, connection pools, and what a user's first visit
  // leaves behind). The first-visit cost itself is measured by the memory phase, all new users.
  for (const target of targets) {
    const warm = await measured(setup, target.proc, { ...shape, amount: users })
    target.broker?.record(warm.load.ok, warm.calls)
    say(`warm-up ${target.name}: ${describe(warm)}`)
  }
  const runs: MeasuredRun[] = []
  for (let pair = 1; pair <= config.pairs; pair++) {
    // ABBA order, so drift over the run does not always favour the same side.
    const order = pair % 2 === 1 ? targets : [...targets].reverse()
    for (const target of order) {
      const run = await measured(setup, target.proc, { ...shape, durationS: config.durationS })
      target.broker?.record(run.load.ok, run.calls)
      runs.push({ target: target.name, pair, ...run })
      say(`pair ${pair} ${target.name.padEnd(8)}: ${describe(run)}; upstream ${run.calls.oauth} OAuth, ${run.calls.embedded} embedded`)
    }
  }
  return runs
}

async function memoryPhase (setup: Setup, broker: BrokerRun, warmUsers: number, memoryUsers: number): Promise<MemoryPhase> {
  const { value, calls } = await counted(setup, async () => {
    const proc = await broker.start(setup)
    const warmLoad = await runLoad(proc.url, { connections: config.connections, amount: warmUsers, jwtFile: JWT_FILES.users })
    broker.received += warmLoad.ok
    const warm = await readMemory(proc)
    say(`memory: after warm-up RSS ${(warm.rssBytes / 2 ** 20).toFixed(1)} MB, heap ${(warm.heapUsedBytes / 2 ** 20).toFixed(1)} MB; now ${memoryUsers} distinct users`)
    const { loaderCpuMs: _, ...load } = await runLoad(proc.url, { connections: config.connections, amount: memoryUsers, jwtFile: JWT_FILES.memory })
    await sleep(SETTLE_MS)
    const after = await readMemory(proc)
    return { warm, after, load }
  })
  broker.record(value.load.ok, calls)
  say(`memory: ${describe(value)}; after RSS ${(value.after.rssBytes / 2 ** 20).toFixed(1)} MB, heap ${(value.after.heapUsedBytes / 2 ** 20).toFixed(1)} MB`)
  return { users: memoryUsers, load: value.load, calls, warm: value.warm, after: value.after }
}

async function startBaseline (setup: Setup): Promise<Proc> {
  const port = await freePort()
  return await startListeningProcess({
    name: 'baseline',
    cwd: ROOT,
    nodeArgs: [...profileFlags(config, 'baseline'), setup.baselineHelper],
    env: baselineEnv({ port, emulatorUrl: setup.emulator.url })
  }, port)
}

function describeBroker (flags: readonly string[]): string {
  const node = `\`${['node', ...flags, ...config.brokerNodeArgs].join(' ')}\``
  if (config.brokerEntry !== undefined) return `${config.brokerEntry}, run with ${node}`
  return config.brokerBuild === 'dist' ? `src/ compiled with tsconfig.build.json, run with ${node} (as deployed: the flags of \`npm start\` and the Dockerfile)` : `src/ under tsx, with ${node}`
}

async function main (): Promise<void> {
  const loadAverage = loadavg()
  say(`bench: ${JSON.stringify(config)}`)
  ensureWrk()
  const prepared = await prepare(config)

  const key = createSigningKey()
  say(`signing ${config.users + config.memoryUsers} RS256 JWTs`)
  const jwts = await signUserJwts(prepared.signWorker, key, 'user_bench_', config.users, 3600)
  const memoryJwts = await signUserJwts(prepared.signWorker, key, 'user_mem_', config.memoryUsers, 3600)
  await writeJwtFile(JWT_FILES.users, jwts)
  if (memoryJwts.length > 0) await writeJwtFile(JWT_FILES.memory, memoryJwts)
  const jwks = await startJwksServer(key)
  const emulator = await startEmulatorProcess(ROOT, emulatorEnv(config.bearerTtlS))
  const otlp = config.tracing ? await startOtlpSink() : undefined
  const setup: Setup = { ...prepared, jwks, emulator, otlp }
  stops.push(async () => await emulator.stop(), async () => await jwks.close(), async () => await otlp?.close())
  say(`emulator at ${emulator.url}, JWKS at ${jwks.url}`)

  try {
    const broker = new BrokerRun(config, 'throughput')
    stops.unshift(async () => await broker.proc?.stop())
    const cold = await coldStart(setup, broker, jwts.slice(0, config.coldRequests))
    say(`cold start: ${cold.calls.oauth} OAuth call(s), ${cold.burst.errors} errors of ${cold.burst.requests}, ${cold.jwksFetches} JWKS fetch(es), ${cold.burst.elapsedMs.toFixed(0)} ms`)

    const baseline = await startBaseline(setup)
    stops.unshift(async () => await baseline.stop())
    const targets: Target[] = [{ name: 'broker', proc: broker.proc as Proc, broker }, { name: 'baseline', proc: baseline }]
    const compare = config.compareEntry === undefined ? undefined : new BrokerRun(config, 'compare', resolve(config.compareEntry))
    if (compare !== undefined) {
      stops.unshift(async () => await compare.proc?.stop())
      // Counted, so its start-up OAuth call is on its record (ready = it holds a bearer).
      const { value: proc, calls } = await counted(setup, async () => await waitReady(await compare.start(setup)))
      compare.record(0, calls)
      targets.push({ name: 'compare', proc, broker: compare })
    }
    const runs = await throughput(setup, targets, jwts.length)
    await baseline.stop()
    const lives = [await broker.stop()]
    if (compare !== undefined) lives.push(await compare.stop())

    let memory: MemoryPhase | undefined
    if (config.memoryUsers > 0) {
      const memoryBroker = new BrokerRun(config, 'memory')
      stops.unshift(async () => await memoryBroker.proc?.stop())
      memory = await memoryPhase(setup, memoryBroker, jwts.length, memoryJwts.length)
      lives.push(await memoryBroker.stop())
    }

    const results: BenchResults = {
      environment: {
        date: new Date().toISOString(),
        node: process.version,
        cpus: availableParallelism(),
        cpuModel: cpus()[0]?.model ?? 'unknown',
        loadAverage,
        broker: describeBroker(prepared.brokerNodeFlags)
      },
      config,
      cold,
      runs,
      lives,
      memory,
      elapsedS: (Date.now() - startedAt) / 1000,
      buildWarnings: prepared.warnings
    }
    const markdown = renderMarkdown(results)
    await writeFile(config.resultsFile, markdown)
    await writeFile(join(OUT, 'results.json'), JSON.stringify(results, null, 2))
    process.stdout.write(`\n${markdown}\n`)
    say(`wrote ${config.resultsFile}`)
    const missed = verdicts(results).filter((v) => !v.ok)
    if (missed.length > 0) say(`targets missed: ${missed.map((v) => v.target).join('; ')}`)
    // Figures, not a test: a missed target fails the command only when asked (CI).
    if (missed.length > 0 && config.strict) process.exitCode = 1
  } finally {
    await stopAll()
    for (const file of Object.values(JWT_FILES)) await rm(file, { force: true })
    if (!config.keepLogs) {
      for (const label of ['throughput', 'memory', 'compare']) await rm(join(OUT, `broker-${label}.log`), { force: true })
    }
  }
}

await main()
say('done')
