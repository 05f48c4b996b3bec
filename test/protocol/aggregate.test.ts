/** Aggregation (steps 5–6) fed hand-made secrets, shares and masked vectors: no round, no network. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import {
  generateX25519KeyPair, randomBytes, seededRandom, splitSecret, secretCommitment, encodeShare, encodeWeightedUpdate, sumVectors, type Share
} from '../../src/privacy/index.ts'
import { aggregate, collectRevealedShares, enoughShares, unmaskingSecrets, unmaskSlice, type AggregationInput } from '../../src/protocol/aggregate.ts'
import { sliceBounds } from '../../src/protocol/slices.ts'
import { maskedInput } from '../../src/protocol/masked-input.ts'
import { decodeHeader } from '../../src/protocol/ledger.ts'
import { defaultParams } from '../../src/protocol/manifest.ts'
import { initialState, stateHash } from '../../src/protocol/model.ts'
import type { RevealBody } from '../../src/protocol/messages.ts'
import { hash, hex } from '../../src/protocol/codec.ts'

const N = 4
const T = 3
const D = 5
const params = { ...defaultParams(N, D, '00'.repeat(32)), threshold: T }
const context = new Uint8Array(40).fill(7)
const peerIds = ['peer-a', 'peer-b', 'peer-c', 'peer-d']
/** exact in Z_2^32: multiples of 1/scale at full weight */
const inputOf = (u: number): Float64Array => Float64Array.from({ length: D }, (_, j) => ((u + 1) * 37 + j * 11) / params.quantization.scale)

/** four members in the masking set; member 3 drops after the masking set, so 0, 1, 2 survive */
function world (seed = 1) {
  const rng = seededRandom(new Uint8Array(32).fill(seed))
  const members = [0, 1, 2, 3].map(() => ({ maskKeys: generateX25519KeyPair(rng), selfMaskSeed: randomBytes(rng, 32) }))
  const adverts = new Map(members.map((m, u) => [u, { selfMaskCommitment: secretCommitment(m.selfMaskSeed), maskKey: m.maskKeys.publicKey }]))
  const points = [1, 2, 3, 4]
  // shares[u][v]: member u's shares for member v (at v's point)
  const shares = members.map(m => ({ self: splitSecret(m.selfMaskSeed, T, points, rng), key: splitSecret(m.maskKeys.secretKey, T, points, rng) }))
  const vectors = new Map(members.map((m, u) => [u, maskedInput({
    values: inputOf(u), count: params.quantization.maxSampleCount, encoding: 'weighted', members: N, quantization: params.quantization, me: u, peerIds,
    others: new Map([0, 1, 2, 3].filter(v => v !== u).map(v => [v, members[v].maskKeys.publicKey])), selfMaskSeed: m.selfMaskSeed, maskSecretKey: m.maskKeys.secretKey, context, rng
  })]))
  const survivors = [0, 1, 2]
  const dropped = [3]
  // each survivor reveals, at its own point, self-mask shares of the survivors and key shares of the dropped
  const reveals = new Map<number, RevealBody>(survivors.map(r => [r, {
    proposalId: new Uint8Array(32),
    selfMaskShares: survivors.map(u => [u, encodeShare(shares[u].self[r])] as [number, Uint8Array]),
    keyShares: dropped.map(u => [u, encodeShare(shares[u].key[r])] as [number, Uint8Array])
  }]))
  return { members, adverts, vectors, survivors, dropped, reveals, shares }
}

function input (w: ReturnType<typeof world>, shares: AggregationInput['shares']): AggregationInput {
  return {
    consortium: new Uint8Array(32).fill(1), round: 4, prev: new Uint8Array(32).fill(2), kind: 'update', state: initialState(new Float32Array(D)),
    survivors: w.survivors, dropped: w.dropped, shares, adverts: w.adverts, maskedVectors: w.vectors, peerIds, maskContext: context, params
  }
}

test('the masks cancel: the header names the exact sum of the survivors\' quantised inputs, and the model moves by their mean', () => {
  const w = world()
  const shares = collectRevealedShares(w.reveals, [0, 1, 2, 3], w.survivors, new Set())
  assert.equal(shares.misbehaved, [])
  assert.ok(enoughShares(shares, T))
  const result = aggregate(input(w, shares))
  assert.ok(result.ok)
  if (!result.ok) return
  const plain = sumVectors(w.survivors.map(u => encodeWeightedUpdate(inputOf(u), params.quantization.maxSampleCount, params.quantization, seededRandom(new Uint8Array(32)))))
  const header = decodeHeader(result.header)
  assert.is(hex(header.aggregateHash), hex(hash(new Uint8Array(plain.buffer))), 'the unmasked sum, word for word')
  assert.equal(header.survivors, [0, 1, 2])
  assert.is(header.round, 4)
  const mean = Array.from({ length: D }, (_, j) => (inputOf(0)[j] + inputOf(1)[j] + inputOf(2)[j]) / 3)
  result.state!.weights.forEach((x, j) => assert.ok(Math.abs(x - mean[j]) < 1e-6, `weight ${j}: ${x} vs ${mean[j]}`))
  assert.is(hex(header.stateHash), hex(stateHash(result.state!)))
})

