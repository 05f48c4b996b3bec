import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { sha256 } from '@noble/hashes/sha2.js'
import { MemNet, expectedAggregate } from './harness.ts'
import { hex } from '../../src/protocol/codec.ts'
import { openMessage, sealMessage, type CommitBody, type Envelope, type MaskedInputBody, type SliceSumsBody } from '../../src/protocol/messages.ts'
import { commitSlices, sliceRoot, SlicedAggregation } from '../../src/protocol/sliced.ts'
import { validateManifest } from '../../src/protocol/manifest.ts'
import { sliceBounds } from '../../src/protocol/slices.ts'
import { decodeHeader, encodeHeader } from '../../src/protocol/ledger.ts'

const hashOf = (v: Uint32Array): string => hex(sha256(new Uint8Array(v.buffer)))
const ctxOf = (net: MemNet) => ({ consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys })
const sliced = (slices: number, perSlice = 2) => (p: { slicing?: { slices: number, perSlice: number }, timeouts: { phaseMs: number, roundMs: number } }) => { p.slicing = { slices, perSlice } }

function rejectsOf (net: MemNet, code: string): Array<{ peer: number, reason: string }> {
  return net.log.filter(l => l.action.type === 'reject' && (l.action as { code: string }).code === code).map(l => ({ peer: l.peer, reason: (l.action as { reason: string }).reason }))
}

/** bytes of masked data each peer fetched in the first round */
function fetchedBytes (net: MemNet): number[] {
  const got = new Array<number>(net.peers.length).fill(0)
  for (const { peer, action } of net.log) if (action.type === 'fetch-blob' && action.what === 'masked-vector') got[peer] += net.blobs.get(action.hash)?.length ?? 0
  return got
}

test('commitSlices: slices are views of the vector, hashed one by one, with the root over their hashes', () => {
  const y = Uint32Array.from({ length: 103 }, (_, i) => i * 2654435761)
  const { hashes, root, blobs } = commitSlices(y, 7)
  const bounds = sliceBounds(103, 7)
  assert.is(blobs.length, 7)
  blobs.forEach((b, j) => {
    assert.is(b.data.length, 4 * (bounds[j].to - bounds[j].from))
    assert.is(b.data.buffer, y.buffer, 'no copy')
    assert.is(b.hash, hex(sha256(b.data)))
    assert.is(hex(hashes[j]), b.hash)
  })
  assert.equal(root, sliceRoot(hashes))
  const other = Uint32Array.from(y); other[50] ^= 1
  assert.is.not(hex(commitSlices(other, 7).root), hex(root), 'one word changed changes the root')
})

test('manifest: slicing is checked (at least two aggregators a slice, no more than the smallest survivor set)', () => {
  const net = new MemNet({ n: 5, seed: 1, modelSize: 4 })
  const base = net.manifest
  const withSlicing = (s: unknown) => validateManifest({ ...base, params: { ...base.params, slicing: s } })
  assert.equal(withSlicing({ slices: 8, perSlice: 2 }).params.slicing, { slices: 8, perSlice: 2 })
  assert.throws(() => withSlicing({ slices: 8, perSlice: 1 }), /perSlice/)
  assert.throws(() => withSlicing({ slices: 8, perSlice: 4 }), /perSlice/) // minParticipants is 3
  assert.throws(() => withSlicing({ slices: 0, perSlice: 2 }), /slices/)
  assert.throws(() => withSlicing({ slices: 8, perSlice: 2, mode: 'x' }), /slicing/)
})

