/** A convolution and both of its gradients on random data, for checking kernels against the cpu backend. */
import * as tf from '@tensorflow/tfjs-core'
import { mulberry32 } from '../../src/protocol/memnet.ts'
import { selectBackend } from '../../src/training/backend.ts'

export interface ConvCase { batch: number, h: number, w: number, ci: number, co: number, k: number, stride: number, pad: 'same' | 'valid' | number }

/** shapes TF.js accepts: a 'valid' window fits, an explicit padding leaves room for one */
export const validConvCase = (c: ConvCase): boolean => (c.pad === 'valid' ? c.h >= c.k && c.w >= c.k : true) && (typeof c.pad !== 'number' || (c.h + 2 * c.pad >= c.k && c.w + 2 * c.pad >= c.k))

/** random shapes from a seeded generator: batch, sizes, channels, kernel, stride and padding */
export function randomConvCases (seed: number, n: number, channels: number[]): ConvCase[] {
  const rand = mulberry32(seed)
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]
  return Array.from({ length: n }, () => ({ batch: pick([1, 2, 5, 8]), h: pick([5, 7, 8, 13, 28]), w: pick([5, 6, 9, 28]), ci: pick(channels), co: pick([1, 4, 16]), k: pick([1, 2, 3, 5]), stride: pick([1, 1, 2, 3]), pad: pick(['same', 'valid', 1] as const) }))
}

/** y = conv2d(x, w) and the gradients of Σ y ⊙ g for random x, w and g (from `seed`), on the backend in use */
export function convAndGradients (c: ConvCase, seed: number): { y: Float32Array, dx: Float32Array, dw: Float32Array } {
  const r = mulberry32(seed)
  const x = tf.tensor4d(Float32Array.from({ length: c.batch * c.h * c.w * c.ci }, () => r() * 2 - 1), [c.batch, c.h, c.w, c.ci])
  const w = tf.tensor4d(Float32Array.from({ length: c.k * c.k * c.ci * c.co }, () => r() * 2 - 1), [c.k, c.k, c.ci, c.co])
  const y = tf.conv2d(x, w, c.stride, c.pad)
  const g = tf.tensor(Float32Array.from({ length: y.size }, () => r() * 2 - 1), y.shape)
  const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), g)))([x, w])
  const out = { y: y.dataSync() as Float32Array, dx: dx.dataSync() as Float32Array, dw: dw.dataSync() as Float32Array }
  tf.dispose([x, w, y, g, dx, dw])
  return out
}

/**
 * max |a − b| / max |b|: the error at the output's scale, which another summation order (another
 * instruction set's kernels) leaves near 10⁻⁷ for float32; Infinity if the lengths differ. An
 * element-wise relative error is the wrong measure for kernels: it judges a rounding-sized absolute
 * difference on an output near zero as a large error.
 */
export function scaledError (a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity
  let diff = 0
  let scale = 0
  for (let i = 0; i < a.length; i++) { diff = Math.max(diff, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])) }
  // NaN anywhere must fail, not compare false against a bound
  if (Number.isNaN(diff)) return Infinity
  return scale === 0 ? diff : diff / scale
}

/** the largest |a − b| / (10⁻³ + |b|); Infinity if the lengths differ */
export function maxRelError (a: Float32Array, b: Float32Array): number {
  let worst = a.length === b.length ? 0 : Infinity
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1e-3 + Math.abs(b[i])))
  return worst
}

/** the shapes the kernels are checked on: the models' own layers, then 34 random ones */
export const KERNEL_CONV_CASES: ConvCase[] = [
  // cnn-small's layers, ResNet's 7×7 stem, a strided 3×3 and a 1×1 shortcut with stride 2
  { batch: 4, h: 28, w: 28, ci: 1, co: 32, k: 3, stride: 1, pad: 'same' },
  { batch: 4, h: 14, w: 14, ci: 32, co: 64, k: 3, stride: 1, pad: 'same' },
  { batch: 2, h: 32, w: 32, ci: 1, co: 16, k: 7, stride: 2, pad: 'same' },
  { batch: 2, h: 16, w: 16, ci: 16, co: 32, k: 3, stride: 2, pad: 'same' },
  { batch: 2, h: 16, w: 16, ci: 16, co: 32, k: 1, stride: 2, pad: 'same' },
  { batch: 2, h: 15, w: 17, ci: 3, co: 8, k: 1, stride: 2, pad: 'valid' },
  ...randomConvCases(1234, 34, [1, 2, 3, 8, 17])
]

/**
 * The bound on scaledError for a float32 kernel against the cpu backend: measured at most 2·10⁻⁶
 * on these shapes under every oneDNN instruction-set cap (SSE41 to AVX512_CORE_VNNI);
 * a wrong kernel (a dropped term, a misplaced window) is off by 10⁻² or more.
 */
export const SCALED_ERROR_BOUND = 1e-5

export interface ConvCheck { checked: number, worst: { y: number, dw: number, dx: number }, failures: string[] }

/** Every case through the wasm backend (with oneDNN where it is built and on) against the cpu backend. */
export async function checkConvKernels (cases: ConvCase[] = KERNEL_CONV_CASES, tensors: ReadonlyArray<'y' | 'dw' | 'dx'> = ['y', 'dw', 'dx']): Promise<ConvCheck> {
  const worst = { y: 0, dw: 0, dx: 0 }
  const failures: string[] = []
  let checked = 0
  for (const [i, c] of cases.entries()) {
    if (!validConvCase(c)) continue
    await selectBackend('cpu')
    const ref = convAndGradients(c, i)
    await selectBackend('wasm')
    const got = convAndGradients(c, i)
    for (const k of tensors) {
      const e = scaledError(got[k], ref[k])
      worst[k] = Math.max(worst[k], e)
      if (!(e <= SCALED_ERROR_BOUND)) failures.push(`${k} differs for ${JSON.stringify(c)}: ${e} of its scale`)
    }
    checked++
  }
  return { checked, worst, failures }
}
