/** Turns the measurements into the verdicts and the Markdown of bench/RESULTS.md. */
import type { BenchConfig } from './config.js'
import type { UpstreamCalls } from './emulator-control.js'
import type { BurstResult, LoadResult } from './load.js'
import type { MemorySnapshot } from './processes.js'

export interface Environment {
  date: string
  node: string
  cpus: number
  cpuModel: string
  loadAverage: number[]
  broker: string
}

export interface MeasuredRun {
  /** `compare`: the build given as BENCH_COMPARE_ENTRY, run in the same pairs. */
  target: 'broker' | 'baseline' | 'compare'
  pair: number
  load: LoadResult
  calls: UpstreamCalls
  /** CPU time (user + system) of the target process per answered request. */
  cpuUsPerRequest: number
  /** CPU time of the target's main thread (where its JavaScript runs) per second of the run: 1 = busy throughout. */
  mainThreadBusy: number
  emulatorCpuUsPerRequest: number
  /** autocannon, in the benchmark's own process. */
  loaderCpuUsPerRequest: number
}

export interface ColdStart {
  burst: BurstResult
  calls: UpstreamCalls
  jwksFetches: number
}

export interface MemoryPhase {
  users: number
  load: LoadResult
  calls: UpstreamCalls
  warm: MemorySnapshot
  after: MemorySnapshot
}

export interface BrokerLife {
  label: string
  uptimeS: number
  oauthCalls: number
  embeddedCalls: number
  /** 200s the load generators received (in-flight answers at the end of a run are not counted). */
  received: number
  /** Tokens issued, counted from the audit lines of the broker's log (`received` below LOG_LEVEL=info). */
  issued: number
  /** Whether `issued` comes from audit lines. */
  audited: boolean
  logBytes: number
}

export interface BenchResults {
  environment: Environment
  config: BenchConfig
  cold: ColdStart
  runs: MeasuredRun[]
  lives: BrokerLife[]
  memory: MemoryPhase | undefined
  elapsedS: number
  buildWarnings: string
}

export interface Verdict { target: string, measured: string, ok: boolean }

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] as number : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

