import { Type, type Static } from 'typebox'

/** Every variable the broker reads, with its type, bounds and default; SPEC §6 names the public ones. */

const Port = (def?: number) => Type.Integer({ minimum: 0, maximum: 65535, ...(def === undefined ? {} : { default: def }) })
/** A limit's count, and the window it is counted over. */
const Count = (def: number) => Type.Integer({ minimum: 1, maximum: 1_000_000, default: def })
const Window = (def: number) => Type.Integer({ minimum: 1000, maximum: 86_400_000, default: def })
const Text = (options: Record<string, unknown> = {}) => Type.String({ minLength: 1, ...options })

export const EnvSchema = Type.Object({
  NODE_ENV: Type.Optional(Type.String()),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1, pattern: '^\\S+$' }),
  PORT: Port(3000),
  LOG_LEVEL: Type.Union([Type.Literal('fatal'), Type.Literal('error'), Type.Literal('warn'), Type.Literal('info'), Type.Literal('debug'), Type.Literal('trace'), Type.Literal('silent')], { default: 'info' }),
  SHUTDOWN_DELAY_MS: Type.Integer({ minimum: 0, maximum: 60_000, default: 1000 }),
  HTTP_HEADERS_TIMEOUT_MS: Type.Integer({ minimum: 500, maximum: 120_000, default: 10_000 }),
  HTTP_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 300_000, default: 30_000 }),
  HTTP_KEEP_ALIVE_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 600_000, default: 65_000 }),
  TRUST_PROXY: Type.Optional(Type.String()),

  MANGOPAY_ENV: Type.Union([Type.Literal('sandbox'), Type.Literal('production')], { default: 'sandbox' }),
  MANGOPAY_BASE_URL: Type.Optional(Text()),
  MANGOPAY_CLIENT_ID: Text({ maxLength: 128 }),
  MANGOPAY_API_KEY: Text(),
  MANGOPAY_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 60_000, default: 5000 }),
  MANGOPAY_QUOTA_RESERVE: Type.Number({ minimum: 0, maximum: 0.95, default: 0.2 }),
  EMBEDDED_TOKEN_REUSE_MIN_TTL_S: Type.Integer({ minimum: 0, maximum: 840, default: 0 }),
  MANGOPAY_TLS_CERT_FILE: Type.Optional(Text()),
  MANGOPAY_TLS_KEY_FILE: Type.Optional(Text()),
  MANGOPAY_TLS_CA_FILE: Type.Optional(Text()),
  MANGOPAY_TLS_PASSPHRASE: Type.Optional(Text()),
  MANGOPAY_RETRIES: Type.Integer({ minimum: 0, maximum: 2, default: 2 }),
  MANGOPAY_CIRCUIT_FAILURES: Type.Integer({ minimum: 0, maximum: 1000, default: 5 }),
  MANGOPAY_CIRCUIT_FAILURE_RATIO: Type.Number({ minimum: 0, maximum: 1, default: 0.5 }),
  MANGOPAY_CIRCUIT_WINDOW_MS: Type.Integer({ minimum: 1000, maximum: 600_000, default: 30_000 }),
  MANGOPAY_CIRCUIT_COOLDOWN_MS: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000 }),
  METRICS_PORT: Port(9464),
  LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ minimum: 0, maximum: 60_000, default: 1000 }),
  LOAD_SHED_MAX_EVENT_LOOP_UTILIZATION: Type.Number({ minimum: 0, maximum: 1, default: 0 }),

  AUTH_MODE: Type.Union([Type.Literal('jwt'), Type.Literal('forward'), Type.Literal('dev')]),
  AUTH_JWKS_URL: Type.Optional(Text()),
  AUTH_JWT_PUBLIC_KEY: Type.Optional(Text()),
  AUTH_JWT_SECRET: Type.Optional(Text()),
  AUTH_JWT_ALGORITHMS: Type.Optional(Text()),
  AUTH_ISSUER: Type.Optional(Text()),
  AUTH_AUDIENCE: Type.Optional(Text()),
  AUTH_JWT_TYP: Type.Optional(Text({ maxLength: 128 })),
  AUTH_CLOCK_TOLERANCE_S: Type.Integer({ minimum: 0, maximum: 300, default: 30 }),
  AUTH_COOKIE_NAME: Type.Optional(Type.String({ pattern: '^[!#$%&\'*+\\-.^_`|~0-9A-Za-z]{1,64}$' })),
  AUTH_USER_ID_CLAIM: Type.String({ minLength: 1, maxLength: 128, default: 'mangopay_user_id' }),
  AUTH_FORWARD_URL: Type.Optional(Text()),
  AUTH_FORWARD_CACHE_TTL_MS: Type.Integer({ minimum: 0, maximum: 300_000, default: 0 }),
  AUTH_FORWARD_TIMEOUT_MS: Type.Integer({ minimum: 50, maximum: 30_000, default: 2000 }),
  DEV_SESSION_SECRET: Type.Optional(Type.String({ minLength: 32 })),

  CORS_ORIGINS: Type.String({ default: '' }),
  RATE_LIMIT_MAX: Count(10),
  RATE_LIMIT_WINDOW_MS: Window(60_000),
  TOKEN_BUDGET_PER_USER: Count(6),
  TOKEN_BUDGET_PER_SESSION: Count(12),
  TOKEN_BUDGET_WINDOW_MS: Window(900_000),
  TOKEN_BUDGET_FIRST_TOKEN_SHARE: Type.Number({ minimum: 0, maximum: 1, default: 0.25 }),
  AUTH_FAILURE_LIMIT_MAX: Count(20),
  AUTH_FAILURE_LIMIT_WINDOW_MS: Window(60_000),

  REDIS_URL: Type.Optional(Text()),
  REDIS_TRUSTED_NETWORK: Type.Union([Type.Literal('true'), Type.Literal('false')], { default: 'false' }),
  REDIS_KEY_PREFIX: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9:._-]+$', default: 'mangopay-broker:' }),

  // OpenTelemetry's standard names (config/tracing.ts).
  OTEL_SDK_DISABLED: Type.Boolean({ default: false }),
  OTEL_TRACES_EXPORTER: Type.Union([Type.Literal('otlp'), Type.Literal('none')], { default: 'otlp' }),
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(Text()),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(Text()),
  OTEL_EXPORTER_OTLP_PROTOCOL: Type.Optional(Text()),
  OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: Type.Optional(Text()),
  OTEL_SERVICE_NAME: Type.Optional(Text({ maxLength: 128 })),
  OTEL_RESOURCE_ATTRIBUTES: Type.Optional(Text()),
  OTEL_TRACES_SAMPLER: Type.Union([
    Type.Literal('always_on'), Type.Literal('always_off'), Type.Literal('traceidratio'),
    Type.Literal('parentbased_always_on'), Type.Literal('parentbased_always_off'), Type.Literal('parentbased_traceidratio')
  ], { default: 'parentbased_always_on' }),
  OTEL_TRACES_SAMPLER_ARG: Type.Optional(Type.Number({ minimum: 0, maximum: 1 }))
})
export type Env = Static<typeof EnvSchema>
