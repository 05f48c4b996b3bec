/**
 * Local training at one hospital: epochs or steps per round, Adam or SGD, X-ray augmentation,
 * class weighting for imbalanced data, and DP-SGD (Poisson sampling, per-example clipping,
 * Gaussian noise from a cryptographic generator, every step charged to the hospital's privacy
 * budget before it is taken). Tensors are created and freed inside each step: the number of live
 * tensors stays flat across rounds (tested).
 */
import * as tf from '@tensorflow/tfjs-core'
import type * as tfl from '@tensorflow/tfjs-layers'
import {
  BudgetExceededError, gaussianNoise, poissonSample, seededRandom, systemRandom, uniformDoubles, deriveKey,
  type RandomSource
} from '../privacy/index.ts'
import { Augmenter, augmentFor } from './augment.ts'
import { floatsOf, type ImageDataset } from './data/dataset.ts'
import { classWeights, exampleLosses, priorShift } from './class-balance.ts'
import { normaliseInPlace, type Normalisation } from './data/stats.ts'
import { clinicalMetrics, type ClinicalMetrics } from './metrics.ts'
import { hasBatchNorm } from './models.ts'
import { clippedGradientSum, unbatchable } from './per-example.ts'
import { unfuseConvolutions } from './unfused.ts'
import { NonFiniteTrainingError, allFinite, clipByGlobalNorm, decayKernels, setOptimizerRate, warmupRate } from './guards.ts'
import { localSteps, type DataParallel, type TrainOptions, type TrainResult } from './train-options.ts'

export type { DataParallel, DpOptions, TrainOptions, TrainResult } from './train-options.ts'
export { NonFiniteTrainingError, allFinite, clipByGlobalNorm } from './guards.ts'

export class LocalTrainer {
  readonly model: tfl.LayersModel
  #optimizer: tf.Optimizer | null = null
  #optimizerKey = ''
  #round = 0
  /** steps taken by this trainer over every round (for the warm-up) */
  #stepsTaken = 0
  /** the steps of this trainer's first round, which bound the warm-up */
  #firstRoundSteps: number | undefined
  /** log(π_local / π_pooled) per class while a round with prior correction trains, else null */
  #shift: Float32Array | null = null

  constructor (model: tfl.LayersModel) { this.model = model }

