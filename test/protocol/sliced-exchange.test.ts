/** The sliced exchange (src/protocol/sliced-exchange.ts) on its own: slice commitments, signed sums, conflicts named. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { sha256 } from '@noble/hashes/sha2.js'
import { hex } from '../../src/protocol/codec.ts'
import { SlicedExchange } from '../../src/protocol/sliced-exchange.ts'
import { commitSlices, sliceRoot } from '../../src/protocol/sliced.ts'
import { sliceBounds } from '../../src/protocol/slices.ts'
import type { MaskedInputBody } from '../../src/protocol/messages.ts'

const NO_MASKS = { selfSeeds: [], droppedMasks: [] }
const LENGTH = 10
const SLICES = 3
const bytesOf = (v: Uint32Array): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
const vector = (k: number): Uint32Array => Uint32Array.from({ length: LENGTH }, (_, i) => (k * 1_000_003 + i * 2654435761) >>> 0)
/** two members, both aggregators of every slice (perSlice 2), this peer member `me` */
const exchange = (me = 0): SlicedExchange => new SlicedExchange({ me, peerIds: ['a', 'b'], slicing: { slices: SLICES, perSlice: 2 }, length: LENGTH, prev: () => new Uint8Array(32), seedOf: () => new Uint8Array(32).fill(4), phaseMs: 500 })
const committed = (v: Uint32Array, id: number) => {
  const c = commitSlices(v, SLICES)
  return { c, commitment: { id: new Uint8Array(32).fill(id), wire: new Uint8Array([id]), body: { maskingSetId: new Uint8Array(32), vectorHash: c.root, length: LENGTH, sliceHashes: c.hashes } satisfies MaskedInputBody } }
}
const U = { id: new Uint8Array(32).fill(8), members: [0, 1] }

test('a commitment must carry one slice hash per slice, and their root as its vector hash', () => {
  const x = exchange()
  const { commitment } = committed(vector(1), 1)
  assert.is(x.checkCommitment(commitment.body), null)
  assert.match(x.checkCommitment({ ...commitment.body, sliceHashes: undefined }) ?? '', /no slice hashes/)
  assert.match(x.checkCommitment({ ...commitment.body, sliceHashes: commitment.body.sliceHashes.slice(1) }) ?? '', /carries 2 slice hashes, expected 3/)
  assert.match(x.checkCommitment({ ...commitment.body, vectorHash: new Uint8Array(32) }) ?? '', /not the root/)
  assert.is(x.described, ' in 3 slices')
})

test('own: one blob per slice, and the root over their hashes', () => {
  const y = vector(7)
  const { blobs, vectorHash, sliceHashes } = exchange().own(y)
  assert.is(blobs.length, SLICES)
  assert.equal(vectorHash, sliceRoot(sliceHashes))
  blobs.forEach((b, j) => { assert.is(b.hash, hex(sliceHashes[j])) })
})

test('the sum: each slice summed by this aggregator, announced, agreed when the other signs the same, put together', () => {
  const x = exchange(0)
  const mine = vector(0)
  const other = vector(1)
  const own = x.own(mine)
  x.commit(0, { id: new Uint8Array(32).fill(9), wire: new Uint8Array([9]), body: { maskingSetId: new Uint8Array(32), vectorHash: own.vectorHash, length: LENGTH, sliceHashes: own.sliceHashes } }, false)
  const { c, commitment } = committed(other, 1)
  assert.is(x.commit(1, commitment, false), 'new')
  // it fetches member 1's slices (it aggregates them all), each once
  const want = x.takeMissing([0, 1], null)
  assert.equal(want.map(f => f.hash).sort(), c.blobs.map(b => b.hash).sort())
  assert.equal(x.takeMissing([0, 1], null), [])
  assert.equal(x.receiveBlob(c.blobs[0].hash, c.blobs[1].data, false), { ok: false, reason: `a blob served as ${c.blobs[0].hash.slice(0, 16)}… does not match the slice it was fetched for`, member: 1 })
  for (const b of c.blobs) assert.equal(x.receiveBlob(b.hash, b.data, false), { ok: true })
  assert.ok(x.hasInputOf(1, [0, 1]))
  assert.equal(x.claim(1, { proposalId: U.id, sums: [] }, new Uint8Array([1]), null), { rejects: [], invalid: null }, 'a claim before the set is certified waits')
  assert.equal(x.survivorsCertified(U), [])
  const step = x.sum(0, [0, 1], [0, 1], NO_MASKS)
  const truth = Uint32Array.from(mine, (w, i) => (w + other[i]) >>> 0)
  const truthHashes = sliceBounds(LENGTH, SLICES).map(b => sha256(bytesOf(truth.slice(b.from, b.to))))
  assert.equal(step.announce.map(([j, h]) => [j, hex(h)]), truthHashes.map((h, j) => [j, hex(h)]), 'its sums of every slice')
  assert.is(step.sum, null, 'no slice agreed yet: it needs the other aggregator\'s signature')
  // the other aggregator signs the same sums: agreed, and put together (its own signed sums are claims too)
  x.claim(0, { proposalId: U.id, sums: step.announce }, new Uint8Array([0]), U)
  const agreed = x.claim(1, { proposalId: U.id, sums: truthHashes.map((h, j) => [j, h] as [number, Uint8Array]) }, new Uint8Array([1]), U)
  assert.equal(agreed, { rejects: [], invalid: null })
  const done = x.sum(1, [0, 1], [0, 1], NO_MASKS)
  assert.equal(done.sum?.words, truth)
  assert.equal(done.sum?.sliceHashes?.map(hex), truthHashes.map(hex))
})

test('two different signed sums of a slice are a named conflict; one member signing two is equivocation; a claim over another set is invalid', () => {
  const x = exchange(0)
  const h1 = new Uint8Array(32).fill(1)
  const h2 = new Uint8Array(32).fill(2)
  assert.equal(x.claim(0, { proposalId: U.id, sums: [[0, h1]] }, new Uint8Array([10]), U).rejects, [])
  const lied = x.claim(1, { proposalId: U.id, sums: [[0, h2]] }, new Uint8Array([11]), U).rejects
  assert.is(lied.length, 1)
  assert.is(lied[0].code, 'bad-aggregate')
  assert.is(lied[0].peer, 1)
  assert.match(lied[0].reason, /members 0 and 1 signed different sums of slice 0 .*one of them lied/)
  const twice = x.claim(1, { proposalId: U.id, sums: [[0, h1]] }, new Uint8Array([12]), U).rejects
  assert.equal(twice.map(r => [r.code, r.peer]), [['equivocation', 1]])
  assert.match(x.claim(1, { proposalId: new Uint8Array(32), sums: [] }, new Uint8Array([13]), U).invalid ?? '', /another survivor set/)
  assert.match(x.claim(1, { proposalId: U.id, sums: [[SLICES, h1]] }, new Uint8Array([14]), U).invalid ?? '', /slice 3 of 3/)
})

test.run()
