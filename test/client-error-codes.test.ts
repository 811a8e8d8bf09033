import t from 'tap'
import { STATUS } from '../src/errors.js'
import { BROKER_ERROR_CODES } from '../packages/client/src/error-codes.js'

/**
 * The helper sorts every code the broker can send (retry or stop, in keepFresh). A code added
 * on one side only fails here, and in the typecheck (the helper's table is a Record of ErrorCode).
 */

t.test('the helper knows exactly the codes the broker can send', async t => {
  const server = Object.keys(STATUS).sort()
  const helper = [...BROKER_ERROR_CODES].sort()
  t.ok(server.length >= 14, 'the SPEC §2 codes at least')
  t.same(server.filter(code => !helper.includes(code as typeof helper[number])), [], 'every code of src/errors.ts is known to the helper')
  t.same(helper.filter(code => !server.includes(code)), [], 'the helper knows no code the broker cannot send')
})
