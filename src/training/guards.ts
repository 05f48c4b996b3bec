/**
 * The guards of a local training: a training that stops producing finite numbers is ended (its
 * update would poison the sum every member certifies); the global gradient norm is bounded; the
 * learning rate warms up over the first steps; kernels decay (decoupled weight decay).
 */
import * as tf from '@tensorflow/tfjs-core'
import type * as tfl from '@tensorflow/tfjs-layers'

/**
 * Training produced a value that is not a finite number (the loss, so the gradients, or the
 * weights): the round's training ends and its update must not be sent, since it would poison
 * the sum every member certifies.
 */
export class NonFiniteTrainingError extends Error {
  constructor (message: string) { super(message); this.name = 'NonFiniteTrainingError' }
}

/** Whether every value is a finite number. */
export function allFinite (values: ArrayLike<number>): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return false
  return true
}

/** The gradients scaled so that their global L2 norm is at most `maxNorm` (unchanged without one). */
export function clipByGlobalNorm (grads: tf.NamedTensorMap, maxNorm: number | undefined): tf.NamedTensorMap {
  if (maxNorm === undefined || !(maxNorm > 0)) return grads
  return tf.tidy(() => {
    const names = Object.keys(grads)
    const norm = tf.sqrt(tf.addN(names.map(k => tf.sum(tf.square(grads[k])))))
    const factor = tf.minimum(1, tf.div(maxNorm, tf.add(norm, 1e-6)))
    const out: tf.NamedTensorMap = {}
    for (const k of names) out[k] = tf.mul(grads[k], factor)
    return out
  })
}

/** The learning rate of a step: growing linearly over the first `warmupSteps` steps a trainer takes (from 1/warmupSteps of it), then the base rate. */
export function warmupRate (base: number, warmupSteps: number, taken: number): number {
  return warmupSteps > 0 ? base * Math.min(1, (taken + 1) / warmupSteps) : base
}

/** Set an optimiser's rate: Adam reads its rate at every step; SGD keeps it as a tensor that only setLearningRate renews. */
export function setOptimizerRate (optimizer: tf.Optimizer, rate: number): void {
  const opt = optimizer as unknown as { learningRate: number, setLearningRate?: (r: number) => void }
  if (opt.learningRate === rate) return
  if (opt.setLearningRate !== undefined) opt.setLearningRate(rate); else opt.learningRate = rate
}

/** Decoupled weight decay after a step (AdamW, Loshchilov and Hutter 2019): every kernel (rank ≥ 2) w ← w·(1 − rate·decay); biases and normalisation scales are left alone. */
export function decayKernels (model: tfl.LayersModel, rate: number, decay: number): void {
  if (decay <= 0) return
  tf.tidy(() => {
    for (const lv of model.trainableWeights) {
      const v = lv.read() as tf.Variable
      if (v.rank >= 2) v.assign(tf.mul(v, 1 - rate * decay))
    }
  })
}
