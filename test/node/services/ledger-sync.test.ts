/** Ledger sync with a network in memory: serving what a member lacks, and catching up only on what verifies. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createLedgerSync } from '../../../src/node/services/ledger-sync.ts'
import { createMetrics } from '../../../src/node/metrics.ts'
import { LEDGER_PROTOCOL, readFramed, sendFramed, parseLedgerRequest } from '../../../src/node/wire.ts'
import { hex } from '../../../src/protocol/codec.ts'
import { encodeCertificate, type Certificate } from '../../../src/protocol/ledger.ts'
import { encodeState, stateHash } from '../../../src/protocol/model.ts'
import { MemNet } from '../../protocol/harness.ts'
import { MemoryHub, recordingLogger } from './stubs.ts'

/** members 0 and 1 certify three rounds while member 2 is away */
function away (): MemNet {
  const net = new MemNet({ n: 3, seed: 12, modelSize: 6, lastRound: 2 })
  net.online[2] = false
  net.startAll()
  net.run(() => net.peers[0].ledger.lastRound >= 2 && net.peers[1].ledger.lastRound >= 2 && hex(stateHash(net.peers[0].state)) === hex(net.peers[0].ledger.last!.header.stateHash))
  return net
}

function sync (hub: MemoryHub, net: MemNet, i: number, ids: string[]) {
  const { log, lines } = recordingLogger()
  const metrics = createMetrics()
  const peer = net.peers[i]
  const adopted: number[] = []
  const service = createLedgerSync({
    network: hub.network(ids[i]), isMember: p => ids.includes(p), ledger: () => peer.ledger, round: () => 7, log, metrics,
    storedState: h => hex(stateHash(peer.state)) === h ? encodeState(peer.state) : null,
    adopt: (certs, state) => { peer.catchUp(certs, state, net.now); adopted.push(peer.ledger.lastRound) }
  })
  return { service, lines, metrics, adopted }
}

const IDS = ['m0', 'm1', 'm2']

test('a member that was away catches up: certificates after its last round and the state, verified', async () => {
  const net = away()
  const hub = new MemoryHub()
  const donor = sync(hub, net, 0, IDS); const late = sync(hub, net, 2, IDS)
  await donor.service.start(); await late.service.start()
  assert.is(net.peers[2].ledger.lastRound, -1)
  await late.service.catchUp()
  assert.equal(late.adopted, [2])
  assert.is(hex(net.peers[2].ledger.head), hex(net.peers[0].ledger.head))
  assert.is(hex(stateHash(net.peers[2].state)), hex(stateHash(net.peers[0].state)))
  const sent = await donor.metrics.registry.getSingleMetric('medmesh_round_bytes_sent_total')!.get()
  assert.equal(sent.values.map(v => [v.labels.round, v.labels.kind]), [['7', 'ledger']])
  assert.ok(sent.values[0].value > encodeState(net.peers[0].state).length, 'certificates and the state')
})

test('a member serving a forged certificate is logged and the next member is asked', async () => {
  const net = away()
  const hub = new MemoryHub()
  // m0 lies: its certificates carry too few signatures; m1 is honest
  const liar = hub.network('m0')
  await liar.handle(LEDGER_PROTOCOL, async channel => {
    await readFramed(channel, 1024, parseLedgerRequest, () => 0)
    const weak: Certificate[] = net.peers[0].ledger.entries.map(e => ({ header: e.certificate.header, signatures: e.certificate.signatures.slice(0, 1) }))
    await sendFramed(channel, { c: weak.map(encodeCertificate), n: 0 })
  }, 4)
  const honest = sync(hub, net, 1, IDS); await honest.service.start()
  const late = sync(hub, net, 2, IDS); await late.service.start()
  await late.service.catchUp(['m0'])
  assert.ok(late.lines.some(l => l.level === 'warn' && l.fields.peer === 'm0' && /catch-up from this member failed: .*valid signatures/.test(l.msg)), late.lines.map(l => l.msg).join('\n'))
  assert.is(net.peers[2].ledger.lastRound, 2, 'caught up from m1')
})

test('a non-member asking for the ledger is refused; a member already at the head gets nothing to adopt', async () => {
  const net = away()
  const hub = new MemoryHub()
  const donor = sync(hub, net, 0, IDS); await donor.service.start()
  const outsider = hub.network('x')
  const channel = await outsider.open('m0', LEDGER_PROTOCOL, 1000)
  await sendFramed(channel, { from: -1 })
  let refused = false
  try { await readFramed(channel, 1024, () => 0, () => 0) } catch { refused = true }
  assert.ok(refused)
  const peerOne = sync(hub, net, 1, IDS); await peerOne.service.start()
  await peerOne.service.catchUp()
  assert.equal(peerOne.adopted, [], 'nothing after its last round')
})

test.run()
