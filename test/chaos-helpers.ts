import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { randomInt } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { once } from 'node:events'
import { createServer } from 'node:net'
import type { Readable } from 'node:stream'
import type { TestContext } from './helpers.js'

/**
 * A redis-server of the test's own, on a free loopback port, that can be killed and started
 * again: the machine's Redis is shared with the tests running in parallel. Fails (does not skip)
 * when redis-server is missing.
 */
export interface OwnRedis {
  url: string
  start (): Promise<void>
  kill (): Promise<void>
}

/** The first port the kernel hands to outgoing connections (Linux; elsewhere a common default). */
async function ephemeralLow (): Promise<number> {
  try {
    const low = Number((await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/)[0])
    return Number.isInteger(low) && low > 11_000 ? low : 32_768
  } catch {
    return 32_768
  }
}

async function isFree (port: number): Promise<boolean> {
  const probe = createServer()
  probe.listen(port, '127.0.0.1')
  const [outcome] = await Promise.race([once(probe, 'listening').then(() => ['free']), once(probe, 'error').then(() => ['taken'])])
  if (outcome === 'free') await new Promise<void>(resolve => probe.close(() => resolve()))
  return outcome === 'free'
}

/**
 * A free port below the ephemeral range: while Redis is down, a client reconnecting to an
 * ephemeral port can be given that same port as its own and connect to itself, taking it.
 */
async function freePort (): Promise<number> {
  const low = await ephemeralLow()
  for (let tries = 0; tries < 50; tries++) {
    const port = low - 10_000 + randomInt(10_000)
    if (await isFree(port)) return port
  }
  throw new Error('no free port for redis-server')
}

export async function ownRedis (t: TestContext): Promise<OwnRedis> {
  const port = await freePort()
  let child: ChildProcessByStdio<null, Readable, Readable> | undefined

  async function start (): Promise<void> {
    const started = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe']
    })
    child = started
    let output = ''
    await new Promise<void>((resolve, reject) => {
      started.once('error', (err: NodeJS.ErrnoException) => {
        reject(err.code === 'ENOENT' ? new Error('redis-server is not on PATH: this test starts and kills its own Redis (install redis-server)') : err)
      })
      started.once('exit', code => reject(new Error(`redis-server exited (${String(code)}) before it was ready: ${output.slice(-400)}`)))
      started.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) resolve()
      })
      started.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
    })
  }

  async function kill (): Promise<void> {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    const exited = once(running, 'exit')
    running.kill('SIGKILL')
    await exited
  }

  t.teardown(kill)
  return { url: `redis://127.0.0.1:${port}`, start, kill }
}

/** Counts answers; `reached(n)` resolves once `n` have come back. */
export class Progress {
  #count = 0
  #waiters: Array<{ at: number, resolve: () => void }> = []

  get count (): number {
    return this.#count
  }

  answered (): void {
    this.#count++
    const due = this.#waiters.filter(w => w.at <= this.#count)
    this.#waiters = this.#waiters.filter(w => w.at > this.#count)
    for (const waiter of due) waiter.resolve()
  }

  async reached (at: number): Promise<void> {
    if (this.#count >= at) return
    await new Promise<void>(resolve => this.#waiters.push({ at, resolve }))
  }
}
