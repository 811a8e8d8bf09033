/** A measured load run: the load generator's figures, with each process's CPU time around it. */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Setup } from './broker-run.js'
import { readCalls, resetCounters, type UpstreamCalls } from './emulator-control.js'
import { runLoad, type LoadResult } from './load.js'
import { readCpuMs, type Proc } from './processes.js'

/** In-flight requests of a finished run still reach the emulator: let them land before counting. */
export const SETTLE_MS = 300

/** Runs `work` with the emulator's counters zeroed before and read after. */
export async function counted<T> (setup: Setup, work: () => Promise<T>): Promise<{ value: T, calls: UpstreamCalls }> {
  await resetCounters(setup.emulator.url)
  const value = await work()
  await sleep(SETTLE_MS)
  return { value, calls: await readCalls(setup.emulator.url) }
}

export interface Measured {
  load: LoadResult
  calls: UpstreamCalls
  cpuUsPerRequest: number
  cpuUsPerToken: number
  mainThreadBusy: number
  emulatorCpuUsPerRequest: number
  loaderCpuUsPerRequest: number
}

export interface RunShape {
  connections: number
  /** One JWT per line, cycled through. */
  jwtFile: string
  durationS?: number
  amount?: number
}

/**
 * A load run against `proc`, with the CPU time spent per answer by the target, the emulator and
 * the load generator (wrk, a process of its own): figures that hold even on a busy machine.
 * Also how busy the target's JavaScript thread was: near 100 %, that one thread is what limits it.
 */
export async function measured (setup: Setup, proc: Proc, shape: RunShape): Promise<Measured> {
  const before = { target: await readCpuMs(proc.pid), mainThread: await readCpuMs(proc.pid, { mainThread: true }), emulator: await readCpuMs(setup.emulator.pid) }
  const { value: run, calls } = await counted(setup, async () => await runLoad(proc.url, shape))
  const { loaderCpuMs, ...load } = run
  const answered = Math.max(1, load.ok + load.non2xx)
  const targetUs = (await readCpuMs(proc.pid) - before.target) * 1000
  return {
    load,
    calls,
    cpuUsPerRequest: targetUs / answered,
    cpuUsPerToken: targetUs / Math.max(1, load.ok),
    // Read around the run and the settling pause after it (idle time), divided by the run's length.
    mainThreadBusy: (await readCpuMs(proc.pid, { mainThread: true }) - before.mainThread) / 1000 / load.durationS,
    emulatorCpuUsPerRequest: ((await readCpuMs(setup.emulator.pid) - before.emulator) * 1000) / answered,
    loaderCpuUsPerRequest: (loaderCpuMs * 1000) / answered
  }
}

/** One progress line for a run. */
export function describe ({ load, ...cpu }: { load: LoadResult } & Partial<Omit<Measured, 'load'>>): string {
  const failed = load.non2xx + load.errors + load.timeouts
  const us = (value: number | undefined): string => value === undefined ? '?' : value.toFixed(0)
  const busy = cpu.mainThreadBusy === undefined ? '' : `, main thread ${(cpu.mainThreadBusy * 100).toFixed(0)} % busy`
  const cpuText = cpu.cpuUsPerToken === undefined ? '' : `, CPU/token ${us(cpu.cpuUsPerToken)} µs${busy} (emulator ${us(cpu.emulatorCpuUsPerRequest)}, wrk ${us(cpu.loaderCpuUsPerRequest)})`
  return `${load.reqPerS.toFixed(0)} req/s, p50 ${load.p50Ms.toFixed(2)} ms, p99 ${load.p99Ms.toFixed(2)} ms${cpuText}${failed > 0 ? `, ${failed} FAILED` : ''}`
}
