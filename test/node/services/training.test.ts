/** The training scheduler with a stubbed site and round: what it trains, when, and what it hands on. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { createTrainingScheduler, trainedMessage } from '../../../src/node/services/training.ts'
import { createMetrics } from '../../../src/node/metrics.ts'
import { PrivacyBudget } from '../../../src/privacy/index.ts'
import type { RoundView } from '../../../src/protocol/peer.ts'
import type { TrainingSite } from '../../../src/training/worker-site.ts'
import { ManualClock } from '../../../src/node/clock.ts'
import { recordingLogger } from './stubs.ts'
import type { CandidateRecipe } from '../../../src/training/candidates.ts'

function setup (withBudget = false, candidates?: { recipes: (round: number) => CandidateRecipe[], stateParts: () => number[] }) {
  const trained: Array<{ weights: Float32Array, round: number, recipe?: CandidateRecipe }> = []
  const inputs: Array<{ values: number[], count: number }> = []
  const clock = new ManualClock()
  let saved = 0
  const budget = withBudget ? new PrivacyBudget(8, 1e-5) : null
  // the next training's outcome: by default at once; a test may hold it back or make it fail
  let gate: Promise<void> = Promise.resolve()
  let failure: Error | null = null
  const site = {
    options: { budget },
    lastTrain: { examples: 10, seconds: 0.1, imagesPerSecond: 100, epsilon: null, stoppedEarly: null },
    norm: undefined as { mean: number, std: number } | undefined,
    statsInput: () => ({ values: [0.4, 0.2, 0.5, 0.5], count: 10 }),
    update: async (weights: Float32Array, round: number, _modelRound?: number, recipe?: CandidateRecipe) => {
      trained.push({ weights, round, ...(recipe === undefined ? {} : { recipe }) })
      await gate
      if (failure !== null) throw failure
      // a candidate's part: its weights plus its learning rate, so that the test sees which went where
      return { values: recipe === undefined ? Float32Array.of(1, 2) : Float32Array.from(weights, w => w + recipe.learningRate), count: 10 }
    },
    evaluated: [] as number[][],
    async evaluate (weights: Float32Array) { this.evaluated.push(Array.from(weights)); return { auc: 0.9, accuracy: 0.8, sensitivity: 0.7, specificity: 0.6, mcc: 0.5, n: 3 } },
    predictions: async (weights: Float32Array) => ({ probs: Float32Array.of(0.9, 0.1, 0.2, 0.8, 0.35, 0.65), labels: Int32Array.of(0, 1, 0), weights }),
    useStatistics (s: ArrayLike<number>) { this.norm = { mean: s[0], std: 1 } }
  }
  let round: RoundView | null = null
  // the certified state as the node holds it: a certificate may arrive before its model
  const held = { weights: Float32Array.of(9, 9), current: true, fetching: false, lastModelRound: undefined as number | undefined }
  const { log, lines } = recordingLogger()
  const metrics = createMetrics()
  const scheduler = createTrainingScheduler({
    site: site as unknown as TrainingSite, round: () => round, weights: () => held.weights, stateCurrent: () => held.current, fetchingState: () => held.fetching, candidates, lastModelRound: () => held.lastModelRound, log, metrics, validation: { classes: 2, bins: 10 },
    setInput: (values, count) => inputs.push({ values: Array.from(values), count }), saveBudget: () => { saved++ }, clock
  }, { laterMs: 50 })
  const enter = (r: Partial<RoundView> & { number: number }): void => { round = { kind: 'update', phase: 'advertise', inputExpected: false, done: false, ...r }; scheduler.phaseEntered() }
  const hold = (): (() => void) => { let release!: () => void; gate = new Promise(resolve => { release = resolve }); return release }
  const fail = (e: Error | null): void => { failure = e }
  /** model round `round` starts, the masking set includes this node, and the scheduler has its turn */
  const due = async (round: number): Promise<void> => {
    scheduler.roundStarted(round, 'update')
    enter({ number: round, phase: 'masked-input', inputExpected: true })
    await clock.advance(50)
    await settle()
  }
  return { scheduler, trained, inputs, clock, enter, site, metrics, lines, saved: () => saved, budget, hold, fail, held, due }
}

/** let the scheduler's awaited site calls finish */
const settle = async (): Promise<void> => { for (let i = 0; i < 5; i++) await new Promise(resolve => setImmediate(resolve)) }