const MB = 1024 * 1024
const mb = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`
const ms = (value: number): string => `${value.toFixed(2)} ms`
const p99Difference = (deltaMs: number): string => deltaMs < 0 ? `${ms(-deltaMs)} less` : `${ms(deltaMs)} more`
/** A ratio to three decimals, cut rather than rounded: one under 0.8 never reads 0.800×. */
const ratioText = (value: number): string => `${(Math.floor(value * 1000 + 1e-9) / 1000).toFixed(3)}×`
const percent = (share: number): string => `${(share * 100).toFixed(0)} %`
const fixed = (value: number, digits = 0): string => value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })

export interface PairFigures { pair: number, broker: MeasuredRun, baseline: MeasuredRun, ratio: number, p99DeltaMs: number }

export function pairs (runs: MeasuredRun[]): PairFigures[] {
  const out: PairFigures[] = []
  for (const broker of runs.filter((r) => r.target === 'broker')) {
    const baseline = runs.find((r) => r.target === 'baseline' && r.pair === broker.pair)
    if (baseline === undefined) continue
    out.push({ pair: broker.pair, broker, baseline, ratio: broker.load.reqPerS / baseline.load.reqPerS, p99DeltaMs: broker.load.p99Ms - baseline.load.p99Ms })
  }
  return out
}

export function verdicts (results: BenchResults): Verdict[] {
  const figures = pairs(results.runs)
  const ratio = median(figures.map((p) => p.ratio))
  const p99Delta = median(figures.map((p) => p.p99DeltaMs))
  const issued = results.lives.reduce((sum, life) => sum + life.issued, 0)
  const embedded = results.lives.reduce((sum, life) => sum + life.embeddedCalls, 0)
  // Without audit lines (LOG_LEVEL below info) tokens in flight at the end of a run are not
  // counted: the per-token verdicts would be guesses, so they are left out.
  const audited = results.lives.every((life) => life.audited)
  const out: Verdict[] = [
    { target: 'throughput ≥ 0.8× baseline (median of pairs)', measured: ratioText(ratio), ok: ratio >= 0.8 },
    { target: 'p99 ≤ baseline p99 + 2 ms (median of pairs)', measured: `${p99Delta >= 0 ? '+' : ''}${ms(p99Delta)}`, ok: p99Delta <= 2 },
    {
      target: '1 OAuth call per bearer lifetime (the broker renews no earlier than half-way)',
      measured: results.lives.map((life) => `${life.label}: ${life.oauthCalls} in ${fixed(life.uptimeS)} s`).join(', '),
      ok: results.lives.every((life) => life.oauthCalls >= 1 && life.oauthCalls <= 1 + Math.floor(life.uptimeS / (results.config.bearerTtlS / 2)))
    },
    { target: 'cold start: 1 OAuth call', measured: String(results.cold.calls.oauth), ok: results.cold.calls.oauth === 1 },
    { target: 'cold start: 0 errors', measured: String(results.cold.burst.errors), ok: results.cold.burst.errors === 0 }
  ]
  if (audited) {
    out.push(
      { target: '≤ 1 embedded call per issued token', measured: `${(embedded / issued).toFixed(4)}`, ok: embedded <= issued },
      {
        target: 'an audit line for every token received',
        measured: results.lives.map((life) => `${life.label}: ${fixed(life.issued)} lines, ${fixed(life.received)} received`).join('; '),
        ok: results.lives.every((life) => life.issued >= life.received)
      }
    )
  }
  if (results.memory !== undefined) {
    const growth = results.memory.after.rssBytes - results.memory.warm.rssBytes
    out.push({ target: `RSS growth over ${fixed(results.memory.users)} users < 100 MB`, measured: mb(growth), ok: growth < 100 * MB })
  }
  return out
}

function runRow (run: MeasuredRun): string {
  const { load, calls } = run
  return `| ${run.pair} | ${run.target} | ${fixed(load.reqPerS)} | ${ms(load.p50Ms)} | ${ms(load.p99Ms)} | ${fixed(run.cpuUsPerRequest)} µs | ${percent(run.mainThreadBusy)} | ${fixed(load.ok)} | ${load.non2xx + load.errors + load.timeouts} | ${calls.oauth} | ${fixed(calls.embedded)} |`
}

export function renderMarkdown (results: BenchResults): string {
  const { environment: env, config, cold, memory } = results
  const figures = pairs(results.runs)
  const brokerRuns = results.runs.filter((r) => r.target === 'broker')
  const baselineRuns = results.runs.filter((r) => r.target === 'baseline')
  const issued = results.lives.reduce((sum, life) => sum + life.issued, 0)
  const oauth = results.lives.reduce((sum, life) => sum + life.oauthCalls, 0)
  const embedded = results.lives.reduce((sum, life) => sum + life.embeddedCalls, 0)
  const lines = [
    '# Benchmark results',
    '',
    `Written by \`npm run bench\` on ${env.date}: Node ${env.node}, ${env.cpus} CPUs (${env.cpuModel}), load average at start ${env.loadAverage.map((l) => l.toFixed(2)).join(' ')}.`,
    `Broker: ${env.broker}. ${config.connections} connections, ${config.pairs} pair${config.pairs === 1 ? '' : 's'} of ${config.durationS} s runs (broker and baseline in ABBA order), after a warm-up in which each of the ${fixed(config.users)} distinct users (RS256 JWTs) fetched one token; the runs cycle through the same users, recipient and checkout tokens alternately. The whole run took ${fixed(results.elapsedS)} s.`,
    '',
    '## Broker against the leanest pass-through',
    '',
    '| | broker | baseline | broker / baseline |',
    '|---|---|---|---|',
    `| req/s (median of runs) | ${fixed(median(brokerRuns.map((r) => r.load.reqPerS)))} | ${fixed(median(baselineRuns.map((r) => r.load.reqPerS)))} | **${ratioText(median(figures.map((p) => p.ratio)))}** (median of pairs) |`,
    `| p50 latency (median of runs) | ${ms(median(brokerRuns.map((r) => r.load.p50Ms)))} | ${ms(median(baselineRuns.map((r) => r.load.p50Ms)))} | |`,
    `| CPU per request (median of runs) | ${fixed(median(brokerRuns.map((r) => r.cpuUsPerRequest)))} µs | ${fixed(median(baselineRuns.map((r) => r.cpuUsPerRequest)))} µs | ${(median(brokerRuns.map((r) => r.cpuUsPerRequest)) / median(baselineRuns.map((r) => r.cpuUsPerRequest))).toFixed(2)}× |`,
    `| main thread busy (median of runs) | ${percent(median(brokerRuns.map((r) => r.mainThreadBusy)))} | ${percent(median(baselineRuns.map((r) => r.mainThreadBusy)))} | |`,
    `| p99 latency (median of runs) | ${ms(median(brokerRuns.map((r) => r.load.p99Ms)))} | ${ms(median(baselineRuns.map((r) => r.load.p99Ms)))} | ${p99Difference(median(figures.map((p) => p.p99DeltaMs)))} (median of pairs) |`,
    '',
    `Same machine, same runs: per request the emulator used ${fixed(median(results.runs.map((r) => r.emulatorCpuUsPerRequest)))} µs of CPU and autocannon ${fixed(median(results.runs.map((r) => r.loaderCpuUsPerRequest)))} µs (medians); all three processes share the ${env.cpus} CPUs, so a target's CPU per request is the steadiest figure of its cost.`,
    '',
    'A Node process runs its JavaScript on one thread. While that thread is busy close to 100 % of the run, the target cannot answer faster than that thread gets through requests, however idle the other CPU is; a ratio between the two targets is then set by their CPU per request.',
    '',
    '| pair | target | req/s | p50 | p99 | CPU per request | main thread busy | 2xx | failed | OAuth calls | embedded calls |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.runs.map(runRow),
    '',
    '## Mangopay calls',
    '',
    `Over every broker process: ${fixed(issued)} tokens issued, ${oauth} OAuth calls (**${(oauth / issued).toExponential(2)} per token**), ${fixed(embedded)} embedded calls (**${(embedded / issued).toFixed(4)} per token**). The emulator's bearers live ${config.bearerTtlS} s.`,
    '',
    '| broker process | lived | tokens issued (audit lines) | OAuth calls | embedded calls | log bytes per token |',
    '|---|---|---|---|---|---|',
    ...results.lives.map((life) => `| ${life.label} | ${fixed(life.uptimeS)} s | ${fixed(life.issued)} | ${life.oauthCalls} | ${fixed(life.embeddedCalls)} | ${fixed(life.logBytes / Math.max(1, life.issued))} |`),
    '',
    '## Cold start',
    '',
    `A freshly started broker, hit by ${fixed(cold.burst.requests)} concurrent requests (distinct users) the moment it listens: **${cold.calls.oauth} OAuth call**, ${fixed(cold.calls.embedded)} embedded calls, **${cold.burst.errors} errors** (${Object.entries(cold.burst.statuses).map(([status, count]) => `${status}: ${count}`).join(', ')}), ${cold.jwksFetches} JWKS fetch, all answered in ${fixed(cold.burst.elapsedMs)} ms.`,
    ''
  ]
  if (memory !== undefined) {
    lines.push(
      '## Memory',
      '',
      `A fresh broker, warmed up by the ${fixed(config.users)} users above, then ${fixed(memory.users)} new distinct users fetching one token each (${fixed(memory.load.ok)} issued, ${memory.load.non2xx + memory.load.errors} failed). Every JWT is new here, so this is also the **first-visit throughput: ${fixed(memory.load.reqPerS)} req/s** (p50 ${ms(memory.load.p50Ms)}, p99 ${ms(memory.load.p99Ms)}). Heap is measured after a full GC.`,
      '',
      '| | RSS | heap used | heap total | external |',
      '|---|---|---|---|---|',
      `| after warm-up | ${mb(memory.warm.rssBytes)} | ${mb(memory.warm.heapUsedBytes)} | ${mb(memory.warm.heapTotalBytes)} | ${mb(memory.warm.externalBytes)} |`,
      `| after ${fixed(memory.users)} users | ${mb(memory.after.rssBytes)} | ${mb(memory.after.heapUsedBytes)} | ${mb(memory.after.heapTotalBytes)} | ${mb(memory.after.externalBytes)} |`,
      `| growth | **${mb(memory.after.rssBytes - memory.warm.rssBytes)}** | ${mb(memory.after.heapUsedBytes - memory.warm.heapUsedBytes)} | | |`,
      ''
    )
  }
  const compareRuns = results.runs.filter((r) => r.target === 'compare')
  if (compareRuns.length > 0) {
    const row = (name: string, runs: MeasuredRun[]): string =>
      `| ${name} | ${fixed(median(runs.map((r) => r.load.reqPerS)))} | ${ms(median(runs.map((r) => r.load.p50Ms)))} | ${ms(median(runs.map((r) => r.load.p99Ms)))} | ${fixed(median(runs.map((r) => r.cpuUsPerRequest)))} µs | ${ratioText(median(runs.map((r) => r.load.reqPerS / (baselineRuns.find((b) => b.pair === r.pair)?.load.reqPerS ?? NaN))))} |`
    lines.push(
      '## Compared build',
      '',
      `\`${config.compareEntry ?? ''}\`, loaded in the same pairs as the broker and the baseline (medians of runs):`,
      '',
      '| | req/s | p50 | p99 | CPU per request | vs baseline (median of pairs) |',
      '|---|---|---|---|---|---|',
      row('compared build', compareRuns),
      row('broker', brokerRuns),
      ''
    )
  }
  lines.push(
    '## Targets',
    '',
    '| target | measured | |',
    '|---|---|---|',
    ...verdicts(results).map((v) => `| ${v.target} | ${v.measured} | ${v.ok ? 'met' : '**missed**'} |`),
    ''
  )
  if (results.buildWarnings !== '') {
    lines.push('## Build warnings', '', 'tsc reported errors but emitted the JavaScript that was measured:', '', '```', results.buildWarnings, '```', '')
  }
  return lines.join('\n')
}
