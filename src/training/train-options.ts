/** What a local training is given and what it returns (trainer.ts). */
import type { PrivacyBudget, RandomSource } from '../privacy/index.ts'
import type { Modality } from './augment.ts'
import type { Normalisation } from './data/stats.ts'

export interface DpOptions {
  noiseMultiplier: number
  clipNorm: number
  budget: PrivacyBudget
  /**
   * where the noise comes from (default: the operating system's CSPRNG); with several workers
   * (`parallel`) each draws the noise of its own coordinates, so each needs its own generator
   */
  noiseRandom?: RandomSource
  /**
   * how the per-example gradients are computed: for the whole batch at once where the model's
   * layers allow (per-example.ts, the default), or one backward pass per example (the reference)
   */
  gradients?: 'batched' | 'per-example-passes'
}

/**
 * Data parallelism: this trainer is worker `index` of `count`, each holding the same model; every
 * step's batch is split among them, each computes the gradient of its share, `allReduce` sums
 * them (in worker order, so the total does not depend on timing) and every worker applies the
 * same total, so the replicas stay identical. BatchNorm layers normalise over a worker's share.
 */
export interface DataParallel {
  index: number
  count: number
  /** the element-wise sum of this vector over every worker, the same on each */
  allReduce: (values: Float32Array) => Float32Array
}

export interface TrainOptions {
  epochs?: number
  steps?: number
  batchSize: number
  learningRate: number
  optimizer?: 'adam' | 'sgd'
  augment?: boolean
  /** which augmentation (augment.ts; default by channels: X-ray for grayscale, photograph for colour) */
  modality?: Modality
  classWeighting?: 'none' | 'balanced'
  /**
   * with 'balanced': the class frequencies to balance, the consortium's pooled ones from the
   * statistics round (default: this data's own). Balancing each hospital by its own counts would
   * make the federated objective a different one from training on the pooled data: a hospital
   * with few examples of a class would weigh each of them many times over.
   */
  classFrequencies?: ArrayLike<number>
  /**
   * Label-shift correction (logit adjustment, Menon et al. 2021; FedLC, Zhang et al. 2022): the
   * loss is taken over log p + log(π_local / π_pooled), for this data's own class frequencies
   * π_local and the consortium's pooled ones (`classFrequencies`). The model then learns the
   * pooled data's posterior at every site instead of drifting towards each site's own class mix,
   * which under label skew pulls the averaged model's decision thresholds apart. 'none' (the
   * default) is plain cross-entropy; so is 'pooled' where the two mixes agree.
   */
  priorCorrection?: 'none' | 'pooled'
  normalisation?: Normalisation
  /** 32 bytes: shuffling, augmentation and sampling follow from it */
  seed: Uint8Array
  dp?: DpOptions
  parallel?: DataParallel
  /**
   * a guard, not a regulariser: a step's gradient whose global L2 norm exceeds this is scaled down
   * to it (without DP; DP-SGD clips each example's gradient already). One bad batch at a high
   * resolution can otherwise throw Adam's weights far enough that every prediction saturates.
   */
  clipGradientNorm?: number
  /** decoupled weight decay (AdamW, Loshchilov and Hutter 2019) on kernels (rank ≥ 2), per step: w ← w − lr·wd·w */
  weightDecay?: number
  /** the learning rate grows linearly over this trainer's first steps (counted across rounds; at most the first round's steps), from 1/warmupSteps of it */
  warmupSteps?: number
  /**
   * with `epochs`: at least this many steps a round, the data's epochs repeated as needed. A small
   * hospital (100 images: 3 steps an epoch at batch 32) otherwise moves the averaged model by a
   * few steps a round while a large one takes dozens, and a federation of small hospitals is far
   * behind one site holding everything after the same rounds (docs/SIMULATION.md).
   */
  minSteps?: number
}

/** The steps one round trains: `steps`, or `epochs` over n examples at `batchSize`, at least `minSteps`. */
export function localSteps (o: Pick<TrainOptions, 'epochs' | 'steps' | 'batchSize' | 'minSteps'>, n: number): number {
  if (o.steps !== undefined) return o.steps
  return Math.max(1, o.minSteps ?? 1, Math.round((o.epochs as number) * n / o.batchSize))
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
