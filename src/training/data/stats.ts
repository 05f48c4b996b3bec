/**
 * Per-site normalisation statistics, computed locally and combined by a secure-sum round (as
 * PriMIA does): for each channel, [mean, mean of squares] of the pixels in [0, 1], weighted by
 * the number of images. The statistics vector is [mean₀, meanSquare₀, mean₁, meanSquare₁, …].
 */
import type { ImageDataset } from './dataset.ts'

export interface PixelStats { mean: number[], meanSquare: number[], count: number }
export interface Normalisation { mean: number[], std: number[] }

export function pixelStats (d: ImageDataset): PixelStats {
  const c = d.channels
  const s = new Float64Array(c)
  const s2 = new Float64Array(c)
  for (let i = 0; i < d.pixels.length; i++) { const v = d.pixels[i] / 255; s[i % c] += v; s2[i % c] += v * v }
  const n = d.pixels.length / c
  return { mean: Array.from(s, x => n === 0 ? 0 : x / n), meanSquare: Array.from(s2, x => n === 0 ? 0 : x / n), count: d.labels.length }
}

/** The statistics as the vector a statistics round sums. */
export function statsVector (s: PixelStats): number[] {
  return s.mean.flatMap((m, k) => [m, s.meanSquare[k]])
}

/** Per-channel mean and standard deviation from a combined statistics vector. */
export function normalisation (combined: ArrayLike<number>): Normalisation {
  const mean: number[] = []
  const std: number[] = []
  for (let k = 0; 2 * k + 1 < combined.length; k++) {
    const m = combined[2 * k]
    mean.push(m)
    std.push(Math.sqrt(Math.max(0, combined[2 * k + 1] - m * m)) || 1)
  }
  return { mean, std }
}

/** (x - mean_c) / std_c for channels-last floats, in place. */
export function normaliseInPlace (values: Float32Array, norm: Normalisation | undefined): void {
  if (norm === undefined) return
  const c = norm.mean.length
  const inv = norm.std.map(s => 1 / s)
  for (let i = 0; i < values.length; i++) { const k = i % c; values[i] = (values[i] - norm.mean[k]) * inv[k] }
}
