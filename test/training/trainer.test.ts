import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as tf from '@tensorflow/tfjs-core'
import { selectBackend } from '../../src/training/backend.ts'
import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from '../../src/training/data/npz.ts'
import { subset } from '../../src/training/data/dataset.ts'
import { buildModel, flattenWeights, setFlatWeights, countParameters, GroupNorm, hasBatchNorm } from '../../src/training/models.ts'
import { LocalTrainer, NonFiniteTrainingError, allFinite, clipByGlobalNorm } from '../../src/training/trainer.ts'
import { classWeights, priorShift, MAX_CLASS_WEIGHT } from '../../src/training/class-balance.ts'
import { pixelStats, normalisation, statsVector } from '../../src/training/data/stats.ts'
import { PrivacyBudget, seededRandom } from '../../src/privacy/index.ts'

const data = loadMedMnist(BUNDLED_PNEUMONIAMNIST)
const seed = (k: number) => new Uint8Array(32).fill(k)

test('the backend chosen here is named, with why faster ones were skipped', async () => {
  const choice = await selectBackend('auto')
  assert.ok(['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'].includes(choice.name))
  assert.is(tf.getBackend(), choice.name === 'tensorflow-gpu' ? 'tensorflow' : choice.name)
  for (const s of choice.skipped) assert.ok(s.reason.length > 0)
})

test('no tensor leaks: live tensors stay flat over many rounds of train, exchange and evaluate', async () => {
  await selectBackend('auto')
  const model = buildModel({ id: 'medmesh/cnn-small', height: 28, width: 28, channels: 1, classes: 2, seed: 1 })
  const trainer = new LocalTrainer(model)
  const small = subset(data.train, Array.from({ length: 64 }, (_, i) => i * 70))
  const budget = new PrivacyBudget(1e6, 1e-5)
  const round = (k: number) => {
    const w = flattenWeights(model)
    trainer.train(small, { steps: 2, batchSize: 16, learningRate: 1e-3, seed: seed(k), augment: true, classWeighting: 'balanced' })
    trainer.train(small, { steps: 1, batchSize: 4, learningRate: 1e-3, seed: seed(k), dp: { noiseMultiplier: 1, clipNorm: 1, budget, noiseRandom: seededRandom(seed(k)) } })
    setFlatWeights(model, w)
    trainer.evaluate(subset(data.test, [0, 1, 2, 3]))
  }
  round(0); round(1)
  const before = tf.memory().numTensors
  for (let k = 2; k < 12; k++) round(k)
  assert.is(tf.memory().numTensors, before)
  trainer.dispose()
})

test('DP-SGD stops with a clear message when the hospital\'s budget would be exceeded', async () => {
  await selectBackend('auto')
  const model = buildModel({ id: 'medmesh/cnn-small', height: 28, width: 28, channels: 1, classes: 2, seed: 2 })
  const trainer = new LocalTrainer(model)
  const small = subset(data.train, Array.from({ length: 100 }, (_, i) => i * 40))
  const budget = new PrivacyBudget(2, 1e-5) // σ=1.5, q=0.1: about 20 steps fit
  const r = trainer.train(small, { steps: 1000, batchSize: 10, learningRate: 1e-3, seed: seed(3), dp: { noiseMultiplier: 1.5, clipNorm: 1, budget } })
  assert.ok(r.stoppedEarly !== null && /privacy budget exceeded/.test(r.stoppedEarly), String(r.stoppedEarly))
  assert.ok(r.steps > 0 && r.steps < 1000, `${r.steps} steps`)
  assert.ok(r.epsilon! <= 2 && r.epsilon! > 1.5, `ε ${r.epsilon}`)
  const again = trainer.train(small, { steps: 5, batchSize: 10, learningRate: 1e-3, seed: seed(4), dp: { noiseMultiplier: 1.5, clipNorm: 1, budget } })
  assert.is(again.steps, 0)
  trainer.dispose()
})

