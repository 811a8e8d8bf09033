/** Starts and stops the benchmark's processes: the emulator, the broker, the baseline. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer, connect, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'

export interface Proc {
  name: string
  url: string
  pid: number
  child: ChildProcess
  stop: () => Promise<void>
}

export interface MemorySnapshot {
  /** VmRSS from /proc/<pid>/status, in bytes. */
  rssBytes: number
  /** V8 heap in use, reported by the process itself after a full GC. */
  heapUsedBytes: number
  heapTotalBytes: number
  externalBytes: number
}

export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** Resolves as soon as the port accepts a connection: the process is listening. */
async function waitForPort (port: number, child: ChildProcess, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode} before listening on ${port}`)
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (open) return
    await sleep(2)
  }
  throw new Error(`nothing listened on ${port} within ${timeoutMs} ms`)
}

function stopper (child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    // A broker drains in-flight requests first; one that does not stop is killed.
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    await exited
    clearTimeout(killer)
  }
}

export interface SpawnOptions {
  name: string
  cwd: string
  nodeArgs: string[]
  env: Record<string, string>
  /** stdout and stderr go to this file (the broker's logs are part of what is measured). */
  logFile?: string
  ipc?: boolean
  /** A program that runs `node` itself, with its own arguments first (e.g. valgrind). */
  wrapper?: readonly string[]
  /** How long it may take to listen (default 30 s). */
  startTimeoutMs?: number
}

function spawnNode (options: SpawnOptions): ChildProcess {
  const out = options.logFile === undefined ? 'ignore' : openSync(options.logFile, 'w')
  const [command, ...args] = [...(options.wrapper ?? []), process.execPath, ...options.nodeArgs] as [string, ...string[]]
  const child = spawn(command, args, {
    cwd: options.cwd,
    // Only what is given: a developer's shell (REDIS_URL, AUTH_COOKIE_NAME…) must not change what is measured.
    env: { PATH: process.env.PATH ?? '', ...options.env },
    stdio: ['ignore', out, out, ...(options.ipc === true ? ['ipc' as const] : [])]
  })
  if (typeof out === 'number') closeSync(out)
  return child
}

/** The emulator prints its URL once it listens. */
export async function startEmulatorProcess (cwd: string, env: Record<string, string>): Promise<Proc> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/emulator/main.ts'], {
    cwd,
    env: { ...process.env, EMULATOR_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const url = await new Promise<string>((resolve, reject) => {
    let seen = ''
    child.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString()
      const match = /listening on (http:\/\/\S+)/.exec(seen)
      if (match?.[1] !== undefined) resolve(match[1])
    })
    child.once('exit', (code) => reject(new Error(`emulator exited with ${code}`)))
  })
  child.stdout.resume()
  return { name: 'emulator', url, pid: child.pid as number, child, stop: stopper(child) }
}

export async function startListeningProcess (options: SpawnOptions, port: number): Promise<Proc> {
  const child = spawnNode(options)
  try {
    await waitForPort(port, child, options.startTimeoutMs)
  } catch (err) {
    child.kill('SIGKILL')
    // A configuration error is in the process's own output: show its end.
    const output = options.logFile === undefined ? '' : (await readFile(options.logFile, 'utf8').catch(() => '')).slice(-2000)
    throw new Error(`${options.name} did not start: ${(err as Error).message}${output === '' ? '' : `\n${output}`}`)
  }
  return { name: options.name, url: `http://127.0.0.1:${port}`, pid: child.pid as number, child, stop: stopper(child) }
}

async function readRss (pid: number): Promise<number> {
  const status = await readFile(join('/proc', String(pid), 'status'), 'utf8')
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]
  if (kb === undefined) throw new Error(`no VmRSS for ${pid}`)
  return Number(kb) * 1024
}

/** Asks bench/broker-process.ts (over the IPC channel) for its heap, then reads RSS from /proc. */
export async function readMemory (proc: Proc): Promise<MemorySnapshot> {
  const heap = await new Promise<{ heapUsed: number, heapTotal: number, external: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no memory report')), 10_000)
    proc.child.once('message', (message: { memory?: { heapUsed: number, heapTotal: number, external: number } }) => {
      clearTimeout(timer)
      if (message.memory === undefined) reject(new Error('unexpected message'))
      else resolve(message.memory)
    })
    proc.child.send('memory')
  })
  return { rssBytes: await readRss(proc.pid), heapUsedBytes: heap.heapUsed, heapTotalBytes: heap.heapTotal, externalBytes: heap.external }
}

let ticksPerSecond: number | undefined

/** The unit of the CPU times in /proc/<pid>/stat (USER_HZ, nearly always 100). */
export function clockTicksPerSecond (): number {
  ticksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100
  return ticksPerSecond
}

/**
 * CPU time (user + system) the process has used so far, from /proc/<pid>/stat, in ms; with
 * `mainThread`, only its main thread's (the one that runs JavaScript), from /proc/<pid>/task/<pid>/stat.
 */
export async function readCpuMs (pid: number, options: { mainThread?: boolean } = {}): Promise<number> {
  const stat = await readFile(options.mainThread === true ? join('/proc', String(pid), 'task', String(pid), 'stat') : join('/proc', String(pid), 'stat'), 'utf8')
  // Fields after the command name (which may hold spaces) start at field 3: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond()
}
