/**
 * The baselines of a run, on the same data and chosen the same way as the consortium's model:
 * centralised (all hospitals' data pooled at one site) and each hospital alone. Each trains for the
 * same rounds with the same recipe and keeps the round with the best AUC on its validation data.
 */
import type { ImageDataset } from '../../src/training/data/dataset.ts'
import { normalisation, pixelStats, statsVector } from '../../src/training/data/stats.ts'
import { buildModel, flattenWeights, setFlatWeights, type ModelSpec } from '../../src/training/models.ts'
import { LocalTrainer, NonFiniteTrainingError } from '../../src/training/trainer.ts'
import { learningRateAt, type LrSchedule } from '../../src/training/schedule.ts'
import { formatMetrics, type ClinicalMetrics } from '../../src/training/metrics.ts'
import { RECIPE } from './args.ts'
import { chooseIndex, judgeSeries, stillChoosable, validationCounts, validationFigures, type ValidationFigures } from '../../src/protocol/validation.ts'
import { recipeGuards } from '../../src/node/site.ts'
import { hospitalData, pooledData } from './data.ts'
import type { SimSetup } from './federation.ts'

/** One baseline: its test metrics per round, the round it keeps, that round's test predictions and its metrics on its own validation part. */
export interface Baseline { series: ClinicalMetrics[], best: number, probs: Float32Array, onOwnVal: ClinicalMetrics }

export interface Baselines { centralised: Baseline, alone: Baseline[] }

/** What the baselines need of the run: its data and split, recipe and DP; the model they train and the learning rate over the rounds. */
export type BaselineRun = Pick<SimSetup, 'n' | 'rounds' | 'data' | 'parts' | 'seedBytes' | 'training' | 'dp' | 'out' | 'initialWeights'> & { spec: ModelSpec, schedule: LrSchedule }

/** The recipe the baselines train with: the run's, or with DP-SGD the recipe without DP (DP's larger learning rate needs the clipping to stay stable). */
export function baselineRecipe (run: Pick<BaselineRun, 'training' | 'dp'>): { epochs: number, batchSize: number, learningRate: number } {
  const { epochs, batchSize, learningRate } = run.training
  return run.dp === null ? { epochs, batchSize, learningRate } : { epochs: Number(RECIPE.epochs), batchSize: Number(RECIPE['batch-size']), learningRate: Number(RECIPE['learning-rate']) }
}

/** Centralised, then (`alone`) each hospital alone; each said in the progress as it ends. */
export function runBaselines (run: BaselineRun, alone = true): Baselines {
  // with DP, the baselines show what the same data gives without it
  const base = baselineRecipe(run)
  if (run.dp !== null) run.out(`baselines without DP: ${base.epochs} epoch(s) per round, batch ${base.batchSize}, Adam at ${base.learningRate}`)
  const centralised = trainAlone(run, base, pooledData(run), 200)
  run.out(`centralised baseline (all hospitals' data pooled; round ${centralised.best + 1} of ${run.rounds}, chosen by validation as the consortium chooses): ${formatMetrics(centralised.series[centralised.best])}`)
  const hospitals: Baseline[] = []
  for (let i = 0; alone && i < run.n; i++) {
    // a hospital alone trains on what it trains on in the consortium, and is judged on its own held-out part too
    const l = trainAlone(run, base, hospitalData(run, i), 300 + 10 * i)
    hospitals.push(l)
    run.out(`hospital ${i} alone (round ${l.best + 1}): ${formatMetrics(l.series[l.best])}`)
  }
  return { centralised, alone: hospitals }
}

/** One site training on `own` for the run's rounds, judged each round on the test split; it keeps its round chosen by validation as the consortium chooses. */
function trainAlone (run: BaselineRun, base: { epochs: number, batchSize: number, learningRate: number }, own: { train: ImageDataset, val: ImageDataset }, seedBase: number): Baseline {
  const { rounds, data } = run
  const norm = normalisation(statsVector(pixelStats(own.train)), own.train.channels)
  const model = buildModel(run.spec); const trainer = new LocalTrainer(model)
  setFlatWeights(model, run.initialWeights) // the federation's start (the seed's, or --init's)
  const series: ClinicalMetrics[] = []
  // the federation's guards and augmentation: the baselines differ from it in where the data is, nothing else
  const g = recipeGuards(run.training)
  const guards = { augment: g.augmentation !== 'none', modality: g.augmentation === 'none' ? undefined : g.augmentation, warmupSteps: g.warmupSteps, clipGradientNorm: g.clipGradientNorm, weightDecay: g.weightDecay, minSteps: g.minSteps }
  const layout = { classes: own.train.classes.length, bins: 1000 }
  // judged as the consortium judges its rounds (protocol/validation.ts): smoothed, never a degenerate round while another exists
  const figures: ValidationFigures[] = []
  const kept = new Map<number, Float32Array>()
  for (let r = 1; r <= rounds; r++) {
    const before = flattenWeights(model)
    try {
      trainer.train(own.train, {
        epochs: base.epochs, batchSize: base.batchSize, learningRate: learningRateAt(base.learningRate, run.schedule, r), seed: run.seedBytes(seedBase + r),
        classWeighting: run.training.classWeighting, normalisation: norm, ...guards
      })
    } catch (e) {
      // as a site does: a round that diverged is discarded, the model stays as it was
      if (!(e instanceof NonFiniteTrainingError)) throw e
      run.out(`baseline round ${r}: ${e.message}`)
      setFlatWeights(model, before)
    }
    series.push(trainer.evaluate(data.test, norm))
    figures.push(validationFigures(validationCounts(trainer.predict(own.val, norm), own.val.labels, layout), layout))
    kept.set(r - 1, flattenWeights(model))
    const needed = new Set(stillChoosable(judgeSeries(figures, layout.classes)))
    for (const i of kept.keys()) if (!needed.has(i)) kept.delete(i)
  }
  // a validation part too small to judge by (one class only: AUC undefined) keeps the last round
  let best = chooseIndex(judgeSeries(figures, layout.classes))
  if (best < 0) best = rounds - 1
  setFlatWeights(model, kept.get(best)!)
  const result = { series, best, probs: trainer.predict(data.test, norm), onOwnVal: trainer.evaluate(own.val, norm) }
  trainer.dispose(); model.dispose()
  return result
}
