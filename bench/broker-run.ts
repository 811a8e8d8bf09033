/** A broker process of the benchmark: how it is started, and what it did over its life. */
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { BenchConfig } from './config.js'
import type { UpstreamCalls } from './emulator-control.js'
import type { JwksServer } from './jwks.js'
import type { OtlpSink } from './otlp-sink.js'
import { freePort, startListeningProcess, type Proc } from './processes.js'
import type { BrokerLife } from './report.js'
import { OUT, ROOT, brokerEnv, type Prepared } from './setup.js'

const AUDITED_LEVELS = new Set(['info', 'debug', 'trace'])

export interface Setup extends Prepared {
  jwks: JwksServer
  emulator: Proc
  /** BENCH_TRACING=1: where the brokers export their spans. */
  otlp: OtlpSink | undefined
}

/** With BENCH_CPU_PROF=1: `node --cpu-prof` flags writing `<name>-<time>.cpuprofile` into bench/out/profiles. */
export function profileFlags (config: BenchConfig, name: string): string[] {
  return config.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', join(OUT, 'profiles'), '--cpu-prof-name', `${name}-${Date.now()}.cpuprofile`] : []
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

export class BrokerRun {
  readonly label: string
  readonly logFile: string
  /** server.js (or .ts) to run; the setup's broker by default. */
  readonly entry: string | undefined
  readonly config: BenchConfig
  proc: Proc | undefined
  startedAt = 0
  received = 0
  calls: UpstreamCalls = { oauth: 0, embedded: 0 }

  constructor (config: BenchConfig, label: string, entry?: string) {
    this.config = config
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
      nodeArgs: ['--expose-gc', ...setup.brokerNodeFlags, ...this.config.brokerNodeArgs, ...profileFlags(this.config, `broker-${this.label}`), ...(entry.endsWith('.ts') ? ['--import', 'tsx'] : []), setup.brokerHelper],
      env: brokerEnv({ entry, port, logLevel: this.config.brokerLogLevel, emulatorUrl: setup.emulator.url, jwksUrl: setup.jwks.url, otlpUrl: setup.otlp?.url }),
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
    const audited = AUDITED_LEVELS.has(this.config.brokerLogLevel)
    return {
      label: this.label,
      uptimeS,
      oauthCalls: this.calls.oauth,
      embeddedCalls: this.calls.embedded,
      received: this.received,
      // Below info there are no audit lines: the tokens received are the best count left.
      issued: audited ? await countAuditLines(this.logFile) : this.received,
      audited,
      logBytes: (await stat(this.logFile)).size
    }
  }
}

/** Resolves once GET /readyz answers 200: the broker holds a Mangopay bearer. */
export async function waitReady (proc: Proc): Promise<Proc> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const response = await request(`${proc.url}/readyz`)
    await response.body.dump()
    if (response.statusCode === 200) return proc
    await sleep(100)
  }
  throw new Error(`${proc.name} never became ready`)
}
