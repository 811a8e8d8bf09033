/**
 * The broker as deployed (`node dist/server.js`, entry given by BENCH_BROKER_ENTRY), plus an
 * IPC channel on which the benchmark asks for heap figures, so no route is added to the product.
 * Started with --expose-gc: heap is reported after a full collection, i.e. what is retained.
 */
import { pathToFileURL } from 'node:url'

const entry = process.env.BENCH_BROKER_ENTRY
if (entry === undefined || entry === '') throw new Error('BENCH_BROKER_ENTRY is not set')

process.on('message', (message) => {
  if (message !== 'memory') return
  globalThis.gc?.()
  const { heapUsed, heapTotal, external } = process.memoryUsage()
  process.send?.({ memory: { heapUsed, heapTotal, external } })
})
// The channel must not keep the broker alive once it has shut down.
process.channel?.unref()

await import(pathToFileURL(entry).href)