test('a minimum of local steps: a small site repeats its epochs to take them, and a DP site plans its noise for them', async () => {
  const { Site } = await import('../../src/training/site.ts')
  const { localSteps } = await import('../../src/training/train-options.ts')
  const { noiseForBudget } = await import('../../src/privacy/index.ts')
  assert.is(localSteps({ epochs: 1, batchSize: 12 }, 60), 5)
  assert.is(localSteps({ epochs: 1, batchSize: 12, minSteps: 12 }, 60), 12, 'a small site: the minimum')
  assert.is(localSteps({ epochs: 4, batchSize: 12, minSteps: 12 }, 60), 20, 'a large one: its epochs')
  assert.is(localSteps({ steps: 3, batchSize: 12, minSteps: 12 }, 60), 3, 'steps asked for are taken as asked')
  const train = subset(data.train, Array.from({ length: 60 }, (_, i) => i * 70))
  const plain = await Site.open({ model: { id: 'medmesh/cnn-small', seed: 1 }, input: { size: 28, channels: 1 }, classes: 2, dp: null }, { train, val: null, test: null }, { epochs: 1, batchSize: 12, learningRate: 1e-3, seed: seed(8), budget: null, minSteps: 12 })
  plain.update(plain.initialWeights(), 1)
  assert.is(plain.lastTrain!.steps, 12)
  assert.is(plain.lastTrain!.examples, 12 * 12, 'every step a full batch: the epochs repeated')
  plain.dispose()
  const spec = { model: { id: 'medmesh/cnn-small' as const, seed: 1 }, input: { size: 28, channels: 1 }, classes: 2, dp: { noiseMultiplier: 0, clipNorm: 1, plannedRounds: 2 } }
  const site = await Site.open(spec, { train, val: null, test: null }, { epochs: 1, batchSize: 12, learningRate: 1e-3, seed: seed(9), budget: new PrivacyBudget(4, 1e-5), minSteps: 12 })
  assert.ok(Math.abs(site.noiseMultiplier! - noiseForBudget({ q: 12 / 60, steps: 24, epsilon: 4, delta: 1e-5 })) < 1e-9, 'σ planned for 12 steps a round, not 5')
  site.update(site.initialWeights(), 1)
  assert.is(site.lastTrain!.steps, 12)
  site.dispose()
})

test('calibrated DP noise: a site whose manifest says σ = 0 takes the σ that spends its whole budget over the planned rounds, and takes every step', async () => {
  const { Site } = await import('../../src/training/site.ts')
  const { noiseForBudget } = await import('../../src/privacy/index.ts')
  const train = subset(data.train, Array.from({ length: 60 }, (_, i) => i * 70))
  const spec = { model: { id: 'medmesh/cnn-small' as const, seed: 1 }, input: { size: 28, channels: 1 }, classes: 2, dp: { noiseMultiplier: 0, clipNorm: 1, plannedRounds: 3 } }
  const budget = new PrivacyBudget(4, 1e-5)
  const site = await Site.open(spec, { train, val: null, test: null }, { epochs: 1, batchSize: 12, learningRate: 1e-3, seed: seed(9), budget })
  const sigma = site.noiseMultiplier!
  assert.ok(Math.abs(sigma - noiseForBudget({ q: 12 / 60, steps: 15, epsilon: 4, delta: 1e-5 })) < 1e-9, `σ ${sigma}`)
  let w = site.initialWeights()
  for (let r = 1; r <= 3; r++) {
    const u = site.update(w, r)
    assert.is(site.lastTrain!.steps, 5, `round ${r}: every planned step`)
    assert.is(site.lastTrain!.stoppedEarly, null)
    w = Float32Array.from(w, (x, i) => x + u.values[i])
  }
  assert.ok(budget.spent.epsilon <= 4 && budget.spent.epsilon > 3.99, `ε spent ${budget.spent.epsilon}`)
  site.dispose()
})

