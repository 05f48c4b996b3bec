import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as tf from '@tensorflow/tfjs-core'
import { selectBackend } from '../../src/training/backend.ts'
import { useSimdKernels } from '../../src/training/wasm-simd.ts'
import { useNativeKernels } from '../../src/training/native-kernels.ts'
import { mulberry32 } from '../../src/protocol/memnet.ts'
import { checkConvKernels, convAndGradients, maxRelError, randomConvCases, type ConvCase } from '../helpers/conv.ts'

// these tests are of the WebAssembly kernels: the oneDNN convolutions (native-kernels.test.ts) stay
// out of the way while they run (uvu imports every file before it runs any test: not at top level)
test.before(() => { useNativeKernels(false) })
test.after(() => { useNativeKernels(true) })

const rand = mulberry32(42)
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]
const cases = randomConvCases(42, 40, [1, 2, 3, 8])
const gradients = convAndGradients

test('wasm Conv2D gradients (filter and input) equal the cpu backend\'s on 40 random shapes', async () => {
  // the gradients are this project's WebAssembly kernels; the forward convolution is TF.js's own
  // (on one of these shapes, stride 3 over a 2×2 window with 'same' padding, its output is not the
  // cpu backend's: no model has such a layer). Measured as native-kernels.test.ts does, at the output's scale
  const r = await checkConvKernels(cases, ['dw', 'dx'])
  for (const f of r.failures) assert.unreachable(`WebAssembly: ${f}`)
  assert.ok(r.checked >= 30, `${r.checked} shapes checked`)
})

function poolGradient (c: { batch: number, h: number, w: number, ch: number, k: number, stride: number, pad: 'same' | 'valid' }, seed: number, ties: boolean): Float32Array {
  const r = mulberry32(seed)
  // ties: values on a coarse grid, as after ReLU, so windows often hold equal maxima
  const x = tf.tensor4d(Float32Array.from({ length: c.batch * c.h * c.w * c.ch }, () => ties ? Math.max(0, Math.round(r() * 4 - 2)) : r() * 2 - 1), [c.batch, c.h, c.w, c.ch])
  const y0 = tf.maxPool(x, c.k, c.stride, c.pad)
  const weights = tf.tensor(Float32Array.from({ length: y0.size }, () => r() * 2 - 1), y0.shape)
  const dx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, c.k, c.stride, c.pad), weights)))(x)
  const out = dx.dataSync() as Float32Array
  tf.dispose([x, y0, weights, dx])
  return out
}

test('wasm MaxPool gradient equals the cpu backend\'s, ties included', async () => {
  const r = mulberry32(7)
  let checked = 0
  for (let i = 0; i < 30; i++) {
    const c = { batch: pick([1, 3, 8]), h: pick([4, 7, 14, 28]), w: pick([4, 9, 28]), ch: pick([1, 5, 32]), k: pick([2, 3]), stride: pick([1, 2, 3]), pad: pick(['same', 'valid'] as const) }
    if (c.pad === 'valid' && (c.h < c.k || c.w < c.k)) continue
    const ties = r() < 0.5
    await selectBackend('cpu')
    const ref = poolGradient(c, i, ties)
    await selectBackend('wasm')
    const got = poolGradient(c, i, ties)
    assert.ok(maxRelError(got, ref) < 1e-4, `MaxPool dx differs for ${JSON.stringify(c)} (ties: ${ties})`)
    checked++
  }
  assert.ok(checked >= 20)
})

test('wasm MaxPool gradient, 2×2 windows at stride 2 (the fast path of the models here), equals the cpu backend\'s at even and odd sizes, ties included, with the SIMD loop and without', async () => {
  let checked = 0
  for (const simd of [true, false]) {
    useSimdKernels(simd)
    try {
      for (const [i, c] of [
        { batch: 3, h: 28, w: 28, ch: 32, k: 2, stride: 2, pad: 'valid' as const },
        { batch: 2, h: 7, w: 9, ch: 5, k: 2, stride: 2, pad: 'valid' as const },
        { batch: 2, h: 7, w: 9, ch: 8, k: 2, stride: 2, pad: 'valid' as const }, // odd: a last row and column outside every window
        { batch: 2, h: 14, w: 6, ch: 64, k: 2, stride: 2, pad: 'same' as const },
        { batch: 1, h: 7, w: 7, ch: 3, k: 2, stride: 2, pad: 'same' as const }, // padded: the general loop
        { batch: 4, h: 2, w: 2, ch: 1, k: 2, stride: 2, pad: 'valid' as const }
      ].entries()) {
        for (const ties of [false, true]) {
          await selectBackend('cpu')
          const ref = poolGradient(c, 100 + i, ties)
          await selectBackend('wasm')
          const got = poolGradient(c, 100 + i, ties)
          assert.ok(maxRelError(got, ref) < 1e-6, `MaxPool dx differs for ${JSON.stringify(c)} (ties: ${ties}, SIMD: ${simd})`)
          assert.ok(got.some(v => v !== 0))
          checked++
        }
      }
    } finally { useSimdKernels(true) }
  }
  assert.is(checked, 24)
})

