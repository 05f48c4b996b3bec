/** The address book with a stubbed gossipsub and real signed peer records. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { PeerRecord, RecordEnvelope } from '@libp2p/peer-record'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { createAddressBook, openAddressRecord, MAX_RECORD_ADDRESSES, type AddressRecord } from '../../../src/node/services/address-book.ts'
import { NodeIdentity } from '../../../src/privacy/index.ts'
import { ManualClock } from '../../../src/node/clock.ts'
import { recordingLogger, settle } from './stubs.ts'

const TOPIC = '/medmesh/test/addresses/1'

class StubPubsub extends EventTarget {
  readonly topicValidators = new Map<string, (from: unknown, msg: { data: Uint8Array }) => Promise<TopicValidatorResult>>()
  readonly published: Uint8Array[] = []
  subscribe (): void {}
  unsubscribe (): void {}
  async publish (_topic: string, data: Uint8Array): Promise<{ recipients: unknown[] }> { this.published.push(data); return { recipients: [] } }
}

async function seal (id: NodeIdentity, addrs: string[], seq: bigint, signer = id): Promise<Uint8Array> {
  const record = new PeerRecord({ peerId: peerIdFromString(id.peerId), multiaddrs: addrs.map(a => multiaddr(a)), seqNumber: seq })
  return (await RecordEnvelope.seal(record, signer.toLibp2pPrivateKey())).marshal()
}

function setup (ids: NodeIdentity[], file: { data: Uint8Array | null } = { data: null }) {
  const [me] = ids
  const members = new Set(ids.map(i => i.peerId))
  const pubsub = new StubPubsub()
  const consumed: AddressRecord[] = []
  const learnt: string[] = []
  const { log, lines } = recordingLogger()
  let myAddrs = ['/ip4/10.0.0.1/tcp/4001']
  let changed: (() => void) | null = null
  const book = createAddressBook({
    self: me.peerId, isMember: p => members.has(p), pubsub: pubsub as never, topic: TOPIC, log,
    sealOwn: async seq => await seal(me, myAddrs, seq),
    onOwnAddressesChanged: l => { changed = l; return () => { changed = null } },
    consume: async r => { consumed.push(r) },
    learnt: p => learnt.push(p),
    load: () => file.data, save: d => { file.data = Buffer.from(d) }, clock: new ManualClock(1_700_000_000_000)
  })
  const validate = async (via: NodeIdentity, data: Uint8Array): Promise<TopicValidatorResult> => await pubsub.topicValidators.get(TOPIC)!(peerIdFromString(via.peerId), { data })
  const arrive = async (data: Uint8Array): Promise<void> => { pubsub.dispatchEvent(new CustomEvent('message', { detail: { topic: TOPIC, data } })); await settle() }
  const setAddrs = async (a: string[]): Promise<void> => { myAddrs = a; changed!(); await settle() }
  return { book, pubsub, consumed, learnt, lines, validate, arrive, setAddrs, file }
}

const ids = (n: number): NodeIdentity[] => Array.from({ length: n }, () => NodeIdentity.generate())

test('a record opens only when signed by its own peer, within the size and address limits', async () => {
  const [a, b] = ids(2)
  const r = await openAddressRecord(await seal(a, ['/ip4/10.0.0.2/tcp/1'], 5n))
  assert.is(r.peer, a.peerId)
  assert.is(r.seq, 5n)
  assert.equal(r.addresses, ['/ip4/10.0.0.2/tcp/1'])
  // b signs a record that claims to be a's
  try { await openAddressRecord(await seal(a, ['/ip4/6.6.6.6/tcp/1'], 6n, b)); assert.unreachable('forged record opened') } catch (e) { assert.match((e as Error).message, /signed by/) }
  const tampered = await seal(a, ['/ip4/10.0.0.2/tcp/1'], 7n)
  tampered[tampered.length - 10] ^= 1
  try { await openAddressRecord(tampered); assert.unreachable('tampered record opened') } catch (e) { assert.match((e as Error).message, /does not open/) }
  try { await openAddressRecord(new Uint8Array(5000)); assert.unreachable() } catch (e) { assert.match((e as Error).message, /exceeds/) }
  const many = Array.from({ length: MAX_RECORD_ADDRESSES + 1 }, (_, i) => `/ip4/10.0.0.2/tcp/${i + 1}`)
  try { await openAddressRecord(await seal(a, many, 8n)); assert.unreachable() } catch (e) { assert.match((e as Error).message, /lists 33 addresses/) }
})

test('its own record is published at start and again, with a higher number, when its addresses change', async () => {
  const members = ids(3)
  const s = setup(members)
  await s.book.start()
  assert.is(s.pubsub.published.length, 1)
  const first = await openAddressRecord(s.pubsub.published[0])
  assert.is(first.peer, members[0].peerId)
  await s.setAddrs(['/ip4/10.0.0.1/tcp/4001', '/ip4/9.9.9.9/tcp/4001/p2p/12D3KooWRelay/p2p-circuit'.replace('12D3KooWRelay', members[1].peerId)])
  assert.is(s.pubsub.published.length, 2)
  const second = await openAddressRecord(s.pubsub.published[1])
  assert.ok(second.seq > first.seq, 'a newer record')
  assert.is(second.addresses.length, 2)
  await s.setAddrs(['/ip4/10.0.0.1/tcp/4001', '/ip4/9.9.9.9/tcp/4001/p2p/12D3KooWRelay/p2p-circuit'.replace('12D3KooWRelay', members[1].peerId)])
  assert.is(s.pubsub.published.length, 2, 'unchanged addresses are not published again')
  s.book.stop()
})

test('a member\'s newer record is kept, handed to the peer store and saved; an older or repeated one is ignored; forged and foreign ones are rejected', async () => {
  const [me, b, c] = ids(3)
  const outsider = NodeIdentity.generate()
  const s = setup([me, b, c])
  await s.book.start()
  const v5 = await seal(b, ['/ip4/10.0.0.2/tcp/1'], 5n)
  assert.is(await s.validate(c, v5), TopicValidatorResult.Accept, 'passed on by another member')
  await s.arrive(v5)
  assert.equal(s.consumed.map(r => r.peer), [b.peerId])
  assert.equal(s.learnt, [b.peerId])
  assert.equal(s.book.records().get(b.peerId)!.addresses, ['/ip4/10.0.0.2/tcp/1'])
  assert.is(await s.validate(c, v5), TopicValidatorResult.Ignore, 'the same record again')
  assert.is(await s.validate(c, await seal(b, ['/ip4/10.0.0.3/tcp/1'], 4n)), TopicValidatorResult.Ignore, 'an older one (a replay)')
  assert.is(await s.validate(c, await seal(b, ['/ip4/6.6.6.6/tcp/1'], 9n, c)), TopicValidatorResult.Reject, 'c forging b\'s record')
  assert.is(await s.validate(c, await seal(outsider, ['/ip4/6.6.6.6/tcp/1'], 9n)), TopicValidatorResult.Reject, 'an outsider\'s record')
  assert.is(await s.validate(outsider, await seal(b, ['/ip4/10.0.0.2/tcp/1'], 10n)), TopicValidatorResult.Reject, 'from a non-member')
  assert.is(await s.validate(c, new Uint8Array(100_000)), TopicValidatorResult.Reject, 'oversized')
  assert.ok(s.lines.filter(l => /rejected|dropped/.test(l.msg)).length >= 4, 'each rejection is logged')
  assert.is(s.consumed.length, 1, 'nothing else reached the peer store')
  const saved = JSON.parse(Buffer.from(s.file.data!).toString('utf8'))
  assert.equal(Object.keys(saved.records).sort(), [me.peerId, b.peerId].sort())
  s.book.stop()
})

test('records are passed on to a member that subscribes, and restored from disk (checked again) after a restart', async () => {
  const [me, b, c] = ids(3)
  const s = setup([me, b, c])
  await s.book.start()
  const rb = await seal(b, ['/ip4/10.0.0.2/tcp/1'], 5n)
  await s.validate(b, rb); await s.arrive(rb)
  const before = s.pubsub.published.length
  s.pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { peerId: peerIdFromString(c.peerId), subscriptions: [{ topic: TOPIC, subscribe: true }] } }))
  const passed = await Promise.all(s.pubsub.published.slice(before).map(openAddressRecord))
  assert.equal(passed.map(r => r.peer).sort(), [me.peerId, b.peerId].sort(), 'its own record and b\'s, to c')
  s.book.stop()

  // the file as saved, with one entry tampered with: the good one is restored, the bad one dropped
  const saved = JSON.parse(Buffer.from(s.file.data!).toString('utf8'))
  saved.records[c.peerId] = Buffer.from(await seal(c, ['/ip4/6.6.6.6/tcp/1'], 3n, b)).toString('base64')
  const again = setup([me, b, c], { data: Buffer.from(JSON.stringify(saved)) })
  await again.book.start()
  assert.equal(again.consumed.map(r => r.peer), [b.peerId], 'b\'s record back in the peer store')
  assert.ok(again.learnt.includes(b.peerId), 'and b dialled')
  assert.ok(again.lines.some(l => /stored address record dropped/.test(l.msg)))
  const mine = await openAddressRecord(again.pubsub.published[0])
  assert.ok(mine.seq > (await openAddressRecord(Buffer.from(saved.records[me.peerId], 'base64'))).seq, 'its own number keeps rising across restarts')
  again.book.stop()
})

test.run()