test('DP-SGD clips: with negligible noise, one SGD step moves the weights by at most lr·C·|B|/E[B]', async () => {
  await selectBackend('auto')
  const model = buildModel({ id: 'medmesh/cnn-small', height: 28, width: 28, channels: 1, classes: 2, seed: 5 })
  const trainer = new LocalTrainer(model)
  const small = subset(data.train, Array.from({ length: 50 }, (_, i) => i * 90))
  const before = flattenWeights(model)
  const clipNorm = 0.01
  const r = trainer.train(small, { steps: 1, batchSize: 50, learningRate: 1, optimizer: 'sgd', seed: seed(6), dp: { noiseMultiplier: 1e-3, clipNorm, budget: new PrivacyBudget(1e12, 1e-5) } })
  const after = flattenWeights(model)
  let sq = 0
  for (let i = 0; i < before.length; i++) sq += (after[i] - before[i]) ** 2
  const moved = Math.sqrt(sq)
  assert.is(r.examples, 50)
  // noise: σ·C·sqrt(d)/E[B] ≈ 1e-4 here
  const noiseBound = 3 * 1e-3 * clipNorm * Math.sqrt(before.length) / 50
  assert.ok(moved <= clipNorm * r.examples / 50 + noiseBound, `moved ${moved}, bound ${clipNorm * r.examples / 50}`)
  assert.ok(moved > 0)
  trainer.dispose()
})

test('DP-SGD on two workers: each worker adds N(0, σ²C²) noise to its own half of the coordinates only, so every coordinate gets it exactly once', async () => {
  await selectBackend('auto')
  const small = subset(data.train, Array.from({ length: 32 }, (_, i) => i * 90))
  const sigma = 2; const clipNorm = 0.5
  // what one worker hands to the all-reduce (its share's clipped sum and its noise), here returned as the total
  const handed = (index: number, noiseSeed: number): Float32Array => {
    const model = buildModel({ id: 'medmesh/linear', height: 28, width: 28, channels: 1, classes: 2, seed: 3 })
    const trainer = new LocalTrainer(model)
    let captured: Float32Array | null = null
    trainer.train(small, {
      steps: 1, batchSize: 32, learningRate: 0.1, optimizer: 'sgd', seed: seed(4),
      dp: { noiseMultiplier: sigma, clipNorm, budget: new PrivacyBudget(1e12, 1e-5), noiseRandom: seededRandom(seed(noiseSeed)) },
      parallel: { index, count: 2, allReduce: v => { captured = Float32Array.from(v); return v } }
    })
    trainer.dispose()
    return captured!
  }
  for (const index of [0, 1]) {
    // the same share, the same clipped sum: the difference of two noise draws is the noise alone
    const a = handed(index, 10); const b = handed(index, 11)
    const d = a.length - 1 // the last element carries the loss
    const half = Math.floor(d / 2)
    const [lo, hi] = index === 0 ? [0, half] : [half, d]
    let sq = 0; let outside = 0
    for (let i = 0; i < d; i++) {
      const diff = a[i] - b[i]
      if (i >= lo && i < hi) sq += diff * diff; else outside = Math.max(outside, Math.abs(diff))
    }
    assert.is(outside, 0, `worker ${index} touched coordinates outside its slice`)
    // a − b ~ N(0, 2σ²C²) on each of the slice's coordinates
    const sd = Math.sqrt(sq / (hi - lo) / 2)
    assert.ok(Math.abs(sd - sigma * clipNorm) < 0.1 * sigma * clipNorm, `worker ${index}: noise sd ${sd}, expected ${sigma * clipNorm}`)
  }
})

