/**
 * Step 3 of a round (docs/PROTOCOL.md): a member's input as it leaves the member. The update (or
 * statistics vector) is clipped, scaled and stochastically rounded into Z_2^32 with its sample
 * weight as one more element, then hidden under the self mask and one pairwise mask per other
 * member of the masking set. Only the sum over the survivor set, once their self masks and the
 * dropped members' pairwise masks are removed (aggregate.ts), reveals anything. Pure.
 */
import type { ProtocolParams } from './manifest.ts'
import { validationLength } from './validation.ts'
import { encodeCounts, encodeWeightedUpdate, maskInPlace, pairwiseMaskSeed, pairwiseSign, type RandomSource, type WeightedUpdateParams } from '../privacy/index.ts'

export interface MaskedInputSpec {
  values: ArrayLike<number>
  count: number
  /** 'weighted': a model update or statistics, quantised with its weight; 'counts': integers as they are (validation) */
  encoding: 'weighted' | 'counts'
  /** members whose inputs may be summed (for counts: what bounds each so that the sum cannot wrap) */
  members: number
  quantization: WeightedUpdateParams
  me: number
  /** the masking set's other members, by index, with the mask keys they advertised */
  others: ReadonlyMap<number, Uint8Array>
  /** peer ids by member index: they fix the sign of each pairwise mask */
  peerIds: readonly string[]
  selfMaskSeed: Uint8Array
  maskSecretKey: Uint8Array
  /** the round's context (consortium id and round) */
  context: Uint8Array
  rng: RandomSource
}

/** Length of the statistics vector of a 'stats' round: [mean, mean of squares] of the pixels for each channel, then each class's fraction of the images. */
export const statsLength = (channels: number, classes: number): number => 2 * channels + classes

/** Words of a masked input in a round of this kind: the vector and its weight (or sample count). */
export function inputLength (kind: 'update' | 'stats' | 'eval', p: Pick<ProtocolParams, 'model' | 'validation'>, modelSize: number, parts = 1): number {
  // an eval round during recipe selection carries the counts of each candidate's model the state holds (`parts`), side by side
  const size = kind === 'update' ? modelSize : kind === 'eval' ? parts * validationLength({ classes: p.model.classes, bins: p.validation.bins }) : statsLength(p.model.input.channels, p.model.classes)
  return size + 1
}

export function maskedInput (s: MaskedInputSpec): Uint32Array {
  const x = s.encoding === 'counts' ? encodeCounts(s.values, s.count, s.members) : encodeWeightedUpdate(s.values, Math.min(s.count, s.quantization.maxSampleCount), s.quantization, s.rng)
  const pairwise = [...s.others].map(([v, maskKey]) => ({
    seed: pairwiseMaskSeed(s.maskSecretKey, maskKey, s.context),
    sign: pairwiseSign(s.peerIds[s.me], s.peerIds[v])
  }))
  return maskInPlace(x, s.selfMaskSeed, pairwise) // x is this call's own fresh vector
}
