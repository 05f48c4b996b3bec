/** MedmeshNode with stubbed components, in one process: start and stop order, actions, and the input held while it trains. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MedmeshNode, type NodeComponents } from '../../src/node/node.ts'
import type { NodeHooks, NodeServices } from '../../src/node/services/compose.ts'
import { ManualClock } from '../../src/node/clock.ts'
import type { PeerAction } from '../../src/protocol/peer.ts'
import { recordingLogger, settle } from './services/stubs.ts'

const ORDER = ['status', 'membership', 'gossip', 'addressBook', 'siteReports', 'reachability', 'blobs', 'ledgerSync', 'training', 'stopPolicy', 'ticker'] as const

/** A node of stubs: each part says what was asked of it in `events`. */
function setup (o: { done?: boolean, inference?: boolean, hangs?: string } = {}) {
  const events: string[] = []
  const clock = new ManualClock(5000)
  const { log, lines } = recordingLogger()
  const actions: PeerAction[] = []
  const received: unknown[] = []
  let training: { round: number, since: number } | null = null
  let hooks!: NodeHooks
  const startable = (name: string) => ({
    start: async () => { events.push(`start ${name}`) },
    stop: async () => { events.push(`stop ${name}`); if (o.hangs === name) await new Promise(() => {}) }
  })
  const services = Object.fromEntries(ORDER.map(name => [name, startable(name)])) as unknown as Record<string, Record<string, unknown>>
  Object.assign(services.training, { training: () => training, statisticsCertified: () => events.push('statistics'), phaseEntered: () => events.push('training phase'), roundStarted: () => {}, modelCertified: () => {} })
  Object.assign(services.stopPolicy, { check: () => { events.push('check'); return o.done === true } })
  Object.assign(services.membership, { waitFor: async (want: number, _n: () => number, ms: number) => { events.push(`wait for ${want} (${ms} ms)`) }, connectedMembers: () => [] })
  Object.assign(services.gossip, { subscribers: () => [], broadcast: (_w: Uint8Array, round: number) => events.push(`broadcast ${round}`) })
  Object.assign(services.ledgerSync, { catchUp: async () => { events.push('catch up') } })
  Object.assign(services.status, { phaseEntered: (round: number, phase: string) => events.push(`status ${round} ${phase}`) })
  const peer = {
    ledger: { statistics: null, entries: [] }, state: { weights: new Float32Array(0) }, round: { number: 3 }, absent: [],
    start: (now: number) => events.push(`peer start at ${now}`),
    tick: (now: number) => events.push(`tick ${now}`),
    halt: () => events.push('halt'),
    takeActions: () => actions.splice(0),
    receiveOpened: (msg: unknown, now: number) => { received.push(msg); events.push(`receive at ${now}`) },
    setInput: (_v: unknown, count: number, now: number) => events.push(`input ${count} at ${now}`),
    receiveBlob: () => {}, catchUp: () => {}
  }
  const components = {
    clock, log, manifest: { members: [] }, peer,
    store: { guard: (fn: () => void) => fn(), persist: () => events.push('persist'), saveRound: (round: number, phase: string) => events.push(`save ${round} ${phase}`), unwritable: null },
    site: { close: async () => { events.push('close site') } },
    host: { ready: async () => { events.push('host ready') }, addresses: () => ['/ip4/127.0.0.1/tcp/1'], stop: async () => { events.push('stop host') } },
    inference: o.inference === true ? async () => { events.push('open inference'); return startable('inference') } : null,
    services: (h: NodeHooks) => { hooks = h; return services as unknown as NodeServices }
  } as unknown as NodeComponents
  const node = new MedmeshNode(components, { peers: 2, waitMs: 30_000, stopMs: 1000 })
  return { node, events, clock, lines, actions, received, hooks: () => hooks, train: (t: typeof training) => { training = t } }
}

