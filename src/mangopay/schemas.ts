import { Type } from 'typebox'
import { Compile } from 'typebox/compile'

// Mangopay's answers: every 2xx body is checked first, so a malformed one is a 502, never a 200 without a token.

// RFC 6750: a bearer with a space or a line break would fail every call of its lifetime, so it is refused on arrival.
const TOKEN_CHARACTERS = '^[A-Za-z0-9_\\-.~+/=]+$'

export const OAuthTokenResponse = Type.Object({
  access_token: Type.String({ minLength: 1, maxLength: 4096, pattern: TOKEN_CHARACTERS }),
  // The guide's example is lower-case "bearer", the reference says "Bearer": compare case-insensitively.
  token_type: Type.String({ pattern: '^[Bb][Ee][Aa][Rr][Ee][Rr]$' }),
  // Documented as an integer, but anything odd is clamped by the bearer store rather than rejected.
  expires_in: Type.Optional(Type.Unknown())
})

export const EmbeddedTokenResponse = Type.Object({
  access_token: Type.String({ minLength: 1, maxLength: 4096, pattern: TOKEN_CHARACTERS }),
  token_type: Type.String({ pattern: '^[Bb][Ee][Aa][Rr][Ee][Rr]$' }),
  expires_in: Type.Integer({ minimum: 1, maximum: 86_400 }),
  scope: Type.Optional(Type.String({ maxLength: 1024 }))
})

const FieldErrors = Type.Optional(Type.Union([Type.Null(), Type.Record(Type.String(), Type.Unknown())]))

// Mangopay's documentation spells the last field `Errors` in its table, `errors` in its examples: both are read.
export const MangopayErrorBody = Type.Object({
  Message: Type.Optional(Type.String()),
  Type: Type.Optional(Type.String()),
  Id: Type.Optional(Type.String()),
  Date: Type.Optional(Type.Number()),
  errors: FieldErrors,
  Errors: FieldErrors
})

/** The OAuth endpoint's RFC 6749 dialect: `{error, error_description}`. */
export const OAuthErrorBody = Type.Object({
  error: Type.String(),
  error_description: Type.Optional(Type.String())
})

export const checkOAuthTokenResponse = Compile(OAuthTokenResponse)
export const checkEmbeddedTokenResponse = Compile(EmbeddedTokenResponse)
export const checkMangopayErrorBody = Compile(MangopayErrorBody)
export const checkOAuthErrorBody = Compile(OAuthErrorBody)
