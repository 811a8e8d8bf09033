/**
 * `npx tsx bench/profile-summary.ts <file.cpuprofile> [rows] [lastS]`: where a broker profile
 * (BENCH_CPU_PROF=1) spends its time, by function and by package, self time only. With `lastS`,
 * only the last seconds before the process went idle for good (e.g. the last broker run of an
 * even number of pairs: steady state, no start-up or JIT warm-up).
 */
import { readFile } from 'node:fs/promises'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  children?: number[]
}
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

function where (url: string): string {
  // A package's own name; not node_modules/.cache, where the benchmark builds the broker.
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/.][^/]*)/.exec(url)?.[1]
  if (pkg !== undefined) return pkg
  if (url.startsWith('node:')) return url
  const own = /\/(dist|src)\/(.*)$/.exec(url)
  return own === null ? (url === '' ? '(native)' : url) : `broker ${own[2]}`
}

function top (totals: Map<string, number>, all: number, count: number): string[] {
  return [...totals].sort((a, b) => b[1] - a[1]).slice(0, count)
    .map(([name, us]) => `${(100 * us / all).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(6)} ms  ${name}`)
}

const file = process.argv[2]
if (file === undefined) throw new Error('usage: profile-summary <file.cpuprofile> [rows]')
const rows = Number(process.argv[3] ?? 40)
const lastS = process.argv[4] === undefined ? undefined : Number(process.argv[4])
const profile = JSON.parse(await readFile(file, 'utf8')) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n]))
const isIdle = (id: number): boolean => byId.get(id)?.callFrame.functionName === '(idle)'

const at: number[] = []
profile.timeDeltas.reduce((t, delta, i) => { at[i] = t + delta; return at[i] as number }, 0)
let from = -Infinity
if (lastS !== undefined) {
  let lastBusy = profile.samples.length - 1
  while (lastBusy > 0 && isIdle(profile.samples[lastBusy] as number)) lastBusy--
  from = (at[lastBusy] as number) - lastS * 1e6
}
const selfUs = new Map<number, number>()
profile.samples.forEach((id, i) => {
  if ((at[i] as number) >= from) selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
})

const byFunction = new Map<string, number>()
const byPackage = new Map<string, number>()
let all = 0
let idle = 0
for (const [id, us] of selfUs) {
  const frame = (byId.get(id) as ProfileNode).callFrame
  all += us
  if (frame.functionName === '(idle)') idle += us
  const name = `${frame.functionName === '' ? '(anonymous)' : frame.functionName}  ${where(frame.url)}:${frame.lineNumber + 1}`
  byFunction.set(name, (byFunction.get(name) ?? 0) + us)
  byPackage.set(where(frame.url), (byPackage.get(where(frame.url)) ?? 0) + us)
}
process.stdout.write(`total ${(all / 1000).toFixed(0)} ms, idle ${(100 * idle / all).toFixed(1)} %\n\nby package\n${top(byPackage, all, 25).join('\n')}\n\nby function\n${top(byFunction, all, rows).join('\n')}\n`)
