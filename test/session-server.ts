import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { USER_A, USER_B, USER_C, type TestContext } from './helpers.js'

export interface SessionServer {
  url: string
  /** Headers of every request the session endpoint received, in order. */
  received: IncomingHttpHeaders[]
  close: () => Promise<void>
}

/** The platform's own session endpoint, answering by the credential it is shown. */
export async function startSessionServer (t: TestContext): Promise<SessionServer> {
  const received: IncomingHttpHeaders[] = []
  const server: Server = createServer((req, res) => {
    received.push(req.headers)
    const credential = `${req.headers.cookie ?? ''}|${req.headers.authorization ?? ''}`
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body))
    }
    if (credential.includes('sid=alice') || credential.includes('Bearer alice-token')) return json(200, { id: 'alice', mangopay_user_id: USER_A, email: 'alice@example.test' })
    if (credential.includes('sid=numeric-id')) return json(200, { id: 42, mangopay_user_id: USER_A })
    if (credential.includes('sid=bob')) return json(200, { sub: 'bob', mangopay_user_id: [USER_B, USER_C] })
    if (credential.includes('sid=carol')) return json(200, { sub: 'carol' })
    if (credential.includes('sid=slow')) {
      setTimeout(() => json(200, { sub: 'alice', mangopay_user_id: USER_A }), 10_000).unref()
      return
    }
    if (credential.includes('sid=broken')) return json(500, { error: 'boom' })
    if (credential.includes('sid=unavailable')) return json(503, { error: 'maintenance' })
    if (credential.includes('sid=forbidden')) return json(403, { error: 'forbidden' })
    if (credential.includes('sid=redirect')) {
      res.writeHead(302, { location: 'https://login.example.test/' }).end()
      return
    }
    if (credential.includes('sid=html')) {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<html>Welcome back</html>')
      return
    }
    if (credential.includes('sid=array')) return json(200, [USER_A])
    if (credential.includes('sid=huge')) return json(200, { sub: 'alice', mangopay_user_id: USER_A, padding: 'x'.repeat(64 * 1024) })
    json(401, { error: 'no session' })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const close = async (): Promise<void> => {
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  }
  t.teardown(close)
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/session?fields=mangopay`, received, close }
}
