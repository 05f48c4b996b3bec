/** Membership with stubbed links: redialling, counting, the deny list. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createMembership } from '../../../src/node/services/membership.ts'
import { createMetrics } from '../../../src/node/metrics.ts'
import { ManualClock } from '../../../src/node/clock.ts'
import { recordingLogger } from './stubs.ts'

const started: Array<{ stop: () => void }> = []
test.after.each(() => { for (const m of started.splice(0)) m.stop() })

function setup (deny: string[] = []) {
  const connected = new Set<string>(['b'])
  const dialled: string[] = []
  const hungUp: string[] = []
  let listener: ((peer: string, up: boolean) => void) | null = null
  let denyList: string[] | null = deny
  const { log, lines } = recordingLogger()
  const metrics = createMetrics()
  const denied = new Set(deny)
  const clock = new ManualClock()
  const m = createMembership({
    members: ['b', 'c', 'd'], connected: () => [...connected, 'stranger'], denied, log, metrics, clock,
    dial: async p => { dialled.push(p); if (p === 'c') connected.add('c'); else throw new Error('unreachable') },
    hangUp: async p => { hungUp.push(p); connected.delete(p) },
    onConnectionChange: l => { listener = l; return () => { listener = null } },
    readDenyList: () => { if (denyList === null) throw new Error('config.json is not valid'); return denyList }
  }, { redialMs: 10, waitPollMs: 10 })
  started.push(m)
  return { m, clock, connected, dialled, hungUp, lines, metrics, denied, fire: (p: string, up: boolean) => listener?.(p, up), setDeny: (d: string[] | null) => { denyList = d }, listening: () => listener !== null }
}

test('missing members are dialled at a steady pace, denied ones never; only members are counted', async () => {
  const s = setup(['d'])
  s.m.start()
  await s.clock.advance(9)
  assert.equal(s.dialled, [], 'not before the first redial')
  await s.clock.advance(1)
  assert.equal(s.dialled, ['c'])
  await s.clock.advance(30)
  assert.not.ok(s.dialled.includes('d'), 'a denied member is not dialled')
  assert.not.ok(s.dialled.includes('b'), 'a connected one is not dialled')
  assert.equal(s.m.connectedMembers().sort(), ['b', 'c'])
  s.fire('c', true)
  const peers = await s.metrics.registry.getSingleMetric('medmesh_connected_members')!.get()
  assert.is(peers.values[0].value, 2)
  assert.ok(s.lines.some(l => l.msg === 'member connected' && l.fields.peer === 'c'))
  s.m.stop()
  assert.not.ok(s.listening())
  assert.is(s.clock.pending, 0, 'no dialling after stop')
})

test('reloading the deny list cuts off members added to it and dials those taken off', async () => {
  const s = setup(['d'])
  s.m.start()
  s.setDeny(['b'])
  s.m.reloadDenyList()
  assert.equal([...s.denied], ['b'])
  assert.equal(s.hungUp, ['b'])
  await s.clock.advance(0)
  assert.ok(s.dialled.includes('d'), 'dialled at once, not at the next redial')
  assert.ok(s.lines.some(l => /deny list reloaded: 1 member\(s\) added, 1 removed/.test(l.msg)))
  s.setDeny(null)
  s.m.reloadDenyList() // an unreadable list: kept as it was
  assert.equal([...s.denied], ['b'])
  assert.ok(s.lines.some(l => l.level === 'error' && /deny list not reloaded: config.json is not valid/.test(l.msg)))
})

test('waitFor: resolves once enough are there, or warns after the timeout', async () => {
  const s = setup()
  s.m.start()
  let n = 0
  let done = false
  void s.m.waitFor(2, () => ++n, 5000).then(() => { done = true })
  await s.clock.advance(9)
  assert.equal([n, done], [1, false], 'counted once, then waits')
  await s.clock.advance(1)
  assert.equal([n, done], [2, true], 'counted again after the poll interval: enough')
  done = false
  void s.m.waitFor(5, () => 1, 50).then(() => { done = true })
  await s.clock.advance(40)
  assert.not.ok(done, 'still waiting')
  await s.clock.advance(10)
  assert.ok(done)
  assert.ok(s.lines.some(l => l.level === 'warn' && /fewer than 5 members reachable/.test(l.msg)))
  s.m.stop()
})

test.run()
