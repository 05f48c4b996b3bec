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
import { systemRandom, uniformDoubles, uniformDoublesInto, type RandomSource } from '../random.ts'

/** Indices in [0, n) each included independently with probability q. */
export function poissonSample (n: number, q: number, rng: RandomSource = systemRandom): number[] {
  assertInteger(n, 'n', 0)
  assertFiniteNumber(q, 'q', { min: 0, max: 1 })
  const u = uniformDoubles(rng, n)
  const out: number[] = []
  for (let i = 0; i < n; i++) if (u[i] < q) out.push(i)
  return out
}

/** uniforms drawn at a time by gaussianNoise (an even number: they are taken in pairs) */
const UNIFORM_BLOCK = 8192

/**
 * n samples of N(0, stddev²) by Marsaglia's polar method on 53-bit uniforms from `rng`: a point
 * (u, v) uniform in the unit disc (points outside it, or at its centre, are drawn again) gives two
 * independent standard normals u·f and v·f, f = √(−2 ln s / s), s = u² + v². The same exact
 * transform as Box–Muller's without its cosine and sine, which were two thirds of its cost (a
 * DP-SGD step draws one sample per model coordinate).
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
  // uniforms drawn a small block at a time into the same buffers (in cache, no fresh pages)
  const u = new Float64Array(Math.min(UNIFORM_BLOCK, 2 * Math.ceil(4 * 1.3 * pairs + 64)))
  const words = new Uint32Array(2 * u.length)
  let next = u.length
  for (let draw = 0; draw < 4; draw++) {
    for (let p = 0; p < pairs; p++) {
      let x: number, y: number, s: number
      let tries = 0
      do {
        // a point is kept with probability π/4: a thousand misses in a row mean a broken source
        if (++tries > 1000) throw new InvalidArgumentError('gaussianNoise: the random source gave no usable point in 1000 draws (it is not random)')
        if (next === u.length) {
          uniformDoublesInto(rng, u, words)
          next = 0
        }
        x = 2 * u[next] - 1
        y = 2 * u[next + 1] - 1
        next += 2
        s = x * x + y * y
      } while (s >= 1 || s === 0)
      const f = Math.sqrt(-2 * Math.log(s) / s)
      const i = 2 * p
      out[i] += x * f
      if (i + 1 < n) out[i + 1] += y * f
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
