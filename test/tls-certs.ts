import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/**
 * Throwaway PKI for the mTLS tests, generated at test time with the `openssl` CLI in a temp
 * directory: nothing long-lived is committed. EC P-256 keys, so generation takes milliseconds.
 */

export interface Pem { certFile: string, keyFile: string, cert: string, key: string }

export interface TestPki {
  dir: string
  /** The CA that signs the emulator's server certificate and the good client certificate. */
  ca: Pem
  /** A CA nobody trusts (for the "wrong CA" cases). */
  otherCa: Pem
  server: Pem
  /** A server certificate for 127.0.0.1 signed by `otherCa`. */
  rogueServer: Pem
  client: Pem
  /** A client certificate signed by `otherCa`. */
  untrustedClient: Pem
  /** `client`'s key, encrypted with `passphrase`. */
  encryptedClientKeyFile: string
  passphrase: string
  remove: () => void
}

function openssl (dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
}

function pem (dir: string, name: string): Pem {
  const certFile = join(dir, `${name}.crt`)
  const keyFile = join(dir, `${name}.key`)
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') }
}

function makeCa (dir: string, name: string, subject: string): Pem {
  openssl(dir, [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', subject,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'
  ])
  return pem(dir, name)
}

function makeLeaf (dir: string, name: string, subject: string, ca: string, extensions: string): Pem {
  writeFileSync(join(dir, `${name}.ext`), extensions)
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject])
  openssl(dir, [
    'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
    '-days', '2', '-out', `${name}.crt`, '-extfile', `${name}.ext`
  ])
  return pem(dir, name)
}

const SERVER_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n'
const CLIENT_EXT = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n'

export function createTestPki (): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'broker-mtls-'))
  const ca = makeCa(dir, 'ca', '/CN=Broker Test CA')
  const otherCa = makeCa(dir, 'other-ca', '/CN=Somebody Else CA')
  const server = makeLeaf(dir, 'server', '/CN=localhost', 'ca', SERVER_EXT)
  const rogueServer = makeLeaf(dir, 'rogue-server', '/CN=localhost', 'other-ca', SERVER_EXT)
  const client = makeLeaf(dir, 'client', '/CN=acme-client', 'ca', CLIENT_EXT)
  const untrustedClient = makeLeaf(dir, 'untrusted-client', '/CN=acme-client', 'other-ca', CLIENT_EXT)
  const passphrase = 'correct horse battery staple'
  const encryptedClientKeyFile = join(dir, 'client-encrypted.key')
  openssl(dir, ['pkey', '-in', 'client.key', '-aes256', '-passout', `pass:${passphrase}`, '-out', encryptedClientKeyFile])
  return {
    dir,
    ca,
    otherCa,
    server,
    rogueServer,
    client,
    untrustedClient,
    encryptedClientKeyFile,
    passphrase,
    remove: () => rmSync(dir, { recursive: true, force: true })
  }
}