test('the statistics round gets the pixel statistics at once; a model round trains only once the masking set includes this node', async () => {
  const t = setup()
  t.scheduler.start()
  t.scheduler.roundStarted(0, 'stats')
  assert.equal(t.inputs, [{ values: [0.4, 0.2, 0.5, 0.5], count: 10 }])
  t.scheduler.roundStarted(1, 'update')
  t.enter({ number: 1, phase: 'share-keys' })
  assert.is(t.clock.pending, 0, 'not before the masking set')
  t.enter({ number: 1, phase: 'masked-input', inputExpected: true })
  t.enter({ number: 1, phase: 'masked-input', inputExpected: true })
  assert.is(t.clock.pending, 1, 'scheduled once')
  await t.clock.advance(49)
  assert.is(t.trained.length, 0, 'the network has its turn first')
  await t.clock.advance(1)
  await settle()
  assert.equal(t.trained.map(x => [x.round, Array.from(x.weights)]), [[1, [9, 9]]], 'trained from the certified weights')
  assert.equal(t.inputs[1], { values: [1, 2], count: 10 })
})

test('no training for a round this node is not in, nor once the round moved on, nor after stop', async () => {
  const t = setup()
  t.scheduler.start()
  t.scheduler.roundStarted(1, 'update')
  t.enter({ number: 1, phase: 'masked-input', inputExpected: false })
  assert.is(t.clock.pending, 0, 'the masking set left this node out')
  t.scheduler.roundStarted(2, 'update')
  t.enter({ number: 2, phase: 'masked-input', inputExpected: true })
  t.enter({ number: 3, phase: 'advertise' }) // the round moved on before training began
  await t.clock.advance(50)
  await settle()
  assert.is(t.trained.length, 0)
  t.scheduler.roundStarted(3, 'update')
  t.enter({ number: 3, phase: 'masked-input', inputExpected: true })
  t.scheduler.stop()
  await t.clock.advance(50)
  await settle()
  assert.is(t.trained.length, 0, 'stopped')
})

test('with DP the budget is saved after each training and ε is reported', async () => {
  const t = setup(true)
  t.scheduler.start()
  t.scheduler.roundStarted(1, 'update')
  t.enter({ number: 1, phase: 'masked-input', inputExpected: true })
  await t.clock.advance(50)
  await settle()
  assert.is(t.saved(), 1)
  const eps = await t.metrics.registry.getSingleMetric('medmesh_epsilon_spent')!.get()
  assert.is(eps.values[0].value, t.budget!.spent.epsilon)
})

test('an eval round gets this site\'s validation counts of the certified model, soon after it starts', async () => {
  const t = setup()
  t.scheduler.start()
  t.scheduler.roundStarted(2, 'eval')
  t.enter({ number: 2, kind: 'eval', phase: 'advertise' })
  assert.is(t.inputs.length, 0)
  await t.clock.advance(50)
  await settle()
  assert.is(t.inputs.length, 1)
  const { values, count } = t.inputs[0]
  assert.is(count, 3)
  // confusion [[1 (0→0), 1 (0→1)], [0, 1]], then 10 bins of p(class 1) over positives and 10 over negatives
  assert.equal(values.slice(0, 4), [1, 1, 0, 1])
  assert.equal(values.slice(4, 14), [0, 0, 0, 0, 0, 0, 0, 0, 1, 0], 'the positive at 0.8')
  assert.equal(values.slice(14, 24), [0, 1, 0, 0, 0, 0, 1, 0, 0, 0], 'the negatives at 0.1 and 0.65')
})

test('a training that fails (its worker crashed) costs that round only: logged, no input, and the next round trains', async () => {
  const t = setup()
  t.scheduler.start()
  t.scheduler.roundStarted(1, 'update')
  t.fail(new Error('the training worker exited (code 1)'))
  t.enter({ number: 1, phase: 'masked-input', inputExpected: true })
  await t.clock.advance(50)
  await settle()
  assert.is(t.inputs.length, 0)
  assert.ok(t.lines.some(l => l.level === 'error' && /round 1: training failed, this node sends no input this round: the training worker exited/.test(l.msg)), JSON.stringify(t.lines))
  t.fail(null)
  t.scheduler.roundStarted(3, 'update')
  t.enter({ number: 3, phase: 'masked-input', inputExpected: true })
  await t.clock.advance(50)
  await settle()
  assert.equal(t.inputs, [{ values: [1, 2], count: 10 }])
})

test('a node stopped while it trains sends no input when the training ends, nor after the round moved on', async () => {
  const t = setup()
  t.scheduler.start()
  let release = t.hold()
  await t.due(1)
  assert.is(t.trained.length, 1, 'training began')
  t.enter({ number: 3, phase: 'advertise' })
  release()
  await settle()
  assert.is(t.inputs.length, 0, 'round 1 is over: its input is not due')
  t.scheduler.roundStarted(3, 'update')
  release = t.hold()
  t.enter({ number: 3, phase: 'masked-input', inputExpected: true })
  await t.clock.advance(50)
  await settle()
  t.scheduler.stop()
  release()
  await settle()
  assert.is(t.inputs.length, 0, 'stopped')
})