test('DP-SGD refuses BatchNorm models with a clear message', async () => {
  const model = buildModel({ id: 'medmesh/resnet18-28', height: 28, width: 28, channels: 1, classes: 2, seed: 1 })
  const trainer = new LocalTrainer(model)
  assert.throws(() => trainer.train(subset(data.train, [0, 1]), { steps: 1, batchSize: 2, learningRate: 1e-3, seed: seed(1), dp: { noiseMultiplier: 1, clipNorm: 1, budget: new PrivacyBudget(1, 1e-5) } }), /BatchNorm/)
  model.dispose()
})

test('cnn-gn: GroupNorm and global average pooling, no batch statistics (DP-SGD takes it), any size and 1 or 3 channels', async () => {
  await selectBackend('auto')
  for (const [size, channels, classes] of [[28, 1, 2], [28, 3, 5], [64, 3, 5]] as const) {
    const model = buildModel({ id: 'medmesh/cnn-gn', height: size, width: size, channels, classes, seed: 1 })
    // 3·3·(c·32 + 32·64 + 64·128) convolution weights, 2·(32 + 64 + 128) GroupNorm, 128·k + k dense
    assert.is(countParameters(model), 9 * (channels * 32 + 32 * 64 + 64 * 128) + 2 * (32 + 64 + 128) + 128 * classes + classes)
    assert.not.ok(hasBatchNorm(model))
    const out = tf.tidy(() => (model.predict(tf.zeros([2, size, size, channels])) as tf.Tensor).shape)
    assert.equal(out, [2, classes])
    model.dispose()
  }
})

test('ResNet-18 (28): 11.2M parameters, both normalisations; GroupNorm normalises each group', async () => {
  await selectBackend('auto')
  for (const id of ['medmesh/resnet18-28', 'medmesh/resnet18-28-gn'] as const) {
    const model = buildModel({ id, height: 28, width: 28, channels: 1, classes: 2, seed: 1 })
    const params = countParameters(model)
    assert.ok(params > 11.1e6 && params < 11.25e6, `${id}: ${params}`)
    const out = tf.tidy(() => (model.predict(tf.zeros([2, 28, 28, 1])) as tf.Tensor).shape)
    assert.equal(out, [2, 2])
    model.dispose()
  }
  const gn = new GroupNorm({ groups: 2 })
  const x = tf.randomNormal([1, 3, 3, 4], 5, 3, 'float32', 1)
  const y = gn.apply(x) as tf.Tensor
  const g = tf.reshape(y, [1, 3, 3, 2, 2])
  const { mean, variance } = tf.moments(g, [1, 2, 4])
  assert.ok((mean.dataSync() as Float32Array).every(v => Math.abs(v) < 1e-4))
  assert.ok((variance.dataSync() as Float32Array).every(v => Math.abs(v - 1) < 1e-2))
  tf.dispose([x, y, g, mean, variance])
})

test('class weights: balanced gives N / (k · count)', () => {
  const w = classWeights(data.train, 'balanced')
  assert.ok(Math.abs(w[0] - 4708 / (2 * 1214)) < 1e-4 && Math.abs(w[1] - 4708 / (2 * 3494)) < 1e-4)
})

test('class weights balanced over the consortium\'s frequencies: every hospital weighs the classes as the pooled data would, whatever its own balance', () => {
  const pooled = classWeights(data.train, 'balanced')
  const frequencies = [1214 / 4708, 3494 / 4708]
  // a hospital with almost only normal images
  const skewed = subset(data.train, Array.from(data.train.labels.entries()).filter(([, l]) => l === 0).slice(0, 300).map(([i]) => i).concat([...data.train.labels.keys()].filter(i => data.train.labels[i] === 1).slice(0, 10)))
  const own = classWeights(skewed, 'balanced')
  const consortium = classWeights(skewed, 'balanced', frequencies)
  assert.ok(own[1] > 10 * pooled[1], `its own balance weighs its ten pneumonia images ${own[1].toFixed(1)}×`)
  for (let k = 0; k < 2; k++) assert.ok(Math.abs(consortium[k] - pooled[k]) < 1e-6)
  // a class the statistics round did not see (its holders absent, or a member lied) keeps a bounded weight at a hospital that has it
  const unseen = classWeights(skewed, 'balanced', [1, 0])
  assert.is(unseen[1], MAX_CLASS_WEIGHT)
  assert.ok(Math.abs(unseen[0] - 0.5) < 1e-6)
  assert.ok(classWeights(skewed, 'balanced', [0.999, 0.001])[1] <= MAX_CLASS_WEIGHT)
  assert.throws(() => classWeights(skewed, 'balanced', [0.5]), /2 non-negative/)
  assert.throws(() => classWeights(skewed, 'balanced', [0.5, -0.1]), /non-negative/)
})

