/** The identity provider the broker trusts during the benchmark: an RSA key, its JWKS, and many users' JWTs. */
import { generateKeyPairSync } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import type { SignJob } from './sign-worker.js'

export const ISSUER = 'https://idp.bench.test/'
export const AUDIENCE = 'mangopay-token-broker'
const KID = 'bench-key-1'

export interface SigningKey {
  privateKeyPem: string
  publicJwk: Record<string, unknown>
}

export function createSigningKey (): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid: KID, alg: 'RS256', use: 'sig' }
  }
}

export interface JwksServer {
  url: string
  /** How many times the key set was fetched (the broker should fetch it once). */
  fetches: () => number
  close: () => Promise<void>
}

export async function startJwksServer (key: SigningKey): Promise<JwksServer> {
  const body = JSON.stringify({ keys: [key.publicJwk] })
  let fetches = 0
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/.well-known/jwks.json') {
      fetches++
      res.writeHead(200, { 'content-type': 'application/json' }).end(body)
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    fetches: () => fetches,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/**
 * Signs `count` JWTs for distinct users `${userPrefix}0…`, valid for `validForS`, in one
 * worker per core: 200,000 RSA signatures take about a minute on one core. `workerFile` is
 * sign-worker.ts as plain JavaScript (workers do not inherit tsx's loader).
 */
export async function signUserJwts (workerFile: string, key: SigningKey, userPrefix: string, count: number, validForS: number): Promise<string[]> {
  const issuedAtS = Math.floor(Date.now() / 1000)
  const workers = Math.max(1, Math.min(availableParallelism(), Math.ceil(count / 1000)))
  const slice = Math.ceil(count / workers)
  const parts = await Promise.all(Array.from({ length: workers }, async (_, w) => {
    const job: SignJob = {
      privateKeyPem: key.privateKeyPem,
      kid: KID,
      issuer: ISSUER,
      audience: AUDIENCE,
      userPrefix,
      from: w * slice,
      to: Math.min(count, (w + 1) * slice),
      issuedAtS,
      expiresAtS: issuedAtS + validForS
    }
    const worker = new Worker(workerFile, { workerData: job })
    return await new Promise<string[]>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', (code) => reject(new Error(`sign worker exited with ${code}`)))
    }).finally(() => { worker.terminate().catch(() => {}) })
  }))
  return parts.flat()
}