test('a round that falls due while a stale training still runs is trained as soon as that one ends', async () => {
  const t = setup()
  t.scheduler.start()
  t.scheduler.roundStarted(1, 'update')
  const release = t.hold()
  t.enter({ number: 1, phase: 'masked-input', inputExpected: true })
  await t.clock.advance(50)
  await settle()
  t.scheduler.roundStarted(3, 'update')
  t.enter({ number: 3, phase: 'masked-input', inputExpected: true })
  assert.is(t.clock.pending, 0, 'not while round 1 trains')
  release()
  await settle()
  assert.is(t.clock.pending, 1)
  await t.clock.advance(50)
  await settle()
  assert.equal(t.trained.map(x => x.round), [1, 3])
  assert.equal(t.inputs, [{ values: [1, 2], count: 10 }], 'round 3\'s input only')
})

test('certified statistics are taken once', () => {
  const t = setup()
  t.scheduler.statisticsCertified(null)
  assert.is(t.site.norm, undefined)
  t.scheduler.statisticsCertified(Float64Array.of(0.3, 0.1))
  t.scheduler.statisticsCertified(Float64Array.of(0.9, 0.8))
  assert.equal(t.site.norm, { mean: 0.3, std: 1 })
})

test('validation figures only of the model the certificate names: a certificate learnt before its model waits for it', async () => {
  const t = setup()
  t.scheduler.start()
  // round 3's certificate is here, its model is not: the weights held are still round 1's
  t.held.lastModelRound = 3
  t.held.current = false
  t.held.weights = Float32Array.of(1, 1)
  t.scheduler.modelCertified(3, 'ab'.repeat(32))
  await settle()
  assert.is(t.site.evaluated.length, 0, 'the previous model is not evaluated under round 3\'s name')
  assert.is(t.clock.pending, 1, 'it looks again later')
  t.held.weights = Float32Array.of(3, 3)
  t.held.current = true
  await t.clock.advance(50)
  await settle()
  assert.equal(t.site.evaluated, [[3, 3]], 'round 3\'s model, once held')
  assert.ok(t.lines.some(l => /^round 3: validation of the certified model abababababab: /.test(l.msg)), t.lines.map(l => l.msg).join('\n'))
  // superseded before its model came: no line for it (the later model's own follows)
  t.held.current = false
  t.held.lastModelRound = 5
  t.scheduler.modelCertified(5, 'cd'.repeat(32))
  assert.is(t.clock.pending, 1)
  t.held.lastModelRound = 7
  await t.clock.advance(50)
  await settle()
  assert.is(t.site.evaluated.length, 1)
  assert.is(t.clock.pending, 0)
})

test('the line of a finished training names the ε spent and an early stop only when there are', () => {
  const t = { examples: 1200, steps: 38, meanLoss: 0.5, seconds: 12.34, imagesPerSecond: 97.2, epsilon: null, stoppedEarly: null }
  assert.is(trainedMessage(3, t), 'round 3: trained 1200 images in 12.3 s (97 images/s)')
  assert.is(trainedMessage(4, { ...t, epsilon: 1.23456, stoppedEarly: 'privacy budget spent' }),
    'round 4: trained 1200 images in 12.3 s (97 images/s), ε spent 1.235 — privacy budget spent')
})

