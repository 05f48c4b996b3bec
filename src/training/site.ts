/**
 * One hospital's side of federated training: its data, its model replica, and the inputs it
 * contributes — its pixel statistics, then, each time, the update local_weights - global_weights
 * after training from the weights it is given. It knows models and data, not the protocol: the
 * node turns the consortium's manifest into a SiteSpec and the certified state into weights.
 */
import { PrivacyBudget, noiseForBudget, type RandomSource } from '../privacy/index.ts'
import { selectBackend, type BackendChoice } from './backend.ts'
import { fitData, type SiteData } from './site-data.ts'
import { classFrequencies, normalisation, pixelStats, statsVector, type Normalisation } from './data/stats.ts'
import { learningRateAt, type LrSchedule } from './schedule.ts'
import { buildModel, flattenWeights, setFlatWeights, type ModelId, type ModelSpec } from './models.ts'
import { ModelVariants } from './model-variants.ts'
import { LocalTrainer, type DataParallel, type TrainResult } from './trainer.ts'
import { localSteps } from './train-options.ts'
import type { CandidateRecipe } from './candidates.ts'
import type { ClinicalMetrics } from './metrics.ts'
import type { Modality } from './augment.ts'
import type * as tfl from '@tensorflow/tfjs-layers'

export { loadSiteData, checkFit, fitData, SiteDataError, type SiteData } from './site-data.ts'

/**
 * The model every site builds (the same id and seed give the same initial weights), the images it
 * takes (square side and channels) and the classes it tells apart, and DP-SGD's settings, or null
 * for none.
 */
export interface SiteSpec {
  /** `widthFactors`: the other widths of the model (models.ts, widthFactor) this site may be given weights of, when the consortium tries them as candidates */
  model: { id: ModelId, seed: number, widthFactors?: readonly number[] }
  input: { size: number, channels: number }
  classes: number
  /**
   * DP-SGD: a noise multiplier of 0 means calibrated here: the smallest σ with which this site's
   * planned training (`plannedRounds` rounds of its local epochs) spends exactly its budget
   */
  dp: { noiseMultiplier: number, clipNorm: number, plannedRounds?: number } | null
  /** the learning rate over model rounds (default constant) */
  schedule?: LrSchedule
}

export interface SiteOptions {
  epochs: number
  batchSize: number
  learningRate: number
  /** 'balanced' (default) weighs each class by 1 / (classes · f), f its frequency in the consortium's pooled data (from the statistics round; this site's own before it) */
  classWeighting?: 'balanced' | 'none'
  /** 'pooled': correct the local loss for the difference between this site's class mix and the pooled one (trainer.ts) */
  priorCorrection?: 'none' | 'pooled'
  /** the local optimiser (default Adam) */
  optimizer?: 'adam' | 'sgd'
  /** the guards of the recipe (trainer.ts): warm-up steps, gradient-norm bound, decoupled weight decay; absent: off */
  warmupSteps?: number
  clipGradientNorm?: number
  weightDecay?: number
  /** at least this many local steps a round (trainer.ts); absent: the epochs' steps */
  minSteps?: number
  /** augmentation for the modality, or 'none' (default: by channels) */
  augmentation?: Modality | 'none'
  seed: Uint8Array
  budget: PrivacyBudget | null
  /** DP noise from this generator instead of the CSPRNG: simulations that must repeat, never real data */
  noiseRandom?: RandomSource
  /** this site is one of several workers that split each batch (worker-site.ts) */
  parallel?: DataParallel
}

export class Site {
  readonly spec: SiteSpec
  readonly data: SiteData
  readonly model: tfl.LayersModel
  readonly trainer: LocalTrainer
  readonly options: SiteOptions
  backend: BackendChoice | null = null
  norm: Normalisation | undefined
  lastTrain: TrainResult | null = null

  private constructor (spec: SiteSpec, data: SiteData, model: tfl.LayersModel, options: SiteOptions) {
    this.spec = spec
    this.data = data
    this.model = model
    this.trainer = new LocalTrainer(model)
    this.options = options
  }

  static async open (spec: SiteSpec, data: SiteData, options: SiteOptions): Promise<Site> {
    const backend = await selectBackend('auto')
    const fitted = fitData(data, spec)
    const model = buildModel(modelSpecOf(spec))
    const site = new Site(spec, fitted, model, options)
    site.backend = backend
    return site
  }

  /** σ of this site's DP-SGD (calibrated to its budget and plan when the spec says 0), or null without DP. */
  get noiseMultiplier (): number | null {
    const dp = this.spec.dp
    const budget = this.options.budget
    if (dp === null || budget === null) return null
    if (dp.noiseMultiplier > 0) return dp.noiseMultiplier
    if (this.#calibrated === null) {
      const n = this.data.train.labels.length
      const perRound = localSteps(this.options, n)
      this.#calibrated = noiseForBudget({ q: Math.min(1, this.options.batchSize / n), steps: perRound * (dp.plannedRounds ?? 1), epsilon: budget.epsilonBudget, delta: budget.delta })
    }
    return this.#calibrated
  }

  #calibrated: number | null = null

