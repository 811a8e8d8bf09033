/**
 * `npm run bench`: what a token costs. Starts the emulator, then the broker as deployed and a
 * bare pass-through baseline as separate processes, loads them in alternation, measures a cold
 * start and memory over many users, and writes bench/RESULTS.md. Knobs: see bench/config.ts.
 */
import { createReadStream } from 'node:fs'
import { rm, stat, writeFile } from 'node:fs/promises'
import { cpus, availableParallelism, loadavg } from 'node:os'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { loadBenchConfig } from './config.js'
import { readCalls, resetCounters, type UpstreamCalls } from './emulator-control.js'
import { createSigningKey, signUserJwts, startJwksServer, type JwksServer } from './jwks.js'
import { burst, runLoad, type LoadResult } from './load.js'
import { freePort, readCpuMs, readMemory, startEmulatorProcess, startListeningProcess, type Proc } from './processes.js'
import { renderMarkdown, verdicts, type BenchResults, type BrokerLife, type ColdStart, type MeasuredRun, type MemoryPhase } from './report.js'
import { OUT, ROOT, baselineEnv, brokerEnv, emulatorEnv, prepare, say, type Prepared } from './setup.js'

/** In-flight requests of a finished run still reach the emulator: let them land before counting. */
const SETTLE_MS = 300
const AUDITED_LEVELS = new Set(['info', 'debug', 'trace'])

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

function describe ({ load, ...cpu }: { load: LoadResult, cpuUsPerRequest?: number, mainThreadBusy?: number, emulatorCpuUsPerRequest?: number, loaderCpuUsPerRequest?: number }): string {
  const failed = load.non2xx + load.errors + load.timeouts
  const us = (value: number | undefined): string => value === undefined ? '?' : value.toFixed(0)
  const busy = cpu.mainThreadBusy === undefined ? '' : `, main thread ${(cpu.mainThreadBusy * 100).toFixed(0)} % busy`
  const cpuText = cpu.cpuUsPerRequest === undefined ? '' : `, CPU/req ${us(cpu.cpuUsPerRequest)} µs${busy} (emulator ${us(cpu.emulatorCpuUsPerRequest)}, autocannon ${us(cpu.loaderCpuUsPerRequest)})`
  return `${load.reqPerS.toFixed(0)} req/s, p50 ${load.p50Ms.toFixed(2)} ms, p99 ${load.p99Ms.toFixed(2)} ms${cpuText}${failed > 0 ? `, ${failed} FAILED` : ''}`
}

/** Counts the audit lines (tokens issued) in a broker's log without holding it in memory. */
async function countAuditLines (file: string): Promise<number> {
  const marker = Buffer.from('"embedded_token_issued"')
  let count = 0
  let carry = Buffer.alloc(0)
  for await (const chunk of createReadStream(file)) {
    const data = Buffer.concat([carry, chunk as Buffer])
    let at = data.indexOf(marker)
    while (at >= 0) {
      count++
      at = data.indexOf(marker, at + marker.length)
    }
    carry = data.subarray(Math.max(0, data.length - marker.length + 1))
  }
  return count
}

interface Setup extends Prepared {
  jwks: JwksServer
  emulator: Proc
}

/** With BENCH_CPU_PROF=1: `node --cpu-prof` flags writing `<name>-<time>.cpuprofile` into bench/out/profiles. */
function profileFlags (name: string): string[] {
  return config.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', join(OUT, 'profiles'), '--cpu-prof-name', `${name}-${Date.now()}.cpuprofile`] : []
}

/** One broker process: how it is started, and what it did over its life. */
class BrokerRun {
  readonly label: string
  readonly logFile: string
  /** server.js (or .ts) to run; the setup's broker by default. */
  readonly entry: string | undefined
  proc: Proc | undefined
  startedAt = 0
  received = 0
  calls: UpstreamCalls = { oauth: 0, embedded: 0 }

  constructor (label: string, entry?: string) {
    this.label = label
    this.logFile = join(OUT, `broker-${label}.log`)
    this.entry = entry
  }

  async start (setup: Setup): Promise<Proc> {
    const port = await freePort()
    const entry = this.entry ?? setup.brokerEntry
    this.startedAt = Date.now()
    this.proc = await startListeningProcess({
      name: `broker (${this.label})`,
      cwd: ROOT,
      nodeArgs: ['--expose-gc', ...setup.brokerNodeFlags, ...config.brokerNodeArgs, ...profileFlags(`broker-${this.label}`), ...(entry.endsWith('.ts') ? ['--import', 'tsx'] : []), setup.brokerHelper],
      env: brokerEnv({ entry, port, logLevel: config.brokerLogLevel, emulatorUrl: setup.emulator.url, jwksUrl: setup.jwks.url }),
      logFile: this.logFile,
      ipc: true
    }, port)
    return this.proc
  }

