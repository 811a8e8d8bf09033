/** Worker: signs a slice of the benchmark's RS256 JWTs (RSA signing is the slow part of setup). */
import { createPrivateKey, sign } from 'node:crypto'
import { parentPort, workerData } from 'node:worker_threads'

export interface SignJob {
  privateKeyPem: string
  kid: string
  issuer: string
  audience: string
  /** Users are `${userPrefix}${index}` for index in [from, to). */
  userPrefix: string
  from: number
  to: number
  issuedAtS: number
  expiresAtS: number
}

function base64url (value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

const job = workerData as SignJob
const key = createPrivateKey(job.privateKeyPem)
const header = base64url({ alg: 'RS256', typ: 'JWT', kid: job.kid })
const tokens: string[] = []
for (let i = job.from; i < job.to; i++) {
  const userId = `${job.userPrefix}${i}`
  const payload = base64url({
    iss: job.issuer,
    aud: job.audience,
    sub: `idp|${userId}`,
    mangopay_user_id: userId,
    iat: job.issuedAtS,
    nbf: job.issuedAtS,
    exp: job.expiresAtS
  })
  const signingInput = `${header}.${payload}`
  tokens.push(`${signingInput}.${sign('sha256', Buffer.from(signingInput), key).toString('base64url')}`)
}
parentPort?.postMessage(tokens)
