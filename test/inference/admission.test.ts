/** Who may ask how often, and for how long keys are kept: the holder's bookkeeping on a fake clock. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { Admission, SESSION_COST } from '../../src/inference/admission.ts'

const clock = (): { now: () => number, advance: (ms: number) => void } => { let t = 1_000_000; return { now: () => t, advance: ms => { t += ms } } }

test('a token bucket per client: perMinute queries, refilled over the minute, a session costs ten', () => {
  const c = clock()
  const a = new Admission({ perMinute: 12, sessionMs: 60_000, maxSessions: 4, now: c.now })
  assert.ok(a.charge('x', SESSION_COST).ok)
  assert.ok(a.charge('x').ok); assert.ok(a.charge('x').ok)
  const over = a.charge('x')
  assert.not.ok(over.ok)
  assert.match((over as { reason: string }).reason, /over the rate of 12 queries a minute: ask again in 5 s/)
  // another client has its own bucket
  assert.ok(a.charge('y').ok)
  c.advance(5_000)
  assert.ok(a.charge('x').ok, 'one token back after 5 s')
  assert.not.ok(a.charge('x').ok)
  c.advance(10 * 60_000)
  for (let i = 0; i < 12; i++) assert.ok(a.charge('x').ok, `query ${i} after a long pause`)
  assert.not.ok(a.charge('x').ok, 'the bucket holds at most a minute\'s worth')
})

test('sessions expire, belong to their client, one per client, at most maxSessions', () => {
  const c = clock()
  const a = new Admission({ perMinute: 60, sessionMs: 1000, maxSessions: 2, now: c.now })
  a.open('s1', 'x')
  assert.ok(a.session('s1', 'x').ok)
  assert.match((a.session('s1', 'y') as { reason: string }).reason, /no such session/)
  // a client's new session replaces its old one
  assert.equal(a.open('s2', 'x').evicted, ['s1'])
  assert.not.ok(a.session('s1', 'x').ok)
  a.open('s3', 'y')
  // full: the oldest goes
  assert.equal(a.open('s4', 'z').evicted, ['s2'])
  assert.is(a.count, 2)
  c.advance(1000)
  assert.match((a.session('s4', 'z') as { reason: string }).reason, /expired/)
  assert.equal(a.expire().sort(), ['s3', 's4'])
  assert.is(a.count, 0)
})

test.run()
