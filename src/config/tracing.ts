import { parseUrl } from './checks.js'
import type { Env } from './schema.js'

/** OpenTelemetry's standard variables (SPEC §8 "Tracing"): what is exported, where, and how much. */

const TRACES_PATH = 'v1/traces'

// Plain http is allowed anywhere: a collector beside the broker is the usual set-up, and spans carry no secrets.
function exportUrl (name: string, value: string, problems: string[]): string | undefined {
  const url = parseUrl(name, value, problems)
  if (url === undefined) return undefined
  if (url.protocol !== 'https:' && url.protocol !== 'http:') problems.push(`${name} must be an http or https URL`)
  else if (url.username !== '' || url.password !== '') problems.push(`${name} must not contain credentials (use OTEL_EXPORTER_OTLP_HEADERS)`)
  else return url.href
  return undefined
}

/** The traces endpoint is used as given; the general one gets `v1/traces` appended, as the OTLP exporter specification says. */
function tracesUrl (env: Env, problems: string[]): string | undefined {
  if (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT !== undefined) return exportUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, problems)
  if (env.OTEL_EXPORTER_OTLP_ENDPOINT === undefined) return undefined
  const base = exportUrl('OTEL_EXPORTER_OTLP_ENDPOINT', env.OTEL_EXPORTER_OTLP_ENDPOINT, problems)
  return base === undefined ? undefined : new URL(TRACES_PATH, base.endsWith('/') ? base : `${base}/`).href
}

/** `key=value,key=value`, values percent-encoded (W3C Baggage's format, as OTEL_RESOURCE_ATTRIBUTES uses it). */
function resourceAttributes (value: string | undefined, problems: string[]): Record<string, string> {
  const attributes: Record<string, string> = {}
  for (const entry of (value ?? '').split(',')) {
    if (entry.trim() === '') continue
    const equals = entry.indexOf('=')
    const key = entry.slice(0, equals).trim()
    let decoded: string | undefined
    try {
      decoded = decodeURIComponent(entry.slice(equals + 1).trim())
    } catch {}
    if (equals < 1 || key === '' || decoded === undefined) {
      problems.push('OTEL_RESOURCE_ATTRIBUTES must be comma-separated key=value pairs with percent-encoded values')
      continue
    }
    attributes[key] = decoded
  }
  return attributes
}

export function tracingConfig (env: Env, problems: string[]) {
  for (const name of ['OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL'] as const) {
    const protocol = env[name]
    if (protocol !== undefined && protocol !== 'http/json') problems.push(`${name}: only http/json is supported`)
  }
  const url = tracesUrl(env, problems)
  const exporting = !env.OTEL_SDK_DISABLED && env.OTEL_TRACES_EXPORTER === 'otlp' && url !== undefined
  const ratio = env.OTEL_TRACES_SAMPLER_ARG ?? 1
  const attributes = resourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES, problems)
  return {
    /** OTLP/HTTP (JSON) traces endpoint; unset, no span is recorded, but an incoming traceparent is still passed on. */
    exportUrl: exporting ? url : undefined,
    /** OTEL_SERVICE_NAME wins over a `service.name` in OTEL_RESOURCE_ATTRIBUTES. */
    serviceName: env.OTEL_SERVICE_NAME ?? attributes['service.name'] ?? 'mangopay-token-broker',
    resourceAttributes: attributes,
    sampler: { name: env.OTEL_TRACES_SAMPLER, ratio }
  }
}

export type TracingConfig = ReturnType<typeof tracingConfig>