test('wasm MaxPool gradient is right when allocating its output grows the wasm memory (views of the heap taken before would read as empty)', async () => {
  await selectBackend('wasm')
  const memory = (): number => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.byteLength
  const before = memory()
  // an input larger than the whole heap so far: its gradient's output cannot fit without growing it
  const side = Math.ceil(Math.sqrt(before / 4 / 8 / 4)) + 8
  const c = { batch: 8, h: side, w: side, ch: 4, k: 2, stride: 2, pad: 'valid' as const }
  const got = poolGradient(c, 3, false)
  assert.ok(memory() > before, `the heap grew (${before} → ${memory()} bytes)`)
  await selectBackend('cpu')
  const ref = poolGradient(c, 3, false)
  await selectBackend('wasm')
  assert.ok(got.some(v => v !== 0), 'not all zeros')
  assert.ok(maxRelError(got, ref) < 1e-4, 'MaxPool dx differs from the cpu backend\'s')
})

test('wasm matrix products with transposed operands, plain and fused, batched or not, equal the cpu backend\'s', async () => {
  const r = mulberry32(11)
  for (let i = 0; i < 24; i++) {
    const [m, k, n] = [pick([1, 3, 17, 64]), pick([1, 5, 33]), pick([1, 2, 16])]
    const batch = pick([0, 1, 3])
    const tA = r() < 0.5; const tB = r() < 0.5; const fused = r() < 0.5
    const shapeA = [...(batch === 0 ? [] : [batch]), ...(tA ? [k, m] : [m, k])]
    const shapeB = [...(batch === 0 ? [] : [batch]), ...(tB ? [n, k] : [k, n])]
    const va = Float32Array.from({ length: shapeA.reduce((a, b) => a * b, 1) }, () => r() * 2 - 1)
    const vb = Float32Array.from({ length: shapeB.reduce((a, b) => a * b, 1) }, () => r() * 2 - 1)
    const run = (): Float32Array => tf.tidy(() => {
      const ta: tf.Tensor = tf.tensor(va, shapeA); const tb: tf.Tensor = tf.tensor(vb, shapeB)
      const a = ta as tf.Tensor3D; const b = tb as tf.Tensor3D
      const y = fused ? tf.fused.matMul({ a, b, transposeA: tA, transposeB: tB, activation: 'relu' }) : tf.matMul(a, b, tA, tB)
      return y.dataSync() as Float32Array
    })
    await selectBackend('cpu')
    const ref = run()
    await selectBackend('wasm')
    const got = run()
    assert.is(got.length, ref.length)
    assert.ok(maxRelError(got, ref) < 1e-4, `matMul ${shapeA}${tA ? 'ᵀ' : ''} · ${shapeB}${tB ? 'ᵀ' : ''} (fused: ${fused}) differs`)
  }
})

test('wasm sums and means over leading axes (bias gradients, BatchNorm moments) equal the cpu backend\'s; other reductions unchanged', async () => {
  const r = mulberry32(12)
  const shapes = [[64, 7, 7, 16], [3, 5], [2, 3, 4], [1, 9, 9, 3], [40, 9, 9, 12]]
  const axesOf = (rank: number): Array<number | number[]> => [0, [0, 1], Array.from({ length: rank - 1 }, (_, i) => i), rank - 1, [0, rank - 1], -rank]
  for (const [k, shape] of shapes.entries()) {
    useSimdKernels(k % 2 === 0) // the SIMD column sums and the plain loop, alternately
    const v = Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => r() * 2 - 1)
    for (const axis of axesOf(shape.length)) {
      for (const keepDims of [false, true]) {
        for (const op of ['sum', 'mean'] as const) {
          const run = (): { values: Float32Array, shape: number[] } => tf.tidy(() => { const y = tf[op](tf.tensor(v, shape), axis, keepDims); return { values: y.dataSync() as Float32Array, shape: y.shape } })
          await selectBackend('cpu')
          const ref = run()
          await selectBackend('wasm')
          const got = run()
          assert.equal(got.shape, ref.shape, `shape of ${op} over ${JSON.stringify(axis)} of ${shape}`)
          assert.ok(maxRelError(got.values, ref.values) < 1e-4, `${op} over ${JSON.stringify(axis)} (keepDims ${keepDims}) of ${shape} differs`)
        }
      }
    }
  }
  useSimdKernels(true)
})

