import { BrokerError } from '../errors.js'
import type { Session } from './types.js'

const MANGOPAY_USER_ID = /^[A-Za-z0-9_-]{1,128}$/
const MAX_IDS = 100

/** A string or an array of strings; anything else (a number, odd characters) grants nothing. */
export function mangopayUserIdsFromClaim (value: unknown): string[] {
  const candidates = typeof value === 'string' ? [value] : Array.isArray(value) ? value.slice(0, MAX_IDS) : []
  const ids = candidates.filter((id): id is string => typeof id === 'string' && MANGOPAY_USER_ID.test(id))
  return [...new Set(ids)]
}

/** SPEC §3.3: which Mangopay user this request is for. */
export function selectMangopayUser (session: Session, requested: string | undefined): string {
  const ids = session.mangopayUserIds
  if (ids.length === 0) {
    throw new BrokerError('no_mangopay_user', 'Your session is valid but is not linked to any Mangopay user.', {
      logFields: { auth: { reason: 'claim', claim: session.userIdClaim ?? 'unknown', check: 'missing' } }
    })
  }
  if (requested === undefined) {
    if (ids.length === 1) return ids[0] as string
    throw new BrokerError('user_id_required', 'Your session is linked to several Mangopay users; name one in the body as "userId".')
  }
  if (!ids.includes(requested)) {
    throw new BrokerError('forbidden_user', 'Your session is not allowed to get a token for that Mangopay user.')
  }
  return requested
}
