/**
 * bench/conv-grad: the convolution filter gradient (Conv2DBackpropFilter) on the wasm backend, two
 * ways side by side on the layers of medmesh's models: the kernel before (baseline: a convolution
 * over the batch, or for layers with kh·kw·ci ≤ co a product over patches that a one-hot
 * convolution extracts) and the kernel in use (candidate: one product over patches copied on the
 * heap). Each shape is timed as the median of --reps calls after a warm-up; the ratio is
 * baseline / candidate (above 1: the candidate is faster), and the total is over all shapes.
 *
 * Usage: npm run bench:conv-grad [-- --reps 5]
 * Last line: one JSON object.
 */
import { parseArgs } from 'node:util'
import * as tf from '@tensorflow/tfjs-core'
import { selectBackend } from '../src/training/backend.ts'
import { backpropFilterByBatchConvolution, backpropFilterByPatches } from '../src/training/wasm-kernels.ts'

const { values } = parseArgs({ options: { reps: { type: 'string', default: '5' } } })
const reps = Number(values.reps)
await selectBackend('wasm')

interface Layer { name: string, batch: number, size: number, ci: number, co: number, k: number, stride: number }
const layers: Layer[] = [
  // medmesh/cnn-small at 28×28, batch 64 (one worker) and 32 (the share of one of two)
  ...[64, 32].flatMap(batch => [
    { name: `cnn-small conv1 b${batch}`, batch, size: 28, ci: 1, co: 32, k: 3, stride: 1 },
    { name: `cnn-small conv2 b${batch}`, batch, size: 14, ci: 32, co: 64, k: 3, stride: 1 },
    { name: `cnn-small conv3 b${batch}`, batch, size: 7, ci: 64, co: 64, k: 3, stride: 1 }
  ]),
  // medmesh/resnet18 at 128×128, batch 16 (the share of one of two workers at batch 32)
  { name: 'resnet18-128 stem', batch: 16, size: 128, ci: 3, co: 64, k: 7, stride: 2 },
  { name: 'resnet18-128 stage1', batch: 16, size: 32, ci: 64, co: 64, k: 3, stride: 1 },
  { name: 'resnet18-128 stage2 down', batch: 16, size: 32, ci: 64, co: 128, k: 3, stride: 2 },
  { name: 'resnet18-128 stage2 1x1', batch: 16, size: 32, ci: 64, co: 128, k: 1, stride: 2 },
  { name: 'resnet18-128 stage2', batch: 16, size: 16, ci: 128, co: 128, k: 3, stride: 1 },
  { name: 'resnet18-128 stage3', batch: 16, size: 8, ci: 256, co: 256, k: 3, stride: 1 },
  { name: 'resnet18-128 stage4', batch: 16, size: 4, ci: 512, co: 512, k: 3, stride: 1 }
]

type Kernel = (x: tf.Tensor4D, dy: tf.Tensor4D, attrs: { strides: number, pad: 'same', filterShape: [number, number, number, number] }) => tf.Tensor

/** the kernel before's path for layers with few input channels: patches by a convolution with a one-hot filter, then one product */
function oneHotPatches (x: tf.Tensor4D, dy: tf.Tensor4D, attrs: Parameters<Kernel>[2]): tf.Tensor {
  const [kh, kw, ci, co] = attrs.filterShape
  const K = kh * kw * ci
  return tf.tidy(() => {
    const ones = new Float32Array(K * K)
    for (let r = 0; r < K; r++) ones[r * K + r] = 1
    const P = tf.reshape(tf.conv2d(x, tf.tensor4d(ones, [kh, kw, ci, K]), attrs.strides, attrs.pad), [-1, K]) as tf.Tensor2D
    return tf.reshape(tf.matMul(P, tf.reshape(dy, [-1, co]) as tf.Tensor2D, true, false), attrs.filterShape)
  })
}
const baseline: Kernel = (x, dy, attrs) => {
  const [kh, kw, ci, co] = attrs.filterShape
  return kh * kw * ci <= co ? oneHotPatches(x, dy, attrs) : backpropFilterByBatchConvolution({ inputs: { x, dy }, attrs: { ...attrs, dataFormat: 'NHWC' } }) as tf.Tensor
}
const candidate: Kernel = (x, dy, attrs) => backpropFilterByPatches({ inputs: { x, dy }, attrs, backend: tf.backend() }) as tf.Tensor

function median (xs: number[]): number { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }

function time (kernel: Kernel, x: tf.Tensor4D, dy: tf.Tensor4D, attrs: Parameters<Kernel>[2]): { ms: number, out: Float32Array } {
  const warm = kernel(x, dy, attrs)
  const out = warm.dataSync() as Float32Array
  warm.dispose()
  const ms: number[] = []
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now()
    const dw = kernel(x, dy, attrs)
    dw.dataSync()
    ms.push(performance.now() - t0)
    dw.dispose()
  }
  return { ms: median(ms), out }
}

const rows: Array<{ layer: string, gmac: number, baselineMs: number, candidateMs: number, ratio: number }> = []
let totalBase = 0; let totalCand = 0
console.log('layer                          GMAC   baseline ms  candidate ms  ratio   (GMAC/s base → cand)')
for (const l of layers) {
  const x = tf.randomUniform([l.batch, l.size, l.size, l.ci], -1, 1, 'float32', 1) as tf.Tensor4D
  const filterShape: [number, number, number, number] = [l.k, l.k, l.ci, l.co]
  const out = Math.ceil(l.size / l.stride)
  const dy = tf.randomUniform([l.batch, out, out, l.co], -1, 1, 'float32', 2) as tf.Tensor4D
  const attrs = { strides: l.stride, pad: 'same' as const, filterShape }
  const b = time(baseline, x, dy, attrs)
  const c = time(candidate, x, dy, attrs)
  // the two must agree (to rounding: sums of up to 65k products in different orders), or the comparison means nothing
  let diff = 0; let scale = 0
  for (let i = 0; i < b.out.length; i++) { diff = Math.max(diff, Math.abs(b.out[i] - c.out[i])); scale = Math.max(scale, Math.abs(b.out[i])) }
  if (b.out.length !== c.out.length || !(diff <= 1e-4 * scale)) throw new Error(`${l.name}: the two kernels disagree (largest difference ${diff}, largest value ${scale})`)
  const gmac = l.batch * out * out * l.k * l.k * l.ci * l.co / 1e9
  rows.push({ layer: l.name, gmac: +gmac.toFixed(4), baselineMs: +b.ms.toFixed(2), candidateMs: +c.ms.toFixed(2), ratio: +(b.ms / c.ms).toFixed(2) })
  totalBase += b.ms; totalCand += c.ms
  console.log(`${l.name.padEnd(30)} ${gmac.toFixed(3).padStart(6)} ${b.ms.toFixed(1).padStart(11)} ${c.ms.toFixed(1).padStart(13)}  ${(b.ms / c.ms).toFixed(2).padStart(5)}x  (${(gmac / b.ms * 1e3).toFixed(1)} → ${(gmac / c.ms * 1e3).toFixed(1)})`)
  tf.dispose([x, dy])
}
console.log(`all layers: baseline ${totalBase.toFixed(1)} ms, candidate ${totalCand.toFixed(1)} ms, ratio ${(totalBase / totalCand).toFixed(2)}x`)
console.log(JSON.stringify({ bench: 'conv-grad', backend: tf.getBackend(), reps, layers: rows, totalBaselineMs: +totalBase.toFixed(1), totalCandidateMs: +totalCand.toFixed(1), ratio: +(totalBase / totalCand).toFixed(3) }))
