/**
 * Split conformal prediction (Vovk et al. 2005; the LAC score of Sadinle et al. 2019) from the
 * pooled validation counts an eval round already sums: the histograms of each scored class's
 * probability over its own images give the distribution of p_y, the probability the model gives
 * the true class. With n validation images and coverage 1 − α, the threshold τ is the
 * (n + 1 − ⌈(n + 1)(1 − α)⌉)-th smallest p_y; the prediction set of an image is every class c
 * with p_c ≥ τ. If validation and new images are exchangeable, the set holds the true class with
 * probability at least 1 − α. Every p_y is taken at the lower edge of its bin, which can only
 * lower τ and widen the sets: the guarantee survives the binning.
 */
import type { ValidationLayout } from './validation.ts'

/** the coverages every eval certificate states a threshold for */
export const CONFORMAL_COVERAGES = [0.9, 0.95] as const

/** Histogram (by bin) of the true class's probability over every validation image. */
export function trueClassHistogram (counts: ArrayLike<number>, l: ValidationLayout): Float64Array {
  const k = l.classes
  const h = new Float64Array(l.bins)
  if (k === 2) {
    // binary: only class 1 is scored; an image of class 0 has p_0 = 1 − p_1, and p_1 in bin b
    // puts p_0 above 1 − (b + 1)/B: bin B − 1 − b at its lower edge
    const pos = k * k
    const neg = pos + l.bins
    for (let b = 0; b < l.bins; b++) { h[b] += counts[pos + b]; h[l.bins - 1 - b] += counts[neg + b] }
    return h
  }
  for (let c = 0; c < k; c++) {
    const pos = k * k + 2 * l.bins * c
    for (let b = 0; b < l.bins; b++) h[b] += counts[pos + b]
  }
  return h
}

/** τ for this coverage: include class c in an image's set when p_c ≥ τ (0: every class, too few images to promise more). */
export function conformalThreshold (counts: ArrayLike<number>, l: ValidationLayout, coverage: number): number {
  const h = trueClassHistogram(counts, l)
  const n = h.reduce((a, b) => a + b, 0)
  const k = Math.ceil((n + 1) * coverage)
  if (n === 0 || k > n) return 0
  // the (n + 1 − k)-th smallest p_y, at its bin's lower edge
  const rank = n + 1 - k
  let seen = 0
  for (let b = 0; b < l.bins; b++) {
    seen += h[b]
    if (seen >= rank) return b / l.bins
  }
  return 0
}

/** The classes in an image's prediction set: those whose probability reaches τ (never empty: the most probable class is always in it). */
export function predictionSet (probs: ArrayLike<number>, threshold: number): number[] {
  const out: number[] = []
  let best = 0
  for (let c = 0; c < probs.length; c++) {
    if (probs[c] >= threshold) out.push(c)
    if (probs[c] > probs[best]) best = c
  }
  return out.length === 0 ? [best] : out
}

/** The share of images whose set holds their true class, and the mean set size. */
export function empiricalCoverage (probs: ArrayLike<number>, labels: ArrayLike<number>, classes: number, threshold: number): { coverage: number, meanSetSize: number } {
  let covered = 0
  let size = 0
  for (let i = 0; i < labels.length; i++) {
    const set = predictionSet(Array.prototype.slice.call(probs, i * classes, (i + 1) * classes) as number[], threshold)
    if (set.includes(labels[i])) covered++
    size += set.length
  }
  return { coverage: labels.length === 0 ? NaN : covered / labels.length, meanSetSize: labels.length === 0 ? NaN : size / labels.length }
}
