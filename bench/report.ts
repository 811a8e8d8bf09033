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
  /** The same per 2xx answer, i.e. per token issued: failures, cheap to answer, do not dilute it. */
  cpuUsPerToken: number
  /** CPU time of the target's main thread (where its JavaScript runs) per second of the run: 1 = busy throughout. */
  mainThreadBusy: number
  emulatorCpuUsPerRequest: number
  /** wrk, the load generator: a process of its own, all its threads. */
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
/** A ratio as a change in percent, to one decimal: 1.023 is 2.3, 0.98 is -2. */
const changePercent = (ratio: number): number => Number(((ratio - 1) * 100).toFixed(1))
/** 1.023 reads +2.3 %, 0.98 reads -2.0 %. */
const change = (ratio: number): string => `${changePercent(ratio) >= 0 ? '+' : '-'}${Math.abs(changePercent(ratio)).toFixed(1)} %`
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

/** The median over pairs of `value(a, b)`, `a` and `b` being the runs of two targets in the same pair. */
export function pairedMedian (runs: MeasuredRun[], a: MeasuredRun['target'], b: MeasuredRun['target'], value: (a: MeasuredRun, b: MeasuredRun) => number): number {
  const values: number[] = []
  for (const run of runs.filter((r) => r.target === a)) {
    const other = runs.find((r) => r.target === b && r.pair === run.pair)
    if (other !== undefined) values.push(value(run, other))
  }
  return median(values)
}

/** The issue's bound on a change: CPU per token at most 5 % above the compared build's. */
const MAX_CPU_PER_TOKEN_CHANGE = 5

const cpuPerTokenRatio = (runs: MeasuredRun[], a: MeasuredRun['target'], b: MeasuredRun['target']): number =>
  pairedMedian(runs, a, b, (x, y) => x.cpuUsPerToken / y.cpuUsPerToken)

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
  if (results.runs.some((r) => r.target === 'compare')) {
    const ratio = cpuPerTokenRatio(results.runs, 'broker', 'compare')
    // Judged on the figure shown: +5.0 % is met, +5.1 % is not.
    out.push({ target: `CPU per token ≤ compared build + ${MAX_CPU_PER_TOKEN_CHANGE} % (median of pairs)`, measured: change(ratio), ok: changePercent(ratio) <= MAX_CPU_PER_TOKEN_CHANGE })
  }
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

/** Which targets ran, in the order of the table's columns. */
function targetColumns (runs: MeasuredRun[]): Array<{ target: MeasuredRun['target'], name: string }> {
  const compared = runs.some((r) => r.target === 'compare')
  return [{ target: 'broker', name: 'broker' }, ...(compared ? [{ target: 'compare' as const, name: 'compared build' }] : []), { target: 'baseline', name: 'baseline' }]
}

/**
 * The headline table: each target's medians of runs, then ratios of each pair's figures (their
 * median): broker and compared build against the baseline, and the broker against the compared build.
 */
function headlineTable (runs: MeasuredRun[]): string[] {
  const columns = targetColumns(runs)
  const comparisons = columns.length === 2
    ? [['broker', 'baseline'] as const]
    : [['broker', 'baseline'] as const, ['compare', 'baseline'] as const, ['broker', 'compare'] as const]
  const nameOf = (target: MeasuredRun['target']): string => columns.find((c) => c.target === target)?.name ?? target
  const medianOf = (target: MeasuredRun['target'], value: (r: MeasuredRun) => number): number => median(runs.filter((r) => r.target === target).map(value))
  const row = (label: string, cell: (target: MeasuredRun['target']) => string, ratio: (a: MeasuredRun['target'], b: MeasuredRun['target']) => string): string =>
    `|${[`${label} (median of runs)`, ...columns.map((c) => cell(c.target)), ...comparisons.map(([a, b]) => ratio(a, b))].map((text) => text === '' ? ' ' : ` ${text} `).join('|')}|`
  const none = (): string => ''
  const p99Delta = (a: MeasuredRun['target'], b: MeasuredRun['target']): string => `${p99Difference(pairedMedian(runs, a, b, (x, y) => x.load.p99Ms - y.load.p99Ms))} (median of pairs)`
  return [
    `| | ${columns.map((c) => c.name).join(' | ')} | ${comparisons.map(([a, b]) => `${nameOf(a)} / ${nameOf(b)}`).join(' | ')} |`,
    `|---|${columns.map(() => '---|').join('')}${comparisons.map(() => '---|').join('')}`,
    row('req/s', (t) => fixed(medianOf(t, (r) => r.load.reqPerS)), (a, b) => {
      const text = ratioText(pairedMedian(runs, a, b, (x, y) => x.load.reqPerS / y.load.reqPerS))
      return `${a === 'broker' && b === 'baseline' ? `**${text}**` : text} (median of pairs)`
    }),
    row('CPU per token', (t) => `${fixed(medianOf(t, (r) => r.cpuUsPerToken))} µs`, (a, b) => {
      const ratio = cpuPerTokenRatio(runs, a, b)
      return b === 'compare' ? `**${change(ratio)}** (median of pairs)` : `${ratio.toFixed(2)}× (median of pairs)`
    }),
    row('p50 latency', (t) => ms(medianOf(t, (r) => r.load.p50Ms)), none),
    row('p99 latency', (t) => ms(medianOf(t, (r) => r.load.p99Ms)), p99Delta),
    row('main thread busy', (t) => percent(medianOf(t, (r) => r.mainThreadBusy)), none)
  ]
}