test('prior correction: log(local / pooled) per class, bounded for a class absent here; none where the mixes agree', () => {
  const pooled = [1214 / 4708, 3494 / 4708]
  const same = priorShift(data.train, pooled)
  assert.ok(same.every(v => Math.abs(v) < 1e-6), String(same))
  const normals = subset(data.train, [...data.train.labels.keys()].filter(i => data.train.labels[i] === 0).slice(0, 50))
  const shift = priorShift(normals, pooled)
  assert.ok(Math.abs(shift[0] - Math.log(1 / pooled[0])) < 1e-5)
  assert.ok(Math.abs(shift[1] - Math.log(1e-4)) < 1e-5, 'an absent class is down-weighted, not −∞')
  assert.throws(() => priorShift(normals, [1]), /2 non-negative/)
})

test('prior correction: a hospital whose data is nearly all one class learns the pooled posterior, not its own mix', async () => {
  await selectBackend('auto')
  const s = pixelStats(data.train)
  const norm = normalisation(statsVector(s), 1)
  const pooled = [1214 / 4708, 3494 / 4708]
  const normals = [...data.train.labels.keys()].filter(i => data.train.labels[i] === 0).slice(0, 400)
  const pneumonia = [...data.train.labels.keys()].filter(i => data.train.labels[i] === 1).slice(0, 40)
  const skewed = subset(data.train, [...normals, ...pneumonia]) // 9% pneumonia here, 74% pooled
  const meanPneumonia = (correction: 'none' | 'pooled'): number => {
    const model = buildModel({ id: 'medmesh/linear', height: 28, width: 28, channels: 1, classes: 2, seed: 5 })
    const trainer = new LocalTrainer(model)
    trainer.train(skewed, { epochs: 4, batchSize: 32, learningRate: 3e-3, seed: seed(9), classWeighting: 'none', classFrequencies: pooled, priorCorrection: correction, normalisation: norm })
    const probs = trainer.predict(data.test, norm)
    let sum = 0
    for (let i = 0; i < data.test.labels.length; i++) sum += probs[2 * i + 1]
    trainer.dispose(); model.dispose()
    return sum / data.test.labels.length
  }
  const plain = meanPneumonia('none')
  const corrected = meanPneumonia('pooled')
  // the plain model leans towards its own 9% pneumonia, the corrected one towards the pooled 74%
  assert.ok(corrected > plain + 0.12 && corrected > 0.55, `mean P(pneumonia) with correction ${corrected.toFixed(3)}, without ${plain.toFixed(3)}`)
})

test('real data: the default CNN trained centrally on PneumoniaMNIST reaches test AUC >= 0.90', async () => {
  const choice = await selectBackend('auto')
  const model = buildModel({ id: 'medmesh/cnn-small', height: 28, width: 28, channels: 1, classes: 2, seed: 1 })
  const trainer = new LocalTrainer(model)
  const s = pixelStats(data.train)
  const norm = normalisation(statsVector(s), 1)
  const r = trainer.train(data.train, { epochs: 2, batchSize: 64, learningRate: 1e-3, seed: seed(7), augment: false, classWeighting: 'balanced', normalisation: norm })
  const m = trainer.evaluate(data.test, norm)
  console.log(`      [${choice.name}] 2 epochs at ${r.imagesPerSecond.toFixed(0)} images/s: test AUC ${m.auc.toFixed(3)}, ACC ${m.accuracy.toFixed(3)}`)
  assert.ok(m.auc >= 0.9, `test AUC ${m.auc}`)
  trainer.dispose()
})

