/**
 * Collusion: members who pool everything they hold — their own round secrets, the shares other
 * members sealed to them, every public message, every masked vector — try to recover an honest
 * member's update. With t of them (the threshold) the attack below succeeds exactly, which shows
 * the attack is right; with t − 1 it fails: the secrets do not reconstruct and what remains of the
 * masked vector has nothing to do with the update.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { MemNet, expectedAggregate } from '../protocol/harness.ts'
import {
  seededRandom, generateX25519KeyPair, randomBytes, x25519PublicKey, openFromPeer, decodeShare, reconstructSecret, secretCommitment,
  pairwiseMaskSeed, pairwiseSign, unmaskSum, TooFewSharesError, InconsistentSharesError, type Share, type X25519KeyPair
} from '../../src/privacy/index.ts'
import { decodeBounded, equalBytes, hex, obj, bytes as bytesField } from '../../src/protocol/codec.ts'
import { openMessage, MSG, type AdvertiseBody, type ShareKeysBody, type MaskedInputBody } from '../../src/protocol/messages.ts'

const n = 5
const size = 256
const seed = 5
const target = 4 // the honest member under attack

/** One round among n members, and its full public transcript. */
function runRound () {
  const net = new MemNet({ n, seed, modelSize: size, lastRound: 0 })
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.lastRound === 0))
  assert.is(net.peers[0].ledger.lastRound, 0, 'the round was certified')
  const ctx = { consortium: net.peers[0].ledger.consortium, memberKeys: net.peers[0].ledger.memberKeys }
  const adverts = new Map<number, AdvertiseBody>()
  const shareKeys = new Map<number, ShareKeysBody>()
  const masked = new Map<number, MaskedInputBody>()
  for (const l of net.log) {
    if (l.action.type !== 'broadcast') continue
    const m = openMessage(l.action.wire, ctx)
    if (m.env.type === MSG.advertise) adverts.set(m.env.sender, m.env.body as AdvertiseBody)
    if (m.env.type === MSG.shareKeys) shareKeys.set(m.env.sender, m.env.body as ShareKeysBody)
    if (m.env.type === MSG.maskedInput) masked.set(m.env.sender, m.env.body as MaskedInputBody)
  }
  return { net, ctx, adverts, shareKeys, masked }
}

/**
 * What colluding member i holds of its own: its round secrets. In the in-memory network a peer's
 * randomness is a seeded stream, and a round draws its key pairs and self-mask seed first, so
 * replaying the stream gives them; checked against what the member advertised.
 */
function secretsOf (i: number, adverts: Map<number, AdvertiseBody>): { c: X25519KeyPair, s: X25519KeyPair, b: Uint8Array } {
  const rng = seededRandom(Uint8Array.from({ length: 32 }, (_, j) => (i * 7 + j + seed) & 0xff))
  const c = generateX25519KeyPair(rng); const s = generateX25519KeyPair(rng); const b = randomBytes(rng, 32)
  const adv = adverts.get(i)!
  assert.ok(equalBytes(c.publicKey, adv.boxKey) && equalBytes(s.publicKey, adv.maskKey) && equalBytes(secretCommitment(b), adv.selfMaskCommitment), `member ${i}'s secrets are the ones it advertised`)
  return { c, s, b }
}

/** The coalition's attack on `target`'s update; returns what it recovers, or why it could not. */
function attack (coalition: number[]): { recovered: Uint32Array | null, error: string | null, residue: Uint32Array, expected: Uint32Array } {
  const { net, ctx, adverts, shareKeys, masked } = runRound()
  const ctxBytes = new Uint8Array([...ctx.consortium, 0, 0, 0, 0, 0, 0, 0, 0]) // round 0
  const peer = (i: number): string => net.manifest.members[i].peerId
  const mine = new Map(coalition.map(i => [i, secretsOf(i, adverts)]))
  // 1. each colluder opens the box of shares the target sealed to it
  const bShares: Share[] = []; const kShares: Share[] = []
  for (const i of coalition) {
    const box = shareKeys.get(target)!.boxes.find(([to]) => to === i)![1]
    const aad = new Uint8Array([...new TextEncoder().encode('medmesh/v1/shares'), ...ctxBytes, target, i])
    const o = obj(decodeBounded(openFromPeer(mine.get(i)!.c.secretKey, adverts.get(target)!.boxKey, ctxBytes, box, aad), 1024, 'shares'), 'shares', ['b', 'k'])
    bShares.push(decodeShare(bytesField(o.b, 'b'))); kShares.push(decodeShare(bytesField(o.k, 'k')))
  }
  const y = net.blobs.get(hex(masked.get(target)!.vectorHash))!
  const maskedVector = new Uint32Array(new Uint8Array(y).buffer)
  const expected = expectedAggregate(size, [target], 0)
  // 2. the masks the coalition knows without the target's secrets: its own pairwise masks with it
  const residue = unmaskSum(maskedVector.slice(), [], coalition.map(i => ({
    seed: pairwiseMaskSeed(mine.get(i)!.s.secretKey, adverts.get(target)!.maskKey, ctxBytes), sign: pairwiseSign(peer(target), peer(i))
  })))
  // 3. the target's self-mask seed and mask key from the pooled shares
  const t = net.manifest.params.threshold
  let b: Uint8Array; let sk: Uint8Array
  try {
    b = reconstructSecret(bShares, t, { verify: x => equalBytes(secretCommitment(x), adverts.get(target)!.selfMaskCommitment) })
    sk = reconstructSecret(kShares, t, { verify: x => equalBytes(x25519PublicKey(x), adverts.get(target)!.maskKey) })
  } catch (e) {
    if (!(e instanceof TooFewSharesError)) throw e
    // the best a coalition below the threshold can do: interpolate what it has (a lower-degree guess)
    // (a uniformly random field element, almost always some 256-bit value, never the seed)
    let guess: Uint8Array | null = null
    try { guess = reconstructSecret(bShares, bShares.length) } catch (g) { if (!(g instanceof InconsistentSharesError)) throw g }
    assert.ok(guess === null || !equalBytes(secretCommitment(guess), adverts.get(target)!.selfMaskCommitment), 'a guess from t − 1 shares is not the self-mask seed')
    return { recovered: null, error: e.message, residue, expected }
  }
  // 4. with them: every pairwise mask of the target, and its self mask, come off
  const others = Array.from({ length: n }, (_, v) => v).filter(v => v !== target)
  const recovered = unmaskSum(maskedVector.slice(), [b], others.map(v => ({ seed: pairwiseMaskSeed(sk, adverts.get(v)!.maskKey, ctxBytes), sign: pairwiseSign(peer(target), peer(v)) })))
  return { recovered, error: null, residue, expected }
}

test('t colluders (the threshold) pooling their shares recover an honest member\'s update exactly: the attack is right', () => {
  const { recovered, expected } = attack([0, 1, 2])
  assert.ok(recovered !== null)
  assert.equal(Array.from(recovered!), Array.from(expected))
})

test('t − 1 colluders pooling everything they hold cannot recover an honest member\'s update', () => {
  const { recovered, error, residue, expected } = attack([0, 1])
  assert.is(recovered, null)
  assert.match(error!, /2 share\(s\) given, 3 needed/)
  // stripping every mask they can leaves a vector that agrees with the update in no more places
  // than chance (2^-32 per word): the self mask and the masks with honest members remain
  const same = residue.reduce((a, v, j) => a + (v === expected[j] ? 1 : 0), 0)
  assert.ok(same <= 1, `${same} of ${residue.length} words equal the update`)
})

test.run()
