/** What a round keeps for later: bounded, one per sender and kind while its input length is open, released by a rebase or after the wait. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { DeferredMessages } from '../../src/protocol/deferred.ts'
import type { OpenedMessage } from '../../src/protocol/messages.ts'

const msg = (sender: number, type = 4, attempt = 0): OpenedMessage => ({ env: { sender, type, attempt } }) as unknown as OpenedMessage

test('before the masking set: kept up to the cap, all taken at once', () => {
  const d = new DeferredMessages(3, null)
  assert.not.ok(d.lengthUnknown)
  assert.ok(d.keep(msg(1)) && d.keep(msg(1)) && d.keep(msg(2)))
  assert.not.ok(d.keep(msg(3)), 'the queue is full')
  assert.is(d.takeAll().length, 3)
  assert.is(d.takeAll().length, 0)
  assert.equal(d.settle(), [], 'nothing to settle when the length was known')
})

test('while the input length is open: one of each kind per sender, released by a rebase or once the wait is over, not before', () => {
  const d = new DeferredMessages(8, 1000)
  assert.ok(d.lengthUnknown)
  for (let i = 0; i < 5; i++) assert.ok(d.keep(msg(1)), 'a repeat is dropped, not refused')
  d.keep(msg(2)); d.keep(msg(2, 2)); d.keep(msg(2, 2, 1))
  assert.equal(d.settle(999), [], 'not before the wait is over')
  assert.ok(d.lengthUnknown)
  const released = d.settle(1000)
  assert.equal(released.map(m => [m.env.sender, m.env.type, m.env.attempt]), [[1, 4, 0], [2, 4, 0], [2, 2, 0], [2, 2, 1]])
  assert.not.ok(d.lengthUnknown)
  const r = new DeferredMessages(8, 1000)
  r.keep(msg(3))
  assert.is(r.settle().length, 1, 'a rebase releases at once')
})

test.run()
