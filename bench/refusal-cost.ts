/**
 * What refusing a forged JWT costs the broker (docs/security.md "Rate limits"): CPU per verification by
 * the broker's own verifier, valid and forged, for RS256 and ES256. `npm run bench:refusal`.
 */
import { generateKeyPairSync } from 'node:crypto'
import { SignJWT } from 'jose'
import { createJwtVerifier } from '../src/auth/jwt.js'
import type { JwtConfig } from '../src/config/index.js'

const ISSUER = 'https://idp.bench.test/'
const AUDIENCE = 'mangopay-token-broker'
const ROUNDS = 5000

async function cpuPerCall (call: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < ROUNDS / 10; i++) await call().catch(() => {})
  const start = process.cpuUsage()
  for (let i = 0; i < ROUNDS; i++) await call().catch(() => {})
  const used = process.cpuUsage(start)
  return (used.user + used.system) / ROUNDS
}

console.log('| algorithm | valid JWT | forged JWT (CPU µs per verification) |\n|---|---|---|')
for (const alg of ['RS256', 'ES256'] as const) {
  const { privateKey, publicKey } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const config: JwtConfig = {
    key: { kind: 'public-key', pem: publicKey.export({ format: 'pem', type: 'spki' }).toString() },
    algorithms: [alg],
    issuer: ISSUER,
    audience: AUDIENCE,
    clockToleranceS: 0
  }
  const verify = createJwtVerifier(config)
  const jwt = await new SignJWT({ mangopay_user_id: 'user_1' }).setProtectedHeader({ alg }).setSubject('idp|bench')
    .setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('1h').sign(privateKey)
  const forged = jwt.slice(0, -4) + (jwt.endsWith('AAAA') ? 'BBBB' : 'AAAA')
  const valid = await cpuPerCall(async () => await verify(jwt))
  const refused = await cpuPerCall(async () => await verify(forged))
  console.log(`| ${alg} | ${valid.toFixed(0)} | ${refused.toFixed(0)} |`)
}
