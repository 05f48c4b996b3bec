/**
 * Double masking (Bonawitz et al., CCS 2017).
 *
 * A participant u sends  y_u = x_u + PRG(b_u) + Σ_{v≠u} sign(u,v) · PRG(s_uv)  (mod 2^32), where
 *   b_u   is u's self-mask seed (fresh per round),
 *   s_uv  = HKDF(X25519(s_u^SK, s_v^PK), "pairwise-mask-seed", context), the same for u and v,
 *   sign(u,v) = +1 if u's id sorts before v's, else -1, so the pairwise masks of two
 *               survivors cancel in the sum.
 * For survivors S and dropped peers D (who shared keys but sent no masked input):
 *   Σ_{u∈S} y_u = Σ_{u∈S} x_u + Σ_{u∈S} PRG(b_u) + Σ_{u∈S, v∈D} sign(u,v) · PRG(s_uv)
 * so the survivors' self seeds and the dropped peers' mask keys (both reconstructed from
 * Shamir shares) are all that is needed to recover the exact sum of the survivors' inputs.
 */
import { InvalidArgumentError, assertBytes } from './errors.ts'
import { agreeKey } from './keys.ts'
import { addMasks } from './prg.ts'
import { addWords } from './words.ts'

export type MaskSign = 1 | -1

/** +1 if `self` sorts before `other` (by UTF-16 code units, as peer ids are ASCII), else -1. */
export function pairwiseSign (self: string, other: string): MaskSign {
  if (typeof self !== 'string' || typeof other !== 'string') throw new InvalidArgumentError('peer ids must be strings')
  if (self === other) throw new InvalidArgumentError('a peer has no pairwise mask with itself')
  return self < other ? 1 : -1
}

/** s_uv, from my X25519 secret key and the other peer's public key, bound to `context`. */
export function pairwiseMaskSeed (mySecretKey: Uint8Array, peerPublicKey: Uint8Array, context: Uint8Array): Uint8Array {
  return agreeKey(mySecretKey, peerPublicKey, 'pairwise-mask-seed', context)
}

export interface PairwiseMask {
  /** s_uv */
  seed: Uint8Array
  /** sign(u, v) as seen by the owner of the vector */
  sign: MaskSign
}

/** y = x + PRG(selfSeed) + Σ sign · PRG(seed), as a new array (x is left untouched). */
export function maskInput (input: Uint32Array, selfSeed: Uint8Array, pairwise: readonly PairwiseMask[]): Uint32Array {
  if (!(input instanceof Uint32Array)) throw new InvalidArgumentError('input must be a Uint32Array')
  return maskInPlace(input.slice(), selfSeed, pairwise)
}

/**
 * The same, overwriting `input` with y and returning it: for a caller whose x is a fresh vector
 * of its own (the quantised update), which saves a copy and a fresh allocation of the model's size.
 */
export function maskInPlace (input: Uint32Array, selfSeed: Uint8Array, pairwise: readonly PairwiseMask[]): Uint32Array {
  if (!(input instanceof Uint32Array)) throw new InvalidArgumentError('input must be a Uint32Array')
  assertBytes(selfSeed, 'selfSeed', 32)
  if (!Array.isArray(pairwise)) throw new InvalidArgumentError('pairwise must be an array')
  for (const [i, p] of pairwise.entries()) assertBytes(p?.seed, `pairwise[${i}].seed`, 32)
  addMasks(input, [{ seed: selfSeed, sign: 1 }, ...pairwise.map(p => ({ seed: p.seed, sign: p.sign }))])
  return input
}

/** Σ vectors mod 2^32. All vectors must have the same length. */
export function sumVectors (vectors: readonly Uint32Array[]): Uint32Array {
  if (!Array.isArray(vectors) || vectors.length === 0) throw new InvalidArgumentError('vectors must be a non-empty array')
  const n = vectors[0].length
  const acc = new Uint32Array(n)
  for (const [i, v] of vectors.entries()) {
    if (!(v instanceof Uint32Array) || v.length !== n) throw new InvalidArgumentError(`vectors[${i}] must be a Uint32Array of length ${n}`)
    addInto(acc, v)
  }
  return acc
}

/** acc += v (mod 2^32), in place. */
export function addInto (acc: Uint32Array, v: Uint32Array): void {
  if (!(acc instanceof Uint32Array) || !(v instanceof Uint32Array) || acc.length !== v.length) {
    throw new InvalidArgumentError('addInto needs two Uint32Arrays of the same length')
  }
  addWords(acc, v)
}

export interface DroppedPairwiseMask {
  /** s_uv between a survivor u and a dropped peer v (recomputed from v's reconstructed key) */
  seed: Uint8Array
  /** sign(u, v): the sign u used when it masked its own vector */
  sign: MaskSign
}

/**
 * Remove the masks from the sum of the survivors' masked vectors, in place:
 * subtract PRG(b_u) for every survivor u, and sign(u,v) · PRG(s_uv) for every pair of a
 * survivor u and a dropped peer v. What remains is the exact sum of the survivors' inputs.
 * With `from`, `maskedSum` is the slice of the sum that starts at word `from` (only that part
 * of each mask is expanded).
 */
export function unmaskSum (maskedSum: Uint32Array, survivorSelfSeeds: readonly Uint8Array[], droppedPairwise: readonly DroppedPairwiseMask[], from = 0): Uint32Array {
  if (!(maskedSum instanceof Uint32Array)) throw new InvalidArgumentError('maskedSum must be a Uint32Array')
  if (!Array.isArray(survivorSelfSeeds) || !Array.isArray(droppedPairwise)) throw new InvalidArgumentError('survivorSelfSeeds and droppedPairwise must be arrays')
  for (const [i, s] of survivorSelfSeeds.entries()) assertBytes(s, `survivorSelfSeeds[${i}]`, 32)
  for (const [i, p] of droppedPairwise.entries()) assertBytes(p?.seed, `droppedPairwise[${i}].seed`, 32)
  addMasks(maskedSum, [
    ...survivorSelfSeeds.map(seed => ({ seed, sign: -1 as const })),
    ...droppedPairwise.map(({ seed, sign }) => ({ seed, sign: sign === 1 ? -1 as const : 1 as const }))
  ], from)
  return maskedSum
}
