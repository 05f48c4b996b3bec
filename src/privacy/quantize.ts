/**
 * Fixed-point quantisation of real vectors into Z_2^32, so that masked sums are exact.
 *
 * An element x is clipped to [-clip, clip], scaled by `scale`, and rounded stochastically
 * (up with probability equal to the fractional part, so E[q] = x*scale), then stored as a
 * two's-complement int32 in a uint32 word. A sum of k such words, read back as an int32, is the
 * exact integer sum as long as k * ceil(clip * scale) <= 2^31 - 1; every function that forms or
 * reads a sum checks this and refuses (WrapAroundError) any (k, clip, scale) that could wrap.
 *
 * A weighted update carries its weight as one more element: a site with m samples sends
 * [w*x_1, …, w*x_d, w] with w = m / maxSampleCount in (0, 1], so the sum yields the weighted mean
 * Σ w_u x_u / Σ w_u while revealing only the total weight, never one site's count.
 */
import { InvalidArgumentError, WrapAroundError, assertFiniteNumber, assertInteger } from './errors.ts'
import { systemRandom, type RandomSource } from './random.ts'

export interface QuantizationParams {
  /** Elements are clipped to [-clip, clip]. */
  clip: number
  /** Quantisation steps per unit: resolution is 1/scale. */
  scale: number
}

/** Flower SecAgg+'s defaults in this representation: clip 8, 2^22 steps across [-8, 8]. */
export const DEFAULT_QUANTIZATION: QuantizationParams = Object.freeze({ clip: 8, scale: 2 ** 18 })

const INT32_MAX = 2 ** 31 - 1
const RANDOM_CHUNK = 16 * 1024

export function validateParams (params: QuantizationParams): void {
  if (params === null || typeof params !== 'object') throw new InvalidArgumentError('quantization params must be an object')
  assertFiniteNumber(params.clip, 'clip', { min: 0, exclusiveMin: true })
  assertFiniteNumber(params.scale, 'scale', { min: 0, exclusiveMin: true })
  const bound = params.clip * params.scale
  if (bound < 1) throw new InvalidArgumentError(`clip * scale must be at least 1, got ${bound}`)
  if (Math.ceil(bound) > INT32_MAX) throw new WrapAroundError(`clip * scale = ${bound} exceeds 2^31 - 1: one element alone would wrap`)
}

/** The largest k for which a sum of k quantised vectors cannot wrap around. */
export function maxSummands (params: QuantizationParams): number {
  validateParams(params)
  return Math.floor(INT32_MAX / Math.ceil(params.clip * params.scale))
}

/** Throws WrapAroundError unless k vectors can be summed without wrap-around. */
export function assertNoWrap (k: number, params: QuantizationParams): void {
  assertInteger(k, 'k', 1)
  const max = maxSummands(params)
  if (k > max) {
    throw new WrapAroundError(`a sum of ${k} vectors with clip ${params.clip} and scale ${params.scale} could wrap around 2^32: at most ${max} may be summed`)
  }
}

/**
 * Quantise `values` into Z_2^32 with stochastic rounding drawn from `rng`.
 * Throws on NaN or infinite elements (clipping would hide a broken update).
 */
export function quantize (values: ArrayLike<number>, params: QuantizationParams, rng: RandomSource = systemRandom): Uint32Array {
  validateParams(params)
  if (values === null || typeof values !== 'object' || typeof values.length !== 'number') throw new InvalidArgumentError('values must be an array of numbers')
  const n = values.length
  const { clip, scale } = params
  const out = new Uint32Array(n)
  const random = new Uint32Array(Math.min(RANDOM_CHUNK, n))
  const randomBytes = new Uint8Array(random.buffer)
  for (let start = 0; start < n; start += RANDOM_CHUNK) {
    const end = Math.min(n, start + RANDOM_CHUNK)
    rng.fill(end - start === random.length ? randomBytes : randomBytes.subarray(0, (end - start) * 4))
    for (let i = start; i < end; i++) {
      const x = values[i]
      if (!Number.isFinite(x)) throw new InvalidArgumentError(`values[${i}] is not a finite number`)
      const v = (x > clip ? clip : x < -clip ? -clip : x) * scale
      const f = Math.floor(v)
      // round up with probability v - f; u is uniform on [0, 1) in steps of 2^-32
      const up = random[i - start] < (v - f) * 4294967296 ? 1 : 0
      out[i] = f + up // the Uint32Array store reduces a negative value modulo 2^32
    }
  }
  return out
}

