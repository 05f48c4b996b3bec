/** Training candidate recipes side by side: each part with its recipe, in order; failures fail the whole; figures combined. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { combinedTrain, partPredictions, updateCandidates, type CandidateRecipe, type PartTrainer } from '../../src/training/candidates.ts'
import type { TrainResult } from '../../src/training/train-options.ts'

const result = (examples: number, seconds: number, steps: number, meanLoss: number): TrainResult => ({ examples, steps, meanLoss, seconds, imagesPerSecond: examples / seconds, epsilon: null, stoppedEarly: null })

/** a site whose update of a part is (its first weight + the recipe's learning rate) everywhere, recording what it was asked */
function stubSite (failOn?: number): PartTrainer & { asked: Array<{ weights: number[], recipe: CandidateRecipe | undefined, round: number, modelRound: number }> } {
  const asked: Array<{ weights: number[], recipe: CandidateRecipe | undefined, round: number, modelRound: number }> = []
  return {
    asked,
    lastTrain: null,
    update (weights, round, modelRound, recipe) {
      asked.push({ weights: [...weights], recipe, round, modelRound })
      if (recipe?.candidate === failOn) throw new Error('training diverged')
      this.lastTrain = result(100, 2, 4, recipe?.learningRate ?? 0)
      return { values: weights.map(() => weights[0] + (recipe?.learningRate ?? 0)), count: 100 }
    }
  } as PartTrainer & { asked: Array<{ weights: number[], recipe: CandidateRecipe | undefined, round: number, modelRound: number }>, lastTrain: TrainResult | null }
}

test('each part is trained from its own weights with its own recipe, and the update is the parts\' updates in order', async () => {
  const site = stubSite()
  const recipes = [{ candidate: 0, learningRate: 0.1, epochs: 1 }, { candidate: 2, learningRate: 0.3, epochs: 2 }]
  const u = await updateCandidates(site, Float32Array.of(1, 1, 1, 5, 5, 5), recipes, 7, 4)
  assert.equal(site.asked.map(a => a.weights), [[1, 1, 1], [5, 5, 5]])
  assert.equal(site.asked.map(a => a.recipe), recipes)
  assert.equal(site.asked.map(a => [a.round, a.modelRound]), [[7, 4], [7, 4]])
  assert.equal([...u.values].map(v => Number(v.toFixed(4))), [1.1, 1.1, 1.1, 5.3, 5.3, 5.3])
  assert.is(u.count, 100)
  assert.is(u.train.examples, 200)
  assert.is(u.train.seconds, 4)
  assert.is(Number(u.train.meanLoss.toFixed(3)), 0.2, 'the mean loss over both parts\' steps')
})

test('a part that fails fails the whole update; weights that are not whole parts are refused', async () => {
  await updateCandidates(stubSite(2), Float32Array.of(1, 2), [{ candidate: 0, learningRate: 0.1, epochs: 1 }, { candidate: 2, learningRate: 0.3, epochs: 1 }], 1, 1).then(
    () => assert.unreachable('it should fail'), (e: Error) => assert.match(e.message, /diverged/))
  await updateCandidates(stubSite(), Float32Array.of(1, 2, 3), [{ candidate: 0, learningRate: 0.1, epochs: 1 }, { candidate: 1, learningRate: 0.3, epochs: 1 }], 1, 1).then(
    () => assert.unreachable('it should fail'), (e: Error) => assert.match(e.message, /cannot be 2 models/))
})

test('predictions of each part in order; combined figures keep an early stop', async () => {
  const sums = await partPredictions(w => w.reduce((a, b) => a + b, 0), Float32Array.of(1, 2, 3, 4, 5, 6), 3)
  assert.equal(sums, [3, 7, 11])
  const c = combinedTrain([result(10, 1, 1, 1), { ...result(30, 1, 3, 2), stoppedEarly: 'privacy budget spent' }])
  assert.is(c.imagesPerSecond, 20)
  assert.is(c.stoppedEarly, 'privacy budget spent')
  assert.is(c.meanLoss, 1.75)
})

test.run()
