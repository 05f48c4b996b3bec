/**
 * The report's model: what a run's report holds (report.json, field by field) and how it is
 * computed from the federation, the consortium's model and the baselines. Rendering it (the HTML
 * page's charts and summary) is report.ts's.
 */
import type { SelectionStatus } from '../../src/node/selection-status.ts'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { AggregationParams, TrainingParams } from '../../src/protocol/manifest.ts'
import { setFlatWeights, type ModelId } from '../../src/training/models.ts'
import type { ModelVariants } from '../../src/training/model-variants.ts'
import { normalisation } from '../../src/training/data/stats.ts'
import { classCounts, subset } from '../../src/training/data/dataset.ts'
import { rocCurve, calibration, type Calibration, type ClinicalMetrics } from '../../src/training/metrics.ts'
import type { SimnetOptions } from './args.ts'
import type { Baselines } from './baselines.ts'
import type { Fingerprint } from './compare.ts'
import { hospitalData } from './data.ts'
import { chosenRound, type FederationResult, type RoundRecord, type SimSetup } from './federation.ts'
import { judgeSeries } from '../../src/protocol/validation.ts'
import { empiricalCoverage } from '../../src/protocol/conformal.ts'

export interface HospitalView { hospital: number, federated: ClinicalMetrics | null, alone: ClinicalMetrics | null }
export interface RocCurve { name: string, fpr: number[], tpr: number[] }

/** report.json */
export interface SimReport {
  fingerprint: Fingerprint
  config: {
    nodes: number, rounds: number, model: ModelId, modelBytes: number, partition: string, alpha: number, training: TrainingParams,
    aggregation: Pick<AggregationParams, 'rule' | 'serverLr' | 'beta1'>, dpEpsilon: number | null, dropout: number, seed: number, backend: string, transport: string,
    /** the initial weights' file (--init), or null: the seed's */
    init: string | null
  }
  /** each hospital's share of the training split: its size and its images per class */
  partition: Array<{ size: number, classes: number[] }>
  rounds: RoundRecord[]
  /** the consortium's model round (1, 2, …; 0: none) and its test metrics */
  chosenRound: number
  final: ClinicalMetrics | null
  /** how the round was chosen, and its validation AUC averaged with its neighbours' */
  choice: { rule: string, smoothedAuc: number | null }
  /** model rounds (1, 2, …) whose pooled validation found the model degenerate, and why the chosen one is, if it is */
  degenerateRounds: number[]
  chosenDegenerate: string | null
  /** the chosen round's prediction sets (split conformal, from its pooled validation) measured on the test split */
  conformal: Array<{ coverage: number, threshold: number, testCoverage: number, meanSetSize: number }>
  calibration: Calibration | null
  hospitalView: HospitalView[]
  /** the baselines' test metrics per round, and the round each keeps (1, 2, …; 0: none) */
  centralised: ClinicalMetrics[]
  centralisedChosen: number
  local: ClinicalMetrics[][]
  localChosen: number[]
  bytesPerNode: number[]
  federatedSeconds: number
  /** no conflicting certificates on any peer */
  agree: boolean
  peakRssMB: number
  peakRssPerNodeMB: number
  rejections: number
  transport: string
  epsilon: number[]
  /** the consortium's recipe selection (candidates, each rung's decision, the winner), null without one */
  selection: SelectionStatus | null
}

/** The report and what its page shows beside it: the run's options, the peers at the head, the class names, the ROC curves. */
export interface ReportModel {
  report: SimReport
  options: SimnetOptions
  atHead: number
  classes: string[]
  curves: RocCurve[]
}

/** The consortium's model judged: its test predictions, its calibration, and each hospital's view of it (on its own held-out part). */
export interface ChosenJudged { probs: Float32Array | null, calibration: Calibration | null, federated: Array<ClinicalMetrics | null> }

export function judgeChosen (fed: FederationResult, setup: SimSetup, models: ModelVariants): ChosenJudged {
  const { data } = setup
  if (fed.chosen === null) return { probs: null, calibration: null, federated: Array.from({ length: setup.n }, () => null) }
  // the model of the chosen weights' width (recipe selection may choose another width than the model's)
  const { model, trainer: evaluator } = models.forWeights(fed.chosen.weights)
  setFlatWeights(model, fed.chosen.weights)
  const fnorm = fed.chosen.stats === null ? undefined : normalisation(fed.chosen.stats, data.train.channels)
  const probs = evaluator.predict(data.test, fnorm)
  return {
    probs,
    calibration: calibration(probs, data.test.labels, data.train.classes.length),
    federated: Array.from({ length: setup.n }, (_, i) => evaluator.evaluate(hospitalData(setup, i).val, fnorm))
  }
}