for (const n of [3, 5, 10]) {
  test(`sliced, n=${n}: rounds complete with the exact sum, and each peer fetches far less than every vector`, () => {
    const d = 240
    const net = new MemNet({ n, seed: 50 + n, modelSize: d, lastRound: 1, params: sliced(2 * n) })
    net.startAll()
    net.run(() => net.peers.every(p => p.ledger.entries.length === 2))
    assert.ok(net.peers.every(p => p.ledger.entries.length === 2), 'both rounds certified everywhere')
    assert.is(new Set(net.peers.map(p => hex(p.ledger.head))).size, 1, 'one ledger head')
    for (const round of [0, 1]) {
      const header = net.peers[0].ledger.entries[round].header
      assert.equal(header.survivors, Array.from({ length: n }, (_, i) => i))
      const aggregate = expectedAggregate(d, header.survivors, round)
      assert.is(hex(header.aggregateHash), hashOf(aggregate), 'the aggregate is the exact sum')
      const bounds = sliceBounds(aggregate.length, 2 * n)
      assert.equal(header.sliceHashes?.map(hex), bounds.map(b => hashOf(aggregate.slice(b.from, b.to))), 'the header names each slice of the sum by its hash')
    }
    // and they are the hashes the aggregators signed
    const signed = new Map<number, string>()
    for (const { action } of net.log) {
      if (action.type !== 'broadcast' || action.msgType !== 'sliceSums') continue
      const { env } = openMessage(action.wire, ctxOf(net))
      if (env.round !== 0) continue
      for (const [j, h] of (env.body as SliceSumsBody).sums) signed.set(j, hex(h))
    }
    assert.equal([...signed.keys()].sort((a, b) => a - b), Array.from({ length: 2 * n }, (_, j) => j), 'every slice was signed for')
    assert.equal(net.peers[0].ledger.entries[0].header.sliceHashes?.map(hex), [...signed.keys()].sort((a, b) => a - b).map(j => signed.get(j)))
    assert.is(net.actions('reject').length, 0, 'no rejections among honest peers')
    const model = 4 * (d + 1)
    // the first round's blobs: each peer's share of slices to aggregate plus the sum itself
    const perPeer = fetchedBytes(net).map(b => b / 2 / model)
    assert.ok(Math.max(...perPeer) <= 2 * 2 + 1.01, `model sizes fetched per peer per round: ${perPeer.map(x => x.toFixed(2))}`)
  })
}

const PHASES: Array<[string, string, boolean]> = [
  ['shareKeys', 'before sharing keys', false],
  ['maskedInput', 'after sharing keys', false],
  ['ack', 'after masked input', true],
  ['reveal', 'during unmasking', true],
  ['sliceSums', 'after the survivor set, before announcing its slice sums (an aggregator)', true]
]

for (const [msgType, when, counts] of PHASES) {
  test(`sliced, dropouts ${when}: n - t peers drop, the round completes with the exact sum of the survivors' inputs`, () => {
    const n = 7
    const d = 60
    const net = new MemNet({ n, seed: 11, modelSize: d, lastRound: 0, params: sliced(12) })
    const t = net.manifest.params.threshold // 4
    const dropped = [1, 5, 6].slice(0, n - t)
    for (const x of dropped) net.dropBefore.set(x, msgType)
    net.startAll()
    net.run(() => net.honest().every(i => net.peers[i].ledger.entries.length === 1))
    const live = net.honest()
    assert.equal(live, [0, 2, 3, 4])
    assert.ok(live.every(i => net.peers[i].ledger.entries.length === 1), 'the live peers certified the round')
    const header = net.peers[0].ledger.entries[0].header
    assert.equal(header.survivors, counts ? Array.from({ length: n }, (_, i) => i) : live)
    assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(d, header.survivors, 0)))
    assert.is(new Set(live.map(i => hex(net.peers[i].ledger.head))).size, 1)
  })
}

