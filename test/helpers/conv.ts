/** A convolution and both of its gradients on random data, for checking kernels against the cpu backend. */
import * as tf from '@tensorflow/tfjs-core'
import { mulberry32 } from '../../src/protocol/memnet.ts'

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

/** the largest |a − b| / (10⁻³ + |b|); Infinity if the lengths differ */
export function maxRelError (a: Float32Array, b: Float32Array): number {
  let worst = a.length === b.length ? 0 : Infinity
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1e-3 + Math.abs(b[i])))
  return worst
}
