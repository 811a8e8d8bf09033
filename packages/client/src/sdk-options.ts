import type { EmbeddedToken, MangopayEnvironment } from './options.js'

/**
 * The fields the Mangopay SDKs take from the broker's answer. `environment` is the literal
 * union, the values of the Checkout SDK's `CheckoutSdkEnvironment`, so it is accepted as is.
 */
export interface MangopaySdkOptions {
  clientId: string
  /** The embedded token: `rec_…` for Elements, `chk_…` for the Checkout SDK. */
  clientToken: string
  userId: string
  environment: MangopayEnvironment
}

/** Exactly those four fields (not expiresAt, scope…): the Checkout SDK posts all its options to its frame. */
export function sdkOptions (token: EmbeddedToken): MangopaySdkOptions {
  const { clientId, clientToken, userId, environment } = token
  return { clientId, clientToken, userId, environment }
}