test('a recipe made to diverge ends the training with NonFiniteTrainingError, and the next training starts afresh', async () => {
  await selectBackend('auto')
  const model = buildModel({ id: 'medmesh/linear', height: 28, width: 28, channels: 1, classes: 2, seed: 1 })
  const trainer = new LocalTrainer(model)
  const small = subset(data.train, Array.from({ length: 64 }, (_, i) => i * 70))
  const start = flattenWeights(model)
  // SGD at 1e38 on raw pixels: the weights reach float32's limit, the logits overflow
  let error: unknown = null
  try { trainer.train(small, { steps: 20, batchSize: 16, learningRate: 1e38, optimizer: 'sgd', seed: seed(1), classWeighting: 'none' }) } catch (e) { error = e }
  assert.instance(error, NonFiniteTrainingError)
  assert.match((error as Error).message, /training diverged: the (loss became (NaN|Infinity)|weights hold a value that is not finite)/)
  // from the certified weights again, with a sane recipe: finite, and the optimiser's state was not kept
  setFlatWeights(model, start)
  const ok = trainer.train(small, { steps: 4, batchSize: 16, learningRate: 1e-3, optimizer: 'sgd', seed: seed(2), classWeighting: 'none' })
  assert.ok(Number.isFinite(ok.meanLoss))
  assert.ok(allFinite(flattenWeights(model)))
  trainer.dispose(); model.dispose()
})

test('gradient clipping scales the global norm down to the bound and leaves smaller gradients alone; weight decay shrinks kernels only', async () => {
  await selectBackend('auto')
  const grads = { a: tf.tensor1d([3, 0]), b: tf.tensor1d([0, 4]) }
  const clipped = clipByGlobalNorm(grads, 1)
  assert.ok(Math.abs(clipped.a.dataSync()[0] - 0.6) < 1e-5 && Math.abs(clipped.b.dataSync()[1] - 0.8) < 1e-5)
  const loose = clipByGlobalNorm(grads, 10)
  assert.ok(Math.abs(loose.a.dataSync()[0] - 3) < 1e-5)
  assert.is(clipByGlobalNorm(grads, undefined), grads)
  tf.dispose([grads.a, grads.b, clipped.a, clipped.b, loose.a, loose.b])
  // weight decay with a zero learning rate's worth of gradient: SGD at lr, decay wd, one step on a
  // model whose loss gradient we cancel by comparing two runs with and without decay
  const spec = { id: 'medmesh/linear' as const, height: 28, width: 28, channels: 1, classes: 2, seed: 1 }
  const small = subset(data.train, Array.from({ length: 16 }, (_, i) => i * 70))
  const run = (weightDecay: number): Float32Array => {
    const model = buildModel(spec)
    const trainer = new LocalTrainer(model)
    trainer.train(small, { steps: 1, batchSize: 16, learningRate: 0.1, optimizer: 'sgd', seed: seed(3), classWeighting: 'none', weightDecay })
    const w = flattenWeights(model)
    trainer.dispose(); model.dispose()
    return w
  }
  const plain = run(0)
  const decayed = run(0.5)
  const init = flattenWeights(buildModel(spec))
  const kernel = 28 * 28 * 2
  // w' = (w − lr·g)·(1 − lr·wd) on the kernel; the bias (after it) is not decayed
  for (const i of [0, 100, 1000]) assert.ok(Math.abs(decayed[i] - plain[i] * 0.95) < 1e-5, `kernel ${i}`)
  assert.ok(Math.abs(decayed[kernel] - plain[kernel]) < 1e-6, 'bias')
  assert.ok(init.length === plain.length)
})

