import { X509Certificate } from 'node:crypto'
import type { ConnectionOptions } from 'node:tls'
import { buildConnector } from 'undici'
import type { TlsMaterial } from '../config/index.js'

// mTLS towards Mangopay's `api-mtls` hosts (SPEC §4). The files are read and checked in config/tls-files.ts.

/** Verification on and TLS 1.2 at least, whatever the files say. */
export function tlsConnectOptions (material: TlsMaterial | undefined): ConnectionOptions {
  return { ...material, minVersion: 'TLSv1.2', rejectUnauthorized: true }
}

/** When the client certificate stops being valid (epoch ms), for the expiry metric. */
export function certificateExpiresAt (material: TlsMaterial | undefined): number | undefined {
  if (material?.cert === undefined) return undefined
  try {
    return Date.parse(new X509Certificate(material.cert).validTo)
  } catch {
    return undefined
  }
}

/** After a SIGHUP, new connections use the new certificate while established ones finish with the old. */
export class MangopayConnector {
  readonly #timeoutMs: number
  #current: buildConnector.connector
  #material: TlsMaterial | undefined

  constructor (material: TlsMaterial | undefined, connectTimeoutMs: number) {
    this.#timeoutMs = connectTimeoutMs
    this.#material = material
    this.#current = this.#build(material)
  }

  readonly connect: buildConnector.connector = (options, callback) => {
    this.#current(options, callback)
  }

  get material (): TlsMaterial | undefined {
    return this.#material
  }

  update (material: TlsMaterial | undefined): void {
    this.#material = material
    this.#current = this.#build(material)
  }

  #build (material: TlsMaterial | undefined): buildConnector.connector {
    return buildConnector({ timeout: this.#timeoutMs, ...tlsConnectOptions(material) })
  }
}
