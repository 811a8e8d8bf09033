import { pino, type DestinationStream, type Logger } from 'pino'

/**
 * Secrets never reach a log line: known header and field names are censored wherever they
 * appear, and the rest of the code never logs credentials or tokens in the first place
 * (only fingerprints). The test suite captures every line and checks it.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-csrf"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.authorization',
  '*.cookie',
  '*["set-cookie"]',
  '*.apiKey',
  '*.api_key',
  '*.access_token',
  '*.accessToken',
  '*.clientToken',
  '*.token',
  '*.jwt',
  '*.secret',
  '*.password',
  '*.passphrase'
]

export function createLogger (level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: 'mangopay-token-broker' },
    timestamp: pino.stdTimeFunctions.isoTime
  }
  return destination === undefined ? pino(options) : pino(options, destination)
}
