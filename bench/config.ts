/** The benchmark's knobs, from BENCH_* variables; the defaults are the figures. */

export interface BenchConfig {
  /** Seconds of each measured run (one broker or baseline run of a pair). */
  durationS: number
  /** wrk connections: the concurrency every target is measured at. */
  connections: number
  /** Broker/baseline pairs; the ratio is the median of the pairs. */
  pairs: number
  /** Distinct users (RS256 JWTs) cycled through the throughput runs. */
  users: number
  /** Distinct users that each fetch one token in the memory phase. */
  memoryUsers: number
  /** Concurrent requests hitting a freshly started broker. */
  coldRequests: number
  /** Emulator bearer lifetime; a broker lives far shorter, so it must make one OAuth call. */
  bearerTtlS: number
  /** `dist`: compile src/ with tsc and run the JavaScript (as deployed); `tsx`: run src/ directly. */
  brokerBuild: 'dist' | 'tsx'
  /** A server.js built elsewhere (e.g. before a change), run instead of building src/. */
  brokerEntry: string | undefined
  /** Another build (e.g. before a change) loaded in the same pairs, interleaved: a before/after on one machine state. */
  compareEntry: string | undefined
  /** The broker's LOG_LEVEL: `info` as deployed; another level shows what logging costs. */
  brokerLogLevel: string
  /** Extra `node` flags for the broker (e.g. `--max-semi-space-size=32`), split on spaces. */
  brokerNodeArgs: string[]
  /** Start the brokers and the baseline under `node --cpu-prof`; profiles land in bench/out/profiles. */
  cpuProf: boolean
  /** Keep the brokers' logs in bench/out (they are large: ~500 bytes per token). */
  keepLogs: boolean
  /** Exit non-zero when a target is missed. */
  strict: boolean
  /** The brokers export their spans (OTLP/HTTP) to a sink in the runner: tracing on, as deployed. */
  tracing: boolean
  /** Where RESULTS.md is written. */
  resultsFile: string
}

/** A setting from `env`; an empty one counts as unset. */
export function text (env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name]
  return raw === '' ? undefined : raw
}

/**
 * An integer setting from `env`, or `fallback` when unset. Plain decimal digits only, like the
 * broker's own number settings: `Number()` would also read blanks as 0, `0x10` as 16 and `1e3`.
 */
export function integer (env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = text(env, name)
  if (raw === undefined) return fallback
  const value = /^[0-9]+$/.test(raw) ? Number(raw) : Number.NaN
  if (!Number.isSafeInteger(value) || value < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw)}`)
  return value
}

export function loadBenchConfig (env: NodeJS.ProcessEnv, defaultResultsFile: string): BenchConfig {
  const build = text(env, 'BENCH_BROKER_BUILD') ?? 'dist'
  if (build !== 'dist' && build !== 'tsx') throw new Error(`BENCH_BROKER_BUILD must be dist or tsx, got ${JSON.stringify(build)}`)
  const config: BenchConfig = {
    durationS: integer(env, 'BENCH_DURATION_S', 10, 1),
    connections: integer(env, 'BENCH_CONNECTIONS', 10, 1),
    pairs: integer(env, 'BENCH_PAIRS', 5, 1),
    users: integer(env, 'BENCH_USERS', 10_000, 1),
    memoryUsers: integer(env, 'BENCH_MEMORY_USERS', 200_000, 0),
    coldRequests: integer(env, 'BENCH_COLD_REQUESTS', 1000, 1),
    bearerTtlS: integer(env, 'BENCH_BEARER_TTL_S', 1200, 60),
    brokerBuild: build,
    brokerEntry: text(env, 'BENCH_BROKER_ENTRY'),
    compareEntry: text(env, 'BENCH_COMPARE_ENTRY'),
    brokerLogLevel: text(env, 'BENCH_BROKER_LOG_LEVEL') ?? 'info',
    brokerNodeArgs: (env.BENCH_BROKER_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== ''),
    cpuProf: env.BENCH_CPU_PROF === '1',
    keepLogs: env.BENCH_KEEP_LOGS === '1',
    strict: env.BENCH_STRICT === '1',
    tracing: env.BENCH_TRACING === '1',
    resultsFile: text(env, 'BENCH_RESULTS_FILE') ?? defaultResultsFile
  }
  // The cold-start burst uses the first users' JWTs.
  if (config.coldRequests > config.users) throw new Error('BENCH_COLD_REQUESTS must not exceed BENCH_USERS')
  return config
}
