/**
 * The learning recipes a consortium gets unless its founders say otherwise: one without DP, one
 * for DP-SGD. `medmesh manifest create` writes them into the manifest and `medmesh simnet` runs
 * them, so that what the benchmarks measured (docs/SIMULATION.md, "Learning recipes" and "On every
 * data set, with the defaults") is what a real consortium starts from.
 */
import type { AggregationRule } from './manifest.ts'

export interface Recipe {
  /** local epochs per round */
  readonly epochs: number
  readonly batchSize: number
  /** the local Adam learning rate */
  readonly learningRate: number
  /** the server's rule (strategy/) and its momentum (FedAvgM's β, FedAdam's β1) */
  readonly aggregation: AggregationRule
  readonly momentum: number
  /**
   * Logit adjustment of each site's loss by its class mix against the pooled one. On by default
   * without DP: with label-skewed hospitals each site's epochs otherwise pull the model to its own
   * class mix (chest X-rays at 128 px: 0.834 → 0.892 test AUC after 10 rounds, SIMULATION.md).
   */
  readonly priorCorrection: 'none' | 'pooled'
  /** DP-SGD's per-example clipping norm (used only with DP) */
  readonly dpClip: number
  /**
   * At least this many local steps a round (0: the epochs' steps alone): a hospital of 100 images
   * repeats its epochs rather than moving the averaged model by 6 steps a round (chest X-rays at
   * 128 px, SIMULATION.md). Off under DP: each extra step spends privacy budget.
   */
  readonly minSteps: number
}

const MIN_STEPS = 60

export const RECIPE: Recipe = { epochs: 2, batchSize: 32, learningRate: 1e-3, aggregation: 'fedavgm', momentum: 0.7, priorCorrection: 'pooled', dpClip: 1.0, minSteps: MIN_STEPS }

/** Under DP-SGD: larger expected batches (Poisson sampling) and a larger rate, which the clipping keeps stable; plain FedAvg. */
export const DP_RECIPE: Recipe = { epochs: 2, batchSize: 128, learningRate: 5e-3, aggregation: 'fedavg', momentum: 0.9, priorCorrection: 'none', dpClip: 1.0, minSteps: 0 }

export function recipeFor (dp: boolean): Recipe { return dp ? DP_RECIPE : RECIPE }
