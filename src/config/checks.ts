import envSchema from 'env-schema'
import ipaddr from 'ipaddr.js'
import { EnvSchema, type Env } from './schema.js'

interface AjvIssue { instancePath: string, keyword: string, message?: string, params: Record<string, unknown> }

const PLAIN_INTEGER = /^-?\d+$/
const PLAIN_DECIMAL = /^-?\d+(\.\d+)?$/

// Ajv coerces whatever Number() reads ('0x10', '1e3', ' 5'): a typo would be reinterpreted silently.
function checkNumberSyntax (data: Record<string, unknown>, problems: string[]): void {
  for (const [name, schema] of Object.entries(EnvSchema.properties as Record<string, { type?: unknown }>)) {
    const value = data[name]
    if (typeof value !== 'string' || !Number.isFinite(Number(value))) continue
    if (schema.type === 'integer' && !PLAIN_INTEGER.test(value)) problems.push(`${name} must be written as a whole number in decimal`)
    if (schema.type === 'number' && !PLAIN_DECIMAL.test(value)) problems.push(`${name} must be written as a decimal number`)
  }
}

function describeSchemaIssue (issue: AjvIssue): string {
  if (issue.keyword === 'required') return `${String(issue.params.missingProperty)} is required`
  const name = issue.instancePath.replace(/^\//, '')
  if (issue.keyword === 'anyOf' || issue.keyword === 'enum' || issue.keyword === 'const') {
    const allowed = (EnvSchema.properties as Record<string, { anyOf?: Array<{ const: string }> }>)[name]?.anyOf?.map(s => s.const)
    return `${name} must be one of ${allowed?.join(', ') ?? 'the allowed values'}`
  }
  if (issue.keyword === 'pattern') return `${name} has an invalid format`
  return `${name} ${issue.message ?? 'is invalid'}`
}

export function splitList (value: string | undefined): string[] {
  return (value ?? '').split(',').map(s => s.trim()).filter(s => s !== '')
}

export function isLoopbackHost (hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '')
  return host === 'localhost' || (ipaddr.isValid(host) && ipaddr.parse(host).range() === 'loopback')
}

/** `value` as an absolute URL, or a problem naming `name`. */
export function parseUrl (name: string, value: string, problems: string[]): URL | undefined {
  try {
    return new URL(value)
  } catch {
    problems.push(`${name} must be an absolute URL`)
    return undefined
  }
}

/** An absolute http(s) URL; plain http only to loopback, so nothing secret crosses a network unencrypted. */
export function checkUrl (name: string, value: string, problems: string[]): string | undefined {
  const url = parseUrl(name, value, problems)
  if (url === undefined) return undefined
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
    problems.push(`${name} must use https (plain http is allowed only for loopback hosts)`)
    return undefined
  }
  if (url.username !== '' || url.password !== '') {
    problems.push(`${name} must not contain credentials`)
    return undefined
  }
  return url.href
}

export function checkOrigins (value: string, problems: string[]): string[] {
  const origins: string[] = []
  for (const entry of splitList(value)) {
    let origin: string | undefined
    try {
      origin = new URL(entry).origin
    } catch {}
    // WHATWG URL accepts `*` in a host name, so a wildcard pattern has to be refused by hand.
    if (origin === undefined || origin === 'null' || origin !== entry.replace(/\/$/, '') || entry.includes('*')) {
      problems.push(`CORS_ORIGINS: "${entry}" is not an exact origin like https://app.example.com (no wildcard, path or trailing text)`)
      continue
    }
    origins.push(origin)
  }
  return origins
}

/** IPv4 in plain dotted decimal only: ipaddr.js alone would also read `127.1` or `0x7f.0.0.1`. */
function isAddressOrRange (entry: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(entry) || ipaddr.IPv4.isValidCIDRFourPartDecimal(entry) ||
    ipaddr.IPv6.isValid(entry) || ipaddr.IPv6.isValidCIDR(entry)
}

export function checkTrustProxy (value: string | undefined, problems: string[]): string[] {
  const entries = splitList(value)
  for (const entry of entries) {
    if (!isAddressOrRange(entry)) problems.push(`TRUST_PROXY: "${entry}" is not an IP address or CIDR range`)
  }
  return entries
}

export function validateEnv (data: Record<string, string>, problems: string[]): Env | undefined {
  checkNumberSyntax(data, problems)
  try {
    return envSchema<Env>({ schema: EnvSchema, data, env: false, dotenv: false })
  } catch (err) {
    const issues = (err as { errors?: AjvIssue[] }).errors ?? []
    // A value outside a union fails every branch's type as well as the union: say it once.
    problems.push(...new Set(issues.filter(i => i.keyword !== 'type' || !issues.some(o => o !== i && o.instancePath === i.instancePath && o.keyword === 'anyOf')).map(describeSchemaIssue)))
    return undefined
  }
}
