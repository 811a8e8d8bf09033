/** The emulator's HTTP control API (EMULATOR_CONTROL=1): the call counters the benchmark reports. */
import { request } from 'undici'

export interface UpstreamCalls {
  oauth: number
  /** Recipient and checkout calls together. */
  embedded: number
}

export async function readCalls (emulatorUrl: string): Promise<UpstreamCalls> {
  const response = await request(`${emulatorUrl}/__emulator/state`)
  const state = await response.body.json() as { calls: { oauth: number, recipient: number, checkout: number } }
  return { oauth: state.calls.oauth, embedded: state.calls.recipient + state.calls.checkout }
}

/** Counters and quota back to zero; bearers already issued stay valid. */
export async function resetCounters (emulatorUrl: string): Promise<void> {
  const response = await request(`${emulatorUrl}/__emulator/reset`, { method: 'POST' })
  await response.body.dump()
  if (response.statusCode !== 204) throw new Error(`emulator reset answered ${response.statusCode}`)
}
