/**
 * The oneDNN convolutions (src/training/native-kernels.ts) against the pure-JS cpu backend.
 * Where the addon is not built (no libdnnl-dev), the same checks run on the WebAssembly kernels
 * it falls back to; MEDMESH_REQUIRE_NATIVE=1 (CI, which installs libdnnl-dev) makes its absence a
 * failure, so that the native path cannot go untested there unnoticed.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import * as tf from '@tensorflow/tfjs-core'
import { selectBackend } from '../../src/training/backend.ts'
import { nativeAddon, nativeKernelCalls, nativeKernelStatus, useNativeKernels } from '../../src/training/native-kernels.ts'
import { mulberry32 } from '../../src/protocol/memnet.ts'

interface Case { batch: number, h: number, w: number, ci: number, co: number, k: number, stride: number, pad: 'same' | 'valid' | number }

const rand = mulberry32(1234)
const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]
const cases: Case[] = [
  // the shapes of the models: cnn-small's layers, ResNet's 7×7 stem, a strided 3×3 and a 1×1 shortcut with stride 2
  { batch: 4, h: 28, w: 28, ci: 1, co: 32, k: 3, stride: 1, pad: 'same' },
  { batch: 4, h: 14, w: 14, ci: 32, co: 64, k: 3, stride: 1, pad: 'same' },
  { batch: 2, h: 32, w: 32, ci: 1, co: 16, k: 7, stride: 2, pad: 'same' },
  { batch: 2, h: 16, w: 16, ci: 16, co: 32, k: 3, stride: 2, pad: 'same' },
  { batch: 2, h: 16, w: 16, ci: 16, co: 32, k: 1, stride: 2, pad: 'same' },
  { batch: 2, h: 15, w: 17, ci: 3, co: 8, k: 1, stride: 2, pad: 'valid' }
]
for (let i = 0; i < 34; i++) {
  cases.push({ batch: pick([1, 2, 5, 8]), h: pick([5, 7, 8, 13, 28]), w: pick([5, 6, 9, 28]), ci: pick([1, 2, 3, 8, 17]), co: pick([1, 4, 16]), k: pick([1, 2, 3, 5]), stride: pick([1, 1, 2, 3]), pad: pick(['same', 'valid', 1] as const) })
}
const valid = (c: Case): boolean => (c.pad === 'valid' ? c.h >= c.k && c.w >= c.k : true) && (typeof c.pad !== 'number' || (c.h + 2 * c.pad >= c.k && c.w + 2 * c.pad >= c.k))

function run (c: Case, seed: number): { y: Float32Array, dx: Float32Array, dw: Float32Array } {
  const r = mulberry32(seed)
  const x = tf.tensor4d(Float32Array.from({ length: c.batch * c.h * c.w * c.ci }, () => r() * 2 - 1), [c.batch, c.h, c.w, c.ci])
  const w = tf.tensor4d(Float32Array.from({ length: c.k * c.k * c.ci * c.co }, () => r() * 2 - 1), [c.k, c.k, c.ci, c.co])
  const y = tf.conv2d(x, w, c.stride, c.pad)
  const weights = tf.tensor(Float32Array.from({ length: y.size }, () => r() * 2 - 1), y.shape)
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), weights)))([x, w])
  const out = { y: y.dataSync() as Float32Array, dx: dx.dataSync() as Float32Array, dw: dw.dataSync() as Float32Array }
  tf.dispose([x, w, y, weights, dx, dw])
  return out
}

function maxRelError (a: Float32Array, b: Float32Array): number {
  let worst = a.length === b.length ? 0 : Infinity
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1e-3 + Math.abs(b[i])))
  return worst
}

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
    if (!valid(c)) continue
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
  }
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
  // kind 3, each example's squared filter-gradient norm: one float per example
  assert.throws(() => addon.conv(3, heap, 0, 512, 4094, g), /outside the heap/)
  assert.type(addon.conv(3, heap, 0, 512, 4092, g), 'string')
})

test.run()
