/**
 * Load generation: wrk runs (bench/load.lua) cycling through many users' JWTs, and the
 * cold-start burst. wrk is a process of its own, written in C: it costs the machine a fraction of
 * what a Node load generator did, and its CPU time is read apart from the targets'.
 */
import { execFileSync, spawn } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { delimiter, join } from 'node:path'
import { Pool } from 'undici'
import { clockTicksPerSecond } from './processes.js'
import { ROOT, say } from './setup.js'

const PATHS = ['/v1/tokens/recipients', '/v1/tokens/checkout']
const SCRIPT = join(ROOT, 'bench', 'load.lua')

export interface LoadResult {
  /** 2xx responses per second over the run. */
  reqPerS: number
  p50Ms: number
  p99Ms: number
  ok: number
  non2xx: number
  /** Connect, read and write errors. */
  errors: number
  /** Answers slower than the 10 s timeout (left out of the latencies). */
  timeouts: number
  durationS: number
}

/** A run's figures, and the CPU time wrk itself used (user + system, all its threads). */
export interface LoadRun extends LoadResult { loaderCpuMs: number }

export interface LoadOptions {
  connections: number
  /** Run for this long… */
  durationS?: number
  /** …or send this many requests and wait for their answers, for at most `timeLimitS` (600 by default). */
  amount?: number
  timeLimitS?: number
  /** One JWT per line (see writeJwtFile), cycled through, one per request; half the requests ask for each kind. */
  jwtFile: string
}

/** What bench/load.lua prints from wrk's done() hook. */
interface WrkSummary {
  durationUs: number
  requests: number
  /** Counted by the script's response() hook: only when an amount was asked for. */
  answered: number | null
  ok: number | null
  connect: number
  read: number
  write: number
  status: number
  timeout: number
  p50Us: number
  p99Us: number
  cpuTicks: number
}

function onPath (command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

/** Installs wrk (Debian package) when missing and running as root; otherwise says how to. */
export function ensureWrk (): void {
  if (onPath('wrk')) return
  if (process.getuid?.() !== 0) {
    throw new Error('wrk, the load generator, is not installed. On Debian or Ubuntu: sudo apt-get install wrk (elsewhere: https://github.com/wg/wrk). Then run the benchmark again.')
  }
  say('wrk is not installed: apt-get install -y wrk')
  const apt = (...args: string[]): void => { execFileSync('apt-get', args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }) }
  try {
    apt('install', '-y', 'wrk')
  } catch {
    // A fresh container has no package lists yet.
    apt('update')
    apt('install', '-y', 'wrk')
  }
  if (!onPath('wrk')) throw new Error('apt-get installed wrk, but it is not on PATH')
}

export async function writeJwtFile (file: string, jwts: readonly string[]): Promise<string> {
  await writeFile(file, `${jwts.join('\n')}\n`)
  return file
}

/** One wrk run (one thread) against `url`. */
export async function runLoad (url: string, options: LoadOptions): Promise<LoadRun> {
  const amount = options.amount
  const seconds = amount === undefined ? options.durationS ?? 10 : options.timeLimitS ?? 600
  const args = ['-t1', `-c${options.connections}`, `-d${seconds}s`, '--timeout', '10s', '--latency', '-s', SCRIPT, url]
  const child = spawn('wrk', args, {
    env: { PATH: process.env.PATH ?? '', BENCH_WRK_JWTS: options.jwtFile, ...(amount === undefined ? {} : { BENCH_WRK_AMOUNT: String(amount) }) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  let interrupter: NodeJS.Timeout | undefined
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString()
    // wrk sleeps for its whole duration unless interrupted; a signal that arrives before it
    // listens for one is lost, so it is sent again until wrk exits.
    if (interrupter === undefined && stdout.includes('BENCH_WRK_REACHED')) {
      child.kill('SIGINT')
      interrupter = setInterval(() => child.kill('SIGINT'), 200)
    }
  })
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  }).finally(() => clearInterval(interrupter))
  const line = /^BENCH_WRK (\{.*\})$/m.exec(stdout)?.[1]
  if (code !== 0 || line === undefined) throw new Error(`wrk ${args.join(' ')} exited with ${code}:\n${stderr}${stdout}`.trimEnd())
  const wrk = JSON.parse(line) as WrkSummary
  const durationS = wrk.durationUs / 1e6
  // Without the response() hook, wrk tells 4xx and 5xx answers apart only (none 1xx or 3xx here).
  const ok = wrk.ok ?? wrk.requests - wrk.status
  return {
    reqPerS: ok / durationS,
    p50Ms: wrk.p50Us / 1000,
    p99Ms: wrk.p99Us / 1000,
    ok,
    non2xx: wrk.answered === null ? wrk.status : wrk.answered - ok,
    errors: wrk.connect + wrk.read + wrk.write,
    timeouts: wrk.timeout,
    durationS,
    loaderCpuMs: (wrk.cpuTicks * 1000) / clockTicksPerSecond()
  }
}

export interface BurstResult {
  requests: number
  ok: number
  /** Responses other than 200, and requests that got no response at all. */
  errors: number
  statuses: Record<string, number>
  /** From the first request sent to the last answer. */
  elapsedMs: number
}

/**
 * `jwts.length` requests at once, each on its own connection, from this process: wrk keeps a
 * steady number of requests in flight and cannot fire a given number all at the same moment.
 */
export async function burst (url: string, jwts: readonly string[]): Promise<BurstResult> {
  const pool = new Pool(url, { connections: jwts.length, pipelining: 1, connect: { timeout: 30_000 } })
  const statuses: Record<string, number> = {}
  const started = performance.now()
  try {
    await Promise.all(jwts.map(async (jwt, i) => {
      let key: string
      try {
        const response = await pool.request({
          method: 'POST',
          path: PATHS[i & 1] as string,
          headers: { authorization: `Bearer ${jwt}` },
          headersTimeout: 30_000,
          bodyTimeout: 30_000
        })
        await response.body.dump()
        key = String(response.statusCode)
      } catch (err) {
        key = (err as { code?: string }).code ?? 'error'
      }
      statuses[key] = (statuses[key] ?? 0) + 1
    }))
  } finally {
    await pool.close()
  }
  const ok = statuses['200'] ?? 0
  return { requests: jwts.length, ok, errors: jwts.length - ok, statuses, elapsedMs: performance.now() - started }
}
