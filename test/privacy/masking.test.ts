import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import fc from 'fast-check'
import {
  maskInput, maskInPlace, unmaskSum, sumVectors, pairwiseSign, pairwiseMaskSeed, generateX25519KeyPair, seededRandom, randomBytes,
  InvalidArgumentError, type PairwiseMask, type DroppedPairwiseMask
} from '../../src/privacy/index.ts'
import { testSeed } from '../helpers/bytes.ts'

const CONTEXT = new TextEncoder().encode('consortium-x/round-1')

interface Peer { id: string, keys: { secretKey: Uint8Array, publicKey: Uint8Array }, selfSeed: Uint8Array, input: Uint32Array }

function makePeers (n: number, d: number, seed: number): Peer[] {
  const rng = seededRandom(testSeed(seed))
  return Array.from({ length: n }, (_, i) => {
    const input = new Uint32Array(d)
    rng.fill(new Uint8Array(input.buffer))
    return { id: `peer-${String(i).padStart(2, '0')}-${seed}`, keys: generateX25519KeyPair(rng), selfSeed: randomBytes(rng, 32), input }
  })
}

function masksOf (me: Peer, others: Peer[]): PairwiseMask[] {
  return others.filter(p => p !== me).map(p => ({ seed: pairwiseMaskSeed(me.keys.secretKey, p.keys.publicKey, CONTEXT), sign: pairwiseSign(me.id, p.id) }))
}

/** What the survivors do: sum what they received, then remove survivors' self masks and the dropped peers' pairwise masks. */
function aggregate (peers: Peer[], dropped: Set<number>): Uint32Array {
  const survivors = peers.filter((_, i) => !dropped.has(i))
  const lost = peers.filter((_, i) => dropped.has(i))
  const masked = survivors.map(p => maskInput(p.input, p.selfSeed, masksOf(p, peers)))
  const droppedMasks: DroppedPairwiseMask[] = []
  for (const v of lost) {
    for (const u of survivors) {
      // computed from v's reconstructed secret key and u's public key
      droppedMasks.push({ seed: pairwiseMaskSeed(v.keys.secretKey, u.keys.publicKey, CONTEXT), sign: pairwiseSign(u.id, v.id) })
    }
  }
  return unmaskSum(sumVectors(masked), survivors.map(p => p.selfSeed), droppedMasks)
}

test('property: for random n in 2..20 and random dropped sets, the unmasked sum is the survivors\' exact sum', () => {
  fc.assert(fc.property(
    fc.integer({ min: 2, max: 20 }),
    fc.integer({ min: 1, max: 300 }),
    fc.integer({ min: 0, max: 255 }),
    fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }),
    (n, d, seed, dropFlags) => {
      const peers = makePeers(n, d, seed)
      const dropped = new Set(dropFlags.slice(0, n).flatMap((f, i) => f ? [i] : []))
      if (dropped.size === n) dropped.delete(0) // at least one survivor
      const expected = sumVectors(peers.filter((_, i) => !dropped.has(i)).map(p => p.input))
      assert.equal(aggregate(peers, dropped), expected)
    }), { numRuns: 40, seed: 20261127 })
})

test('a masked vector reveals nothing obvious: it differs from the input almost everywhere', () => {
  const peers = makePeers(3, 1000, 7)
  for (const p of peers) p.input.fill(0)
  const y = maskInput(peers[0].input, peers[0].selfSeed, masksOf(peers[0], peers))
  const zeros = y.filter(w => w === 0).length
  assert.ok(zeros < 3, `${zeros} zero words in a masked zero vector`)
})

test('maskInPlace gives maskInput\'s vector in the input\'s own array; maskInput leaves its input as it was', () => {
  const peers = makePeers(4, 5000, 9)
  const x = Uint32Array.from(peers[1].input)
  const y = maskInput(peers[1].input, peers[1].selfSeed, masksOf(peers[1], peers))
  assert.equal(peers[1].input, x)
  const own = Uint32Array.from(x)
  assert.is(maskInPlace(own, peers[1].selfSeed, masksOf(peers[1], peers)), own)
  assert.equal(own, y)
  assert.not.equal(own, x)
})

test('leaving out one dropped peer\'s masks, or one survivor\'s self mask, gives a wrong sum', () => {
  const peers = makePeers(5, 64, 8)
  const dropped = new Set([3])
  const survivors = peers.filter((_, i) => !dropped.has(i))
  const expected = sumVectors(survivors.map(p => p.input))
  const masked = () => sumVectors(survivors.map(p => maskInput(p.input, p.selfSeed, masksOf(p, peers))))
  const droppedMasks = survivors.map(u => ({ seed: pairwiseMaskSeed(peers[3].keys.secretKey, u.keys.publicKey, CONTEXT), sign: pairwiseSign(u.id, peers[3].id) }))
  assert.equal(unmaskSum(masked(), survivors.map(p => p.selfSeed), droppedMasks), expected)
  assert.not.equal(unmaskSum(masked(), survivors.map(p => p.selfSeed), []), expected)
  assert.not.equal(unmaskSum(masked(), survivors.slice(1).map(p => p.selfSeed), droppedMasks), expected)
})

test('pairwise signs are antisymmetric; pairwise seeds symmetric', () => {
  const [a, b] = makePeers(2, 1, 9)
  assert.is(pairwiseSign(a.id, b.id), -pairwiseSign(b.id, a.id))
  assert.equal(pairwiseMaskSeed(a.keys.secretKey, b.keys.publicKey, CONTEXT), pairwiseMaskSeed(b.keys.secretKey, a.keys.publicKey, CONTEXT))
  throwsA(() => pairwiseSign(a.id, a.id), InvalidArgumentError)
})

test('bad arguments are typed errors and leave inputs untouched', () => {
  const [a] = makePeers(1, 8, 10)
  const before = Uint32Array.from(a.input)
  throwsA(() => maskInput(a.input, a.selfSeed.subarray(1), []), InvalidArgumentError)
  throwsA(() => maskInput(a.input, a.selfSeed, [{ seed: new Uint8Array(3), sign: 1 }]), InvalidArgumentError)
  throwsA(() => sumVectors([new Uint32Array(2), new Uint32Array(3)]), InvalidArgumentError)
  throwsA(() => sumVectors([]), InvalidArgumentError)
  maskInput(a.input, a.selfSeed, [])
  assert.equal(a.input, before)
})

test.run()
