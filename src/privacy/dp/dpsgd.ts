/**
 * The DP-SGD step's privacy-critical arithmetic (Abadi et al., CCS 2016), on flat gradients:
 * Poisson sampling of the batch, per-example L2 clipping, and Gaussian noise from a
 * cryptographic generator. Framework-free, so that the training engine can hand per-example
 * gradients here (or do the same arithmetic on tensors, tested against these functions).
 *
 * The noisy gradient is ( Σ_i clip(g_i, C) + N(0, σ²C² I) ) / E[B], dividing by the expected
 * batch size q·N rather than the drawn one, so the size of the Poisson batch reveals nothing;
 * this is what the accountant in rdp.ts assumes.
 */
import { InvalidArgumentError, assertFiniteNumber, assertInteger } from '../errors.ts'
import { systemRandom, uniformDoubles, type RandomSource } from '../random.ts'

/** Indices in [0, n) each included independently with probability q. */
export function poissonSample (n: number, q: number, rng: RandomSource = systemRandom): number[] {
  assertInteger(n, 'n', 0)
  assertFiniteNumber(q, 'q', { min: 0, max: 1 })
  const u = uniformDoubles(rng, n)
  const out: number[] = []
  for (let i = 0; i < n; i++) if (u[i] < q) out.push(i)
  return out
}

/**
 * n samples of N(0, stddev²) by the Box–Muller transform on 53-bit uniforms from `rng`.
 * As in Opacus's secure mode (after Holohan and Braghin, 2021), each sample is the sum of four
 * independent draws divided by two, which blunts attacks on the floating-point representation of
 * a single Gaussian draw.
 */
export function gaussianNoise (n: number, stddev: number, rng: RandomSource = systemRandom): Float64Array {
  assertInteger(n, 'n', 0)
  assertFiniteNumber(stddev, 'stddev', { min: 0 })
  const out = new Float64Array(n)
  if (stddev === 0 || n === 0) return out
  const pairs = Math.ceil(n / 2)
  for (let draw = 0; draw < 4; draw++) {
    const u = uniformDoubles(rng, 2 * pairs)
    for (let p = 0; p < pairs; p++) {
      const r = Math.sqrt(-2 * Math.log(1 - u[2 * p])) // 1 - u in (0, 1]: never log(0)
      const theta = 2 * Math.PI * u[2 * p + 1]
      const i = 2 * p
      out[i] += r * Math.cos(theta)
      if (i + 1 < n) out[i + 1] += r * Math.sin(theta)
    }
  }
  const k = stddev / 2
  for (let i = 0; i < n; i++) out[i] *= k
  return out
}

export interface ClippedSum {
  /** Σ_i clip(g_i, C) */
  sum: Float64Array
  /** how many examples had norm above C */
  clipped: number
}

/**
 * Clip each row of a [batch, dim] row-major matrix of per-example gradients to L2 norm at most
 * `clipNorm` and sum the rows. An empty matrix (an empty Poisson batch) sums to zeros.
 */
export function clipAndSum (perExample: Float32Array | Float64Array, dim: number, clipNorm: number): ClippedSum {
  if (!(perExample instanceof Float32Array || perExample instanceof Float64Array)) throw new InvalidArgumentError('perExample must be a Float32Array or Float64Array')
  assertInteger(dim, 'dim', 1)
  assertFiniteNumber(clipNorm, 'clipNorm', { min: 0, exclusiveMin: true })
  if (perExample.length % dim !== 0) throw new InvalidArgumentError(`perExample length ${perExample.length} is not a multiple of dim ${dim}`)
  const batch = perExample.length / dim
  const sum = new Float64Array(dim)
  let clipped = 0
  for (let b = 0; b < batch; b++) {
    const off = b * dim
    let sq = 0
    for (let j = 0; j < dim; j++) {
      const g = perExample[off + j]
      if (!Number.isFinite(g)) throw new InvalidArgumentError(`gradient of example ${b} has a non-finite entry`)
      sq += g * g
    }
    const norm = Math.sqrt(sq)
    const factor = norm > clipNorm ? clipNorm / norm : 1
    if (factor < 1) clipped++
    for (let j = 0; j < dim; j++) sum[j] += perExample[off + j] * factor
  }
  return { sum, clipped }
}

export interface DpSgdParams {
  clipNorm: number
  noiseMultiplier: number
  /** q·N: the expected Poisson batch size, the divisor of the noisy sum */
  expectedBatchSize: number
}

/** The privatised mean gradient of one DP-SGD step; `perExample` is [batch, dim], batch may be 0. */
export function privatizeGradients (perExample: Float32Array | Float64Array, dim: number, params: DpSgdParams, rng: RandomSource = systemRandom): { gradient: Float64Array, clipped: number } {
  assertFiniteNumber(params.noiseMultiplier, 'noiseMultiplier', { min: 0 })
  assertFiniteNumber(params.expectedBatchSize, 'expectedBatchSize', { min: 0, exclusiveMin: true })
  const { sum, clipped } = clipAndSum(perExample, dim, params.clipNorm)
  const noise = gaussianNoise(dim, params.noiseMultiplier * params.clipNorm, rng)
  const gradient = new Float64Array(dim)
  for (let j = 0; j < dim; j++) gradient[j] = (sum[j] + noise[j]) / params.expectedBatchSize
  return { gradient, clipped }
}
