import t, { type Test } from 'tap'
import { integer, loadBenchConfig } from '../bench/config.js'
import type { LoadResult } from '../bench/load.js'
import { pairs, renderMarkdown, verdicts, type BenchResults, type BrokerLife, type MeasuredRun, type MemoryPhase, type Verdict } from '../bench/report.js'

/**
 * The benchmark's pure parts, without running a benchmark: bench/config.ts (the BENCH_*
 * variables, their defaults, which the issue fixes, and the refusal of bad values) and
 * bench/report.ts (how broker and baseline runs are paired, each target's met/missed verdict at
 * its boundaries, and the figures and verdicts the Markdown of RESULTS.md shows). No processes,
 * no network, no timers: the fixtures are built by the small factories below, and each test
 * states only the figures it is about.
 */

const MB = 1024 * 1024
const DEFAULT_RESULTS_FILE = 'bench/RESULTS.md'

/** The message of the error `fn` throws ('did not throw' if none). */
function refusal (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof Error) return err.message
    throw err
  }
  return 'did not throw'
}

// ---- factories ---------------------------------------------------------------------------

function load (figures: Partial<LoadResult> = {}): LoadResult {
  return { reqPerS: 1000, p50Ms: 5, p99Ms: 10, ok: 10_000, non2xx: 0, errors: 0, timeouts: 0, durationS: 10, ...figures }
}

function run (target: MeasuredRun['target'], pair: number, figures: Partial<LoadResult> = {}, extra: Partial<Omit<MeasuredRun, 'target' | 'pair' | 'load'>> = {}): MeasuredRun {
  return {
    target,
    pair,
    load: load(figures),
    calls: { oauth: 0, embedded: 10_000 },
    cpuUsPerRequest: 300,
    cpuUsPerToken: 300,
    mainThreadBusy: 0.5,
    emulatorCpuUsPerRequest: 50,
    loaderCpuUsPerRequest: 100,
    ...extra
  }
}

/** A broker run and a baseline run of the same pair (the baseline at 1,000 req/s, p99 10 ms unless told). */
function pairRuns (pair: number, broker: Partial<LoadResult>, baseline: Partial<LoadResult> = {}): MeasuredRun[] {
  return [run('broker', pair, broker), run('baseline', pair, baseline)]
}

/** One pair per broker/baseline req/s ratio (baseline 1,000 req/s). */
function runsWithRatios (...ratios: number[]): MeasuredRun[] {
  return ratios.flatMap((ratio, i) => pairRuns(i + 1, { reqPerS: ratio * 1000 }))
}

/** One pair per p99 delta (baseline p99 10 ms). */
function runsWithP99Deltas (...deltas: number[]): MeasuredRun[] {
  return deltas.flatMap((delta, i) => pairRuns(i + 1, { reqPerS: 900, p99Ms: 10 + delta }))
}

function life (overrides: Partial<BrokerLife> = {}): BrokerLife {
  return { label: 'broker-1', uptimeS: 100, oauthCalls: 1, embeddedCalls: 1000, received: 1000, issued: 1000, audited: true, logBytes: 500_000, ...overrides }
}

function memory (growthBytes: number): MemoryPhase {
  const warm = { rssBytes: 80 * MB, heapUsedBytes: 20 * MB, heapTotalBytes: 30 * MB, externalBytes: 2 * MB }
  return {
    users: 200_000,
    load: load({ reqPerS: 2000, ok: 200_000 }),
    calls: { oauth: 0, embedded: 200_000 },
    warm,
    after: { ...warm, rssBytes: warm.rssBytes + growthBytes, heapUsedBytes: warm.heapUsedBytes + 5 * MB }
  }
}

function cold (oauth: number, errors: number): BenchResults['cold'] {
  return {
    burst: { requests: 1000, ok: 1000 - errors, errors, statuses: errors === 0 ? { 200: 1000 } : { 200: 1000 - errors, 502: errors }, elapsedMs: 850 },
    calls: { oauth, embedded: 1000 },
    jwksFetches: 1
  }
}

/** Results in which every target is met, unless `overrides` says otherwise. */
function results (overrides: Partial<BenchResults> = {}): BenchResults {
  return {
    environment: { date: '2025-01-02T03:04:05.000Z', node: 'v20.20.2', cpus: 4, cpuModel: 'Test CPU @ 3.00GHz', loadAverage: [0.5, 0.25, 0.125], broker: 'dist/server.js' },
    config: loadBenchConfig({}, DEFAULT_RESULTS_FILE),
    cold: cold(1, 0),
    runs: pairRuns(1, { reqPerS: 900, p99Ms: 11 }),
    lives: [life()],
    memory: undefined,
    elapsedS: 120,
    buildWarnings: '',
    ...overrides
  }
}

/** The verdict whose target starts with `prefix`. */
function verdict (t: Test, input: BenchResults, prefix: string): Verdict {
  const found = verdicts(input).find((v) => v.target.startsWith(prefix))
  if (found === undefined) {
    t.fail(`no verdict starting with ${JSON.stringify(prefix)}`)
    return { target: prefix, measured: '', ok: false }
  }
  return found
}