test('sliced: an aggregator that signs a wrong slice sum is named with both signatures, and the next aggregator settles the slice', () => {
  const n = 5
  const d = 40
  const net = new MemNet({ n, seed: 61, modelSize: d, lastRound: 0, params: sliced(10) })
  const liar = 3
  let lied = 0
  net.tamper = (from, type, wire) => {
    if (from !== liar || type !== 'sliceSums') return [wire]
    const { env } = openMessage(wire, ctxOf(net))
    const body = env.body as SliceSumsBody
    const sums = body.sums.map(([j, h]) => { const w = Uint8Array.from(h); w[0] ^= 0xff; return [j, w] as [number, Uint8Array] })
    lied += sums.length
    return [sealMessage(net.identities[liar], { ...env, body: { ...body, sums } } as Envelope)]
  }
  net.startAll()
  const honest = [0, 1, 2, 4]
  net.run(() => honest.every(i => net.peers[i].ledger.entries.length === 1))
  assert.ok(lied > 0, 'the liar aggregated some slices')
  assert.ok(honest.every(i => net.peers[i].ledger.entries.length === 1), 'the round certified')
  const header = net.peers[0].ledger.entries[0].header
  assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(d, header.survivors, 0)), 'the true sum, not the lie')
  const named = rejectsOf(net, 'bad-aggregate')
  assert.ok(named.length > 0, 'the contradiction was logged')
  assert.ok(named.every(r => new RegExp(`members \\d and \\d signed different sums of slice \\d`).test(r.reason) && r.reason.includes(String(liar)) && /messages [0-9a-f]{16}…, [0-9a-f]{16}…/.test(r.reason)), named[0].reason)
})

test('sliced: a member that checks everything fetches every survivor\'s whole masked vector, sums it itself and agrees', () => {
  const n = 5
  const d = 40
  const checker = 2
  const net = new MemNet({ n, seed: 63, modelSize: d, lastRound: 0, params: sliced(10), checkers: [checker] })
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.entries.length === 1))
  assert.ok(net.peers.every(p => p.ledger.entries.length === 1), 'the round certified everywhere')
  const header = net.peers[0].ledger.entries[0].header
  assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(d, header.survivors, 0)))
  assert.ok(net.peers[0].ledger.entries[0].certificate.signatures.some(([m]) => m === checker) || net.peers[checker].ledger.entries.length === 1)
  assert.is(net.actions('reject').length, 0, 'no rejections among honest peers')
  // every slice of every other member's masked vector, as all-to-all would fetch
  const fetchedBy = (peer: number): Set<string> => new Set(net.log.filter(l => l.peer === peer && l.action.type === 'fetch-blob' && l.action.what === 'masked-vector').map(l => (l.action as { hash: string }).hash))
  const committed = net.log.filter(l => l.peer !== checker && l.action.type === 'broadcast' && l.action.msgType === 'maskedInput').flatMap(l => ((openMessage((l.action as { wire: Uint8Array }).wire, ctxOf(net)).env.body as MaskedInputBody).sliceHashes ?? []).map(hex))
  assert.is(committed.length, (n - 1) * 10)
  const got = fetchedBy(checker)
  assert.ok(committed.every(h => got.has(h)), 'the checker fetched every slice of every other member')
  const ordinary = committed.filter(h => fetchedBy(0).has(h)).length
  assert.ok(ordinary <= committed.length / 2, `an ordinary member fetches its own slices' parts only (${ordinary} of ${committed.length})`)
})