  /** `received`: 200s the load generator got; `calls`: what the emulator counted meanwhile. */
  record (received: number, calls: UpstreamCalls): void {
    this.received += received
    this.calls = { oauth: this.calls.oauth + calls.oauth, embedded: this.calls.embedded + calls.embedded }
  }

  async stop (): Promise<BrokerLife> {
    const uptimeS = (Date.now() - this.startedAt) / 1000
    await this.proc?.stop()
    return {
      label: this.label,
      uptimeS,
      oauthCalls: this.calls.oauth,
      embeddedCalls: this.calls.embedded,
      received: this.received,
      // Below info there are no audit lines: the tokens received are the best count left.
      issued: AUDITED_LEVELS.has(config.brokerLogLevel) ? await countAuditLines(this.logFile) : this.received,
      audited: AUDITED_LEVELS.has(config.brokerLogLevel),
      logBytes: (await stat(this.logFile)).size
    }
  }
}

/** Resolves once GET /readyz answers 200: the broker holds a Mangopay bearer. */
async function waitReady (proc: Proc): Promise<Proc> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const response = await request(`${proc.url}/readyz`)
    await response.body.dump()
    if (response.statusCode === 200) return proc
    await sleep(100)
  }
  throw new Error(`${proc.name} never became ready`)
}

/** Runs `work` with the emulator's counters zeroed before and read after. */
async function counted<T> (setup: Setup, work: () => Promise<T>): Promise<{ value: T, calls: UpstreamCalls }> {
  await resetCounters(setup.emulator.url)
  const value = await work()
  await sleep(SETTLE_MS)
  return { value, calls: await readCalls(setup.emulator.url) }
}

async function coldStart (setup: Setup, broker: BrokerRun, jwts: readonly string[]): Promise<ColdStart> {
  const fetchesBefore = setup.jwks.fetches()
  const { value: result, calls } = await counted(setup, async () => {
    const proc = await broker.start(setup)
    return await burst(proc.url, jwts)
  })
  broker.record(result.ok, calls)
  return { burst: result, calls, jwksFetches: setup.jwks.fetches() - fetchesBefore }
}

interface Measured { load: LoadResult, calls: UpstreamCalls, cpuUsPerRequest: number, mainThreadBusy: number, emulatorCpuUsPerRequest: number, loaderCpuUsPerRequest: number }

/**
 * A load run against `proc`, with the CPU time spent per answered request by the target, the
 * emulator and the load generator (this process): figures that hold even on a busy machine.
 * Also how busy the target's JavaScript thread was: near 100 %, that one thread is what limits it.
 */
async function measured (setup: Setup, proc: Proc, jwts: readonly string[], length: { durationS: number } | { amount: number }): Promise<Measured> {
  const before = { target: await readCpuMs(proc.pid), mainThread: await readCpuMs(proc.pid, { mainThread: true }), emulator: await readCpuMs(setup.emulator.pid), loader: process.cpuUsage() }
  const { value: load, calls } = await counted(setup, async () => await runLoad(proc.url, { connections: config.connections, jwts, ...length }))
  const answered = Math.max(1, load.ok + load.non2xx)
  const loader = process.cpuUsage(before.loader)
  return {
    load,
    calls,
    cpuUsPerRequest: ((await readCpuMs(proc.pid) - before.target) * 1000) / answered,
    // Read around the run and the settling pause after it (idle time), divided by the run's length.
    mainThreadBusy: (await readCpuMs(proc.pid, { mainThread: true }) - before.mainThread) / 1000 / load.durationS,
    emulatorCpuUsPerRequest: ((await readCpuMs(setup.emulator.pid) - before.emulator) * 1000) / answered,
    loaderCpuUsPerRequest: (loader.user + loader.system) / answered
  }
}

interface Target { name: MeasuredRun['target'], proc: Proc, broker?: BrokerRun }

async function throughput (setup: Setup, targets: Target[], jwts: readonly string[]): Promise<MeasuredRun[]> {
  // Warm-up: every user fetches one token (JIT, connection pools, and what a user's first visit
  // leaves behind). The first-visit cost itself is measured by the memory phase, all new users.
  for (const target of targets) {
    const warm = await measured(setup, target.proc, jwts, { amount: jwts.length })
    target.broker?.record(warm.load.ok, warm.calls)
    say(`warm-up ${target.name}: ${describe(warm)}`)
  }
  const runs: MeasuredRun[] = []
  for (let pair = 1; pair <= config.pairs; pair++) {
    // ABBA order, so drift over the run does not always favour the same side.
    const order = pair % 2 === 1 ? targets : [...targets].reverse()
    for (const target of order) {
      const run = await measured(setup, target.proc, jwts, { durationS: config.durationS })
      target.broker?.record(run.load.ok, run.calls)
      runs.push({ target: target.name, pair, ...run })
      say(`pair ${pair} ${target.name.padEnd(8)}: ${describe(run)}; upstream ${run.calls.oauth} OAuth, ${run.calls.embedded} embedded`)
    }
  }
  return runs
}