// ---- bench/config.ts ---------------------------------------------------------------------

t.test('integer(): unset or empty gives the fallback; an integer at or above the minimum is taken', async (t) => {
  t.equal(integer({}, 'N', 42, 1), 42, 'unset')
  t.equal(integer({ N: '' }, 'N', 42, 1), 42, 'empty is unset')
  t.equal(integer({ N: '7' }, 'N', 42, 1), 7)
  t.equal(integer({ N: '1' }, 'N', 42, 1), 1, 'the minimum itself')
  t.equal(integer({ N: '0' }, 'N', 42, 0), 0, 'zero, where the minimum is 0')
  t.equal(refusal(() => integer({ N: '10.0' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "10.0"', 'a decimal point, even for a whole number')
})

t.test('integer(): anything else is refused, naming the variable, the minimum and the value', async (t) => {
  t.equal(refusal(() => integer({ N: '1.5' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "1.5"')
  t.equal(refusal(() => integer({ N: 'abc' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "abc"')
  t.equal(refusal(() => integer({ N: '0' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "0"', 'below the minimum')
  t.equal(refusal(() => integer({ N: '59' }, 'N', 42, 60)), 'N must be an integer ≥ 60, got "59"')
  t.equal(refusal(() => integer({ N: '-1' }, 'N', 42, 0)), 'N must be an integer ≥ 0, got "-1"')
  t.equal(refusal(() => integer({ N: 'Infinity' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "Infinity"')
  t.equal(refusal(() => integer({ N: '10,000' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "10,000"', 'no thousands separators')
  t.equal(refusal(() => integer({ N: '12s' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "12s"', 'no units')
})

t.test('integer(): plain decimal digits only, like the broker\'s own number settings', async (t) => {
  t.equal(refusal(() => integer({ N: '0x10' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "0x10"', 'no hexadecimal')
  t.equal(refusal(() => integer({ N: '1e3' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "1e3"', 'no exponent')
  t.equal(refusal(() => integer({ N: ' 7 ' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got " 7 "', 'no surrounding blanks')
  t.equal(refusal(() => integer({ N: ' ' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got " "')
  t.equal(refusal(() => integer({ N: ' ' }, 'N', 42, 0)), 'N must be an integer ≥ 0, got " "', 'blanks alone are not 0: BENCH_MEMORY_USERS=" " does not skip the memory phase')
  t.equal(refusal(() => integer({ N: '99999999999999999999' }, 'N', 42, 1)), 'N must be an integer ≥ 1, got "99999999999999999999"', 'beyond a safe integer')
})

t.test('loadBenchConfig(): the defaults are the issue\'s figures', async (t) => {
  t.strictSame(loadBenchConfig({}, DEFAULT_RESULTS_FILE), {
    durationS: 10,
    connections: 10,
    pairs: 5,
    users: 10_000,
    memoryUsers: 200_000,
    coldRequests: 1000,
    bearerTtlS: 1200,
    brokerBuild: 'dist',
    brokerEntry: undefined,
    compareEntry: undefined,
    brokerLogLevel: 'info',
    brokerNodeArgs: [],
    cpuProf: false,
    keepLogs: false,
    strict: false,
    tracing: false,
    resultsFile: DEFAULT_RESULTS_FILE
  })
})

t.test('loadBenchConfig(): every variable is read', async (t) => {
  t.strictSame(loadBenchConfig({
    BENCH_DURATION_S: '3',
    BENCH_CONNECTIONS: '64',
    BENCH_PAIRS: '2',
    BENCH_USERS: '500',
    BENCH_MEMORY_USERS: '0',
    BENCH_COLD_REQUESTS: '50',
    BENCH_BEARER_TTL_S: '60',
    BENCH_BROKER_BUILD: 'tsx',
    BENCH_BROKER_ENTRY: 'before/dist/server.js',
    BENCH_COMPARE_ENTRY: 'other/dist/server.js',
    BENCH_BROKER_LOG_LEVEL: 'warn',
    BENCH_BROKER_NODE_ARGS: '--max-semi-space-size=32',
    BENCH_CPU_PROF: '1',
    BENCH_KEEP_LOGS: '1',
    BENCH_STRICT: '1',
    BENCH_TRACING: '1',
    BENCH_RESULTS_FILE: '/tmp/results.md'
  }, DEFAULT_RESULTS_FILE), {
    durationS: 3,
    connections: 64,
    pairs: 2,
    users: 500,
    memoryUsers: 0,
    coldRequests: 50,
    bearerTtlS: 60,
    brokerBuild: 'tsx',
    brokerEntry: 'before/dist/server.js',
    compareEntry: 'other/dist/server.js',
    brokerLogLevel: 'warn',
    brokerNodeArgs: ['--max-semi-space-size=32'],
    cpuProf: true,
    keepLogs: true,
    strict: true,
    tracing: true,
    resultsFile: '/tmp/results.md'
  })
})

t.test('loadBenchConfig(): a bad integer is refused with its variable\'s name and minimum', async (t) => {
  const cases: Array<[name: string, value: string, min: number]> = [
    ['BENCH_DURATION_S', '1.5', 1],
    ['BENCH_CONNECTIONS', 'abc', 1],
    ['BENCH_PAIRS', '0', 1],
    ['BENCH_USERS', '-5', 1],
    ['BENCH_MEMORY_USERS', '-1', 0],
    ['BENCH_COLD_REQUESTS', '0', 1],
    ['BENCH_BEARER_TTL_S', '59', 60]
  ]
  for (const [name, value, min] of cases) {
    t.equal(refusal(() => loadBenchConfig({ [name]: value }, DEFAULT_RESULTS_FILE)), `${name} must be an integer ≥ ${min}, got ${JSON.stringify(value)}`, name)
  }
  t.equal(loadBenchConfig({ BENCH_BEARER_TTL_S: '60' }, DEFAULT_RESULTS_FILE).bearerTtlS, 60, 'the bearer lifetime\'s minimum itself')
})

t.test('loadBenchConfig(): BENCH_BROKER_BUILD is dist or tsx', async (t) => {
  t.equal(loadBenchConfig({ BENCH_BROKER_BUILD: 'dist' }, DEFAULT_RESULTS_FILE).brokerBuild, 'dist')
  t.equal(loadBenchConfig({ BENCH_BROKER_BUILD: 'tsx' }, DEFAULT_RESULTS_FILE).brokerBuild, 'tsx')
  t.equal(refusal(() => loadBenchConfig({ BENCH_BROKER_BUILD: 'DIST' }, DEFAULT_RESULTS_FILE)), 'BENCH_BROKER_BUILD must be dist or tsx, got "DIST"')
  t.equal(refusal(() => loadBenchConfig({ BENCH_BROKER_BUILD: 'ts-node' }, DEFAULT_RESULTS_FILE)), 'BENCH_BROKER_BUILD must be dist or tsx, got "ts-node"')
  t.equal(loadBenchConfig({ BENCH_BROKER_BUILD: '' }, DEFAULT_RESULTS_FILE).brokerBuild, 'dist', 'empty is unset, like every BENCH_ setting')
})

t.test('loadBenchConfig(): the cold-start burst may not need more users than there are', async (t) => {
  const message = 'BENCH_COLD_REQUESTS must not exceed BENCH_USERS'
  t.equal(refusal(() => loadBenchConfig({ BENCH_USERS: '999' }, DEFAULT_RESULTS_FILE)), message, 'fewer users than the default 1,000 cold requests')
  t.equal(refusal(() => loadBenchConfig({ BENCH_USERS: '100', BENCH_COLD_REQUESTS: '101' }, DEFAULT_RESULTS_FILE)), message)
  const equal = loadBenchConfig({ BENCH_USERS: '100', BENCH_COLD_REQUESTS: '100' }, DEFAULT_RESULTS_FILE)
  t.equal(equal.coldRequests, 100, 'as many cold requests as users is fine')
  t.equal(equal.users, 100)
})

t.test('loadBenchConfig(): BENCH_BROKER_NODE_ARGS is split on blanks, empty pieces dropped', async (t) => {
  const args = (value: string | undefined): string[] => loadBenchConfig({ BENCH_BROKER_NODE_ARGS: value }, DEFAULT_RESULTS_FILE).brokerNodeArgs
  t.strictSame(args('--max-semi-space-size=32 --no-opt'), ['--max-semi-space-size=32', '--no-opt'])
  t.strictSame(args('  --max-semi-space-size=32   --no-opt  '), ['--max-semi-space-size=32', '--no-opt'], 'repeated, leading and trailing spaces')
  t.strictSame(args(''), [])
  t.strictSame(args('   '), [])
  t.strictSame(args('--no-opt\t--expose-gc'), ['--no-opt', '--expose-gc'], 'a tab separates too')
  t.strictSame(args(undefined), [])
})

t.test('loadBenchConfig(): an empty BENCH_BROKER_ENTRY or BENCH_COMPARE_ENTRY is unset', async (t) => {
  const config = loadBenchConfig({ BENCH_BROKER_ENTRY: '', BENCH_COMPARE_ENTRY: '' }, DEFAULT_RESULTS_FILE)
  t.equal(config.brokerEntry, undefined)
  t.equal(config.compareEntry, undefined)
  t.equal(loadBenchConfig({ BENCH_BROKER_ENTRY: 'before/dist/server.js' }, DEFAULT_RESULTS_FILE).brokerEntry, 'before/dist/server.js')
})

t.test('loadBenchConfig(): only "1" switches a flag on', async (t) => {
  t.equal(loadBenchConfig({ BENCH_STRICT: '1' }, DEFAULT_RESULTS_FILE).strict, true)
  t.equal(loadBenchConfig({ BENCH_STRICT: 'true' }, DEFAULT_RESULTS_FILE).strict, false, '"true" does not (real behaviour)')
  t.equal(loadBenchConfig({ BENCH_CPU_PROF: '0' }, DEFAULT_RESULTS_FILE).cpuProf, false)
  t.equal(loadBenchConfig({ BENCH_KEEP_LOGS: '1' }, DEFAULT_RESULTS_FILE).keepLogs, true)
})

t.test('loadBenchConfig(): an empty BENCH_RESULTS_FILE is unset, like an empty entry', async (t) => {
  t.equal(loadBenchConfig({ BENCH_RESULTS_FILE: '' }, DEFAULT_RESULTS_FILE).resultsFile, DEFAULT_RESULTS_FILE, 'the default file, not "" (which run.ts would fail to write after minutes of measuring)')
})

t.test('loadBenchConfig(): an empty BENCH_BROKER_LOG_LEVEL is unset, i.e. info', async (t) => {
  t.equal(loadBenchConfig({ BENCH_BROKER_LOG_LEVEL: '' }, DEFAULT_RESULTS_FILE).brokerLogLevel, 'info', 'info: the broker writes audit lines, and the per-token verdicts are kept')
})

// ---- bench/report.ts: pairs() --------------------------------------------------------------

t.test('pairs(): each broker run is matched with the baseline run of its own pair, whatever the order', async (t) => {
  // ABBA: pair 1 broker first, pair 2 baseline first.
  const runs = [
    run('broker', 1, { reqPerS: 900, p99Ms: 12 }),
    run('baseline', 1, { reqPerS: 1000, p99Ms: 10 }),
    run('baseline', 2, { reqPerS: 1250, p99Ms: 9 }),
    run('broker', 2, { reqPerS: 1000, p99Ms: 9.5 })
  ]
  const figures = pairs(runs)
  t.strictSame(figures.map((p) => ({ pair: p.pair, ratio: p.ratio, p99DeltaMs: p.p99DeltaMs })), [
    { pair: 1, ratio: 0.9, p99DeltaMs: 2 },
    { pair: 2, ratio: 0.8, p99DeltaMs: 0.5 }
  ])
  t.equal(figures[1]?.broker, runs[3], 'the pair carries its broker run')
  t.equal(figures[1]?.baseline, runs[2], 'and its baseline run')
})

t.test('pairs(): a broker faster than the baseline gives a ratio above 1 and a negative p99 delta', async (t) => {
  const [figure] = pairs(pairRuns(1, { reqPerS: 1500, p99Ms: 7 }, { reqPerS: 1000, p99Ms: 10 }))
  t.equal(figure?.ratio, 1.5)
  t.equal(figure?.p99DeltaMs, -3)
})

t.test('pairs(): runs without a counterpart, and compared builds, make no pair', async (t) => {
  const runs = [
    run('broker', 1, { reqPerS: 900 }),
    run('compare', 1, { reqPerS: 100 }),
    run('baseline', 1, { reqPerS: 1000 }),
    run('broker', 2, { reqPerS: 500 }), // its baseline never ran
    run('baseline', 3, { reqPerS: 1000 }), // its broker never ran
    run('compare', 3, { reqPerS: 100 })
  ]
  t.strictSame(pairs(runs).map((p) => [p.pair, p.ratio]), [[1, 0.9]])
  t.strictSame(pairs([]), [])
})

// ---- bench/report.ts: verdicts() -----------------------------------------------------------

t.test('verdicts(): the default fixture meets every target, and only audited runs are judged per token', async (t) => {
  const all = verdicts(results())
  t.equal(all.length, 7, '5 verdicts, and 2 per-token verdicts for audited runs (no memory phase)')
  t.strictSame(all.filter((v) => !v.ok).map((v) => v.target), [], 'none missed')

  const unaudited = verdicts(results({ lives: [life(), life({ label: 'broker-2', audited: false })] }))
  t.equal(unaudited.length, 5, 'one unaudited broker process: no per-token verdicts')
  t.notOk(unaudited.some((v) => v.target.includes('embedded call') || v.target.includes('audit line')))
})

t.test('verdicts(): throughput is met at exactly 0.8× the baseline and missed just under', async (t) => {
  const at = verdict(t, results({ runs: pairRuns(1, { reqPerS: 800 }) }), 'throughput')
  t.equal(at.ok, true, '0.8× is met')
  t.equal(at.measured, '0.800×')
  const under = verdict(t, results({ runs: pairRuns(1, { reqPerS: 799 }) }), 'throughput')
  t.equal(under.ok, false, '0.799× is missed')
  t.equal(under.measured, '0.799×')
  const justUnder = verdict(t, results({ runs: pairRuns(1, { reqPerS: 799.9 }) }), 'throughput')
  t.equal(justUnder.ok, false, '0.7999× is missed too (no rounding up)')
  t.equal(justUnder.measured, '0.799×', 'and does not read 0.800×')
  t.equal(verdict(t, results({ runs: pairRuns(1, { reqPerS: 1005 }) }), 'throughput').measured, '1.005×', 'a ratio whose product by 1000 is not exact still reads right')
})

t.test('verdicts(): throughput is judged on the median of pairs, odd and even', async (t) => {
  const odd = verdict(t, results({ runs: runsWithRatios(0.9, 0.1, 0.85) }), 'throughput')
  t.equal(odd.measured, '0.850×', 'odd: the middle ratio, once sorted (the mean would be 0.617)')
  t.equal(odd.ok, true)
  t.equal(verdict(t, results({ runs: runsWithRatios(0.95, 0.5, 0.7) }), 'throughput').ok, false, 'odd: a median of 0.7 misses')

  const even = verdict(t, results({ runs: runsWithRatios(0.9, 0.7) }), 'throughput')
  t.equal(even.measured, '0.800×', 'even: the mean of the two middle ratios')
  t.equal(even.ok, true, 'even: (0.7 + 0.9) / 2 = 0.8 is met')
  const evenUnder = verdict(t, results({ runs: runsWithRatios(0.1, 0.89, 0.7, 2) }), 'throughput')
  t.equal(evenUnder.measured, '0.795×', 'even: (0.7 + 0.89) / 2, outliers ignored')
  t.equal(evenUnder.ok, false)
})

t.test('verdicts(): p99 is met at exactly baseline + 2 ms and missed just over', async (t) => {
  const at = verdict(t, results({ runs: runsWithP99Deltas(2) }), 'p99')
  t.equal(at.ok, true)
  t.equal(at.measured, '+2.00 ms')
  const over = verdict(t, results({ runs: runsWithP99Deltas(2.01) }), 'p99')
  t.equal(over.ok, false)
  t.equal(over.measured, '+2.01 ms')
  const faster = verdict(t, results({ runs: runsWithP99Deltas(-1.5) }), 'p99')
  t.equal(faster.ok, true, 'a broker with a lower p99 than the baseline')
  t.equal(faster.measured, '-1.50 ms', 'no plus sign on a negative delta')
})

t.test('verdicts(): p99 is judged on the median of pairs\' deltas, odd and even', async (t) => {
  t.equal(verdict(t, results({ runs: runsWithP99Deltas(9, 0.5, 1.5) }), 'p99').measured, '+1.50 ms', 'odd')
  const even = verdict(t, results({ runs: runsWithP99Deltas(1, 3) }), 'p99')
  t.equal(even.measured, '+2.00 ms', 'even: (1 + 3) / 2')
  t.equal(even.ok, true)
  const evenOver = verdict(t, results({ runs: runsWithP99Deltas(0, 1.5, 2.6, 10) }), 'p99')
  t.equal(evenOver.measured, '+2.05 ms', 'even: (1.5 + 2.6) / 2')
  t.equal(evenOver.ok, false)
})

t.test('verdicts(): with no complete pair, throughput and p99 are missed, not met', async (t) => {
  const input = results({ runs: [run('broker', 1, { reqPerS: 900 })] })
  t.equal(verdict(t, input, 'throughput').ok, false)
  t.equal(verdict(t, input, 'p99').ok, false)
})

t.test('verdicts(): one OAuth call per bearer lifetime, allowing one renewal per half-lifetime lived', async (t) => {
  const target = '1 OAuth call per bearer lifetime'
  // bearerTtlS defaults to 1200 s: a renewal is allowed from 600 s on.
  t.equal(verdict(t, results({ lives: [life({ oauthCalls: 0 })] }), target).ok, false, 'no OAuth call at all')
  t.equal(verdict(t, results({ lives: [life({ oauthCalls: 1, uptimeS: 100 })] }), target).ok, true)
  t.equal(verdict(t, results({ lives: [life({ oauthCalls: 2, uptimeS: 599 })] }), target).ok, false, 'a second call before half-way')
  t.equal(verdict(t, results({ lives: [life({ oauthCalls: 2, uptimeS: 600 })] }), target).ok, true, 'a second call once half-way is possible')
  t.equal(verdict(t, results({ lives: [life({ oauthCalls: 3, uptimeS: 1199 })] }), target).ok, false)
  t.equal(verdict(t, results({ lives: [life({ oauthCalls: 3, uptimeS: 1200 })] }), target).ok, true)

  const shortTtl = results({ config: loadBenchConfig({ BENCH_BEARER_TTL_S: '60' }, DEFAULT_RESULTS_FILE), lives: [life({ oauthCalls: 4, uptimeS: 90 })] })
  t.equal(verdict(t, shortTtl, target).ok, true, 'the configured bearer lifetime is used (60 s: 1 + 90 / 30 calls)')

  const twoLives = verdict(t, results({ lives: [life({ label: 'broker-1', oauthCalls: 1, uptimeS: 1234.4 }), life({ label: 'broker-2', oauthCalls: 2, uptimeS: 30 })] }), target)
  t.equal(twoLives.ok, false, 'every broker process must keep to it')
  t.equal(twoLives.measured, 'broker-1: 1 in 1,234 s, broker-2: 2 in 30 s')
})

t.test('verdicts(): cold start takes exactly 1 OAuth call and no error', async (t) => {
  const oauth = (calls: number): Verdict => verdict(t, results({ cold: cold(calls, 0) }), 'cold start: 1 OAuth call')
  t.equal(oauth(1).ok, true)
  t.equal(oauth(1).measured, '1')
  t.equal(oauth(2).ok, false, 'two concurrent fetches of the bearer')
  t.equal(oauth(2).measured, '2')
  t.equal(oauth(0).ok, false, 'none at all')

  const errors = (count: number): Verdict => verdict(t, results({ cold: cold(1, count) }), 'cold start: 0 errors')
  t.equal(errors(0).ok, true)
  t.equal(errors(1).ok, false)
  t.equal(errors(1).measured, '1')
})

t.test('verdicts(): at most 1 embedded call per issued token, over all broker processes', async (t) => {
  const target = '≤ 1 embedded call per issued token'
  const one = verdict(t, results({ lives: [life({ embeddedCalls: 1000, issued: 1000 })] }), target)
  t.equal(one.ok, true, 'exactly one per token')
  t.equal(one.measured, '1.0000')
  const over = verdict(t, results({ lives: [life({ embeddedCalls: 1001, issued: 1000, received: 1000 })] }), target)
  t.equal(over.ok, false, 'one call too many')
  t.equal(over.measured, '1.0010')
  const summed = verdict(t, results({ lives: [life({ embeddedCalls: 10, issued: 5, received: 5 }), life({ label: 'broker-2', embeddedCalls: 0, issued: 10, received: 10 })] }), target)
  t.equal(summed.ok, true, 'summed over the processes: 10 calls for 15 tokens')
  t.equal(summed.measured, '0.6667')
})

t.test('verdicts(): an audit line for every token received', async (t) => {
  const target = 'an audit line for every token received'
  t.equal(verdict(t, results({ lives: [life({ issued: 1000, received: 1000 })] }), target).ok, true)
  t.equal(verdict(t, results({ lives: [life({ issued: 1001, received: 1000 })] }), target).ok, true, 'more lines than received (answers in flight at the end)')
  const missing = verdict(t, results({ lives: [life({ issued: 999, embeddedCalls: 999, received: 1000 })] }), target)
  t.equal(missing.ok, false, 'one token without its line')
  t.equal(missing.measured, 'broker-1: 999 lines, 1,000 received')
})

t.test('verdicts(): RSS growth must stay under 100 MB', async (t) => {
  t.notOk(verdicts(results()).some((v) => v.target.startsWith('RSS')), 'no memory phase, no verdict')
  const under = verdict(t, results({ memory: memory(99 * MB) }), 'RSS growth')
  t.equal(under.ok, true)
  t.equal(under.measured, '99.0 MB')
  t.equal(under.target, 'RSS growth over 200,000 users < 100 MB')
  t.equal(verdict(t, results({ memory: memory(100 * MB - 1) }), 'RSS growth').ok, true, 'one byte under')
  t.equal(verdict(t, results({ memory: memory(100 * MB) }), 'RSS growth').ok, false, 'exactly 100 MB is not under')
  t.equal(verdict(t, results({ memory: memory(100 * MB + 1) }), 'RSS growth').ok, false, 'one byte over')
  t.equal(verdict(t, results({ memory: memory(-3 * MB) }), 'RSS growth').measured, '-3.0 MB', 'RSS may shrink')
})

/** Broker, baseline and compared build in one pair, with the broker's and the compared build's CPU per token. */
function compareRuns (pair: number, brokerCpuUs: number, compareCpuUs: number): MeasuredRun[] {
  return [
    ...pairRuns(pair, { reqPerS: 900 }),
    run('compare', pair, { reqPerS: 950 }, { cpuUsPerToken: compareCpuUs })
  ].map((r) => r.target === 'broker' ? { ...r, cpuUsPerToken: brokerCpuUs } : r)
}

t.test('verdicts(): CPU per token at most 5 % above the compared build\'s, judged only when one ran', async (t) => {
  const target = 'CPU per token ≤ compared build + 5 %'
  t.notOk(verdicts(results()).some((v) => v.target.startsWith('CPU per token')), 'no compared build, no verdict')
  const at = verdict(t, results({ runs: compareRuns(1, 210, 200) }), target)
  t.equal(at.measured, '+5.0 %')
  t.equal(at.ok, true, '+5.0 % is met')
  const over = verdict(t, results({ runs: compareRuns(1, 210.2, 200) }), target)
  t.equal(over.measured, '+5.1 %')
  t.equal(over.ok, false, '+5.1 % is missed')
  const lower = verdict(t, results({ runs: compareRuns(1, 196, 200) }), target)
  t.equal(lower.measured, '-2.0 %', 'a lower CPU per token reads as a minus')
  t.equal(lower.ok, true)
  t.equal(verdict(t, results({ runs: compareRuns(1, 199.99, 200) }), target).measured, '+0.0 %', 'a change that rounds to nothing reads +0.0 %, not -0.0 %')
  const pairsOf = verdict(t, results({ runs: [...compareRuns(1, 300, 200), ...compareRuns(2, 202, 200), ...compareRuns(3, 204, 200)] }), target)
  t.equal(pairsOf.measured, '+2.0 %', 'the median of the pairs\' ratios (1.5, 1.01, 1.02)')
  t.equal(verdicts(results({ runs: compareRuns(1, 200, 200) })).length, 8, 'one verdict more than without a compared build')
})

// ---- bench/report.ts: renderMarkdown() -----------------------------------------------------

t.test('renderMarkdown(): the figures and the verdicts of a small run', async (t) => {
  const md = renderMarkdown(results({
    runs: [
      run('broker', 1, { reqPerS: 900, p99Ms: 12 }),
      run('baseline', 1, { reqPerS: 1000, p99Ms: 10 }),
      run('baseline', 2, { reqPerS: 1100, p99Ms: 11 }),
      run('broker', 2, { reqPerS: 880, p99Ms: 12.5 })
    ],
    lives: [life({ issued: 1500, received: 1500, embeddedCalls: 1500 }), life({ label: 'broker-2', issued: 500, received: 500, embeddedCalls: 500 })],
    cold: cold(1, 3)
  }))
  t.match(md, /^# Benchmark results\n/)
  t.match(md, 'on 2025-01-02T03:04:05.000Z: Node v20.20.2, 4 CPUs (Test CPU @ 3.00GHz), load average at start 0.50 0.25 0.13.', 'environment')
  t.match(md, '10 connections, 5 pairs of 10 s runs', 'configuration')
  t.match(md, 'each of the 10,000 distinct users', 'users, with a thousands separator')
  t.match(md, '| req/s (median of runs) | 890 | 1,050 | **0.850×** (median of pairs) |', 'req/s medians and the median ratio (0.9 and 0.8)')
  t.match(md, '| p99 latency (median of runs) | 12.25 ms | 10.50 ms | 1.75 ms more (median of pairs) |', 'p99 medians and the median delta (2 and 1.5)')
  t.match(md, '| p50 latency (median of runs) | 5.00 ms | 5.00 ms | |', 'no ratio for p50')
  t.match(md, 'Load from wrk (1 thread), 10 connections', 'the load generator')
  t.match(md, 'per request the emulator used 50 µs of CPU and wrk, the load generator, 100 µs (medians); wrk\'s thread was busy 10 % of the time in its busiest run, far from the whole CPU one thread can use: it is not what limits the targets.', 'wrk\'s CPU: 100 µs per request at 1,000 answers a second')
  t.match(md, '| 2 | broker | 880 | 5.00 ms | 12.50 ms | 300 µs | 50 % | 10,000 | 0 | 0 | 10,000 |', 'a row per run')
  t.match(md, '2,000 tokens issued, 2 OAuth calls (**1.00e-3 per token**), 2,000 embedded calls (**1.0000 per token**)', 'Mangopay calls summed over the broker processes')
  t.match(md, '| broker-2 | 100 s | 500 | 1 | 500 | 1,000 |', 'a row per broker process (log bytes per token)')
  t.match(md, 'hit by 1,000 concurrent requests (distinct users) the moment it listens: **1 OAuth call**, 1,000 embedded calls, **3 errors** (200: 997, 502: 3)', 'cold start')

  t.match(md, '| throughput ≥ 0.8× baseline (median of pairs) | 0.850× | met |', 'a met target')
  t.match(md, '| p99 ≤ baseline p99 + 2 ms (median of pairs) | +1.75 ms | met |')
  t.match(md, '| cold start: 1 OAuth call | 1 | met |')
  t.match(md, '| cold start: 0 errors | 3 | **missed** |', 'a missed target')
  t.equal(md.match(/\| (met|\*\*missed\*\*) \|$/gm)?.length, 7, 'one verdict row per target')

  t.notMatch(md, '## Memory', 'no memory phase, no section')
  t.notMatch(md, 'compared build', 'no compared build, no column and no verdict')
  t.notMatch(md, '## Build warnings', 'no warnings, no section')
})

t.test('renderMarkdown(): a broker with the lower p99 is said to have less, not "-1.50 ms more"', async (t) => {
  const md = renderMarkdown(results({ runs: pairRuns(1, { p99Ms: 8.5 }) }))
  t.match(md, '| 8.50 ms | 10.00 ms | 1.50 ms less (median of pairs) |')
})

t.test('renderMarkdown(): one pair is written in the singular', async (t) => {
  const md = renderMarkdown(results({ config: loadBenchConfig({ BENCH_PAIRS: '1', BENCH_DURATION_S: '3' }, DEFAULT_RESULTS_FILE) }))
  t.match(md, '10 connections, 1 pair of 3 s runs')
})

t.test('renderMarkdown(): CPU per token beside the throughput ratio, per 2xx answer', async (t) => {
  const md = renderMarkdown(results({
    runs: [
      run('broker', 1, { reqPerS: 900 }, { cpuUsPerToken: 150 }),
      run('baseline', 1, {}, { cpuUsPerToken: 100 }),
      run('baseline', 2, {}, { cpuUsPerToken: 100 }),
      run('broker', 2, { reqPerS: 880 }, { cpuUsPerToken: 130, cpuUsPerRequest: 120 })
    ]
  }))
  t.match(md, '| req/s (median of runs) | 890 | 1,000 | **0.890×** (median of pairs) |\n| CPU per token (median of runs) | 140 µs | 100 µs | 1.40× (median of pairs) |', 'right under req/s, with the median of the pairs\' ratios (1.5 and 1.3)')
  t.match(md, '| 2 | broker | 880 | 5.00 ms | 10.00 ms | 120 µs |', 'the runs keep their CPU per answered request')
})

t.test('renderMarkdown(): a load generator near a whole CPU is flagged', async (t) => {
  // 900 µs per request at 1,000 answers a second: 90 % of one CPU.
  const md = renderMarkdown(results({ runs: [run('broker', 1, { reqPerS: 900 }), run('baseline', 1, {}, { loaderCpuUsPerRequest: 900 })] }))
  t.match(md, 'wrk\'s thread was busy 90 % of the time in its busiest run, **close to the whole CPU one thread can use: wrk may be what limits the targets**')
})

t.test('renderMarkdown(): the memory phase, its growth and its verdict', async (t) => {
  const md = renderMarkdown(results({ memory: memory(150 * MB) }))
  t.match(md, '## Memory')
  t.match(md, 'then 200,000 new distinct users fetching one token each (200,000 issued, 0 failed)')
  t.match(md, '**first-visit throughput: 2,000 req/s**')
  t.match(md, '| after warm-up | 80.0 MB | 20.0 MB | 30.0 MB | 2.0 MB |')
  t.match(md, '| growth | **150.0 MB** | 5.0 MB | | |')
  t.match(md, '| RSS growth over 200,000 users < 100 MB | 150.0 MB | **missed** |')
})

t.test('renderMarkdown(): a compared build gets a column, its ratios against its own pair\'s runs, and the CPU verdict', async (t) => {
  const md = renderMarkdown(results({
    config: loadBenchConfig({ BENCH_COMPARE_ENTRY: 'before/dist/server.js' }, DEFAULT_RESULTS_FILE),
    runs: [
      ...pairRuns(1, { reqPerS: 900 }, { reqPerS: 1000 }),
      run('compare', 1, { reqPerS: 950 }, { cpuUsPerToken: 290 }),
      ...pairRuns(2, { reqPerS: 1800 }, { reqPerS: 2000 }),
      run('compare', 2, { reqPerS: 1900 }, { cpuUsPerToken: 290 })
    ]
  }))
  t.match(md, '(broker, baseline and compared build in ABBA order)')
  t.match(md, '| | broker | compared build | baseline | broker / baseline | compared build / baseline | broker / compared build |\n|---|---|---|---|---|---|---|')
  t.match(md, '| req/s (median of runs) | 1,350 | 1,425 | 1,500 | **0.900×** (median of pairs) | 0.950× (median of pairs) | 0.947× (median of pairs) |', 'compared build: 0.95 of its pair\'s baseline in both pairs')
  t.match(md, '| CPU per token (median of runs) | 300 µs | 290 µs | 300 µs | 1.00× (median of pairs) | 0.97× (median of pairs) | **+3.4 %** (median of pairs) |')
  t.match(md, '| p50 latency (median of runs) | 5.00 ms | 5.00 ms | 5.00 ms | | | |')
  t.match(md, 'Compared build: `before/dist/server.js`, loaded in the same pairs as the broker and the baseline.')
  t.match(md, '**CPU per token vs `before/dist/server.js`: +3.4 %** (target ≤ +5 %: met)')
  t.match(md, '| CPU per token ≤ compared build + 5 % (median of pairs) | +3.4 % | met |')
  t.match(md, '| throughput ≥ 0.8× baseline (median of pairs) | 0.900× | met |', 'the compared build does not count in the broker\'s ratio')
  t.match(md, '| 2 | compare | 1,900 |', 'its runs in the table of runs')
})

t.test('renderMarkdown(): a compared build\'s CPU verdict, missed', async (t) => {
  const md = renderMarkdown(results({ config: loadBenchConfig({ BENCH_COMPARE_ENTRY: '/tmp/before/server.js' }, DEFAULT_RESULTS_FILE), runs: compareRuns(1, 330, 300) }))
  t.match(md, '**CPU per token vs `/tmp/before/server.js`: +10.0 %** (target ≤ +5 %: **missed**)')
})

t.test('renderMarkdown(): tsc\'s warnings are shown when the measured build had any', async (t) => {
  const md = renderMarkdown(results({ buildWarnings: 'src/app.ts(1,1): error TS2322: Type mismatch.' }))
  t.match(md, '## Build warnings\n\ntsc reported errors but emitted the JavaScript that was measured:\n\n```\nsrc/app.ts(1,1): error TS2322: Type mismatch.\n```')
})