test('sliced: two aggregators that agree on the same false slice sum fool the others, not a member that checks everything: it signs nothing and says so', () => {
  const n = 5
  const d = 40
  const slices = 40
  const liars = [0, 1]
  const checker = 4
  const net = new MemNet({ n, seed: 64, modelSize: d, lastRound: 0, params: sliced(slices), checkers: [checker] })
  // each liar replaces every sum it aggregates by the true sum with its first word raised by one, and publishes that
  net.tamper = (from, type, wire) => {
    if (!liars.includes(from) || type !== 'sliceSums') return [wire]
    const { env } = openMessage(wire, ctxOf(net))
    const body = env.body as SliceSumsBody
    const sums = body.sums.map(([j, h]) => {
      const fake = Uint8Array.from(net.blobs.get(hex(h))!)
      new Uint32Array(fake.buffer)[0]++
      const fakeHash = sha256(fake)
      net.blobs.set(hex(fakeHash), fake)
      return [j, fakeHash] as [number, Uint8Array]
    })
    return [sealMessage(net.identities[from], { ...env, body: { ...body, sums } } as Envelope)]
  }
  net.startAll()
  const others = [2, 3]
  const commits = (peer: number): Array<{ aggregateHash: Uint8Array, survivors: number[] }> => net.log
    .filter(l => l.peer === peer && l.action.type === 'broadcast' && l.action.msgType === 'commit')
    .map(l => decodeHeader((openMessage((l.action as { wire: Uint8Array }).wire, ctxOf(net)).env.body as CommitBody).header))
    .filter(h => h.round === 0)
  const saidSo = (): Array<{ peer: number, reason: string }> => rejectsOf(net, 'bad-aggregate').filter(r => r.peer === checker && r.reason.includes('signs no header'))
  net.run(() => others.every(i => commits(i).length > 0) && saidSo().length > 0, 5_000)
  const refused = saidSo()
  assert.is(refused.length, 1, 'the checker said once that it signs no header')
  assert.match(refused[0].reason, /the agreed sums of slices [\d, ]+ differ from this member's own \(signed by 0\+1(, 0\+1)*\)/)
  const blamed = net.log.filter(l => l.peer === checker && l.action.type === 'reject' && (l.action as { reason: string }).reason.includes('signs no header')).map(l => (l.action as { peer: number }).peer)
  assert.ok(blamed.length === 1 && liars.includes(blamed[0]), `the blame goes to a signer of the false sum, not to member ${blamed[0]}`)
  assert.equal(rejectsOf(net, 'bad-aggregate').filter(r => r.peer !== checker && r.reason.includes('signs no header')), [], 'members that do not check everything refuse nothing')
  for (const i of others) {
    const h = commits(i)[0]
    assert.is.not(hex(h.aggregateHash), hashOf(expectedAggregate(d, h.survivors, 0)), `the colluding pair fooled member ${i}: it signed a false sum`)
  }
  assert.is(commits(checker).length, 0, 'the checker signed no header for the round')
  assert.ok(rejectsOf(net, 'bad-aggregate').some(r => r.peer !== checker && r.reason.includes('signed different sums') && r.reason.includes(String(checker))), 'its own sums contradicted the liars\' in signed messages that every member logged')
})

test('sliced: slice sums over a survivor set other than the certified one count for nothing', () => {
  const n = 5
  const d = 40
  const net = new MemNet({ n, seed: 62, modelSize: d, lastRound: 0, params: sliced(5) })
  const evil = 1
  net.tamper = (from, type, wire) => {
    if (from !== evil || type !== 'sliceSums') return [wire]
    // the same sums, but claimed for another set: an aggregator may sum over U3 only
    const { env } = openMessage(wire, ctxOf(net))
    const body = env.body as SliceSumsBody
    const other = Uint8Array.from(body.proposalId); other[0] ^= 1
    return [sealMessage(net.identities[evil], { ...env, body: { ...body, proposalId: other } } as Envelope)]
  }
  net.startAll()
  const honest = [0, 2, 3, 4]
  net.run(() => honest.every(i => net.peers[i].ledger.entries.length === 1))
  assert.ok(honest.every(i => net.peers[i].ledger.entries.length === 1))
  const header = net.peers[0].ledger.entries[0].header
  assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(d, header.survivors, 0)))
  const invalid = rejectsOf(net, 'invalid').filter(r => r.reason.includes('another survivor set'))
  assert.ok(invalid.length > 0, 'the claims for another set were refused by name')
})

