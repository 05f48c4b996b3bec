/**
 * The batched clipped gradient sum (per-example.ts) against the reference: one backward pass
 * per example, its norm, its clip factor, summed. Several models (dense, convolutions with and
 * without bias, strided and 1×1 convolutions in a ResNet, GroupNorm), norms both below and above
 * the clip bound, and whole DP-SGD steps with the same noise.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as tf from '@tensorflow/tfjs-core'
import { selectBackend } from '../../src/training/backend.ts'
import { nativeKernelCalls, nativeKernelStatus, useNativeKernels } from '../../src/training/native-kernels.ts'
import { buildModel, flattenWeights, type ModelId } from '../../src/training/models.ts'
import { clippedGradientSum, unbatchable } from '../../src/training/per-example.ts'
import { LocalTrainer } from '../../src/training/trainer.ts'
import { PrivacyBudget, seededRandom } from '../../src/privacy/index.ts'
import { mulberry32 } from '../../src/protocol/memnet.ts'

await selectBackend('wasm')

const nll = (labels: Int32Array, classes: number) => (probs: tf.Tensor2D): tf.Tensor1D =>
  tf.neg(tf.sum(tf.mul(tf.oneHot(tf.tensor1d(labels, 'int32'), classes), tf.log(tf.clipByValue(probs, 1e-7, 1))), 1)) as tf.Tensor1D

function reference (model: ReturnType<typeof buildModel>, x: tf.Tensor4D, labels: Int32Array, classes: number, clip: number, vars: tf.Variable[]): { norms: number[], sums: Float32Array[] } {
  const norms: number[] = []
  const sums = vars.map(v => new Float32Array(v.size))
  for (let b = 0; b < labels.length; b++) {
    const { value, grads } = tf.variableGrads(() => tf.sum(nll(labels.subarray(b, b + 1), classes)(model.apply(tf.slice(x, [b, 0, 0, 0], [1, -1, -1, -1]), { training: true }) as tf.Tensor2D)) as tf.Scalar, vars)
    const gs = vars.map(v => grads[v.name].dataSync() as Float32Array)
    const norm = Math.sqrt(gs.reduce((a, g) => a + g.reduce((s, v) => s + v * v, 0), 0))
    norms.push(norm)
    const c = Math.min(1, clip / (norm + 1e-12))
    gs.forEach((g, i) => { for (let j = 0; j < g.length; j++) sums[i][j] += c * g[j] })
    tf.dispose([value, ...Object.values(grads)])
  }
  return { norms, sums }
}

function relError (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0; let n = 0
  for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; n += b[i] ** 2 }
  return Math.sqrt(d / Math.max(n, 1e-30))
}

const cases: Array<{ id: ModelId, size: number, channels: number, classes: number }> = [
  { id: 'medmesh/linear', size: 8, channels: 1, classes: 2 },
  { id: 'medmesh/cnn-small', size: 12, channels: 1, classes: 2 },
  { id: 'medmesh/cnn-gn', size: 12, channels: 3, classes: 5 },
  { id: 'medmesh/resnet18-28-gn', size: 8, channels: 1, classes: 3 },
  { id: 'medmesh/resnet18-gn', size: 32, channels: 3, classes: 2 }
]

// each case through oneDNN's per-example filter gradients where the addon is built, and cnn-small
// and the strided ResNet also through the WebAssembly (depthwise and ghost-norm) path it falls back to
for (const c of [...cases.map(c => ({ ...c, native: true })), ...[cases[1], cases[4]].map(c => ({ ...c, native: false }))]) {
  test(`${c.id} ${c.size}×${c.size}×${c.channels}${c.native ? '' : ' (without oneDNN)'}: batched per-example norms and clipped sum equal one pass per example`, () => {
    useNativeKernels(c.native)
    const before = nativeKernelCalls()
    const norms = nativeKernelCalls('perExampleNorms')
    try { checkCase(c) } finally { useNativeKernels(true) }
    // the oneDNN path was the one taken (where built), and the WebAssembly one never calls it
    if (!c.native) assert.is(nativeKernelCalls(), before)
    else if (nativeKernelStatus().active && c.id !== 'medmesh/linear') assert.ok(nativeKernelCalls('perExampleNorms') > norms, 'the per-example norms ran through oneDNN')
  })
}

function checkCase (c: { id: ModelId, size: number, channels: number, classes: number }): void {
  {
    const model = buildModel({ id: c.id, height: c.size, width: c.size, channels: c.channels, classes: c.classes, seed: 3 })
    assert.is(unbatchable(model), null)
    const r = mulberry32(9)
    const B = 6
    const x = tf.tensor4d(Float32Array.from({ length: B * c.size * c.size * c.channels }, () => r() * 2 - 1), [B, c.size, c.size, c.channels])
    const labels = Int32Array.from({ length: B }, (_, i) => i % c.classes)
    const vars = model.trainableWeights.map(v => v.read() as tf.Variable)
    const before = tf.memory().numTensors
    const ref = reference(model, x, labels, c.classes, Infinity, vars)
    // a clip bound between the smallest and largest norm: some examples clipped, some not
    const sorted = [...ref.norms].sort((a, b) => a - b)
    const clip = (sorted[1] + sorted[B - 2]) / 2
    const clipped = reference(model, x, labels, c.classes, clip, vars)
    const got = clippedGradientSum(model, x, nll(labels, c.classes), norms => Float32Array.from(norms, g => Math.min(1, clip / (g + 1e-12))), vars)
    assert.ok(relError(got.norms, ref.norms) < 1e-4, `norms ${Array.from(got.norms).map(v => v.toFixed(4))} vs ${ref.norms.map(v => v.toFixed(4))}`)
    assert.ok(sorted[0] < clip && clip < sorted[B - 1], 'the bound clips some examples and not others')
    got.sums.forEach((s, i) => {
      const e = relError(s.dataSync() as Float32Array, clipped.sums[i])
      assert.ok(e < 1e-4, `${vars[i].name}: relative error ${e}`)
    })
    // the same in groups of examples (a layer whose intermediates would not fit at once)
    const grouped = clippedGradientSum(model, x, nll(labels, c.classes), norms => Float32Array.from(norms, g => Math.min(1, clip / (g + 1e-12))), vars, 4096)
    assert.ok(relError(grouped.norms, got.norms) < 1e-5, `norms in groups ${Array.from(grouped.norms)} vs ${Array.from(got.norms)}`)
    tf.dispose([...got.sums, ...grouped.sums])
    assert.is(tf.memory().numTensors, before, 'no tensor left behind')
    x.dispose(); model.dispose()
  }
}

test('a model with BatchNorm is not batchable, and says which layer', () => {
  const model = buildModel({ id: 'medmesh/resnet18-28', height: 8, width: 8, channels: 1, classes: 2, seed: 1 })
  assert.match(unbatchable(model) ?? '', /BatchNormalization/)
  model.dispose()
})

test('a DP-SGD round is the same with batched per-example gradients and with one pass per example (same noise)', () => {
  const n = 40
  const r = mulberry32(5)
  const data = { pixels: Uint8Array.from({ length: n * 12 * 12 }, () => Math.floor(r() * 256)), labels: Int32Array.from({ length: n }, (_, i) => i % 3 === 0 ? 1 : 0), height: 12, width: 12, channels: 1, classes: ['a', 'b'] }
  const after = (gradients: 'batched' | 'per-example-passes'): Float32Array => {
    const model = buildModel({ id: 'medmesh/cnn-gn', height: 12, width: 12, channels: 1, classes: 2, seed: 4 })
    const trainer = new LocalTrainer(model)
    trainer.train(data, {
      steps: 4, batchSize: 10, learningRate: 1e-2, seed: new Uint8Array(32).fill(2), augment: true, classWeighting: 'balanced',
      dp: { noiseMultiplier: 1, clipNorm: 0.5, budget: new PrivacyBudget(1e9, 1e-5), noiseRandom: seededRandom(new Uint8Array(32).fill(8)), gradients }
    })
    const w = flattenWeights(model)
    trainer.dispose(); model.dispose()
    return w
  }
  const start = flattenWeights(buildModel({ id: 'medmesh/cnn-gn', height: 12, width: 12, channels: 1, classes: 2, seed: 4 }))
  const a = after('batched'); const b = after('per-example-passes')
  assert.ok(relError(a, start) > 1e-3, 'the steps changed the weights')
  const e = relError(a, b)
  assert.ok(e < 1e-4, `weights after 4 DP steps differ by ${e} (relative L2)`)
})

test.run()
