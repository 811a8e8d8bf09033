import { X509Certificate } from 'node:crypto'
import type { ConnectionOptions } from 'node:tls'
import { buildConnector } from 'undici'
import type { TlsMaterial } from '../config/index.js'

/**
 * mTLS towards Mangopay's `api-mtls` hosts (SPEC §4), on the wire: verification of Mangopay's
 * certificate is always on and TLS 1.2 is the floor, whatever the files say. The files are
 * read and checked in src/config/tls-files.ts.
 */

/** The options every connection to Mangopay gets: the material, TLS 1.2+, verification on. */
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

/**
 * undici's connector with material that can be replaced: after a SIGHUP, new connections use
 * the new certificate while established ones finish with the old.
 */
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
