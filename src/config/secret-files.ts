import { readFileSync } from 'node:fs'

/** Variables that may instead be read from a file named by `<NAME>_FILE`. */
const SECRET_VARIABLES = ['MANGOPAY_API_KEY', 'AUTH_JWT_PUBLIC_KEY', 'AUTH_JWT_SECRET', 'DEV_SESSION_SECRET', 'REDIS_URL', 'MANGOPAY_TLS_PASSPHRASE'] as const
type SecretVariable = typeof SECRET_VARIABLES[number]
export type SecretFiles = Partial<Record<SecretVariable, string>>

/** A secret file's content; a trailing newline in the file is not part of the secret. */
export function readSecretFile (path: string): string {
  return readFileSync(path, 'utf8').replace(/\r?\n$/, '')
}

/** The problem for a file that cannot be read: its path and the error code, never its content. */
export function unreadable (name: string, path: string, err: unknown): string {
  return `${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`
}

/** Reads `<NAME>_FILE` secrets into `<NAME>`; `files` keeps the paths, so SIGHUP can read them again. */
export function resolveSecretFiles (env: Record<string, string>, problems: string[]): { values: Record<string, string>, files: SecretFiles } {
  const values = { ...env }
  const files: SecretFiles = {}
  for (const name of SECRET_VARIABLES) {
    const file = env[`${name}_FILE`]
    if (file === undefined) continue
    files[name] = file
    if (env[name] !== undefined) {
      problems.push(`${name} and ${name}_FILE are both set; set only one`)
      continue
    }
    try {
      values[name] = readSecretFile(file)
    } catch (err) {
      problems.push(unreadable(`${name}_FILE`, file, err))
    }
  }
  return { values, files }
}
