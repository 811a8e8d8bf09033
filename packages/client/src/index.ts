/**
 * Browser helper for the Mangopay token broker: gets a Recipients or Checkout embedded token
 * for the signed-in user, ready to spread into the Mangopay SDK options.
 *
 * No runtime dependencies: the build is one ES module, which bundlers import as this package
 * and the broker serves as `GET /v1/client.js` for plain pages. Nothing touches `window` or
 * `document`, and nothing runs at import time, so it is safe to import during server-side
 * rendering; `fetch` is looked up only when a token is requested.
 */

export { createTokenClient } from './token-client.js'
export { sdkOptions, type MangopaySdkOptions } from './sdk-options.js'
export { TokenClientError, type TokenClientErrorCode } from './errors.js'
export type { EmbeddedToken, KeepFreshOptions, MangopayEnvironment, TokenClient, TokenClientOptions, TokenKind, TokenRequestOptions } from './options.js'
