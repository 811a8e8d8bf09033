import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import { refreshAtFor, type Bearer } from './bearer-store.js'

// The bearer as Redis keeps it: sealed under a key derived from the API key, its times bound to the ciphertext.

const HKDF_INFO = 'mangopay-token-broker bearer v1'
const IV_BYTES = 12
const TAG_BYTES = 16

interface StoredBearer { iv: string, tag: string, data: string, obtainedAt: number, expiresAt: number }

function isStoredBearer (value: unknown): value is StoredBearer {
  if (typeof value !== 'object' || value === null) return false
  const v = value as Record<string, unknown>
  return typeof v.iv === 'string' && typeof v.tag === 'string' && typeof v.data === 'string' &&
    typeof v.obtainedAt === 'number' && Number.isFinite(v.obtainedAt) &&
    typeof v.expiresAt === 'number' && Number.isFinite(v.expiresAt) && v.expiresAt > v.obtainedAt
}

export function sealingKey (apiKey: string, clientId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', apiKey, clientId, HKDF_INFO, 32))
}

/** `where` (the Redis key) is bound too: a value copied under another key does not open. */
function aad (where: string, obtainedAt: number, expiresAt: number): Buffer {
  return Buffer.from(`${where}|${obtainedAt}|${expiresAt}`)
}

export function seal (key: Buffer, where: string, bearer: Bearer): string {
  const iv = randomBytes(IV_BYTES)
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES })
  cipher.setAAD(aad(where, bearer.obtainedAt, bearer.expiresAt))
  const data = Buffer.concat([cipher.update(bearer.token, 'utf8'), cipher.final()])
  const stored: StoredBearer = {
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    data: data.toString('base64'),
    expiresAt: bearer.expiresAt,
    obtainedAt: bearer.obtainedAt
  }
  return JSON.stringify(stored)
}

export function open (key: Buffer, where: string, raw: string): Bearer | undefined {
  try {
    const stored: unknown = JSON.parse(raw)
    if (!isStoredBearer(stored)) return undefined
    const iv = Buffer.from(stored.iv, 'base64')
    const tag = Buffer.from(stored.tag, 'base64')
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) return undefined
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES })
    decipher.setAAD(aad(where, stored.obtainedAt, stored.expiresAt))
    decipher.setAuthTag(tag)
    const token = Buffer.concat([decipher.update(Buffer.from(stored.data, 'base64')), decipher.final()]).toString('utf8')
    if (token === '') return undefined
    return { token, obtainedAt: stored.obtainedAt, expiresAt: stored.expiresAt, refreshAt: refreshAtFor(stored.obtainedAt, stored.expiresAt) }
  } catch {
    return undefined
  }
}