async function memoryPhase (setup: Setup, broker: BrokerRun, warmJwts: readonly string[], memoryJwts: readonly string[]): Promise<MemoryPhase> {
  const { value, calls } = await counted(setup, async () => {
    const proc = await broker.start(setup)
    const warmLoad = await runLoad(proc.url, { connections: config.connections, amount: warmJwts.length, jwts: warmJwts })
    broker.received += warmLoad.ok
    const warm = await readMemory(proc)
    say(`memory: after warm-up RSS ${(warm.rssBytes / 2 ** 20).toFixed(1)} MB, heap ${(warm.heapUsedBytes / 2 ** 20).toFixed(1)} MB; now ${memoryJwts.length} distinct users`)
    const load = await runLoad(proc.url, { connections: config.connections, amount: memoryJwts.length, jwts: memoryJwts })
    await sleep(SETTLE_MS)
    const after = await readMemory(proc)
    return { warm, after, load }
  })
  broker.record(value.load.ok, calls)
  say(`memory: ${describe(value)}; after RSS ${(value.after.rssBytes / 2 ** 20).toFixed(1)} MB, heap ${(value.after.heapUsedBytes / 2 ** 20).toFixed(1)} MB`)
  return { users: memoryJwts.length, load: value.load, calls, warm: value.warm, after: value.after }
}

async function startBaseline (setup: Setup): Promise<Proc> {
  const port = await freePort()
  return await startListeningProcess({
    name: 'baseline',
    cwd: ROOT,
    nodeArgs: [...profileFlags('baseline'), setup.baselineHelper],
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
  const prepared = await prepare(config)

  const key = createSigningKey()
  say(`signing ${config.users + config.memoryUsers} RS256 JWTs`)
  const jwts = await signUserJwts(prepared.signWorker, key, 'user_bench_', config.users, 3600)
  const memoryJwts = await signUserJwts(prepared.signWorker, key, 'user_mem_', config.memoryUsers, 3600)
  const jwks = await startJwksServer(key)
  const emulator = await startEmulatorProcess(ROOT, emulatorEnv(config.bearerTtlS))
  const setup: Setup = { ...prepared, jwks, emulator }
  stops.push(async () => await emulator.stop(), async () => await jwks.close())
  say(`emulator at ${emulator.url}, JWKS at ${jwks.url}`)

  try {
    const broker = new BrokerRun('throughput')
    stops.unshift(async () => await broker.proc?.stop())
    const cold = await coldStart(setup, broker, jwts.slice(0, config.coldRequests))
    say(`cold start: ${cold.calls.oauth} OAuth call(s), ${cold.burst.errors} errors of ${cold.burst.requests}, ${cold.jwksFetches} JWKS fetch(es), ${cold.burst.elapsedMs.toFixed(0)} ms`)

    const baseline = await startBaseline(setup)
    stops.unshift(async () => await baseline.stop())
    const targets: Target[] = [{ name: 'broker', proc: broker.proc as Proc, broker }, { name: 'baseline', proc: baseline }]
    const compare = config.compareEntry === undefined ? undefined : new BrokerRun('compare', resolve(config.compareEntry))
    if (compare !== undefined) {
      stops.unshift(async () => await compare.proc?.stop())
      // Counted, so its start-up OAuth call is on its record (ready = it holds a bearer).
      const { value: proc, calls } = await counted(setup, async () => await waitReady(await compare.start(setup)))
      compare.record(0, calls)
      targets.push({ name: 'compare', proc, broker: compare })
    }
    const runs = await throughput(setup, targets, jwts)
    await baseline.stop()
    const lives = [await broker.stop()]
    if (compare !== undefined) lives.push(await compare.stop())

    let memory: MemoryPhase | undefined
    if (config.memoryUsers > 0) {
      const memoryBroker = new BrokerRun('memory')
      stops.unshift(async () => await memoryBroker.proc?.stop())
      memory = await memoryPhase(setup, memoryBroker, jwts, memoryJwts)
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
    if (!config.keepLogs) {
      for (const label of ['throughput', 'memory', 'compare']) await rm(join(OUT, `broker-${label}.log`), { force: true })
    }
  }
}

await main()
say('done')
