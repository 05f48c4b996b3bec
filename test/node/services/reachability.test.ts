/** Reachability by members' dial-backs, over an in-memory network with stubbed dials. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createReachability, parseDialBackRequest, type Reachability } from '../../../src/node/services/reachability.ts'
import { ManualClock } from '../../../src/node/clock.ts'
import { MemoryHub, recordingLogger, until } from './stubs.ts'

/** Members on one hub; `reach(from, address)` says whether `from` can dial `address`. */
function consortium (names: string[], addressOf: Record<string, string>, reach: (from: string, address: string) => boolean) {
  const hub = new MemoryHub()
  const clock = new ManualClock()
  const members = new Set(names)
  const nodes = new Map<string, { r: Reachability, relayListens: () => number, lines: ReturnType<typeof recordingLogger>['lines'], connect: (peer: string) => void }>()
  for (const name of names) {
    const { log, lines } = recordingLogger()
    let listens = 0
    let relayed: string[] = []
    const listeners: Array<(peer: string, connected: boolean) => void> = []
    const r = createReachability({
      network: hub.network(name), isMember: p => members.has(p), log,
      directMembers: () => names.filter(n => n !== name),
      ownAddresses: () => [addressOf[name]], relayedAddresses: () => relayed,
      dialBack: async (_peer, address) => { if (!reach(name, address)) throw new Error('timed out') },
      listenRelayed: async () => { listens++; relayed = [`/ip4/10.0.0.1/tcp/1/p2p/x/p2p-circuit`] },
      onConnectionChange: l => { listeners.push(l); return () => {} },
      clock
    }, { dialBackMs: 100 })
    nodes.set(name, { r, relayListens: () => listens, lines, connect: peer => listeners.forEach(l => l(peer, true)) })
  }
  return { hub, clock, nodes, outsider: hub.network('outsider') }
}

test('a dial-back request names direct TCP addresses only, at most eight', () => {
  assert.equal(parseDialBackRequest({ a: ['/ip4/10.0.0.2/tcp/4001'] }), ['/ip4/10.0.0.2/tcp/4001'])
  for (const [bad, why] of [
    [{ a: [] }, 'none'], [{ a: Array.from({ length: 9 }, (_, i) => `/ip4/10.0.0.2/tcp/${i + 1}`) }, 'nine'], [{}, 'no list'],
    [{ a: ['/ip4/10.0.0.1/tcp/1/p2p-circuit'] }, 'a relayed one'], [{ a: ['/ip4/10.0.0.2/udp/1'] }, 'not TCP'],
    [{ a: ['/ip4/10.0.0.2/tcp/1/p2p/12D3KooWGzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz'] }, 'with a peer id'], [{ a: ['x'.repeat(300)] }, 'too long'], [{ a: [42] }, 'not a string']
  ] as const) {
    assert.throws(() => parseDialBackRequest(bad), undefined, why)
  }
})

test('members that can be dialled back are public; one that none can dial listens through relays, once, and is relayed', async () => {
  const addressOf = { a: '/ip4/10.0.0.1/tcp/4001', b: '/ip4/10.0.0.2/tcp/4001', h: '/ip4/192.168.1.2/tcp/4001' }
  const c = consortium(['a', 'b', 'h'], addressOf, (_from, address) => !address.startsWith('/ip4/192.168.'))
  for (const n of c.nodes.values()) await n.r.start()
  const [a, h] = [c.nodes.get('a')!, c.nodes.get('h')!]
  assert.is(a.r.reachable(), 'unknown', 'not asked yet')
  await a.r.check()
  assert.is(a.r.reachable(), 'public')
  assert.ok(a.r.relaying())
  assert.ok(a.lines.some(l => /^reachable: members can dial this node directly \(2 of 2 asked\)/.test(l.msg)))
  await h.r.check()
  assert.is(h.r.reachable(), 'relayed')
  assert.not.ok(h.r.relaying(), 'an unreachable node relays for nobody')
  assert.is(h.relayListens(), 1)
  assert.ok(h.lines.some(l => /^not reachable from other members \(2 asked\): listening through relays/.test(l.msg)))
  for (const n of c.nodes.values()) await n.r.stop()
})

test('a member asking too often, and an outsider, are refused; with nobody answering, reachability stays unknown', async () => {
  const addressOf = { a: '/ip4/10.0.0.1/tcp/4001', b: '/ip4/10.0.0.2/tcp/4001' }
  const c = consortium(['a', 'b'], addressOf, () => true)
  await c.nodes.get('a')!.r.start() // b serves nothing: a's question finds no answer
  const a = c.nodes.get('a')!
  await a.r.check()
  assert.is(a.r.reachable(), 'unknown')
  await c.nodes.get('b')!.r.start()
  const b = c.nodes.get('b')!
  await b.r.check()
  assert.is(b.r.reachable(), 'public')
  await b.r.check() // within ten seconds of the last: a refuses to dial again
  assert.ok(a.lines.some(l => /dial-back request refused: asked again too soon/.test(l.msg) && l.fields.peer === 'b'))
  assert.is(b.r.reachable(), 'public', 'a refused answer changes nothing')
  const channel = await c.outsider.open('a', '/medmesh/dialback/1', 100)
  await channel.sink([new Uint8Array([1, 2, 3])]).catch(() => {})
  let ended = false
  try { for await (const _ of channel.source) { /* nothing */ } ended = true } catch { ended = true }
  assert.ok(ended, 'the outsider\'s stream was closed')
  for (const n of c.nodes.values()) await n.r.stop()
})

test('until it knows, a node asks when a member connects', async () => {
  const addressOf = { a: '/ip4/10.0.0.1/tcp/4001', b: '/ip4/10.0.0.2/tcp/4001' }
  const c = consortium(['a', 'b'], addressOf, () => true)
  for (const n of c.nodes.values()) await n.r.start()
  const a = c.nodes.get('a')!
  a.connect('b')
  await c.clock.advance(499)
  assert.is(a.r.reachable(), 'unknown', 'not asked at once: identify runs first')
  await c.clock.advance(1)
  await until(() => a.r.reachable() === 'public')
  assert.ok(a.lines.some(l => /^reachable: members can dial this node directly \(1 of 1 asked\)/.test(l.msg)), 'asked after the connection, without a call to check')
  for (const n of c.nodes.values()) await n.r.stop()
})

test.run()