test('sliced: each slice unmasked apart (its survivors\' masked slices, that part of the masks) gives that part of the exact sum, with a member dropped', () => {
  const w = world()
  const shares = collectRevealedShares(w.reveals, [0, 1, 2, 3], w.survivors, new Set())
  const u = unmaskingSecrets(input(w, shares))
  assert.ok(u.ok)
  if (!u.ok) return
  const plain = sumVectors(w.survivors.map(m => encodeWeightedUpdate(inputOf(m), params.quantization.maxSampleCount, params.quantization, seededRandom(new Uint8Array(32)))))
  for (const slices of [1, 2, 3, D + 1]) {
    for (const b of sliceBounds(D + 1, slices)) {
      const part = unmaskSlice(w.survivors.map(m => w.vectors.get(m)!.subarray(b.from, b.to)), b.from, u.secrets)
      assert.equal(Array.from(part), Array.from(plain.subarray(b.from, b.to)), `${slices} slices, words ${b.from}..${b.to}`)
    }
  }
  // a slice summed over a set other than the one the secrets were revealed for stays masked
  const wrong = unmaskSlice([0, 1].map(m => w.vectors.get(m)!.subarray(0, 2)), 0, u.secrets)
  const twoOnly = sumVectors([0, 1].map(m => encodeWeightedUpdate(inputOf(m), params.quantization.maxSampleCount, params.quantization, seededRandom(new Uint8Array(32))).subarray(0, 2)))
  assert.not.equal(Array.from(wrong), Array.from(twoOnly))
})

test('without the dropped member\'s mask key the sum stays masked: fewer than t shares is "wait"', () => {
  const w = world()
  const two = new Map([...w.reveals].slice(0, 2))
  const shares = collectRevealedShares(two, [0, 1, 2, 3], w.survivors, new Set())
  assert.not.ok(enoughShares(shares, T))
})

test('a share inconsistent with its commitment names the member that revealed it', () => {
  const w = world()
  // four reveals (member 3 of the masking set reveals too), so that a bad one stands out among t = 3
  const reveals = new Map(w.reveals)
  reveals.set(3, { proposalId: new Uint8Array(32), selfMaskShares: w.survivors.map(u => [u, encodeShare(w.shares[u].self[3])] as [number, Uint8Array]), keyShares: [[3, encodeShare(w.shares[3].key[3])]] })
  const shares = collectRevealedShares(reveals, [0, 1, 2, 3], w.survivors, new Set())
  // member 1's share of member 0's self-mask seed, altered in its last byte
  const list = shares.selfMaskShares.get(0)!
  const i = list.findIndex(s => s.x === 2)
  const y = Uint8Array.from(list[i].y); y[y.length - 1] ^= 1
  list[i] = { x: list[i].x, y } as Share
  const result = aggregate(input(w, shares))
  assert.not.ok(result.ok)
  if (result.ok) return
  assert.equal(result.suspects, [1])
})

test('reveals outside the rules are named and left out: both kinds for one member, another member\'s point, garbage; outsiders and the faulty are ignored', () => {
  const w = world()
  const reveals = new Map(w.reveals)
  const r0 = reveals.get(0)!
  reveals.set(0, { ...r0, keyShares: [...r0.keyShares, [1, r0.selfMaskShares[1][1]]] }) // a key share of survivor 1 as well
  const r1 = reveals.get(1)!
  reveals.set(1, { ...r1, selfMaskShares: r1.selfMaskShares.map(([u]) => [u, encodeShare(w.shares[u].self[0])] as [number, Uint8Array]) }) // member 0's points
  reveals.set(2, { ...reveals.get(2)!, selfMaskShares: [[0, new Uint8Array(3)]] })
  reveals.set(9, r0)
  const shares = collectRevealedShares(reveals, [0, 1, 2, 3], w.survivors, new Set([2]))
  assert.equal(shares.misbehaved.map(m => [m.member, m.code]), [[0, 'invalid'], [1, 'bad-share']], 'member 2 is faulty already, 9 is no member of the set')
  assert.ok([...shares.selfMaskShares.values(), ...shares.keyShares.values()].every(l => l.length === 0))
})

test.run()