  /** The weights the model (or its variant of this width) starts from, flattened: the same on every site for one spec. */
  initialWeights (widthFactor = 1): Float32Array { return flattenWeights(this.#variants.at(widthFactor).model) }

  /** the site's model and its other widths (spec.model.widthFactors), each with a trainer that judges it */
  get #variants (): ModelVariants {
    this.#variantsOnce ??= new ModelVariants(modelSpecOf(this.spec), this.spec.model.widthFactors, { model: this.model, trainer: this.trainer })
    return this.#variantsOnce
  }

  #variantsOnce: ModelVariants | undefined

  /** The statistics round's input: [mean, mean of squares] of the pixels for each channel, then each class's fraction of the images, and the image count. */
  statsInput (): { values: number[], count: number } {
    const s = pixelStats(this.data.train)
    return { values: statsVector(s), count: s.count }
  }

  useStatistics (combined: ArrayLike<number>): void {
    this.norm = normalisation(combined, this.spec.input.channels)
    this.classFrequencies = classFrequencies(combined, this.spec.input.channels)
  }

  /** the consortium's pooled class frequencies, from the statistics round (null before it) */
  classFrequencies: number[] | null = null

  /** one trainer (optimiser state, warm-up) per candidate recipe while the consortium chooses among them */
  readonly #candidateTrainers = new Map<number, LocalTrainer>()

  #trainerFor (recipe: CandidateRecipe | undefined, weights: Float32Array): LocalTrainer {
    const variant = recipe?.widthFactor !== undefined ? this.#variants.at(recipe.widthFactor) : this.#variants.forWeights(weights)
    // a part of another size than its candidate's model would train the wrong model from then on
    if (variant.size !== weights.length) throw new Error(`weights of ${weights.length} values given to candidate ${recipe?.candidate ?? '-'}'s model of ${variant.size}`)
    if (recipe === undefined) return variant.trainer
    let t = this.#candidateTrainers.get(recipe.candidate)
    if (t === undefined) { t = new LocalTrainer(variant.model); this.#candidateTrainers.set(recipe.candidate, t) }
    return t
  }

  /**
   * Train from these weights; the update and the sample count it stands for. `round` varies the
   * shuffling; `modelRound` (1, 2, …) sets the learning rate; `recipe`, a candidate's learning
   * rate, epochs and model width in place of the site's, trained by that candidate's own trainer.
   */
  update (weights: Float32Array, round: number, modelRound = round, recipe?: CandidateRecipe): { values: Float32Array, count: number } {
    const trainer = this.#trainerFor(recipe, weights)
    setFlatWeights(trainer.model, weights)
    const dp = this.spec.dp
    this.lastTrain = trainer.train(this.data.train, {
      epochs: recipe?.epochs ?? this.options.epochs,
      batchSize: this.options.batchSize,
      learningRate: learningRateAt(recipe?.learningRate ?? this.options.learningRate, this.spec.schedule ?? { kind: 'constant' }, modelRound),
      optimizer: this.options.optimizer,
      seed: Uint8Array.from(this.options.seed.map((b, i) => i === 0 ? b ^ (round & 0xff) : i === 1 ? b ^ ((round >> 8) & 0xff) : b)),
      augment: this.options.augmentation !== 'none',
      modality: this.options.augmentation === 'none' ? undefined : this.options.augmentation,
      warmupSteps: this.options.warmupSteps,
      minSteps: this.options.minSteps,
      clipGradientNorm: dp === null ? this.options.clipGradientNorm : undefined,
      weightDecay: this.options.weightDecay,
      classWeighting: this.options.classWeighting ?? 'balanced',
      classFrequencies: this.classFrequencies ?? undefined,
      priorCorrection: this.options.priorCorrection,
      normalisation: this.norm,
      parallel: this.options.parallel,
      dp: dp !== null && this.options.budget !== null ? { noiseMultiplier: this.noiseMultiplier!, clipNorm: dp.clipNorm, budget: this.options.budget, noiseRandom: this.options.noiseRandom } : undefined
    })
    const local = flattenWeights(trainer.model)
    const delta = new Float32Array(local.length)
    for (let i = 0; i < local.length; i++) delta[i] = local[i] - weights[i]
    return { values: delta, count: Math.max(1, this.lastTrain.examples > 0 ? this.data.train.labels.length : 1) }
  }

  /** Free the model's and the optimiser's tensors (a node that stops inside a longer-lived process). */
  dispose (): void {
    for (const t of this.#candidateTrainers.values()) t.dispose()
    // the site's own model and trainer with the other widths'
    this.#variants.dispose()
  }

  /** Class probabilities (N × classes) of the model with these weights on a split, with the true labels; null without that split. */
  predictions (weights: Float32Array, split: 'val' | 'test'): { probs: Float32Array, labels: Int32Array } | null {
    const d = this.data[split]
    if (d === null) return null
    const v = this.#variants.forWeights(weights)
    setFlatWeights(v.model, weights)
    return { probs: v.trainer.predict(d, this.norm), labels: d.labels }
  }

  evaluate (weights: Float32Array, split: 'val' | 'test'): ClinicalMetrics | null {
    const d = this.data[split]
    if (d === null) return null
    const v = this.#variants.forWeights(weights)
    setFlatWeights(v.model, weights)
    return v.trainer.evaluate(d, this.norm)
  }
}

/** The model a site of this spec builds, at this width factor (models.ts). */
export function modelSpecOf (spec: SiteSpec, widthFactor = 1): ModelSpec {
  return { id: spec.model.id, height: spec.input.size, width: spec.input.size, channels: spec.input.channels, classes: spec.classes, seed: spec.model.seed, ...(widthFactor !== 1 ? { widthFactor } : {}) }
}