test('a real site whose recipe diverges: the non-finite training is refused, logged as such, and nothing is sent', async () => {
  const { Site } = await import('../../../src/training/site.ts')
  const { loadMedMnist, BUNDLED_PNEUMONIAMNIST } = await import('../../../src/training/data/npz.ts')
  const { subset } = await import('../../../src/training/data/dataset.ts')
  const d = loadMedMnist(BUNDLED_PNEUMONIAMNIST)
  // SGD at 1e38 on the linear model: the weights reach float32's limit within a step or two
  const site = await Site.open({ model: { id: 'medmesh/linear', seed: 1 }, input: { size: 28, channels: 1 }, classes: 2, dp: null }, { train: subset(d.train, Array.from({ length: 64 }, (_, i) => i)), val: null, test: null },
    { epochs: 1, batchSize: 16, learningRate: 1e38, optimizer: 'sgd', seed: new Uint8Array(32), budget: null, minSteps: 8 })
  const inputs: number[] = []
  const clock = new ManualClock()
  const { log, lines } = recordingLogger()
  let round: RoundView | null = null
  const scheduler = createTrainingScheduler({
    site: { ...site, options: site.options, lastTrain: null, update: async (w: Float32Array, r: number) => site.update(w, r), statsInput: () => site.statsInput() } as unknown as TrainingSite,
    round: () => round, weights: () => site.initialWeights(), stateCurrent: () => true, lastModelRound: () => undefined, log, metrics: createMetrics(), validation: { classes: 2, bins: 10 },
    setInput: values => inputs.push(values.length), saveBudget: () => {}, clock
  }, { laterMs: 50 })
  scheduler.start()
  scheduler.roundStarted(1, 'update')
  round = { number: 1, kind: 'update', phase: 'masked-input', inputExpected: true, done: false }
  scheduler.phaseEntered()
  await clock.advance(50)
  await settle()
  assert.is(inputs.length, 0, 'no input from a diverged training')
  // the log says how much the site trains: its epochs and the consortium's minimum of steps
  assert.ok(lines.some(l => /round 1: training on 1 epoch\(s\) of this hospital's data, batch 16, at least 8 steps/.test(l.msg)), JSON.stringify(lines.map(l => l.msg)))
  assert.ok(lines.some(l => l.level === 'error' && /round 1: training failed, this node sends no input this round: training diverged: the (loss became|weights hold)/.test(l.msg)), JSON.stringify(lines))
  scheduler.stop()
  site.dispose()
})

test('a model round waits while the certified state is being fetched, and trains from it once held', async () => {
  const t = setup()
  t.scheduler.start()
  t.held.fetching = true
  t.scheduler.roundStarted(1, 'update')
  t.enter({ number: 1, phase: 'masked-input', inputExpected: true })
  for (let i = 0; i < 4; i++) { await t.clock.advance(50); await settle() }
  assert.is(t.trained.length, 0, 'not from what the round holds meanwhile')
  t.held.fetching = false
  t.held.weights = Float32Array.of(7, 7)
  for (let i = 0; i < 2; i++) { await t.clock.advance(50); await settle() }
  assert.equal(t.trained.map(x => Array.from(x.weights)), [[7, 7]])
  assert.equal(t.inputs, [{ values: [1, 2], count: 10 }])
})

const RECIPES: CandidateRecipe[] = [{ candidate: 0, learningRate: 1, epochs: 1 }, { candidate: 2, learningRate: 3, epochs: 2 }]

test('while the recipe is chosen: each candidate\'s part trained with its recipe, the input their updates in order; eval counts per part', async () => {
  const t = setup(false, { recipes: () => RECIPES, stateParts: () => [2, 2] })
  t.held.weights = Float32Array.of(9, 9, 5, 5)
  t.scheduler.start()
  await t.due(1)
  assert.equal(t.trained.map(x => [Array.from(x.weights), x.recipe?.candidate]), [[[9, 9], 0], [[5, 5], 2]])
  assert.equal(t.inputs, [{ values: [10, 10, 8, 8], count: 10 }])
  assert.ok(t.lines.some(l => /trained 20 images for 2 candidate recipes \(#1 lr 1 × 1 epoch\(s\), #3 lr 3 × 2 epoch\(s\)\)/.test(l.msg)), JSON.stringify(t.lines.map(l => l.msg)))
  t.scheduler.roundStarted(2, 'eval')
  t.enter({ number: 2, kind: 'eval', phase: 'advertise' })
  await t.clock.advance(50)
  await settle()
  const counts = t.inputs[1].values
  assert.is(counts.length, 48, 'two parts of 2×2 + 2×10 counts')
  assert.equal(counts.slice(0, 4), [1, 1, 0, 1])
  assert.equal(counts.slice(24, 28), [1, 1, 0, 1])
})

test('a rung decided while this node trained (the round\'s state shrank): the stale input is not sent, and it trains again from the new state', async () => {
  const t = setup(false, { recipes: () => RECIPES.slice(0, t.held.weights.length / 2), stateParts: () => Array.from({ length: t.held.weights.length / 2 }, () => 2) })
  t.held.weights = Float32Array.of(9, 9, 5, 5)
  t.scheduler.start()
  const release = t.hold()
  await t.due(3)
  t.held.weights = Float32Array.of(9, 9)
  release()
  await settle()
  assert.is(t.inputs.length, 0, 'no input of the old length')
  assert.ok(t.lines.some(l => l.level === 'warn' && /training again/.test(l.msg)))
  await t.clock.advance(50)
  await settle()
  assert.equal(t.inputs, [{ values: [10, 10], count: 10 }])
})

test.run()
