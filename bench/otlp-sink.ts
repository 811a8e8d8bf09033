/** With BENCH_TRACING=1: where the brokers send their spans (OTLP/HTTP), so tracing's cost is measured as deployed. */
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface OtlpSink {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string
  /** Export requests received, and their bytes. */
  received: () => { batches: number, bytes: number }
  close: () => Promise<void>
}

export async function startOtlpSink (): Promise<OtlpSink> {
  let batches = 0
  let bytes = 0
  const server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => { bytes += chunk.length })
    req.on('end', () => {
      batches++
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received: () => ({ batches, bytes }),
    close: async () => {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  }
}
