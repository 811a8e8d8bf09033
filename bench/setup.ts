/**
 * What every benchmark command starts from: the compiled broker and helpers, and how the
 * broker and the baseline are configured against the emulator and the JWKS server.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildBroker, deployedNodeFlags, transpileHelper } from './build.js'
import type { BenchConfig } from './config.js'
import { AUDIENCE, ISSUER } from './jwks.js'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Logs, profiles and raw results (git-ignored). */
export const OUT = join(ROOT, 'bench', 'out')
/** Generated JavaScript, kept where neither git nor eslint looks; packages still resolve from here. */
export const BUILD = join(ROOT, 'node_modules', '.cache', 'mangopay-broker-bench')
export const CLIENT_ID = 'bench-client'
export const API_KEY = 'bench-api-key-0123456789abcdef'

const startedAt = Date.now()

/** A progress line, stamped with the seconds since the command started. */
export function say (message: string): void {
  process.stdout.write(`[${((Date.now() - startedAt) / 1000).toFixed(0).padStart(4)} s] ${message}\n`)
}

export interface Prepared {
  brokerEntry: string
  /** bench/broker-process.ts as JavaScript: runs the broker, answers heap questions over IPC. */
  brokerHelper: string
  /** `node` flags of `npm start` and the Dockerfile: the broker runs as deployed. */
  brokerNodeFlags: string[]
  baselineHelper: string
  signWorker: string
  /** What tsc reported while compiling src/ (empty when clean). */
  warnings: string
}

/** Compiles src/ (unless another build is given) and the helpers. */
export async function prepare (cfg: BenchConfig): Promise<Prepared> {
  await mkdir(OUT, { recursive: true })
  await mkdir(BUILD, { recursive: true })
  // Under node_modules/ the repository's "type": "module" does not reach: say it again here.
  await writeFile(join(BUILD, 'package.json'), '{ "type": "module", "private": true }\n')
  const helpers = join(BUILD, 'helpers')
  const brokerHelper = await transpileHelper(join(ROOT, 'bench', 'broker-process.ts'), helpers)
  const baselineHelper = await transpileHelper(join(ROOT, 'bench', 'baseline.ts'), helpers)
  const signWorker = await transpileHelper(join(ROOT, 'bench', 'sign-worker.ts'), helpers)
  const common = { brokerHelper, brokerNodeFlags: await deployedNodeFlags(ROOT), baselineHelper, signWorker }
  if (cfg.brokerEntry !== undefined) return { brokerEntry: resolve(cfg.brokerEntry), ...common, warnings: '' }
  if (cfg.brokerBuild === 'tsx') return { brokerEntry: join(ROOT, 'src', 'server.ts'), ...common, warnings: '' }
  say(`compiling src/ with tsconfig.build.json into ${BUILD}/dist`)
  await rm(join(BUILD, 'dist'), { recursive: true, force: true })
  const build = await buildBroker(ROOT, join(BUILD, 'dist'))
  if (build.warnings !== '') say(`tsc reported errors (measuring the emitted JavaScript anyway):\n${build.warnings}`)
  return { brokerEntry: build.entry, ...common, warnings: build.warnings }
}

/** The broker's environment: JWT auth against the bench JWKS, rate limits on but out of reach. */
export function brokerEnv (options: { entry: string, port: number, logLevel: string, emulatorUrl: string, jwksUrl: string, otlpUrl?: string | undefined }): Record<string, string> {
  return {
    ...(options.otlpUrl === undefined ? {} : { OTEL_EXPORTER_OTLP_ENDPOINT: options.otlpUrl }),
    BENCH_BROKER_ENTRY: options.entry,
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(options.port),
    // Off the default, so a compare build and the broker never want the same one.
    METRICS_PORT: '0',
    SHUTDOWN_DELAY_MS: '0',
    LOG_LEVEL: options.logLevel,
    MANGOPAY_BASE_URL: options.emulatorUrl,
    MANGOPAY_CLIENT_ID: CLIENT_ID,
    MANGOPAY_API_KEY: API_KEY,
    AUTH_MODE: 'jwt',
    AUTH_JWKS_URL: options.jwksUrl,
    AUTH_JWT_ALGORITHMS: 'RS256',
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    // On, but far above what any one user does here.
    RATE_LIMIT_MAX: '1000000',
    RATE_LIMIT_WINDOW_MS: '60000',
    // The fair quota's admission runs on every mint too: its cost is measured, its budgets never reached.
    TOKEN_BUDGET_PER_USER: '1000000',
    TOKEN_BUDGET_PER_SESSION: '1000000'
  }
}

export function baselineEnv (options: { port: number, emulatorUrl: string }): Record<string, string> {
  return { BASELINE_UPSTREAM: options.emulatorUrl, BASELINE_CLIENT_ID: CLIENT_ID, BASELINE_API_KEY: API_KEY, BASELINE_PORT: String(options.port), NODE_ENV: 'production' }
}

/** The emulator both targets call: a quota no run can reach, bearers outliving any broker. */
export function emulatorEnv (bearerTtlS: number): Record<string, string> {
  return {
    EMULATOR_CLIENT_ID: CLIENT_ID,
    EMULATOR_API_KEY: API_KEY,
    EMULATOR_BEARER_TTL_S: String(bearerTtlS),
    EMULATOR_CONTROL: '1',
    EMULATOR_QUOTA: '1000000000/900'
  }
}
