import t from 'tap'
import { buildTestApp, post, tokenFor } from './helpers.js'

/**
 * SPEC §1/§3.2: a browser gets a token only for its own session's Mangopay user. 50 users send
 * 20 concurrent requests each (1000 in flight); every 5th names another user's id. Every token
 * the emulator minted went to the user whose session asked, and every refusal is 403.
 */

const USERS = 50
const PER_USER = 20

t.test('50 users × 20 concurrent requests: every token is the asker\'s, every cross-user request is 403', async t => {
  const { app, emulator } = await buildTestApp(t, {
    env: { RATE_LIMIT_MAX: '1000', MANGOPAY_TIMEOUT_MS: '30000' }
  })
  const userIds = Array.from({ length: USERS }, (_, i) => `user_m_CROSS${String(i).padStart(4, '0')}`)
  const sessions = await Promise.all(userIds.map(async (id, i) => await tokenFor(id, {}, { subject: `idp|cross-${i}` })))

  interface Sent { asker: string, named: string | undefined, kind: 'recipients' | 'checkout' }
  const sent: Sent[] = []
  const answers = await Promise.all(userIds.flatMap((asker, u) => Array.from({ length: PER_USER }, async (_, r) => {
    const crossUser = r % 5 === 4
    const named = crossUser ? userIds[(u + 1 + r) % USERS] : r % 2 === 0 ? asker : undefined
    const kind = r % 3 === 0 ? 'checkout' : 'recipients'
    sent.push({ asker, named, kind })
    const index = sent.length - 1
    const res = await post(app, `/v1/tokens/${kind}`, { token: sessions[u], ...(named === undefined ? {} : { body: { userId: named } }) })
    return { index, res }
  })))

  const mintedFor = new Map(emulator.control.minted.map(m => [m.token, m]))
  let granted = 0
  let refused = 0
  const wrong: string[] = []
  for (const { index, res } of answers) {
    const request = sent[index] as Sent
    const crossUser = request.named !== undefined && request.named !== request.asker
    if (res.statusCode === 200) {
      granted++
      const body = res.json()
      const minted = mintedFor.get(body.clientToken)
      if (crossUser) wrong.push(`a cross-user request got a token (${request.asker} → ${String(request.named)})`)
      if (minted === undefined) wrong.push('a token the emulator never minted')
      else if (minted.userId !== request.asker) wrong.push(`${request.asker} got a token minted for ${minted.userId}`)
      else if (minted.kind !== (request.kind === 'checkout' ? 'checkout' : 'recipient')) wrong.push('a token of the wrong kind')
      if (body.userId !== request.asker) wrong.push(`${request.asker} was told userId ${String(body.userId)}`)
    } else {
      refused++
      const body = res.json()
      if (!crossUser) wrong.push(`${request.asker}'s own request was refused: ${res.statusCode} ${String(body.code)}`)
      if (res.statusCode !== 403 || body.code !== 'forbidden_user') wrong.push(`a refusal was ${res.statusCode} ${String(body.code)}, not 403 forbidden_user`)
    }
  }
  t.same(wrong, [], 'no token went to anyone but the session that asked; every refusal is forbidden_user')
  t.equal(granted, USERS * PER_USER * 4 / 5, '800 tokens granted')
  t.equal(refused, USERS * PER_USER / 5, '200 cross-user requests refused')
  t.equal(emulator.control.minted.length, granted, 'Mangopay minted exactly one token per granted request, none for refusals')
  t.equal(new Set(emulator.control.minted.map(m => m.token)).size, granted, 'every token distinct')
  for (const userId of userIds) {
    const forUser = emulator.control.minted.filter(m => m.userId === userId).length
    if (forUser !== PER_USER * 4 / 5) t.fail(`${userId} got ${forUser} tokens, expected ${PER_USER * 4 / 5}`)
  }
})