test('a fetched slice is hashed unless the driver says it checked the hash already (the node\'s blob exchange does)', () => {
  const y = Uint32Array.from({ length: 40 }, (_, i) => i * 7)
  const { blobs } = commitSlices(y, 4)
  const aggregation = (): SlicedAggregation => {
    const a = new SlicedAggregation({ me: 0, peerIds: ['a', 'b', 'c'], slicing: { slices: 4, perSlice: 2 }, length: 40, prev: () => new Uint8Array(32), seedOf: () => new Uint8Array(32), phaseMs: 100 })
    a.commit(1, { vectorHash: sliceRoot(blobs.map(b => Uint8Array.from(Buffer.from(b.hash, 'hex')))), length: 40, sliceHashes: blobs.map(b => Uint8Array.from(Buffer.from(b.hash, 'hex'))) } as MaskedInputBody)
    return a
  }
  const wrong = Uint8Array.from(blobs[0].data); wrong[0] ^= 1
  assert.equal(aggregation().receiveBlob(blobs[0].hash, wrong), { kind: 'bad', member: 1 }, 'hashed here: the wrong bytes are refused')
  assert.equal(aggregation().receiveBlob(blobs[0].hash, Uint8Array.from(blobs[0].data)), { kind: 'slice' })
  assert.equal(aggregation().receiveBlob(blobs[0].hash, wrong, true), { kind: 'slice' }, 'checked by the driver: not hashed a second time')
  assert.equal(aggregation().receiveBlob(blobs[0].hash, wrong.subarray(4), true), { kind: 'bad', member: 1 }, 'the length is checked all the same')
})

test('certificate headers: slice hashes are optional, and checked when present', () => {
  const h = { consortium: new Uint8Array(32), round: 3, prev: new Uint8Array(32).fill(1), kind: 'update' as const, survivors: [0, 1, 2], aggregateHash: new Uint8Array(32).fill(2), stateHash: new Uint8Array(32).fill(3), extra: new Uint8Array(0) }
  assert.is(decodeHeader(encodeHeader(h)).sliceHashes, undefined, 'all-to-all headers have none')
  const sliceHashes = [new Uint8Array(32).fill(4), new Uint8Array(32).fill(5)]
  assert.equal(decodeHeader(encodeHeader({ ...h, sliceHashes })).sliceHashes, sliceHashes)
  assert.throws(() => decodeHeader(encodeHeader({ ...h, sliceHashes: [new Uint8Array(31)] })), /slice hash 0/)
  assert.throws(() => decodeHeader(encodeHeader({ ...h, sliceHashes: Array.from({ length: 257 }, () => new Uint8Array(32)) })), /more than 256/)
})

test('sliced: a masked input without slice hashes, or whose root is not its slices\', is refused', () => {
  const n = 4
  const net = new MemNet({ n, seed: 63, modelSize: 20, lastRound: 0, params: sliced(4) })
  const evil = 2
  net.tamper = (from, type, wire) => {
    if (from !== evil || type !== 'maskedInput') return [wire]
    const { env } = openMessage(wire, ctxOf(net))
    const body = env.body as MaskedInputBody
    const wrongRoot = Uint8Array.from(body.vectorHash); wrongRoot[1] ^= 1
    const bare: MaskedInputBody = { maskingSetId: body.maskingSetId, vectorHash: body.vectorHash, length: body.length }
    return [sealMessage(net.identities[evil], { ...env, body: { ...body, vectorHash: wrongRoot } } as Envelope), sealMessage(net.identities[evil], { ...env, body: bare } as Envelope)]
  }
  net.startAll()
  const honest = [0, 1, 3]
  net.run(() => honest.every(i => net.peers[i].ledger.entries.length === 1))
  const reasons = rejectsOf(net, 'invalid').map(r => r.reason)
  assert.ok(reasons.some(r => r.includes('not the root of its slice hashes')), 'wrong root named')
  assert.ok(reasons.some(r => r.includes('carries no slice hashes')), 'missing slice hashes named')
  const header = net.peers[0].ledger.entries[0].header
  assert.not.ok(header.survivors.includes(evil))
  assert.is(hex(header.aggregateHash), hashOf(expectedAggregate(20, header.survivors, 0)))
})

test.run()
