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
  BudgetExceededError, PrivacyBudget, gaussianNoise, poissonSample, seededRandom, systemRandom, uniformDoubles, deriveKey,
  type RandomSource
} from '../privacy/index.ts'
import { Augmenter, augmentFor } from './augment.ts'
import { classCounts, floatsOf, type ImageDataset } from './data/dataset.ts'
import { normaliseInPlace, type Normalisation } from './data/stats.ts'
import { clinicalMetrics, type ClinicalMetrics } from './metrics.ts'
import { hasBatchNorm } from './models.ts'

export interface DpOptions {
  noiseMultiplier: number
  clipNorm: number
  budget: PrivacyBudget
  /** where the noise comes from (default: the operating system's CSPRNG) */
  noiseRandom?: RandomSource
}

export interface TrainOptions {
  epochs?: number
  steps?: number
  batchSize: number
  learningRate: number
  optimizer?: 'adam' | 'sgd'
  augment?: boolean
  classWeighting?: 'none' | 'balanced'
  normalisation?: Normalisation
  /** 32 bytes: shuffling, augmentation and sampling follow from it */
  seed: Uint8Array
  dp?: DpOptions
}

export interface TrainResult {
  examples: number
  steps: number
  meanLoss: number
  seconds: number
  imagesPerSecond: number
  /** ε spent so far (DP only) */
  epsilon: number | null
  /** why training stopped early, if it did (the privacy budget) */
  stoppedEarly: string | null
}

const EPS = 1e-7

export class LocalTrainer {
  readonly model: tfl.LayersModel
  #optimizer: tf.Optimizer | null = null
  #optimizerKey = ''
  #round = 0

  constructor (model: tfl.LayersModel) { this.model = model }

  #optimizerFor (o: TrainOptions): tf.Optimizer {
    const key = `${o.optimizer ?? 'adam'}:${o.learningRate}`
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
    const augmenter = o.augment === true ? new Augmenter(deriveKey(o.seed, 'seeded-random', Uint8Array.of(0xa0, round & 0xff)), augmentFor(data.channels)) : null
    const weights = classWeights(data, o.classWeighting ?? 'none')
    const steps = o.steps ?? Math.max(1, Math.round((o.epochs as number) * n / o.batchSize))
    const optimizer = this.#optimizerFor(o)
    const started = performance.now()
    let examples = 0
    let lossSum = 0
    let stoppedEarly: string | null = null
    let order: number[] = []
    let cursor = 0
    let taken = 0
    for (let step = 0; step < steps; step++) {
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
        lossSum += this.#dpStep(data, batch, weights, o, augmenter, optimizer, q * n) * batch.length
      } else {
        lossSum += this.#step(data, batch, weights, o, augmenter, optimizer) * batch.length
      }
      examples += batch.length
      taken++
    }
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

  #batchTensors (data: ImageDataset, batch: number[], o: TrainOptions, augmenter: Augmenter | null): { x: tf.Tensor4D, labels: Int32Array } {
    const buf = floatsOf(data, batch)
    const labels = Int32Array.from(batch, j => data.labels[j])
    augmenter?.apply(buf, batch.length, data.height, data.width, data.channels)
    normaliseInPlace(buf, o.normalisation)
    return { x: tf.tensor4d(buf, [batch.length, data.height, data.width, data.channels]), labels }
  }

  #lossOf (x: tf.Tensor4D, labels: Int32Array, weights: Float32Array, classes: number): tf.Scalar {
    const probs = this.model.apply(x, { training: true }) as tf.Tensor2D
    const onehot = tf.oneHot(tf.tensor1d(labels, 'int32'), classes)
    const w = tf.tensor1d(Float32Array.from(labels, l => weights[l]))
    const nll = tf.neg(tf.sum(tf.mul(onehot, tf.log(tf.clipByValue(probs, EPS, 1))), 1))
    return tf.div(tf.sum(tf.mul(nll, w)), labels.length) as tf.Scalar
  }

  #step (data: ImageDataset, batch: number[], weights: Float32Array, o: TrainOptions, augmenter: Augmenter | null, optimizer: tf.Optimizer): number {
    return tf.tidy(() => {
      const { x, labels } = this.#batchTensors(data, batch, o, augmenter)
      const vars = this.model.trainableWeights.map(v => v.read() as tf.Variable)
      const cost = optimizer.minimize(() => this.#lossOf(x, labels, weights, data.classes.length), true, vars)
      return cost!.dataSync()[0]
    })
  }

  /**
   * One DP-SGD step: per-example gradients (one backward pass per example), each clipped to
   * L2 norm C and scaled by its class weight (at most 1), summed, plus N(0, σ²C²) noise per
   * coordinate, divided by the expected batch size.
   */
  #dpStep (data: ImageDataset, batch: number[], weights: Float32Array, o: TrainOptions, augmenter: Augmenter | null, optimizer: tf.Optimizer, expectedBatch: number): number {
    const dp = o.dp!
    const vars = this.model.trainableWeights.map(v => v.read() as tf.Variable)
    let sums: tf.Tensor[] = vars.map(v => tf.zerosLike(v))
    let lossSum = 0
    // class weights act after clipping (clipping would undo them before it), scaled so that the
    // largest is 1: no example contributes more than C, so the noise calibration is unchanged
    const largest = Math.max(...weights)
    const unit = new Float32Array(weights.length).fill(1)
    for (const j of batch) {
      const next = tf.tidy(() => {
        const { x, labels } = this.#batchTensors(data, [j], o, augmenter)
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
    tf.tidy(() => {
      const noiseRng = dp.noiseRandom ?? systemRandom
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

/** 'balanced': weight_c = N / (classes · count_c), as scikit-learn's class_weight='balanced'. */
export function classWeights (data: ImageDataset, mode: 'none' | 'balanced'): Float32Array {
  const k = data.classes.length
  if (mode === 'none') return new Float32Array(k).fill(1)
  const counts = classCounts(data)
  return Float32Array.from(counts, c => c === 0 ? 0 : data.labels.length / (k * c))
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
