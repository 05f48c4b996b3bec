/**
 * The oneDNN convolutions (src/training/native-kernels.ts) against the pure-JS cpu backend.
 * Where the addon is not built (no libdnnl-dev), the same checks run on the WebAssembly kernels
 * it falls back to; MEDMESH_REQUIRE_NATIVE=1 (CI, which installs libdnnl-dev) makes its absence a
 * failure, so that the native path cannot go untested there unnoticed.
 */
import { test } from 'uvu'
import * as tf from '@tensorflow/tfjs-core'
import * as assert from 'uvu/assert'
import { selectBackend } from '../../src/training/backend.ts'
import { nativeAddon, nativeKernelCalls, nativeKernelStatus, perExampleFilterGradNorms, useNativeKernels } from '../../src/training/native-kernels.ts'
import { convAndGradients, maxRelError, randomConvCases, validConvCase, type ConvCase } from '../helpers/conv.ts'

const cases: ConvCase[] = [
  // the shapes of the models: cnn-small's layers, ResNet's 7×7 stem, a strided 3×3 and a 1×1 shortcut with stride 2
  { batch: 4, h: 28, w: 28, ci: 1, co: 32, k: 3, stride: 1, pad: 'same' },
  { batch: 4, h: 14, w: 14, ci: 32, co: 64, k: 3, stride: 1, pad: 'same' },
  { batch: 2, h: 32, w: 32, ci: 1, co: 16, k: 7, stride: 2, pad: 'same' },
  { batch: 2, h: 16, w: 16, ci: 16, co: 32, k: 3, stride: 2, pad: 'same' },
  { batch: 2, h: 16, w: 16, ci: 16, co: 32, k: 1, stride: 2, pad: 'same' },
  { batch: 2, h: 15, w: 17, ci: 3, co: 8, k: 1, stride: 2, pad: 'valid' },
  ...randomConvCases(1234, 34, [1, 2, 3, 8, 17])
]
const run = convAndGradients

// whatever a test leaves behind, the files after this one run on wasm with oneDNN (they chose it when imported)
test.after(async () => { useNativeKernels(true); await selectBackend('wasm') })

test('the oneDNN addon is built where CI requires it', async () => {
  await selectBackend('wasm')
  useNativeKernels(true)
  const status = nativeKernelStatus()
  if (process.env.MEDMESH_REQUIRE_NATIVE === '1') assert.ok(status.active, `the oneDNN addon is required here: ${status.reason}`)
  if (status.active) assert.match(status.version ?? '', /^\d+\.\d+\.\d+$/)
  else assert.match(status.reason ?? '', /not built|did not load/)
})

test('Conv2D and both of its gradients equal the cpu backend\'s on 40 shapes (oneDNN where built)', async () => {
  let checked = 0
  const before = nativeKernelCalls()
  for (const [i, c] of cases.entries()) {
    if (!validConvCase(c)) continue
    await selectBackend('cpu')
    const ref = run(c, i)
    await selectBackend('wasm')
    useNativeKernels(true)
    const got = run(c, i)
    const what = JSON.stringify(c)
    assert.ok(maxRelError(got.y, ref.y) < 1e-3, `y differs for ${what}: ${maxRelError(got.y, ref.y)}`)
    assert.ok(maxRelError(got.dw, ref.dw) < 1e-3, `dW differs for ${what}: ${maxRelError(got.dw, ref.dw)}`)
    assert.ok(maxRelError(got.dx, ref.dx) < 1e-3, `dx differs for ${what}: ${maxRelError(got.dx, ref.dx)}`)
    checked++
  }
  assert.ok(checked >= 30, `${checked} shapes checked`)
  // every shape through oneDNN, three kernels each (none refused), where the addon is built
  if (nativeKernelStatus().active) assert.ok(nativeKernelCalls() - before >= 3 * checked, `${nativeKernelCalls() - before} oneDNN calls for ${checked} shapes`)
})

