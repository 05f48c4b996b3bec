/** The gossip service with a stubbed gossipsub: validation once, delivery, republishing, bytes. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { peerIdFromString } from '@libp2p/peer-id'
import { createGossip } from '../../../src/node/services/gossip.ts'
import { createMetrics } from '../../../src/node/metrics.ts'
import { NodeIdentity } from '../../../src/privacy/index.ts'
import type { OpenedMessage } from '../../../src/protocol/messages.ts'
import { MemNet } from '../../protocol/harness.ts'
import { recordingLogger, settle } from './stubs.ts'

const TOPIC = '/medmesh/test/v1'

class StubPubsub extends EventTarget {
  readonly topicValidators = new Map<string, (from: unknown, msg: { data: Uint8Array }) => TopicValidatorResult>()
  readonly published: Uint8Array[] = []
  subscribers: string[] = []
  subscribe (): void {}
  unsubscribe (): void {}
  async publish (_topic: string, data: Uint8Array): Promise<{ recipients: unknown[] }> { this.published.push(data); return { recipients: [1, 2, 3] } }
  getSubscribers (): Array<{ toString: () => string }> { return this.subscribers.map(s => ({ toString: () => s })) }
}

function setup () {
  const net = new MemNet({ n: 3, seed: 4, modelSize: 4, lastRound: 0 })
  net.startAll()
  // real wire messages of round 0, as member 1 sent them
  const wires = net.log.filter(l => l.peer === 1 && l.action.type === 'broadcast').map(l => (l.action as { wire: Uint8Array }).wire)
  const pubsub = new StubPubsub()
  const delivered: OpenedMessage[] = []
  let opened = 0
  let round: number | null = 0
  const members = new Set(net.manifest.members.map(m => m.peerId))
  const { log, lines } = recordingLogger()
  const metrics = createMetrics()
  const gossip = createGossip({
    pubsub: pubsub as never, topic: TOPIC, isMember: p => members.has(p), log, metrics, round: () => round,
    context: () => { opened++; return net.peers[0].messageContext }, deliver: m => delivered.push(m)
  })
  gossip.start()
  const validator = pubsub.topicValidators.get(TOPIC)!
  const arrive = (data: Uint8Array): void => { pubsub.dispatchEvent(new CustomEvent('message', { detail: { topic: TOPIC, data } })) }
  return { net, wires, pubsub, delivered, validator, arrive, lines, metrics, gossip, opened: () => opened, setRound: (r: number | null) => { round = r } }
}

const member = (net: MemNet, i: number) => peerIdFromString(net.manifest.members[i].peerId)

test('a member\'s message is opened once, by the validator, and that is what the peer gets', () => {
  const g = setup()
  const data = g.wires[0]
  assert.is(g.validator(member(g.net, 1), { data }), TopicValidatorResult.Accept)
  g.arrive(data)
  assert.is(g.delivered.length, 1)
  assert.is(g.delivered[0].env.sender, 1)
  assert.is(g.opened(), 1, 'opened once')
  g.arrive(data)
  assert.is(g.delivered.length, 1, 'a message the validator did not pass this time is not taken')
  assert.ok(g.lines.some(l => /without validation/.test(l.msg)))
})

test('a non-member\'s message and a forged one are rejected before gossipsub forwards them, and counted', async () => {
  const g = setup()
  const outsider = peerIdFromString(NodeIdentity.generate().peerId)
  assert.is(g.validator(outsider, { data: g.wires[0] }), TopicValidatorResult.Reject)
  assert.ok(g.lines.some(l => l.level === 'warn' && l.fields.peer === outsider.toString() && /non-member/.test(l.msg)))
  const forged = g.wires[0].slice(); forged[forged.length - 3] ^= 1
  assert.is(g.validator(member(g.net, 1), { data: forged }), TopicValidatorResult.Reject)
  const rejected = await g.metrics.registry.getSingleMetric('medmesh_rejected_messages_total')!.get()
  assert.equal(rejected.values.map(v => [v.labels.code, v.value]), [['bad-signature', 1]])
  g.arrive(forged)
  assert.is(g.delivered.length, 0)
})

test('own messages: counted once per recipient, and published again to a member that subscribes in the same round', async () => {
  const g = setup()
  g.gossip.broadcast(g.wires[0], 0)
  await settle()
  const bytes = await g.metrics.registry.getSingleMetric('medmesh_round_bytes_sent_total')!.get()
  assert.equal(bytes.values.map(v => [v.labels.round, v.labels.kind, v.value]), [['0', 'gossip', 3 * g.wires[0].length]])
  const subscribe = (peer: string): void => { g.pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { peerId: peerIdFromString(peer), subscriptions: [{ topic: TOPIC, subscribe: true }] } })) }
  subscribe(g.net.manifest.members[2].peerId)
  assert.is(g.pubsub.published.length, 2, 'republished to the late subscriber')
  subscribe(NodeIdentity.generate().peerId)
  assert.is(g.pubsub.published.length, 2, 'not for a non-member')
  g.setRound(1)
  subscribe(g.net.manifest.members[2].peerId)
  assert.is(g.pubsub.published.length, 2, 'not once the round has moved on')
})

test('stop removes the validator and the listeners', () => {
  const g = setup()
  g.gossip.stop()
  assert.is(g.pubsub.topicValidators.has(TOPIC), false)
  g.arrive(g.wires[0])
  assert.is(g.delivered.length, 0)
})

test.run()
