/**
 * The training scheduler: a hospital's input for each round. For the statistics round it is the
 * site's pixel statistics and class fractions, at once; for a model round, local training from the certified weights,
 * started once the masking set is agreed and includes this node (its input is due then, and
 * training for a round it cannot join would only make it late for the next one too); for an eval
 * round, the validation counts of the certified model on the site's own validation part.
 * The site computes in a worker thread (TrainingSite is asynchronous), so the node serves the
 * network while it trains; a training that fails (the worker crashed or ran out of memory) costs
 * this round's input only, and the next round trains again.
 */
import type { Startable } from '@libp2p/interface'
import type { RoundKind } from '../../protocol/actions.ts'
import type { RoundView } from '../../protocol/peer.ts'
import type { TrainingSite } from '../../training/worker-site.ts'
import { modelRoundOf, validationCounts, validationLength, type ValidationLayout } from '../../protocol/validation.ts'
import { formatMetrics } from '../../training/metrics.ts'
import { partPredictions, updateCandidates, type CandidateRecipe } from '../../training/candidates.ts'
import type { TrainResult } from '../../training/train-options.ts'
import type { Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'
import type { NodeMetrics } from '../metrics.ts'

export interface TrainingComponents {
  site: Pick<TrainingSite, 'update' | 'statsInput' | 'lastTrain' | 'options' | 'evaluate' | 'predictions' | 'useStatistics' | 'norm'>
  /** the consortium's classes and histogram bins (the manifest's) */
  validation: ValidationLayout
  /** the round in progress, and the weights it trains from or judges (the certified ones, less any candidates dropped since) */
  round: () => RoundView | null
  weights: () => Float32Array
  /**
   * while the consortium chooses its recipe (protocol/selection.ts): the recipes of the candidates
   * a model round trains, in their parts' order, and the sizes of the candidates' models the
   * certified state holds (what an eval round judges); absent without selection
   */
  candidates?: { recipes: (round: number) => CandidateRecipe[], stateParts: () => number[] }
  /** whether the weights are the last certified ones (not still being fetched) */
  stateCurrent: () => boolean
  /** whether a certified state is being fetched: a model round trains only once it is held */
  fetchingState?: () => boolean
  /** the round of the last certified model (its certificate may have arrived before the model) */
  lastModelRound: () => number | undefined
  /** hand the input to the protocol peer */
  setInput: (values: ArrayLike<number>, count: number) => void
  /** a training ended (its input handed over, or not): what waited for it may go on */
  trainingEnded?: () => void
  /** keep the privacy budget after it was spent (may throw a storage error) */
  saveBudget: () => void
  log: Logger
  metrics: Pick<NodeMetrics, 'epsilon'>
  clock: Clock
}

export interface TrainingInit {
  /** a training, a validation or a look whether the model is held yet comes this long after it is due: the network has its turn first (default 50 ms) */
  laterMs?: number
}

export interface TrainingScheduler extends Startable {
  roundStarted: (round: number, kind: RoundKind) => void
  /** the consortium's statistics are certified: normalise and balance the classes with them from now on */
  statisticsCertified: (stats: Float64Array | null) => void
  /** a model round was certified (the hash its certificate names): evaluate that model once it is held */
  modelCertified: (round: number, model: string) => void
  /** the round in progress entered a phase: train if the input is now due */
  phaseEntered: () => void
  /** the round being trained and since when (ms), or null */
  training: () => { round: number, since: number } | null
}

/** The log line of a finished training: its images, time, rate, and the ε spent and early stop if any; the candidate recipes it trained, if several. */
export function trainedMessage (round: number, t: TrainResult, recipes: readonly CandidateRecipe[] = []): string {
  const candidates = recipes.length > 1 ? ` for ${recipes.length} candidate recipes (${recipes.map(r => `#${r.candidate + 1} lr ${r.learningRate} × ${r.epochs} epoch(s)${r.widthFactor === undefined ? '' : ` at width ×${r.widthFactor}`}`).join(', ')})` : ''
  return `round ${round}: trained ${t.examples} images${candidates} in ${t.seconds.toFixed(1)} s (${t.imagesPerSecond.toFixed(0)} images/s)${t.epsilon !== null ? `, ε spent ${t.epsilon.toFixed(3)}` : ''}${t.stoppedEarly !== null ? ` — ${t.stoppedEarly}` : ''}`
}

/** this site's validation counts of the certified model, of each candidate's side by side while the recipe is chosen (zeros from a site without a validation part) */
async function sendValidationCounts (c: Pick<TrainingComponents, 'site' | 'round' | 'weights' | 'validation' | 'setInput' | 'log' | 'candidates'>, round: number, running: () => boolean): Promise<void> {
  type Predictions = Awaited<ReturnType<TrainingComponents['site']['predictions']>>
  const weights = c.weights()
  let parts: Predictions[]
  try {
    parts = await partPredictions(async w => await c.site.predictions(w, 'val'), weights, c.candidates?.stateParts() ?? 1)
  } catch (e) {
    if (running()) c.log.error(`round ${round}: validation failed, this node sends no input this round: ${(e as Error).message}`)
    return
  }
  if (!running() || c.round()?.number !== round) return
  const length = validationLength(c.validation)
  const counts = new Float64Array(parts.length * length)
  parts.forEach((p, i) => { if (p !== null) counts.set(validationCounts(p.probs, p.labels, c.validation), i * length) })
  c.setInput(counts, parts[0]?.labels.length ?? 0)
}

/** log the validation figures of the certified model of `round` (the weights are taken now; not while candidates' models are side by side: the eval certificate gives each one's pooled figures) */
function logCertifiedValidation (c: Pick<TrainingComponents, 'site' | 'weights' | 'log' | 'candidates'>, round: number, model: string, running: () => boolean): void {
  const weights = c.weights()
  if ((c.candidates?.stateParts().length ?? 1) > 1) return
  c.site.evaluate(weights, 'val').then(
    m => { if (m !== null && running()) c.log.info({ round, model, auc: m.auc, accuracy: m.accuracy }, `round ${round}: validation of the certified model ${model.slice(0, 12)}: ${formatMetrics(m)}`) },
    (e: Error) => { if (running()) c.log.warn(`round ${round}: validation of the certified model failed: ${e.message}`) })
}

/** the round's training line: the local recipe, and whether each candidate recipe trains */
function logTraining (c: Pick<TrainingComponents, 'site' | 'log'>, round: number, recipes: readonly CandidateRecipe[] | undefined): void {
  const o = c.site.options
  c.log.info({ round, epochs: o.epochs, batchSize: o.batchSize, minSteps: o.minSteps }, `round ${round}: training on ${o.epochs} epoch(s) of this hospital's data, batch ${o.batchSize}${o.minSteps === undefined ? '' : `, at least ${o.minSteps} steps`}${(recipes?.length ?? 1) > 1 ? ', for each candidate recipe' : ''}`)
}

/**
 * Give the round this node's trained update (and keep the budget it spent); false when the round's
 * state changed size while it trained, so that it must train again.
 */
function handOver (c: Pick<TrainingComponents, 'site' | 'log' | 'weights' | 'saveBudget' | 'metrics' | 'setInput'>, round: number, update: { values: Float32Array, count: number, train: TrainResult }, recipes?: CandidateRecipe[]): boolean {
  if (update.values.length !== c.weights().length) {
    // a rung's decision arrived while this node trained (it had begun the round without it): the
    // round now trains fewer candidates; train again from the state it now holds
    c.log.warn(`round ${round}: the round's state changed while this node trained (recipe selection dropped candidates); training again`)
    return false
  }
  c.log.info(trainedMessage(round, update.train, recipes))
  const budget = c.site.options.budget
  if (budget !== null) {
    c.saveBudget()
    c.metrics.epsilon.set(budget.spent.epsilon)
  }
  c.setInput(update.values, update.count)
  return true
}

export function createTrainingScheduler (c: TrainingComponents, init: TrainingInit = {}): TrainingScheduler {
  const later = (fn: () => void): void => { c.clock.setTimeout(fn, init.laterMs ?? 50) }
  /** the model round whose input is still to be trained, or -1 */
  let due = -1
  let training = false
  let running = false
  let current: { round: number, since: number } | null = null

  async function train (round: number): Promise<void> {
    if (!running || c.round()?.number !== round) return
    // the state the round trains from is still being fetched (the round may hold a stand-in of its
    // length, protocol/selection.ts): look again shortly
    if (c.fetchingState?.() === true) { due = round; return }
    current = { round, since: c.clock.now() }
    const recipes = c.candidates?.recipes(round)
    logTraining(c, round, recipes)
    try {
      const u = recipes === undefined
        ? { ...await c.site.update(c.weights(), round, modelRoundOf(round)), train: c.site.lastTrain! }
        : await updateCandidates(c.site, c.weights(), recipes, round, modelRoundOf(round))
      // stopped, or the round moved on while this node trained: the input is no longer due
      if (running && c.round()?.number === round && !handOver(c, round, u, recipes)) due = round
    } catch (e) {
      if (running) c.log.error(`round ${round}: training failed, this node sends no input this round: ${(e as Error).message}`)
    } finally {
      current = null
      c.trainingEnded?.()
    }
  }

  /** an eval round judges the certified model: once this node holds it */
  function validateWhenReady (round: number): void {
    later(() => {
      if (!running || c.round()?.number !== round) return
      if (c.stateCurrent()) void sendValidationCounts(c, round, () => running); else validateWhenReady(round)
    })
  }

  return {
    start () { running = true },
    stop () { running = false },
    statisticsCertified (stats) { if (stats !== null && c.site.norm === undefined) c.site.useStatistics(stats) },
    modelCertified (round, model) {
      // figures only of the model the certificate names: a certificate learnt before its model waits for it
      const evaluateWhenHeld = (): void => {
        if (!running || c.lastModelRound() !== round) return // a later model was certified: its own line follows
        if (!c.stateCurrent()) return later(evaluateWhenHeld)
        // the weights of this round, taken now: the next certificate may arrive while this evaluates
        logCertifiedValidation(c, round, model, () => running)
      }
      evaluateWhenHeld()
    },
    roundStarted (round, kind) {
      if (kind === 'stats') { const s = c.site.statsInput(); c.setInput(s.values, s.count) } else if (kind === 'update') due = round
      else validateWhenReady(round)
    },
    phaseEntered: trainIfDue,
    training: () => current
  }

  /** train for the round in progress if its input is due and no training is under way (one that ends looks again) */
  function trainIfDue (): void {
    const r = c.round()
    if (training || r === null || r.number !== due || !r.inputExpected) return
    due = -1
    training = true
    later(() => { void train(r.number).finally(() => { training = false; if (running) trainIfDue() }) })
  }
}
