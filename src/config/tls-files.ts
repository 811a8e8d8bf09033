import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createSecureContext } from 'node:tls'
import { readSecretFile, unreadable } from './secret-files.js'

// mTLS files for Mangopay's `api-mtls` hosts (SPEC §4): checked at start-up and again on SIGHUP.

export interface TlsFiles {
  certFile?: string
  keyFile?: string
  caFile?: string
  passphraseFile?: string
}

export interface TlsMaterial {
  cert?: string
  key?: string
  /** Replaces the system roots for verifying Mangopay's server certificate. */
  ca?: string
  passphrase?: string
}

export interface TlsSettings {
  files: TlsFiles
  material: TlsMaterial
}

const CERTIFICATE = /-----BEGIN CERTIFICATE-----/
const PRIVATE_KEY = /-----BEGIN (ENCRYPTED |RSA |EC )?PRIVATE KEY-----/

function readPem (name: string, path: string | undefined, shape: RegExp, what: string, problems: string[]): string | undefined {
  if (path === undefined) return undefined
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    problems.push(unreadable(name, path, err))
    return undefined
  }
  if (!shape.test(text)) {
    problems.push(`${name}: ${path} is not a PEM ${what}`)
    return undefined
  }
  return text
}

/** Why a secure context could not be built, in words that name no secret. */
function describeContextError (err: unknown): string {
  const message = String((err as Error).message ?? '')
  if (/bad decrypt|bad password|interrupted or cancelled|BAD_DECRYPT/i.test(message)) return 'the key cannot be decrypted: wrong or missing MANGOPAY_TLS_PASSPHRASE'
  if (/key values mismatch|KEY_VALUES_MISMATCH/i.test(message)) return 'the key does not match MANGOPAY_TLS_CERT_FILE'
  return 'the certificate, key or CA cannot be loaded'
}

/** `passphrase` is already resolved. Undefined when something is wrong (see `problems`) or nothing is set. */
export function loadTlsMaterial (files: TlsFiles, passphrase: string | undefined, problems: string[], now = Date.now()): TlsMaterial | undefined {
  const before = problems.length
  if ((files.certFile === undefined) !== (files.keyFile === undefined)) {
    problems.push('MANGOPAY_TLS_CERT_FILE and MANGOPAY_TLS_KEY_FILE go together: set both or neither')
  }
  if (passphrase !== undefined && files.keyFile === undefined) {
    problems.push('MANGOPAY_TLS_PASSPHRASE is set but MANGOPAY_TLS_KEY_FILE is not')
  }
  const cert = readPem('MANGOPAY_TLS_CERT_FILE', files.certFile, CERTIFICATE, 'certificate', problems)
  const key = readPem('MANGOPAY_TLS_KEY_FILE', files.keyFile, PRIVATE_KEY, 'private key', problems)
  const ca = readPem('MANGOPAY_TLS_CA_FILE', files.caFile, CERTIFICATE, 'CA certificate', problems)
  if (problems.length > before) return undefined

  const material: TlsMaterial = {}
  if (cert !== undefined) material.cert = cert
  if (key !== undefined) material.key = key
  if (ca !== undefined) material.ca = ca
  if (passphrase !== undefined) material.passphrase = passphrase
  if (Object.keys(material).length === 0) return undefined

  if (cert !== undefined) {
    try {
      const validTo = Date.parse(new X509Certificate(cert).validTo)
      // Mangopay's client certificates last 12 months: an expired one would fail every call.
      if (validTo <= now) problems.push(`MANGOPAY_TLS_CERT_FILE: the certificate expired on ${new Date(validTo).toISOString()}`)
    } catch {
      problems.push('MANGOPAY_TLS_CERT_FILE: the certificate cannot be parsed')
    }
  }
  try {
    // Loads the key with its passphrase and matches it to the certificate, as a connection would.
    createSecureContext(material)
  } catch (err) {
    problems.push(`MANGOPAY_TLS_KEY_FILE / MANGOPAY_TLS_CERT_FILE / MANGOPAY_TLS_CA_FILE: ${describeContextError(err)}`)
  }
  return problems.length > before ? undefined : material
}

/** Re-reads the files named at start-up (SIGHUP); a passphrase given inline is kept. */
export function reloadTlsMaterial (settings: TlsSettings): { material: TlsMaterial } | { problems: string[] } {
  const problems: string[] = []
  let passphrase = settings.material.passphrase
  if (settings.files.passphraseFile !== undefined) {
    try {
      passphrase = readSecretFile(settings.files.passphraseFile)
    } catch (err) {
      problems.push(unreadable('MANGOPAY_TLS_PASSPHRASE_FILE', settings.files.passphraseFile, err))
    }
  }
  const material = problems.length === 0 ? loadTlsMaterial(settings.files, passphrase, problems) : undefined
  return material === undefined ? { problems: problems.length > 0 ? problems : ['no TLS material'] } : { material }
}
