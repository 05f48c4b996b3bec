/**
 * The loss and how it treats the classes: cross-entropy per example, class weights (balanced
 * over this data's or the consortium's class frequencies) and the prior correction (log of this
 * data's class mix over the pooled one, added to the log-probabilities; see TrainOptions).
 */
import * as tf from '@tensorflow/tfjs-core'
import { classCounts, type ImageDataset } from './data/dataset.ts'

/** the smallest probability the loss takes the log of */
const EPS = 1e-7

function checkFrequencies (f: ArrayLike<number>, k: number): void {
  if (f.length !== k || !Array.from(f).every(x => x >= 0 && Number.isFinite(x))) throw new Error(`class frequencies must be ${k} non-negative numbers`)
}

/**
 * each example's cross-entropy loss, [B]; with `shift`, over log p + shift renormalised:
 * −(log p_y + s_y) + log Σ_k p_k e^{s_k}
 */
export function exampleLosses (probs: tf.Tensor2D, labels: Int32Array, classes: number, shift: Float32Array | null = null): tf.Tensor1D {
  return tf.tidy(() => {
    const logp = tf.log(tf.clipByValue(probs, EPS, 1))
    const oneHot = tf.oneHot(tf.tensor1d(labels, 'int32'), classes)
    if (shift === null) return tf.neg(tf.sum(tf.mul(oneHot, logp), 1)) as tf.Tensor1D
    const adjusted = tf.add(logp, tf.tensor1d(shift))
    return tf.sub(tf.logSumExp(adjusted, 1), tf.sum(tf.mul(oneHot, adjusted), 1)) as tf.Tensor1D
  })
}

/** the smallest local/pooled ratio the correction uses: a class absent here is all but ignored, not −∞ */
const MIN_PRIOR_RATIO = 1e-4

/** log(π_local / π_pooled) per class, each ratio at least MIN_PRIOR_RATIO */
export function priorShift (data: ImageDataset, pooled: ArrayLike<number>): Float32Array {
  const k = data.classes.length
  checkFrequencies(pooled, k)
  const counts = classCounts(data)
  const n = data.labels.length
  return Float32Array.from(counts, (c, i) => Math.log(Math.max(MIN_PRIOR_RATIO, (c / n) / Math.max(pooled[i], 1e-6))))
}

/** the largest weight balancing over given frequencies gives a class: 10× a balanced class's */
export const MAX_CLASS_WEIGHT = 10

/**
 * 'balanced': weight_c = 1 / (classes · f_c) for class frequencies f (N / (classes · count_c)
 * with this data's own, as scikit-learn's class_weight='balanced'); `frequencies` gives others
 * (the consortium's), each weight then at most MAX_CLASS_WEIGHT: a class the statistics round
 * barely saw (its holders absent from it, or a member that lied in it) is neither dropped at a
 * hospital that has it nor weighed without bound.
 */
export function classWeights (data: ImageDataset, mode: 'none' | 'balanced', frequencies?: ArrayLike<number>): Float32Array {
  const k = data.classes.length
  if (mode === 'none') return new Float32Array(k).fill(1)
  if (frequencies !== undefined) {
    checkFrequencies(frequencies, k)
    return Float32Array.from(frequencies, f => 1 / (k * Math.max(f, 1 / (k * MAX_CLASS_WEIGHT))))
  }
  const counts = classCounts(data)
  return Float32Array.from(counts, c => c === 0 ? 0 : data.labels.length / (k * c))
}
