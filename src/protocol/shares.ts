/**
 * Step 2 of a round (docs/PROTOCOL.md): each member splits its two secrets (the self-mask seed and
 * the mask key) t-of-n among the members whose advertisements it holds, and seals each member's
 * pair of shares to it (X25519 agreement with that member's box key, then ChaCha20-Poly1305,
 * bound to the round and to both member indices). Pure: randomness comes from `rng`.
 */
import {
  splitSecret, encodeShare, decodeShare, sealForPeer, openFromPeer, type RandomSource, type Share
} from '../privacy/index.ts'
import { decodeBounded, encodeCanonical, obj, bytes } from './codec.ts'

/** One member's pair of shares for another: of the self-mask seed and of the mask key. */
export interface SharePair { selfMask: Share, maskKey: Share }

/** What a sealed box is bound to besides its key: the round's context, the sender and the recipient. */
function boxAad (context: Uint8Array, from: number, to: number): Uint8Array {
  return new Uint8Array([...new TextEncoder().encode('medmesh/v1/shares'), ...context, from, to])
}

export interface SealSharesInput {
  me: number
  /** the members whose advertisements I hold (me included), by index, with their box keys */
  view: ReadonlyMap<number, Uint8Array>
  threshold: number
  selfMaskSeed: Uint8Array
  maskSecretKey: Uint8Array
  boxSecretKey: Uint8Array
  context: Uint8Array
  rng: RandomSource
}

/** Split both secrets at the points of `view` (member index + 1); my own pair, and a sealed box for every other member. */
export function sealShares (s: SealSharesInput): { mine: SharePair, boxes: Array<[number, Uint8Array]> } {
  const members = [...s.view.keys()].sort((a, b) => a - b)
  const points = members.map(i => i + 1)
  const selfMask = splitSecret(s.selfMaskSeed, s.threshold, points, s.rng)
  const maskKey = splitSecret(s.maskSecretKey, s.threshold, points, s.rng)
  const mine = members.indexOf(s.me)
  if (mine < 0) throw new Error('sealShares: my own advertisement is not in the view')
  const boxes: Array<[number, Uint8Array]> = []
  members.forEach((v, i) => {
    if (v === s.me) return
    const plain = encodeCanonical({ b: encodeShare(selfMask[i]), k: encodeShare(maskKey[i]) })
    boxes.push([v, sealForPeer(s.boxSecretKey, s.view.get(v)!, s.context, plain, boxAad(s.context, s.me, v), s.rng)])
  })
  return { mine: { selfMask: selfMask[mine], maskKey: maskKey[mine] }, boxes }
}

/**
 * Open member `from`'s box for me: my pair of its shares, or null when the box does not open or
 * holds shares at another member's point (`from` is then to blame, and t others can do without me).
 */
export function openShares (box: Uint8Array, o: { me: number, from: number, fromBoxKey: Uint8Array, boxSecretKey: Uint8Array, context: Uint8Array }): SharePair | null {
  let pair: SharePair
  try {
    const plain = openFromPeer(o.boxSecretKey, o.fromBoxKey, o.context, box, boxAad(o.context, o.from, o.me))
    const shares = obj(decodeBounded(plain, 1024, 'shares'), 'shares', ['b', 'k'])
    pair = { selfMask: decodeShare(bytes(shares.b, 'b')), maskKey: decodeShare(bytes(shares.k, 'k')) }
  } catch {
    return null
  }
  return pair.selfMask.x === o.me + 1 && pair.maskKey.x === o.me + 1 ? pair : null
}

/**
 * Step 5: what I reveal once the survivor set U3 is fixed: my share of each survivor's self-mask
 * seed and of each dropped member's mask key, never both for one member (both would unmask its
 * input). Members whose shares I do not hold are left out.
 */
export function sharesToReveal (maskingSet: readonly number[], survivors: readonly number[], myShares: ReadonlyMap<number, SharePair>): { selfMaskShares: Array<[number, Uint8Array]>, keyShares: Array<[number, Uint8Array]> } {
  const selfMaskShares: Array<[number, Uint8Array]> = []
  const keyShares: Array<[number, Uint8Array]> = []
  for (const u of maskingSet) {
    const mine = myShares.get(u)
    if (mine === undefined) continue
    if (survivors.includes(u)) selfMaskShares.push([u, encodeShare(mine.selfMask)])
    else keyShares.push([u, encodeShare(mine.maskKey)])
  }
  return { selfMaskShares, keyShares }
}