test('turned off, the convolutions run in WebAssembly: oneDNN is not called', async () => {
  await selectBackend('wasm')
  useNativeKernels(false)
  try {
    const before = nativeKernelCalls()
    const got = run(cases[1], 1)
    assert.is(nativeKernelCalls(), before)
    await selectBackend('cpu')
    const ref = run(cases[1], 1)
    assert.ok(maxRelError(got.dw, ref.dw) < 1e-3)
  } finally {
    useNativeKernels(true)
    // the files after this one chose wasm when they were imported (uvu imports them all first)
    await selectBackend('wasm')
  }
})

test('the oneDNN kernels leak no tensors, the per-example norms included', async () => {
  await selectBackend('wasm')
  useNativeKernels(true)
  run(cases[3], 1)
  const before = tf.memory().numTensors
  for (let i = 0; i < 4; i++) run(cases[3], i)
  const x = tf.ones([3, 8, 8, 2]) as tf.Tensor4D; const dy = tf.ones([3, 8, 8, 4]) as tf.Tensor4D
  const norms = perExampleFilterGradNorms(x, dy, [1, 1], 'same', [3, 3, 2, 4])
  if (nativeKernelStatus().active) {
    assert.ok(norms !== null)
    assert.equal(norms.shape, [3])
    // all ones: each tap's gradient sums the positions it sees, the same for every example
    const v = norms.dataSync()
    assert.ok(v[0] > 0 && v[0] === v[1] && v[1] === v[2])
  } else assert.is(norms, null)
  tf.dispose([x, dy, ...(norms === null ? [] : [norms])])
  assert.is(tf.memory().numTensors, before)
})

test('the addon refuses a tensor outside the heap and a geometry that is not a convolution', () => {
  const addon = nativeAddon()
  if (addon === null) { assert.not.ok(nativeKernelStatus().active); return }
  const heap = new ArrayBuffer(4096)
  // [N,IH,IW,IC,OH,OW,OC,KH,KW,SH,SW,PT,PL,PB,PR]: a 3×3 'same' convolution of 1×8×8×2 to 4 channels
  const g = Int32Array.from([1, 8, 8, 2, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1])
  // x 512 B, w 288 B, y 1024 B: fits at 0, 512, 1024
  assert.type(addon.conv(0, heap, 0, 512, 1024, g), 'string')
  assert.throws(() => addon.conv(0, heap, 0, 512, 3584, g), /outside the heap/)
  assert.throws(() => addon.conv(0, heap, 0, 4000, 1024, g), /outside the heap/)
  assert.throws(() => addon.conv(0, heap, 2, 512, 1024, g), /multiples of 4/)
  assert.throws(() => addon.conv(0, heap, 0, 512, 1024, Int32Array.from([1, 8, 8, 2, 9, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1])), /output size/)
  assert.throws(() => addon.conv(0, heap, 0, 512, 1024, Int32Array.from([1, 8, 8, 2, 8, 8, 4, 3, 3, 0, 1, 1, 1, 1, 1])), /out of range/)
  assert.throws(() => addon.conv(4, heap, 0, 512, 1024, g), /kind/)
  // sizes whose products overflow 64 bits, and a window larger than the padded input
  assert.throws(() => addon.conv(0, heap, 0, 0, 0, Int32Array.from([65536, 1, 1, 32767, 1, 1, 32768, 1, 1, 1, 1, 0, 0, 0, 0].map((v, i) => i === 0 ? 2 ** 31 - 1 : v))), /outside the heap/)
  assert.throws(() => addon.conv(0, heap, 0, 0, 0, Int32Array.from([2 ** 30, 2 ** 30, 2 ** 30, 2 ** 30, 2 ** 30, 2 ** 30, 1, 1, 1, 1, 1, 0, 0, 0, 0])), /outside the heap/)
  assert.throws(() => addon.conv(0, heap, 0, 512, 1024, Int32Array.from([1, 2, 2, 1, 1, 1, 1, 3, 3, 2, 2, 0, 0, 0, 0])), /output size/)
  // kind 3, each example's squared filter-gradient norm: one float per example
  assert.throws(() => addon.conv(3, heap, 0, 512, 4096, g), /outside the heap/)
  assert.type(addon.conv(3, heap, 0, 512, 4092, g), 'string')
})

test.run()
