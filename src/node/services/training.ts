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
import type { Clock } from '../clock.ts'
import type { Logger } from '../logger.ts'
import type { NodeMetrics } from '../metrics.ts'

export interface TrainingComponents {
  site: Pick<TrainingSite, 'update' | 'statsInput' | 'lastTrain' | 'options' | 'evaluate' | 'predictions' | 'useStatistics' | 'norm'>
  /** the consortium's classes and histogram bins (the manifest's) */
  validation: ValidationLayout
  /** the round in progress, and the certified weights to train from */
  round: () => RoundView | null
  weights: () => Float32Array
  /** whether the weights are the last certified ones (not still being fetched) */
  stateCurrent: () => boolean
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

/** The log line of a finished training: its images, time, rate, and the ε spent and early stop if any. */
export function trainedMessage (round: number, t: NonNullable<TrainingSite['lastTrain']>): string {
  return `round ${round}: trained ${t.examples} images in ${t.seconds.toFixed(1)} s (${t.imagesPerSecond.toFixed(0)} images/s)${t.epsilon !== null ? `, ε spent ${t.epsilon.toFixed(3)}` : ''}${t.stoppedEarly !== null ? ` — ${t.stoppedEarly}` : ''}`
}

/** this site's validation counts of the certified model (zeros from a site without a validation part) */
async function sendValidationCounts (c: Pick<TrainingComponents, 'site' | 'round' | 'weights' | 'validation' | 'setInput' | 'log'>, round: number, running: () => boolean): Promise<void> {
  let p: Awaited<ReturnType<TrainingComponents['site']['predictions']>>
  try {
    p = await c.site.predictions(c.weights(), 'val')
  } catch (e) {
    if (running()) c.log.error(`round ${round}: validation failed, this node sends no input this round: ${(e as Error).message}`)
    return
  }
  if (!running() || c.round()?.number !== round) return
  const counts = p === null ? new Float64Array(validationLength(c.validation)) : validationCounts(p.probs, p.labels, c.validation)
  c.setInput(counts, p?.labels.length ?? 0)
}

/** log the validation figures of the certified model of `round` (the weights are taken now) */
function logCertifiedValidation (c: Pick<TrainingComponents, 'site' | 'weights' | 'log'>, round: number, model: string, running: () => boolean): void {
  c.site.evaluate(c.weights(), 'val').then(
    m => { if (m !== null && running()) c.log.info({ round, model, auc: m.auc, accuracy: m.accuracy }, `round ${round}: validation of the certified model ${model.slice(0, 12)}: ${formatMetrics(m)}`) },
    (e: Error) => { if (running()) c.log.warn(`round ${round}: validation of the certified model failed: ${e.message}`) })
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
    current = { round, since: c.clock.now() }
    c.log.info({ round, epochs: c.site.options.epochs, batchSize: c.site.options.batchSize }, `round ${round}: training on ${c.site.options.epochs} epoch(s) of this hospital's data, batch ${c.site.options.batchSize}`)
    try {
      handOver(round, await c.site.update(c.weights(), round, modelRoundOf(round)))
    } catch (e) {
      if (running) c.log.error(`round ${round}: training failed, this node sends no input this round: ${(e as Error).message}`)
    } finally {
      current = null
      c.trainingEnded?.()
    }
  }

  function handOver (round: number, update: { values: Float32Array, count: number }): void {
    // stopped, or the round moved on while this node trained: the input is no longer due
    if (!running || c.round()?.number !== round) return
    c.log.info(trainedMessage(round, c.site.lastTrain!))
    const budget = c.site.options.budget
    if (budget !== null) {
      c.saveBudget()
      c.metrics.epsilon.set(budget.spent.epsilon)
    }
    c.setInput(update.values, update.count)
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