/** Read a sum of k quantised vectors back as reals (each element = int32 / scale). */
export function dequantizeSum (sum: Uint32Array, k: number, params: QuantizationParams): Float64Array {
  if (!(sum instanceof Uint32Array)) throw new InvalidArgumentError('sum must be a Uint32Array')
  assertNoWrap(k, params)
  const out = new Float64Array(sum.length)
  const inv = 1 / params.scale
  for (let i = 0; i < sum.length; i++) out[i] = (sum[i] | 0) * inv
  return out
}

export interface WeightedUpdateParams extends QuantizationParams {
  /** The largest sample count a site may claim in one round (sets the weight w = m / max). */
  maxSampleCount: number
}

/**
 * Counts (non-negative integers) as they are, with the sample count as one more element: their
 * sum over at most `maxSummands` members is exact in Z_2^32 (each count at most 2^32 / maxSummands).
 */
export function encodeCounts (counts: ArrayLike<number>, sampleCount: number, maxSummands: number): Uint32Array {
  assertInteger(maxSummands, 'maxSummands', 1, 65536)
  const limit = Math.floor(0xffffffff / maxSummands)
  const out = new Uint32Array(counts.length + 1)
  for (let i = 0; i <= counts.length; i++) {
    const v = i === counts.length ? sampleCount : counts[i]
    if (!Number.isInteger(v) || v < 0 || v > limit) throw new InvalidArgumentError(`count ${i} is ${v}: counts must be integers in [0, ${limit}] so that ${maxSummands} of them sum without wrap-around`)
    out[i] = v
  }
  return out
}

/** [w*x_1, …, w*x_d, w] quantised, with w = sampleCount / maxSampleCount. */
export function encodeWeightedUpdate (update: ArrayLike<number>, sampleCount: number, params: WeightedUpdateParams, rng: RandomSource = systemRandom): Uint32Array {
  assertInteger(params.maxSampleCount, 'maxSampleCount', 1)
  assertInteger(sampleCount, 'sampleCount', 1, params.maxSampleCount)
  validateParams(params)
  if (params.clip < 1) throw new InvalidArgumentError('clip must be at least 1 for weighted updates, so that the weight (at most 1) is not clipped')
  const w = sampleCount / params.maxSampleCount
  const scaled = new Float64Array(update.length + 1)
  for (let i = 0; i < update.length; i++) {
    const x = update[i]
    if (!Number.isFinite(x)) throw new InvalidArgumentError(`update[${i}] is not a finite number`)
    scaled[i] = x * w
  }
  scaled[update.length] = w
  return quantize(scaled, params, rng)
}

export interface WeightedAverage {
  /** Σ w_u x_u / Σ w_u */
  mean: Float64Array
  /** Σ w_u, in units of maxSampleCount: totalWeight * maxSampleCount ≈ total samples */
  totalWeight: number
}

/** The weighted mean from the sum of k weighted updates. */
export function decodeWeightedAverage (sum: Uint32Array, k: number, params: WeightedUpdateParams): WeightedAverage {
  if (!(sum instanceof Uint32Array) || sum.length < 2) throw new InvalidArgumentError('sum must be a Uint32Array of at least 2 elements')
  const reals = dequantizeSum(sum, k, params)
  const totalWeight = reals[reals.length - 1]
  if (!(totalWeight > 0)) throw new InvalidArgumentError('the summed weight is not positive: the sum is not a sum of weighted updates')
  const mean = new Float64Array(reals.length - 1)
  for (let i = 0; i < mean.length; i++) mean[i] = reals[i] / totalWeight
  return { mean, totalWeight }
}
