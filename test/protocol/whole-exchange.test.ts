/** The all-to-all exchange (src/protocol/whole-exchange.ts) on its own: commitments, blobs, the sum. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { sha256 } from '@noble/hashes/sha2.js'
import { hex } from '../../src/protocol/codec.ts'
import { WholeExchange } from '../../src/protocol/whole-exchange.ts'
import type { MaskedInputBody } from '../../src/protocol/messages.ts'

const NO_MASKS = { selfSeeds: [], droppedMasks: [] }
const bytesOf = (v: Uint32Array): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
const vector = (k: number): Uint32Array => Uint32Array.from({ length: 9 }, (_, i) => (k * 1_000_003 + i * 2654435761) >>> 0)
const commitment = (v: Uint32Array, id = 1) => ({ id: new Uint8Array(32).fill(id), wire: new Uint8Array([id]), body: { maskingSetId: new Uint8Array(32), vectorHash: sha256(bytesOf(v)), length: v.length } satisfies MaskedInputBody })

test('a commitment with slice hashes does not fit; one without does', () => {
  const x = new WholeExchange()
  assert.is(x.checkCommitment(commitment(vector(1)).body), null)
  assert.match(x.checkCommitment({ ...commitment(vector(1)).body, sliceHashes: [new Uint8Array(32)] }) ?? '', /aggregates whole vectors/)
})

test('commit: new, the same again, another (equivocation), which counts only when authoritative', () => {
  const x = new WholeExchange()
  const a = commitment(vector(1), 1)
  const b = commitment(vector(2), 2)
  assert.is(x.commit(3, a, false), 'new')
  assert.is(x.commit(3, a, false), 'same')
  assert.is(x.commit(3, b, false), 'other')
  assert.is(x.commitmentOf(3), a)
  assert.is(x.commit(3, b, true), 'other')
  assert.is(x.commitmentOf(3), b)
})

test('own: one blob, the vector itself, named by its SHA-256', () => {
  const x = new WholeExchange()
  const y = vector(5)
  const { blobs, vectorHash } = x.own(y)
  assert.is(blobs.length, 1)
  assert.is(blobs[0].hash, hex(sha256(bytesOf(y))))
  assert.equal(vectorHash, sha256(bytesOf(y)))
  assert.is(blobs[0].data.buffer, y.buffer, 'no copy')
})

test('blobs: fetched once each, kept only when they match their commitment; the sum waits for every survivor', () => {
  const x = new WholeExchange()
  const own = vector(0)
  x.own(own)
  x.commit(0, commitment(own, 9), false)
  const v1 = vector(1)
  const v2 = vector(2)
  x.commit(1, commitment(v1, 1), false)
  x.commit(2, commitment(v2, 2), false)
  const want = x.takeMissing(null, null)
  assert.equal(want.map(f => f.owner).sort(), [1, 2], 'the others\' vectors, not its own')
  assert.equal(x.takeMissing(null, null), [], 'asked for once')
  assert.is(x.receiveBlob('ab'.repeat(32), bytesOf(v1), false), null, 'not this round\'s')
  const bad = x.receiveBlob(hex(sha256(bytesOf(v1))), bytesOf(v1).subarray(4), false)
  assert.equal(bad, { ok: false, reason: 'masked vector from member 1 does not match its commitment', member: 1 })
  assert.equal(x.takeMissing(null, null).map(f => f.owner), [1], 'asked for again, perhaps from another holder')
  assert.is(x.sum(0, [0, 1, 2], [0, 1, 2], NO_MASKS).sum, null, 'a survivor\'s vector is on its way')
  assert.equal(x.receiveBlob(hex(sha256(bytesOf(v1))), bytesOf(v1), false), { ok: true })
  assert.ok(x.hasInputOf(1) && !x.hasInputOf(2))
  assert.equal(x.receiveBlob(hex(sha256(bytesOf(v2))), bytesOf(v2), true), { ok: true })
  // with no masks to remove, the sum is the survivors' vectors added in Z_2^32
  const got = x.sum(0, [0, 1, 2], [0, 2], NO_MASKS).sum
  assert.equal(got?.words, Uint32Array.from(own, (w, i) => (w + v2[i]) >>> 0))
  assert.is(got?.sliceHashes, undefined)
})

test('slice sums are not this exchange\'s', () => {
  const x = new WholeExchange()
  assert.match(x.claim(4).invalid, /slice sums from 4, but the consortium aggregates whole vectors/)
  assert.equal(x.survivorsCertified(), [])
})

test.run()