test('wasm Tile (per-channel vectors broadcast over leading axes, and general repeats) equals the cpu backend\'s', async () => {
  const cases: Array<{ shape: number[], reps: number[] }> = [
    { shape: [1, 1, 1, 5], reps: [3, 4, 2, 1] }, { shape: [1, 7], reps: [6, 1] }, { shape: [2, 3], reps: [2, 2] },
    { shape: [1, 3, 1], reps: [2, 1, 3] }, { shape: [4], reps: [3] }, { shape: [1, 1, 2], reps: [1, 1, 1] }
  ]
  const r = mulberry32(13)
  for (const c of cases) {
    const v = Float32Array.from({ length: c.shape.reduce((a, b) => a * b, 1) }, () => r() * 2 - 1)
    const run = (): { values: Float32Array, shape: number[] } => tf.tidy(() => { const y = tf.tile(tf.tensor(v, c.shape), c.reps); return { values: y.dataSync() as Float32Array, shape: y.shape } })
    await selectBackend('cpu')
    const ref = run()
    await selectBackend('wasm')
    const got = run()
    assert.equal(got.shape, ref.shape)
    assert.equal(Array.from(got.values), Array.from(ref.values), `tile ${c.shape} by ${c.reps}`)
  }
})

test('the gradient kernels leak no tensors', async () => {
  await selectBackend('wasm')
  const c: ConvCase = { batch: 4, h: 9, w: 9, ci: 3, co: 5, k: 3, stride: 2, pad: 'same' }
  gradients(c, 1)
  const before = tf.memory().numTensors
  for (let i = 0; i < 5; i++) gradients(c, i)
  const a = tf.ones([3, 4, 5]) as tf.Tensor3D; const b = tf.ones([3, 6, 5]) as tf.Tensor3D
  tf.dispose([tf.matMul(a, b, false, true), tf.fused.matMul({ a, b, transposeB: true }), tf.sum(a, [0, 1]), tf.mean(a, 0), tf.tile(a, [2, 1, 1])])
  const strided: ConvCase = { batch: 2, h: 8, w: 8, ci: 3, co: 4, k: 3, stride: 2, pad: 'same' }
  for (let i = 0; i < 3; i++) gradients(strided, i)
  tf.dispose([a, b])
  assert.is(tf.memory().numTensors, before)
})


test('wasm Transpose (last two axes swapped, in tiles, and other permutations) equals the cpu backend\'s', async () => {
  const r = mulberry32(23)
  const cases: Array<{ shape: number[], perm: number[] }> = [
    { shape: [65, 33], perm: [1, 0] }, { shape: [1, 7], perm: [1, 0] }, { shape: [31, 32], perm: [1, 0] },
    { shape: [1030, 1025], perm: [1, 0] }, { shape: [2, 1100, 1001], perm: [0, 2, 1] }, // large enough for the tiled loop
    { shape: [3, 40, 9], perm: [0, 2, 1] }, { shape: [2, 3, 5, 70], perm: [0, 1, 3, 2] },
    { shape: [4, 5, 6], perm: [2, 1, 0] }, { shape: [2, 3, 4, 5], perm: [3, 1, 2, 0] }
  ]
  for (const c of cases) {
    const v = Float32Array.from({ length: c.shape.reduce((a, b) => a * b, 1) }, () => r() * 2 - 1)
    const run = (): { values: Float32Array, shape: number[] } => tf.tidy(() => {
      const y = tf.transpose(tf.tensor(v, c.shape), c.perm)
      return { values: y.dataSync() as Float32Array, shape: y.shape }
    })
    await selectBackend('cpu')
    const ref = run()
    await selectBackend('wasm')
    const got = run()
    assert.equal(got.shape, ref.shape)
    assert.equal(Array.from(got.values), Array.from(ref.values), `transpose ${c.shape} by ${c.perm}`)
  }
})

test.run()
