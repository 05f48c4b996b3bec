/**
 * Per-site normalisation statistics, computed locally and combined by a secure-sum round (as
 * PriMIA does): [mean, mean of squares] of the pixels, weighted by the number of images.
 */
import type { ImageDataset } from './dataset.ts'

export interface PixelStats { mean: number, meanSquare: number, count: number }

export function pixelStats (d: ImageDataset): PixelStats {
  let s = 0
  let s2 = 0
  for (const v of d.images) { s += v; s2 += v * v }
  const n = d.images.length
  return { mean: n === 0 ? 0 : s / n, meanSquare: n === 0 ? 0 : s2 / n, count: d.labels.length }
}

/** mean and standard deviation from combined [mean, mean of squares]. */
export function normalisation (combined: ArrayLike<number>): { mean: number, std: number } {
  const mean = combined[0]
  const variance = Math.max(0, combined[1] - mean * mean)
  return { mean, std: Math.sqrt(variance) || 1 }
}