/** What the load generator cost, and whether it came near to limiting the targets. */
function loaderLine (results: BenchResults): string {
  const runs = results.runs
  // Its one thread's share of a CPU: CPU time per answer times answers per second.
  const busiest = Math.max(...runs.map((r) => r.loaderCpuUsPerRequest * (r.load.ok + r.load.non2xx) / r.load.durationS / 1e6))
  const limit = busiest < 0.8
    ? 'far from the whole CPU one thread can use: it is not what limits the targets'
    : '**close to the whole CPU one thread can use: wrk may be what limits the targets**'
  return `Same machine, same runs: per request the emulator used ${fixed(median(runs.map((r) => r.emulatorCpuUsPerRequest)))} µs of CPU and wrk, the load generator, ${fixed(median(runs.map((r) => r.loaderCpuUsPerRequest)))} µs (medians); wrk's thread was busy ${percent(busiest)} of the time in its busiest run, ${limit}. All the processes share the ${results.environment.cpus} CPUs, so a target's CPU per token is the steadiest figure of its cost.`
}

export function renderMarkdown (results: BenchResults): string {
  const { environment: env, config, cold, memory } = results
  const issued = results.lives.reduce((sum, life) => sum + life.issued, 0)
  const oauth = results.lives.reduce((sum, life) => sum + life.oauthCalls, 0)
  const embedded = results.lives.reduce((sum, life) => sum + life.embeddedCalls, 0)
  const compared = results.runs.some((r) => r.target === 'compare')
  const lines = [
    '# Benchmark results',
    '',
    `Written by \`npm run bench\` on ${env.date}: Node ${env.node}, ${env.cpus} CPUs (${env.cpuModel}), load average at start ${env.loadAverage.map((l) => l.toFixed(2)).join(' ')}.`,
    `Broker: ${env.broker}. Load from wrk (1 thread), ${config.connections} connections, ${config.pairs} pair${config.pairs === 1 ? '' : 's'} of ${config.durationS} s runs (${compared ? 'broker, baseline and compared build' : 'broker and baseline'} in ABBA order), after a warm-up in which each of the ${fixed(config.users)} distinct users (RS256 JWTs) fetched one token; the runs cycle through the same users, recipient and checkout tokens alternately. The whole run took ${fixed(results.elapsedS)} s.`,
    '',
    '## Broker against the leanest pass-through',
    '',
    ...headlineTable(results.runs),
    ''
  ]
  if (compared) {
    const ratio = cpuPerTokenRatio(results.runs, 'broker', 'compare')
    lines.push(
      `Compared build: \`${config.compareEntry ?? ''}\`, loaded in the same pairs as the broker and the baseline.`,
      '',
      `**CPU per token vs \`${config.compareEntry ?? ''}\`: ${change(ratio)}** (target ≤ +${MAX_CPU_PER_TOKEN_CHANGE} %: ${changePercent(ratio) <= MAX_CPU_PER_TOKEN_CHANGE ? 'met' : '**missed**'})`,
      ''
    )
  }
  lines.push(
    loaderLine(results),
    '',
    'CPU per token is the target process\'s CPU time (user + system, from `/proc`) per 2xx answer. Latencies are wrk\'s, to the microsecond, with its correction for coordinated omission (an answer slower than the usual pace also counts the requests its connection could not send meanwhile).',
    '',
    'A Node process runs its JavaScript on one thread. While that thread is busy close to 100 % of the run, the target cannot answer faster than that thread gets through requests, however idle the other CPU is; a ratio between the two targets is then set by their CPU per token.',
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
  )
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