test('warm-up: the learning rate grows over the first steps, within the first round, and stays at the full rate after', async () => {
  await selectBackend('auto')
  const spec = { id: 'medmesh/linear' as const, height: 28, width: 28, channels: 1, classes: 2, seed: 1 }
  const small = subset(data.train, Array.from({ length: 16 }, (_, i) => i * 70))
  // how far the weights move in the last of the rounds (of steps[r] steps each), each round from
  // the same weights (as each federated round starts from the certified ones); with a rate this
  // small the gradient barely changes within a round, so the move is the sum of the steps' rates
  const moveOf = (warmupSteps: number, rounds: number[]): number => {
    const model = buildModel(spec)
    const trainer = new LocalTrainer(model)
    const before = flattenWeights(model)
    let after = before
    for (const steps of rounds) {
      setFlatWeights(model, before)
      trainer.train(small, { steps, batchSize: 16, learningRate: 1e-5, optimizer: 'sgd', seed: seed(4), classWeighting: 'none', warmupSteps })
      after = flattenWeights(model)
    }
    let moved = 0
    for (let i = 0; i < after.length; i++) moved = Math.max(moved, Math.abs(after[i] - before[i]))
    trainer.dispose(); model.dispose()
    return moved
  }
  const full = moveOf(0, [1])
  const near = (x: number, want: number, what: string): void => assert.ok(Math.abs(x / full / want - 1) < 1e-2, `${what}: ${(x / full).toFixed(3)} steps at the full rate, expected ${want}`)
  near(moveOf(4, [1]), 1, 'a round of one step warms up within it: the full rate at once')
  near(moveOf(4, [4]), 0.25 + 0.5 + 0.75 + 1, 'four steps, a warm-up of 4: a quarter, a half, three quarters, all')
  near(moveOf(4, [2]), 0.5 + 1, 'two steps a round, a warm-up of 4: it ends within the first round (not 1/4, 2/4)')
  near(moveOf(4, [2, 2]), 2, 'the second round: the full rate')
  near(moveOf(8, [4]), 0.25 + 0.5 + 0.75 + 1, 'a warm-up of 8 in rounds of 4 steps: over the 4')
  near(moveOf(2, [4]), 0.5 + 1 + 1 + 1, 'a warm-up of 2 in a round of 4: over its first 2')
  near(moveOf(4, [2, 8]), 8, 'bounded by the first round: a longer second round is at the full rate throughout')
})

test('the optimiser keeps its moments over rounds when the learning rate changes (a schedule), as it does at a constant rate', async () => {
  await selectBackend('auto')
  const spec = { id: 'medmesh/linear' as const, height: 28, width: 28, channels: 1, classes: 2, seed: 1 }
  const small = subset(data.train, Array.from({ length: 32 }, (_, i) => i * 40))
  // two rounds of Adam from the same weights, the second at the rate `second`: a rate a hair
  // away from the first must give nearly the same weights; a fresh Adam in round 2 would move
  // each weight by about the full rate in its first step instead
  const twoRounds = (second: number): Float32Array => {
    const model = buildModel(spec)
    const trainer = new LocalTrainer(model)
    for (const learningRate of [1e-2, second]) trainer.train(small, { steps: 4, batchSize: 8, learningRate, seed: seed(5), classWeighting: 'none', warmupSteps: 0 })
    const w = flattenWeights(model)
    trainer.dispose(); model.dispose()
    return w
  }
  const same = twoRounds(1e-2)
  const nudged = twoRounds(1e-2 * (1 + 1e-6))
  let apart = 0
  for (let i = 0; i < same.length; i++) apart = Math.max(apart, Math.abs(same[i] - nudged[i]))
  assert.ok(apart < 1e-5, `a rate 1e-6 apart moved a weight by ${apart}: the second round started a fresh optimiser`)
})

test.run()
