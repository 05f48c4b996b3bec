/**
 * Training several candidate recipes side by side: the weights are the candidates' models one
 * after another, each `size` long; each part is trained with its own recipe (and its own trainer,
 * so that one candidate's optimiser state never leaks into another's), and the update is the
 * parts' updates in the same order. Knows nothing of why the parts exist (the consortium choosing
 * its recipe), only how to train and judge them.
 */
import type { TrainResult } from './train-options.ts'

/**
 * A candidate's recipe: its number (which trainer) and what it changes (`widthFactor`: the model's
 * width, models.ts; absent: the site's model); `size`: its model's weights, its part of the weights
 * (absent: every part the same size).
 */
export interface CandidateRecipe { candidate: number, learningRate: number, epochs: number, widthFactor?: number, size?: number }

/** What training each part needs of a site (a Site or a worker-backed TrainingSite). */
export interface PartTrainer {
  update: (weights: Float32Array, round: number, modelRound: number, recipe?: CandidateRecipe) => { values: Float32Array, count: number } | Promise<{ values: Float32Array, count: number }>
  readonly lastTrain: TrainResult | null
}

/** `weights` as models of these sizes in order, or as `parts` models of one size (views, not copies). */
export function splitParts (weights: Float32Array, parts: number | readonly number[]): Float32Array[] {
  if (typeof parts === 'number') {
    if (parts < 1 || weights.length % parts !== 0) throw new Error(`${weights.length} weights cannot be ${parts} models of one size`)
    const count = parts
    parts = Array.from({ length: count }, () => weights.length / count)
  }
  const total = parts.reduce((n, s) => n + s, 0)
  if (parts.length < 1 || total !== weights.length) throw new Error(`${weights.length} weights cannot be models of ${parts.join(' + ')} weights`)
  let at = 0
  return parts.map(s => weights.subarray(at, (at += s)))
}

/** The parts' training results as one: images and time summed (the log line's figures). */
export function combinedTrain (results: readonly TrainResult[]): TrainResult {
  const examples = results.reduce((n, r) => n + r.examples, 0)
  const seconds = results.reduce((n, r) => n + r.seconds, 0)
  const steps = results.reduce((n, r) => n + r.steps, 0)
  return {
    examples, steps, seconds,
    meanLoss: steps === 0 ? NaN : results.reduce((n, r) => n + r.meanLoss * r.steps, 0) / steps,
    imagesPerSecond: seconds > 0 ? examples / seconds : 0,
    epsilon: null,
    stoppedEarly: results.map(r => r.stoppedEarly).find(s => s !== null) ?? null
  }
}

/**
 * Train each candidate's part of `weights` with its recipe, one after another (they share the
 * site's model and threads); the update is the parts' updates in order, with the site's sample
 * count. A part that fails (diverges) fails the whole: an update is all the candidates or nothing.
 */
export async function updateCandidates (site: PartTrainer, weights: Float32Array, recipes: readonly CandidateRecipe[], round: number, modelRound: number): Promise<{ values: Float32Array, count: number, train: TrainResult }> {
  const parts = splitParts(weights, recipes.every(r => r.size !== undefined) ? recipes.map(r => r.size!) : recipes.length)
  const values = new Float32Array(weights.length)
  const results: TrainResult[] = []
  let count = 0
  let at = 0
  for (const [i, recipe] of recipes.entries()) {
    // a copy: a worker-backed site transfers what it is given
    const u = await site.update(Float32Array.from(parts[i]), round, modelRound, recipe)
    values.set(u.values, at)
    at += parts[i].length
    count = Math.max(count, u.count)
    results.push(site.lastTrain!)
  }
  return { values, count, train: combinedTrain(results) }
}

/** Each part's predictions on a split, in order (null when the site has no such split); `parts` as splitParts takes them. */
export async function partPredictions<P> (predict: (weights: Float32Array) => P | Promise<P>, weights: Float32Array, parts: number | readonly number[]): Promise<P[]> {
  const out: P[] = []
  for (const part of splitParts(weights, parts)) out.push(await predict(Float32Array.from(part)))
  return out
}
