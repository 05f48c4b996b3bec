/** Training in a worker thread: the same result as on the calling thread, a free event loop meanwhile, and a crash that costs one call. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from '../../src/training/data/npz.ts'
import { subset } from '../../src/training/data/dataset.ts'
import { Site, type SiteSpec } from '../../src/training/site.ts'
import { WorkerSite, TrainingWorkerError } from '../../src/training/worker-site.ts'
import { PrivacyBudget } from '../../src/privacy/index.ts'

const data = loadMedMnist(BUNDLED_PNEUMONIAMNIST)
const train = subset(data.train, Array.from({ length: 200 }, (_, i) => i * 20))
const val = subset(data.val, Array.from({ length: 40 }, (_, i) => i * 10))
const spec: SiteSpec = { model: { id: 'medmesh/cnn-small', seed: 3 }, input: { size: 28, channels: 1 }, classes: 2, dp: null }
const options = { epochs: 1, batchSize: 32, learningRate: 1e-3, seed: new Uint8Array(32).fill(5), budget: null }

test('a worker trains, predicts and evaluates as the same site on this thread does, given the same seed', async () => {
  const here = await Site.open(spec, { train, val, test: null }, options)
  const there = await WorkerSite.open(spec, { train, val, test: null }, options)
  try {
    assert.equal(there.initialWeights(), here.initialWeights())
    assert.equal(there.statsInput(), here.statsInput())
    here.useStatistics(here.statsInput().values)
    there.useStatistics(here.statsInput().values)
    const w = here.initialWeights()
    const a = here.update(w, 1)
    const b = await there.update(w, 1)
    assert.is(b.count, a.count)
    let worst = 0
    for (let i = 0; i < a.values.length; i++) worst = Math.max(worst, Math.abs(a.values[i] - b.values[i]))
    assert.ok(worst < 1e-6, `largest difference ${worst}`)
    assert.is(there.lastTrain!.examples, here.lastTrain!.examples)
    const next = Float32Array.from(w, (x, i) => x + a.values[i])
    assert.equal((await there.evaluate(next, 'val'))!.auc, here.evaluate(next, 'val')!.auc)
    assert.equal((await there.predictions(next, 'val'))!.labels, val.labels)
    assert.is(await there.predictions(next, 'test'), null, 'no test split here')
  } finally {
    here.dispose()
    await there.close()
  }
})

test('models of other widths (candidates of recipe selection): a site trains each with its own trainer, judges weights by their size, and two workers train the wider one as one does', async () => {
  const wide: SiteSpec = { ...spec, model: { ...spec.model, widthFactors: [0.5, 2] } }
  const here = await Site.open(wide, { train, val, test: null }, options)
  const there = await WorkerSite.open(wide, { train, val, test: null }, { ...options, workers: 2 })
  try {
    const [w1, half, double] = [here.initialWeights(), here.initialWeights(0.5), here.initialWeights(2)]
    assert.ok(half.length < w1.length && w1.length < double.length, `${half.length}, ${w1.length}, ${double.length} weights`)
    assert.equal(there.initialWeights(2), double, 'the workers build the same wide model from the seed')
    here.useStatistics(here.statsInput().values)
    there.useStatistics(here.statsInput().values)
    const u = here.update(half, 1, 1, { candidate: 1, learningRate: 1e-3, epochs: 1, widthFactor: 0.5 })
    assert.is(u.values.length, half.length)
    assert.ok(u.values.some(x => x !== 0), 'the narrow model trained')
    // judged without saying the width: the weights' size names the model
    assert.is(here.predictions(Float32Array.from(half, (x, i) => x + u.values[i]), 'val')!.probs.length, 2 * val.labels.length)
    assert.throws(() => here.predictions(new Float32Array(w1.length + 1), 'val'), /no model has \d+ weights/)
    assert.throws(() => here.update(w1, 1, 1, { candidate: 1, learningRate: 1e-3, epochs: 1, widthFactor: 0.5 }), /given to candidate 1's model of \d+/, 'a part of the wrong size is refused, not trained on another width')
    // two workers split each batch of the widest model (their shared sums must fit it)
    const a = here.update(double, 1, 1, { candidate: 2, learningRate: 1e-3, epochs: 1, widthFactor: 2 })
    const b = await there.update(double, 1, 1, { candidate: 2, learningRate: 1e-3, epochs: 1, widthFactor: 2 })
    let num = 0; let den = 0
    for (let i = 0; i < a.values.length; i++) { num += (a.values[i] - b.values[i]) ** 2; den += a.values[i] ** 2 }
    assert.ok(Math.sqrt(num / den) < 1e-3, `relative L2 difference ${Math.sqrt(num / den)}`)
  } finally {
    here.dispose()
    await there.close()
  }
})

test('the calling thread stays free while the worker trains: timers fire on time', async () => {
  // 1.5 epochs of the whole training set: over a second even with oneDNN's convolutions (2,000 images/s here)
  const site = await WorkerSite.open(spec, { train: data.train, val: null, test: null }, { ...options, epochs: 1.5 })
  try {
    let worst = 0
    let last = performance.now()
    const timer = setInterval(() => { const now = performance.now(); worst = Math.max(worst, now - last - 20); last = now }, 20)
    const started = performance.now()
    await site.update(site.initialWeights(), 1)
    clearInterval(timer)
    const took = performance.now() - started
    assert.ok(took > 1000, `the training lasted ${took.toFixed(0)} ms: long enough to matter`)
    assert.ok(worst < 100, `a 20 ms timer was ${worst.toFixed(0)} ms late while the worker trained`)
  } finally {
    await site.close()
  }
})

test('a worker killed mid-training fails that call with a clear error; the next call starts a new worker and trains', async () => {
  // 30 epochs of 200 images: seconds of training, still under way when the worker is killed at 300 ms
  const site = await WorkerSite.open(spec, { train, val, test: null }, { ...options, epochs: 30 })
  try {
    const first = site.threadIds[0]
    const pending = site.update(site.initialWeights(), 1)
    await new Promise(resolve => setTimeout(resolve, 300))
    await site.terminateWorker()
    const err = await pending.then(() => null, (e: Error) => e)
    assert.ok(err instanceof TrainingWorkerError && /the training worker exited/.test(err.message), String(err))
    const u = await site.update(site.initialWeights(), 2)
    assert.ok(u.values.some(x => x !== 0), 'the new worker trained')
    assert.is.not(site.threadIds[0], first)
  } finally {
    await site.close()
  }
})

test('with DP, the budget the caller holds is the one spent: the worker spends it and hands it back', async () => {
  const budget = new PrivacyBudget(50, 1e-5)
  const site = await WorkerSite.open({ ...spec, dp: { noiseMultiplier: 1, clipNorm: 1 } }, { train, val: null, test: null }, { ...options, epochs: 0.2, budget, noiseSeed: new Uint8Array(32).fill(7) })
  try {
    assert.is(site.noiseMultiplier, 1)
    await site.update(site.initialWeights(), 1)
    const once = site.options.budget!.spent.epsilon
    assert.ok(once > 0)
    assert.is(site.lastTrain!.epsilon, once)
    await site.update(site.initialWeights(), 2)
    assert.ok(site.options.budget!.spent.epsilon > once, 'the second round adds to the first')
    // the noise of a simulation follows from its seed: a second site with the same seed trains the same update
    const again = await WorkerSite.open({ ...spec, dp: { noiseMultiplier: 1, clipNorm: 1 } }, { train, val: null, test: null }, { ...options, epochs: 0.2, budget: new PrivacyBudget(50, 1e-5), noiseSeed: new Uint8Array(32).fill(7) })
    try {
      const a = await site.update(site.initialWeights(), 3)
      await again.update(again.initialWeights(), 1); await again.update(again.initialWeights(), 2)
      const b = await again.update(again.initialWeights(), 3)
      assert.equal(Array.from(b.values.slice(0, 50)), Array.from(a.values.slice(0, 50)))
    } finally { await again.close() }
  } finally {
    await site.close()
  }
})

for (const optimizer of ['sgd', 'adam'] as const) {
  // SGD moves each weight by the summed gradient itself: the two sums (over the whole batch, and
  // over each worker's half, then added) agree to float rounding. Adam divides each coordinate by
  // its gradient's running magnitude, so a coordinate whose gradient is at rounding level can move
  // by up to the learning rate either way: compare the updates as vectors (relative L2 distance)
  // with a looser bound (a single coordinate can differ by a few steps' worth). How many
  // coordinates sit at rounding level depends on the kernels: with the WebAssembly convolutions
  // the two rounds gave 5e-5 and 4e-3, with oneDNN's 3e-3 and 3.5e-2 (the SGD rounds 1e-6 with
  // both: the gradients agree to float rounding either way); a worker's share lost or counted
  // twice is off by tens of percent
  const bound = optimizer === 'sgd' ? 1e-5 : 8e-2
  test(`two workers that split each batch train the same update as one (to float tolerance), with augmentation and class weights (${optimizer})`, async () => {
    const lr = optimizer === 'sgd' ? 0.05 : options.learningRate
    const one = await WorkerSite.open(spec, { train, val, test: null }, { ...options, learningRate: lr, optimizer, epochs: 1, classWeighting: 'balanced' })
    const two = await WorkerSite.open(spec, { train, val, test: null }, { ...options, learningRate: lr, optimizer, epochs: 1, classWeighting: 'balanced', workers: 2 })
    try {
      assert.is(two.threadIds.length, 2)
      const relative = (a: Float32Array, b: Float32Array): { rel: number, worst: number } => {
        let d = 0; let n = 0; let worst = 0
        for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; n += a[i] ** 2; worst = Math.max(worst, Math.abs(a[i] - b[i])) }
        return { rel: Math.sqrt(d / n), worst }
      }
      let w = one.initialWeights()
      for (let round = 1; round <= 2; round++) {
        const a = await one.update(w, round)
        const b = await two.update(w, round)
        const { rel, worst } = relative(a.values, b.values)
        assert.ok(rel < bound, `round ${round}: relative difference ${rel}`)
        console.log(`  ${optimizer}, round ${round}: 1 vs 2 workers, relative L2 ${rel.toExponential(2)}, largest coordinate ${worst.toExponential(2)} (learning rate ${lr})`)
        // the loss is taken along the way, so under Adam it follows the updates apart a little
        assert.ok(Math.abs(two.lastTrain!.meanLoss - one.lastTrain!.meanLoss) < (optimizer === 'sgd' ? 1e-4 : 1e-3), `mean loss ${two.lastTrain!.meanLoss} vs ${one.lastTrain!.meanLoss}`)
        // the next round from the new weights: the replicas stayed in step
        w = Float32Array.from(w, (x, i) => x + a.values[i])
      }
    } finally {
      await one.close(); await two.close()
    }
  })
}

test('two workers with DP-SGD: the same steps and ε as one, and one worker killed mid-round fails the round for both; the next round trains', async () => {
  const dpSpec = { ...spec, dp: { noiseMultiplier: 1.2, clipNorm: 1 } }
  // 8 epochs of 200 images (50 steps): a round still under way when a worker is killed at 200 ms
  const one = await WorkerSite.open(dpSpec, { train, val: null, test: null }, { ...options, epochs: 8, budget: new PrivacyBudget(200, 1e-5) })
  const two = await WorkerSite.open(dpSpec, { train, val: null, test: null }, { ...options, epochs: 8, budget: new PrivacyBudget(200, 1e-5), workers: 2 })
  try {
    await one.update(one.initialWeights(), 1)
    const u = await two.update(two.initialWeights(), 1)
    assert.is(two.lastTrain!.steps, one.lastTrain!.steps)
    assert.is(two.lastTrain!.examples, one.lastTrain!.examples, 'the same Poisson batches')
    assert.is(two.options.budget!.spent.epsilon, one.options.budget!.spent.epsilon)
    assert.ok(u.values.some(x => x !== 0))
    const pending = two.update(two.initialWeights(), 2)
    await new Promise(resolve => setTimeout(resolve, 200))
    await two.terminateWorker(1)
    const err = await pending.then(() => null, (e: Error) => e)
    assert.ok(err instanceof TrainingWorkerError, String(err))
    const again = await two.update(two.initialWeights(), 3)
    assert.ok(again.values.some(x => x !== 0), 'fresh workers trained the next round')
    assert.is(two.threadIds.length, 2)
  } finally {
    await one.close(); await two.close()
  }
})

test.run()