/** Everything the report says, from the run's parts. */
export function reportModel (o: {
  options: SimnetOptions, setup: SimSetup, fed: FederationResult, judged: ChosenJudged, baselines: Baselines | null, fingerprint: Fingerprint, backend: string
}): ReportModel {
  const { options, setup, fed, judged, baselines } = o
  const { data } = setup
  const k = data.train.classes.length
  const curve = (name: string, probs: Float32Array): RocCurve => ({ name, ...roc(probs, data.test.labels, k) })
  const curves = [
    ...(judged.probs === null ? [] : [curve('federated (medmesh)', judged.probs)]),
    ...(baselines === null ? [] : [curve('centralised', baselines.centralised.probs), ...baselines.alone.map((b, i) => curve(`hospital ${i} alone`, b.probs))])
  ]
  const chosen = chosenRound(fed.records, k)
  const validated = fed.records.filter(x => x.validation !== null)
  const judgedSeries = judgeSeries(validated.map(x => x.validation!), k)
  const judgedOf = (round: number) => judgedSeries[validated.findIndex(x => x.round === round)]
  const chosenJudged = chosen < 0 ? undefined : judgedOf(fed.records[chosen].round)
  const conformal = chosen < 0 || judged.probs === null ? [] : (fed.records[chosen].validation?.conformal ?? []).map(c => { const e = empiricalCoverage(judged.probs!, data.test.labels, k, c.threshold); return { ...c, testCoverage: e.coverage, meanSetSize: e.meanSetSize } })
  const report: SimReport = {
    fingerprint: o.fingerprint,
    config: {
      nodes: options.n, rounds: options.rounds, model: setup.modelId, modelBytes: setup.modelBytes, partition: options.partition, alpha: options.alpha, training: options.training,
      aggregation: options.aggregation, dpEpsilon: options.dp?.epsilon ?? null, dropout: options.dropout, seed: options.seed, backend: o.backend, transport: options.transport, init: options.init
    },
    partition: setup.parts.map(p => ({ size: p.length, classes: classCounts(subset(data.train, p)) })),
    rounds: fed.records,
    chosenRound: chosen + 1,
    final: chosen < 0 ? null : fed.records[chosen].metrics,
    choice: { rule: CHOICE_RULE, smoothedAuc: chosenJudged?.smoothedAuc ?? null },
    degenerateRounds: validated.filter((_, i) => judgedSeries[i].degenerate !== null).map(x => x.round),
    chosenDegenerate: chosenJudged?.degenerate ?? null,
    conformal,
    calibration: judged.calibration,
    hospitalView: judged.federated.map((federated, i) => ({ hospital: i, federated, alone: baselines?.alone[i]?.onOwnVal ?? null })),
    centralised: baselines?.centralised.series ?? [],
    centralisedChosen: (baselines?.centralised.best ?? -1) + 1,
    local: baselines?.alone.map(b => b.series) ?? [],
    localChosen: baselines?.alone.map(b => b.best + 1) ?? [],
    bytesPerNode: fed.bytesPerNode,
    federatedSeconds: fed.seconds,
    agree: fed.consistent,
    peakRssMB: fed.peakRssMB,
    peakRssPerNodeMB: fed.peakRssPerNodeMB,
    rejections: fed.rejections,
    transport: fed.transport,
    epsilon: fed.epsilon,
    selection: fed.selection
  }
  return { report, options, atHead: fed.atHead, classes: data.train.classes, curves }
}

/** why the round is chosen as it is, for the report */
export const CHOICE_RULE = 'the best pooled validation AUC averaged with the rounds either side (with 15–25 validation images per hospital one round\'s AUC moves by several points by chance), never a degenerate round while another exists'

/** The ROC curve of class 1 (two classes), or micro-averaged over every class (more). */
export function roc (probs: Float32Array, labels: Int32Array, k: number): { fpr: number[], tpr: number[] } {
  if (k === 2) return rocCurve(Float32Array.from(labels, (_, i) => probs[2 * i + 1]), Array.from(labels, l => l === 1))
  return rocCurve(probs, Array.from(probs, (_, j) => labels[Math.floor(j / k)] === j % k))
}

/** How this run was made: what `--compare` reports when two runs differ in it. */
export function runFingerprint (seed: number, args: string[], backend: string): Fingerprint {
  const root = fileURLToPath(new URL('../../', import.meta.url))
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version
  let commit: string | null = null
  try { commit = execFileSync('git', ['-C', root, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() } catch { /* not a git checkout */ }
  return { seed, command: args, version, commit, backend, node: process.version, cores: availableParallelism() }
}
