/**
 * Per-site statistics, computed locally and combined by a secure-sum round (as PriMIA does for
 * normalisation), weighted by the number of images: for each channel, [mean, mean of squares] of
 * the pixels in [0, 1], then each class's fraction of the site's images. The statistics vector is
 * [mean₀, meanSquare₀, mean₁, meanSquare₁, …, fraction₀, fraction₁, …]; combined, it gives the
 * consortium's normalisation and its pooled class frequencies (which class balancing uses, so
 * that every hospital weighs the classes as training on the pooled data would).
 */
import { classCounts, type ImageDataset } from './dataset.ts'

export interface PixelStats { mean: number[], meanSquare: number[], count: number, classFractions: number[] }
export interface Normalisation { mean: number[], std: number[] }

export function pixelStats (d: ImageDataset): PixelStats {
  const c = d.channels
  const s = new Float64Array(c)
  const s2 = new Float64Array(c)
  for (let i = 0; i < d.pixels.length; i++) { const v = d.pixels[i] / 255; s[i % c] += v; s2[i % c] += v * v }
  const n = d.pixels.length / c
  const images = d.labels.length
  return { mean: Array.from(s, x => n === 0 ? 0 : x / n), meanSquare: Array.from(s2, x => n === 0 ? 0 : x / n), count: images, classFractions: classCounts(d).map(c => images === 0 ? 0 : c / images) }
}

/** The statistics as the vector a statistics round sums. */
export function statsVector (s: PixelStats): number[] {
  return [...s.mean.flatMap((m, k) => [m, s.meanSquare[k]]), ...s.classFractions]
}

/** Per-channel mean and standard deviation from a combined statistics vector of images with this many channels. */
export function normalisation (combined: ArrayLike<number>, channels: number): Normalisation {
  if (combined.length < 2 * channels) throw new Error(`a statistics vector for ${channels} channel(s) holds at least ${2 * channels} values, not ${combined.length}`)
  const mean: number[] = []
  const std: number[] = []
  for (let k = 0; k < channels; k++) {
    const m = combined[2 * k]
    mean.push(m)
    std.push(Math.sqrt(Math.max(0, combined[2 * k + 1] - m * m)) || 1)
  }
  return { mean, std }
}

/**
 * The consortium's class frequencies from a combined statistics vector (the values after the
 * channels' pairs), rescaled to sum to 1 (fixed-point rounding); null if it holds none.
 */
export function classFrequencies (combined: ArrayLike<number>, channels: number): number[] | null {
  const f = Array.from(combined).slice(2 * channels).map(v => Math.max(0, v))
  const total = f.reduce((a, b) => a + b, 0)
  return f.length === 0 || !(total > 0) ? null : f.map(v => v / total)
}

/** (x - mean_c) / std_c for channels-last floats, in place. */
export function normaliseInPlace (values: Float32Array, norm: Normalisation | undefined): void {
  if (norm === undefined) return
  const c = norm.mean.length
  const inv = norm.std.map(s => 1 / s)
  for (let i = 0; i < values.length; i++) { const k = i % c; values[i] = (values[i] - norm.mean[k]) * inv[k] }
}
