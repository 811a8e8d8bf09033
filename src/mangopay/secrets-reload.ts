import { createHash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { readSecretFile, reloadTlsMaterial, type MangopayConfig, type TlsMaterial } from '../config/index.js'
import { BrokerError } from '../errors.js'
import type { BearerStore } from './bearer-store.js'
import type { MangopayConnector } from './tls.js'

// SPEC §5, SIGHUP. A new API key is tried at once: a bad one shows now, and the previous key stays in use.

export interface SecretsReloadResult {
  apiKey: 'inline' | 'unreadable' | 'unchanged' | 'rotated' | 'refused' | 'unverified'
  tls: 'none' | 'unchanged' | 'reloaded' | 'invalid'
}

export interface SecretsReloaderOptions {
  config: MangopayConfig
  /** Makes the next bearer fetch use this key. */
  setApiKey: (apiKey: string) => void
  bearers: BearerStore
  /** Absent when the app was given a dispatcher it does not own (tests). */
  connector: MangopayConnector | undefined
  logger: FastifyBaseLogger
}

export type SecretsReloadOutcome = 'reloaded' | 'unchanged' | 'failed'

/** The SIGHUP line's verdict: any part refused or unreadable is a failure, else whether anything changed. */
export function reloadOutcome (result: SecretsReloadResult): SecretsReloadOutcome {
  if (result.apiKey === 'unreadable' || result.apiKey === 'refused' || result.tls === 'invalid') return 'failed'
  if (result.apiKey === 'rotated' || result.apiKey === 'unverified' || result.tls === 'reloaded') return 'reloaded'
  return 'unchanged'
}

/** Enough to tell whether a secret changed, without keeping a second copy of it. */
function fingerprint (...parts: Array<string | undefined>): string {
  const hash = createHash('sha256')
  for (const part of parts) hash.update(`${part?.length ?? -1}:${part ?? ''}`)
  return hash.digest('base64url')
}

function tlsFingerprint (material: TlsMaterial | undefined): string {
  return fingerprint(material?.cert, material?.key, material?.ca, material?.passphrase)
}

export function createSecretsReloader (options: SecretsReloaderOptions): () => Promise<SecretsReloadResult> {
  const { config, setApiKey, bearers, connector, logger } = options
  // Kept to be put back if Mangopay refuses a new key.
  let apiKeyInUse = config.apiKey
  let tlsPrint = tlsFingerprint(config.tls?.material)

  function reloadTls (): SecretsReloadResult['tls'] {
    if (config.tls === undefined || connector === undefined) return 'none'
    const result = reloadTlsMaterial(config.tls)
    if ('problems' in result) {
      logger.error({ tls: { problems: result.problems } }, 'the Mangopay TLS files could not be reloaded; the current certificate stays in use')
      return 'invalid'
    }
    const print = tlsFingerprint(result.material)
    if (print === tlsPrint) return 'unchanged'
    connector.update(result.material)
    tlsPrint = print
    logger.info('Mangopay TLS material reloaded: new connections use it')
    return 'reloaded'
  }

  async function reloadApiKey (): Promise<SecretsReloadResult['apiKey']> {
    const file = config.apiKeyFile
    if (file === undefined) {
      logger.info('MANGOPAY_API_KEY is set inline, not from MANGOPAY_API_KEY_FILE: nothing to re-read')
      return 'inline'
    }
    let apiKey: string
    try {
      apiKey = readSecretFile(file)
    } catch (err) {
      logger.error({ file, code: (err as NodeJS.ErrnoException).code }, 'MANGOPAY_API_KEY_FILE cannot be read; the current key stays in use')
      return 'unreadable'
    }
    if (apiKey === '') {
      logger.error({ file }, 'MANGOPAY_API_KEY_FILE is empty; the current key stays in use')
      return 'unreadable'
    }
    if (apiKey === apiKeyInUse) return 'unchanged'
    setApiKey(apiKey)
    try {
      await bearers.refreshAfterCredentialChange()
      apiKeyInUse = apiKey
      logger.info('Mangopay API key rotated: a bearer was obtained with the new key')
      return 'rotated'
    } catch (err) {
      if (err instanceof BrokerError && err.code === 'upstream_auth_failed') {
        setApiKey(apiKeyInUse)
        logger.error('the new Mangopay API key was refused by Mangopay: the previous key stays in use; fix MANGOPAY_API_KEY_FILE and send SIGHUP again')
        return 'refused'
      }
      apiKeyInUse = apiKey
      const held = bearers.peek()
      const bearer = { heldUntil: held === undefined ? null : new Date(held.expiresAt).toISOString() }
      logger.warn({ bearer, code: err instanceof BrokerError ? err.code : 'error' }, 'the new Mangopay API key could not be checked (Mangopay unavailable); the next bearer refresh uses it')
      return 'unverified'
    }
  }

  // Two SIGHUPs in a row run one after the other, never interleaved.
  let queue: Promise<unknown> = Promise.resolve()
  return async function reloadSecrets (): Promise<SecretsReloadResult> {
    const run = async (): Promise<SecretsReloadResult> => {
      const tls = reloadTls()
      const apiKey = await reloadApiKey()
      const outcome = reloadOutcome({ apiKey, tls })
      // Not `apiKey`: the censor blanks any field of that name.
      logger[outcome === 'failed' ? 'warn' : 'info']({ reload: { outcome, mangopayKey: apiKey, tls } }, `secrets reload: ${outcome}`)
      return { apiKey, tls }
    }
    const result = queue.then(run, run)
    queue = result.catch(() => {})
    return await result
  }
}