test('start: the services in order (the ticker last), then the host, inference, the wait for members, catching up, the first round, the ticker', async () => {
  const n = setup({ inference: true })
  await n.node.start()
  assert.equal(n.events, [
    'statistics', ...ORDER.filter(s => s !== 'ticker').map(s => `start ${s}`),
    'host ready', 'open inference', 'start inference',
    'check', 'wait for 2 (30000 ms)', 'catch up', 'check', 'peer start at 5000', 'start ticker'
  ])
  assert.ok(n.lines.some(l => l.msg === 'listening' && (l.fields.addresses as string[])[0] === '/ip4/127.0.0.1/tcp/1'))
})

test('a node that is already done says so at start and starts no round', async () => {
  const n = setup({ done: true })
  await n.node.start()
  assert.equal(n.events.slice(-2), ['host ready', 'check'])
})

test('stop: the peer halts and the round is noted, then the services in reverse order, then the site, then the host; once', async () => {
  const n = setup({ inference: true })
  await n.node.start()
  n.events.length = 0
  await Promise.all([n.node.stop(), n.node.stop()])
  assert.equal(n.events, ['halt', 'save 3 stopped', 'stop inference', ...[...ORDER].reverse().map(s => `stop ${s}`), 'close site', 'stop host'])
  assert.ok(n.lines.some(l => l.msg === 'stopped'))
  await n.node.stopped
})

test('a service whose stop never ends holds the stop up for stopMs at most', async () => {
  const n = setup({ hangs: 'gossip' })
  await n.node.start()
  let stopped = false
  void n.node.stop().then(() => { stopped = true })
  await settle()
  assert.not.ok(stopped)
  assert.is(n.events.at(-1), 'stop gossip')
  await n.clock.advance(999)
  assert.not.ok(stopped)
  await n.clock.advance(1)
  assert.ok(stopped)
  assert.equal(n.events.slice(-2), ['close site', 'stop host'], 'the site and the host are still stopped')
})

test('each action of the peer goes to its service: a phase is saved before the training is told; nothing after stop', async () => {
  const n = setup()
  await n.node.start()
  n.events.length = 0
  n.actions.push({ type: 'phase', round: 3, phase: 'masked-input', detail: 'masking set agreed' } as PeerAction, { type: 'broadcast', wire: new Uint8Array(1), round: 3 } as PeerAction)
  n.hooks().tick(5100)
  assert.equal(n.events, ['tick 5100', 'status 3 masked-input', 'save 3 masked-input', 'training phase', 'broadcast 3'])
  await n.node.stop()
  n.events.length = 0
  n.actions.push({ type: 'broadcast', wire: new Uint8Array(1), round: 3 } as PeerAction)
  n.hooks().setInput([1, 2], 7)
  assert.equal(n.events, ['input 7 at 5000'], 'the input is taken, nothing is sent')
})

test('while the node trains, gossip and ticks are held from the peer; once the training ends they go in, in order', async () => {
  const n = setup()
  await n.node.start()
  n.events.length = 0
  n.hooks().deliver('m1' as never)
  assert.equal(n.received, ['m1'], 'not training: straight to the peer')
  n.train({ round: 3, since: 5000 })
  n.hooks().deliver('m2' as never)
  await n.clock.advance(250)
  n.hooks().tick(n.clock.now())
  n.hooks().deliver('m3' as never)
  assert.equal(n.received, ['m1'], 'held while training')
  assert.not.ok(n.events.some(e => e.startsWith('tick')), 'no deadline runs while training')
  n.hooks().setInput([1], 10)
  n.train(null)
  n.hooks().trainingEnded()
  assert.equal(n.received, ['m1', 'm2', 'm3'])
  assert.equal(n.events.slice(-3), ['input 10 at 5250', 'receive at 5250', 'receive at 5250'], 'the input first, then what came meanwhile')
  n.hooks().tick(5300)
  assert.is(n.events.at(-1), 'tick 5300')
})

test.run()
