/** A local stand-in for Mangopay's OAuth and embedded-token endpoints, with fault injection. */
export type {
  ChaosCounts, ChaosMode, ChaosPlan, Emulator, EmulatorControl, EmulatorOptions, EmulatorTls, EndpointName, Fault, FaultRule, FaultTarget,
  IssuedBearer, MintedToken, QuotaWindow, ReceivedRequest
} from './types.js'
export { startEmulator } from './server.js'
export { MANGOPAY_QUOTA } from './quota.js'