  /**
   * The optimiser, kept over rounds: its moments are this site's. Keyed by its kind only: a rate
   * that changes over the rounds (a schedule) is set at every step (#warmUp), so it must not throw
   * the moments away (it did, and a fresh Adam's first steps, about ±rate on every weight, cost
   * the chest X-ray federation 10 AUC points by round 7: SIMULATION.md).
   */
  #optimizerFor (o: TrainOptions): tf.Optimizer {
    const key = o.optimizer ?? 'adam'
    if (this.#optimizer === null || key !== this.#optimizerKey) {
      this.#optimizer?.dispose()
      this.#optimizer = (o.optimizer ?? 'adam') === 'adam' ? tf.train.adam(o.learningRate) : tf.train.sgd(o.learningRate)
      this.#optimizerKey = key
    }
    return this.#optimizer
  }

  /** Train on `data`; returns what was done. */
  train (data: ImageDataset, o: TrainOptions): TrainResult {
    const n = data.labels.length
    if (n === 0) throw new Error('cannot train on an empty dataset')
    if ((o.epochs === undefined) === (o.steps === undefined)) throw new Error('give exactly one of epochs and steps')
    if (!(o.batchSize >= 1)) throw new Error('batchSize must be at least 1')
    if (o.dp !== undefined && hasBatchNorm(this.model)) throw new Error('DP-SGD needs per-example gradients, which BatchNorm breaks: use a model without it (cnn-small, cnn-gn or a -gn ResNet)')
    const round = this.#round++
    const rng = seededRandom(deriveKey(o.seed, 'seeded-random', Uint8Array.of(round & 0xff, (round >> 8) & 0xff)))
    const augmenter = o.augment === true ? new Augmenter(deriveKey(o.seed, 'seeded-random', Uint8Array.of(0xa0, round & 0xff)), augmentFor(data.channels, o.modality)) : null
    const weights = classWeights(data, o.classWeighting ?? 'none', o.classFrequencies)
    this.#shift = o.priorCorrection === 'pooled' && o.classFrequencies !== undefined ? priorShift(data, o.classFrequencies) : null
    const steps = localSteps(o, n)
    // the warm-up ends within the first round: a small hospital (a few steps a round) would
    // otherwise train at a fraction of the rate for several rounds, and learn nothing in them
    this.#firstRoundSteps ??= steps
    const recipe = o.warmupSteps !== undefined && o.warmupSteps > this.#firstRoundSteps ? { ...o, warmupSteps: this.#firstRoundSteps } : o
    const optimizer = this.#optimizerFor(recipe)
    const started = performance.now()
    const restore = unfuseConvolutions(this.model)
    try {
      return this.#trainSteps(data, recipe, { rng, augmenter, weights, steps, optimizer, started })
    } finally {
      restore()
    }
  }

  #trainSteps (data: ImageDataset, o: TrainOptions, s: { rng: RandomSource, augmenter: Augmenter | null, weights: Float32Array, steps: number, optimizer: tf.Optimizer, started: number }): TrainResult {
    const { rng, augmenter, weights, steps, optimizer, started } = s
    const n = data.labels.length
    let examples = 0
    let lossSum = 0
    let stoppedEarly: string | null = null
    let loss = 0
    let order: number[] = []
    let cursor = 0
    let taken = 0
    for (let step = 0; step < steps; step++) {
      this.#warmUp(optimizer, o)
      let batch: number[]
      if (o.dp !== undefined) {
        batch = poissonSample(n, Math.min(1, o.batchSize / n), rng)
      } else {
        if (cursor + o.batchSize > order.length) { order = shuffled(n, rng); cursor = 0 }
        batch = order.slice(cursor, cursor + o.batchSize)
        cursor += o.batchSize
      }
      if (o.dp !== undefined) {
        const q = Math.min(1, o.batchSize / n)
        try {
          o.dp.budget.spend({ q, noiseMultiplier: o.dp.noiseMultiplier, steps: 1 })
        } catch (e) {
          if (!(e instanceof BudgetExceededError)) throw e
          stoppedEarly = e.message
          break
        }
        loss = this.#dpStep(data, batch, weights, o, augmenter, optimizer, q * n)
      } else if (o.parallel !== undefined && o.parallel.count > 1) {
        loss = this.#parallelStep(data, batch, weights, o, augmenter, optimizer)
      } else {
        loss = this.#step(data, batch, weights, o, augmenter, optimizer)
      }
      if (!Number.isFinite(loss)) this.#diverged(`the loss became ${loss} at step ${step + 1} of ${steps}`, o)
      this.#decayWeights(o)
      lossSum += loss * batch.length
      examples += batch.length
      taken++
      this.#stepsTaken++
    }
    // every weight the update carries, BatchNorm's moving statistics included (not trainable, yet summed)
    if (!this.model.getWeights().every(w => allFinite(w.dataSync() as Float32Array))) this.#diverged(`the weights hold a value that is not finite after ${taken} steps`, o)
    const seconds = (performance.now() - started) / 1000
    return {
      examples,
      steps: taken,
      meanLoss: examples === 0 ? NaN : lossSum / examples,
      seconds,
      imagesPerSecond: examples / Math.max(seconds, 1e-9),
      epsilon: o.dp?.budget.spent.epsilon ?? null,
      stoppedEarly
    }
  }

  /** `shard`: these are images from..from+n-1 of a batch of `total` split among workers */
  #batchTensors (data: ImageDataset, batch: number[], o: TrainOptions, augmenter: Augmenter | null, shard?: { from: number, total: number }): { x: tf.Tensor4D, labels: Int32Array } {
    const buf = floatsOf(data, batch)
    const labels = Int32Array.from(batch, j => data.labels[j])
    augmenter?.apply(buf, batch.length, data.height, data.width, data.channels, shard)
    normaliseInPlace(buf, o.normalisation)
    return { x: tf.tensor4d(buf, [batch.length, data.height, data.width, data.channels]), labels }
  }

  /** the weighted loss summed over these examples, divided by `denominator` (the whole batch's size) */
  #lossOf (x: tf.Tensor4D, labels: Int32Array, weights: Float32Array, classes: number, denominator = labels.length): tf.Scalar {
    const probs = this.model.apply(x, { training: true }) as tf.Tensor2D
    const w = tf.tensor1d(Float32Array.from(labels, l => weights[l]))
    return tf.div(tf.sum(tf.mul(exampleLosses(probs, labels, classes, this.#shift), w)), denominator) as tf.Scalar
  }

  /** this worker's share of a batch: a contiguous slice, by its index */
  static shareOf (batch: number[], p: DataParallel): { from: number, mine: number[] } {
    const from = Math.floor(p.index * batch.length / p.count)
    return { from, mine: batch.slice(from, Math.floor((p.index + 1) * batch.length / p.count)) }
  }

  /** flatten gradients (in the order of `vars`) with one extra value at the end */
  static #flatten (vars: tf.Variable[], grads: tf.Tensor[], extra: number): Float32Array {
    const flat = new Float32Array(vars.reduce((a, v) => a + v.size, 0) + 1)
    let off = 0
    grads.forEach((g, i) => { flat.set(g.dataSync() as Float32Array, off); off += vars[i].size })
    flat[off] = extra
    return flat
  }

  static #unflatten (vars: tf.Variable[], flat: Float32Array, scale: number): tf.NamedTensorMap {
    const named: tf.NamedTensorMap = {}
    let off = 0
    for (const v of vars) { named[v.name] = tf.mul(tf.tensor(flat.subarray(off, off + v.size), v.shape), scale); off += v.size }
    return named
  }

  /** One step of this worker's share of the batch: the gradient of its part of the mean loss, summed over the workers, applied. */
  #parallelStep (data: ImageDataset, batch: number[], weights: Float32Array, o: TrainOptions, augmenter: Augmenter | null, optimizer: tf.Optimizer): number {
    const p = o.parallel!
    const vars = this.model.trainableWeights.map(v => v.read() as tf.Variable)
    const { from, mine } = LocalTrainer.shareOf(batch, p)
    // the flat vector is assigned, not returned from tidy: tidy would walk its every element
    // looking for tensors (58 ms a step for cnn-small's 257k values)
    let flat: Float32Array = new Float32Array(0)
    tf.tidy(() => {
      // an empty share still draws its augmentation, so every worker's generator stays in step
      const { x, labels } = this.#batchTensors(data, mine, o, augmenter, { from, total: batch.length })
      if (mine.length === 0) { flat = LocalTrainer.#flatten(vars, vars.map(v => tf.zerosLike(v)), 0); return }
      const { value, grads } = tf.variableGrads(() => this.#lossOf(x, labels, weights, data.classes.length, batch.length), vars)
      flat = LocalTrainer.#flatten(vars, vars.map(v => grads[v.name]), value.dataSync()[0])
    })
    const total = p.allReduce(flat)
    const loss = total[total.length - 1]
    // every worker holds the same total, so every worker clips and stops alike
    if (Number.isFinite(loss)) tf.tidy(() => { optimizer.applyGradients(clipByGlobalNorm(LocalTrainer.#unflatten(vars, total, 1), o.clipGradientNorm)) })
    return loss
  }

  #step (data: ImageDataset, batch: number[], weights: Float32Array, o: TrainOptions, augmenter: Augmenter | null, optimizer: tf.Optimizer): number {
    return tf.tidy(() => {
      const { x, labels } = this.#batchTensors(data, batch, o, augmenter)
      const vars = this.model.trainableWeights.map(v => v.read() as tf.Variable)
      const { value, grads } = tf.variableGrads(() => this.#lossOf(x, labels, weights, data.classes.length), vars)
      const loss = value.dataSync()[0]
      // a non-finite loss is not applied: the caller ends the training
      if (Number.isFinite(loss)) optimizer.applyGradients(clipByGlobalNorm(grads, o.clipGradientNorm))
      return loss
    })
  }

  /** the learning rate of this step (guards.ts warmupRate), set on the optimiser */
  #warmUp (optimizer: tf.Optimizer, o: TrainOptions): void {
    setOptimizerRate(optimizer, warmupRate(o.learningRate, o.warmupSteps ?? 0, this.#stepsTaken))
  }

  /** decoupled weight decay of the kernels after a step, at this step's learning rate */
  #decayWeights (o: TrainOptions): void {
    decayKernels(this.model, warmupRate(o.learningRate, o.warmupSteps ?? 0, this.#stepsTaken), o.weightDecay ?? 0)
  }

  /** end the round's training: the optimiser's moments may hold the same values, so it starts afresh next round */
  #diverged (what: string, o: TrainOptions): never {
    this.#optimizer?.dispose()
    this.#optimizer = null
    throw new NonFiniteTrainingError(`training diverged: ${what} (learning rate ${o.learningRate}${o.dp === undefined ? '' : ', DP-SGD'}); this round's update is discarded`)
  }

  /**
   * One DP-SGD step: per-example gradients (batched, or one backward pass per example), each clipped to
   * L2 norm C and scaled by its class weight (at most 1), summed, plus N(0, σ²C²) noise per
   * coordinate, divided by the expected batch size.
   */
  #dpStep (data: ImageDataset, batch: number[], weights: Float32Array, o: TrainOptions, augmenter: Augmenter | null, optimizer: tf.Optimizer, expectedBatch: number): number {
    const dp = o.dp!
    const vars = this.model.trainableWeights.map(v => v.read() as tf.Variable)
    let sums: tf.Tensor[] = vars.map(v => tf.zerosLike(v))
    let lossSum = 0
    const parallel = o.parallel !== undefined && o.parallel.count > 1 ? o.parallel : null
    const { from, mine } = parallel === null ? { from: 0, mine: batch } : LocalTrainer.shareOf(batch, parallel)
    // class weights act after clipping (clipping would undo them before it), scaled so that the
    // largest is 1: no example contributes more than C, so the noise calibration is unchanged
    const largest = Math.max(...weights)
    const unit = new Float32Array(weights.length).fill(1)
    // one generator draw per batch (not per example), so that a batch split among workers is augmented as in one piece
    const augmented = new Map<number, Float32Array>()
    let augmentedPixels: Float32Array = new Float32Array(0)
    if (augmenter !== null) {
      augmentedPixels = floatsOf(data, mine)
      augmenter.apply(augmentedPixels, mine.length, data.height, data.width, data.channels, { from, total: batch.length })
      const len = data.height * data.width * data.channels
      mine.forEach((_, k) => augmented.set(k, augmentedPixels.subarray(k * len, (k + 1) * len)))
    }
    const batched = dp.gradients !== 'per-example-passes' && mine.length > 0 && unbatchable(this.model) === null
    if (batched) {
      // the whole share at once (per-example.ts), the same sum as the passes below
      const x = tf.tidy(() => {
        const buf = augmenter === null ? floatsOf(data, mine) : augmentedPixels.slice()
        normaliseInPlace(buf, o.normalisation)
        return tf.tensor4d(buf, [mine.length, data.height, data.width, data.channels])
      })
      const labels = Int32Array.from(mine, j => data.labels[j])
      try {
        const r = clippedGradientSum(this.model, x, probs => exampleLosses(probs, labels, data.classes.length, this.#shift), norms => Float32Array.from(norms, (g, b) => Math.min(1, dp.clipNorm / (g + 1e-12)) * weights[labels[b]] / largest), vars)
        tf.dispose(sums)
        sums = r.sums
        lossSum = r.lossSum
      } finally { x.dispose() }
    }
    for (const [k, j] of batched ? [] : mine.entries()) {
      const next = tf.tidy(() => {
        const { x, labels } = augmenter === null ? this.#batchTensors(data, [j], o, null) : this.#exampleTensor(augmented.get(k)!, data, j, o)
        const { value, grads } = tf.variableGrads(() => this.#lossOf(x, labels, unit, data.classes.length), vars)
        lossSum += value.dataSync()[0]
        const gs = vars.map(v => grads[v.name])
        const norm = tf.sqrt(tf.addN(gs.map(g => tf.sum(tf.square(g)))))
        const factor = tf.mul(tf.minimum(1, tf.div(dp.clipNorm, tf.add(norm, 1e-12))), weights[data.labels[j]] / largest)
        return sums.map((s, i) => tf.add(s, tf.mul(gs[i], factor)))
      })
      tf.dispose(sums)
      sums = next
    }
    const noiseRng = dp.noiseRandom ?? systemRandom
    if (parallel !== null) {
      // the clipped sums of every worker's share, and the noise once for the whole batch
      const flat = LocalTrainer.#flatten(vars, sums, lossSum)
      tf.dispose(sums)
      // each worker draws the noise of its own slice of the coordinates (from its own generator),
      // so that every coordinate gets its noise exactly once and drawing it (a tenth of a step)
      // is shared too
      const length = flat.length - 1
      const lo = Math.floor(parallel.index * length / parallel.count)
      const noise = gaussianNoise(Math.floor((parallel.index + 1) * length / parallel.count) - lo, dp.noiseMultiplier * dp.clipNorm, noiseRng)
      for (let i = 0; i < noise.length; i++) flat[lo + i] += noise[i]
      const total = parallel.allReduce(flat)
      tf.tidy(() => { optimizer.applyGradients(LocalTrainer.#unflatten(vars, total, 1 / expectedBatch)) })
      return batch.length === 0 ? 0 : total[total.length - 1] / batch.length
    }
    tf.tidy(() => {
      const named: tf.NamedTensorMap = {}
      vars.forEach((v, i) => {
        const noise = tf.tensor(Float32Array.from(gaussianNoise(v.size, dp.noiseMultiplier * dp.clipNorm, noiseRng)), v.shape)
        named[v.name] = tf.div(tf.add(sums[i], noise), expectedBatch)
      })
      optimizer.applyGradients(named)
    })
    tf.dispose(sums)
    return batch.length === 0 ? 0 : lossSum / batch.length
  }

  /** one example's already augmented pixels as a batch of one */
  #exampleTensor (pixels: Float32Array, data: ImageDataset, j: number, o: TrainOptions): { x: tf.Tensor4D, labels: Int32Array } {
    const buf = Float32Array.from(pixels)
    normaliseInPlace(buf, o.normalisation)
    return { x: tf.tensor4d(buf, [1, data.height, data.width, data.channels]), labels: Int32Array.of(data.labels[j]) }
  }

  /** Class probabilities for every image, in batches. */
  predict (data: ImageDataset, normalisation?: Normalisation, batchSize = 256): Float32Array {
    const n = data.labels.length
    const classes = data.classes.length
    const out = new Float32Array(n * classes)
    for (let start = 0; start < n; start += batchSize) {
      const end = Math.min(n, start + batchSize)
      const buf = floatsOf(data, Array.from({ length: end - start }, (_, i) => start + i))
      normaliseInPlace(buf, normalisation)
      const probs = tf.tidy(() => (this.model.apply(tf.tensor4d(buf, [end - start, data.height, data.width, data.channels]), { training: false }) as tf.Tensor).dataSync() as Float32Array)
      out.set(probs, start * classes)
    }
    return out
  }

  evaluate (data: ImageDataset, normalisation?: Normalisation): ClinicalMetrics {
    return clinicalMetrics(this.predict(data, normalisation), data.labels, data.classes.length)
  }

  dispose (): void {
    this.#optimizer?.dispose()
    this.#optimizer = null
  }
}

function shuffled (n: number, rng: RandomSource): number[] {
  const u = uniformDoubles(rng, n)
  const idx = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u[i] * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]]
  }
  return idx
}
