/**
 * Model definitions, each with an identifier and version that a consortium manifest names.
 *
 * - medmesh/cnn-small@1: three 3×3 convolutions (32, 64, 64 filters) with max pooling, a 64-unit
 *   dense layer and a softmax; no normalisation layer, so DP-SGD applies directly.
 * - medmesh/cnn-gn@1: three 3×3 convolutions (32, 64, 128 filters), each with GroupNorm (8
 *   groups), max pooling between them, global average pooling and a softmax: few parameters for
 *   small sites, no batch statistics (DP-SGD applies).
 * - medmesh/resnet18-28@1 (BatchNorm) and medmesh/resnet18-28-gn@1 (GroupNorm, 32 groups):
 *   ResNet-18 adapted to 28×28 inputs as in MedMNIST's ResNet-18 (28): a 3×3 stem with stride 1
 *   and no max pooling, four stages of two basic blocks (64, 128, 256, 512 filters), global
 *   average pooling. GroupNorm is for DP-SGD, where BatchNorm's batch statistics conflict with
 *   per-example gradients.
 * - medmesh/resnet18@1 and medmesh/resnet18-gn@1: the usual ResNet-18 for inputs of 64 px and
 *   more: a 7×7 stem with stride 2 and a 3×3 max pooling with stride 2, then the same stages.
 * - medmesh/cnn-gn-stem@1 (cnn-gn-stem.ts): the default above 32 px: a stem of stride-2
 *   convolutions by resolution, three stages of two GroupNorm convolutions, global average pooling.
 * - medmesh/he-cnn@1: made for encrypted inference (src/inference/he-layout.ts): one 7×7
 *   convolution with stride 3 and 4 filters, x², a 64-unit dense layer, x², a dense layer and a
 *   softmax; only additions and multiplications before the softmax, so that CKKS evaluates it
 *   within depth 5. 28×28 grayscale only. x² is tf.layers.multiply of a tensor with itself, a
 *   standard layer, so that the export loads with plain TF.js.
 *
 * Every model takes height × width × channels (1 or 3) images, as the manifest pins them.
 * The weights travel as one flat Float32Array in `model.getWeights()` order.
 */
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'

import { MODEL_IDS, SCALABLE_MODELS, widthProblem, type ModelId } from './model-ids.ts'
import { cnnGroupNormStem } from './cnn-gn-stem.ts'
import { GroupNorm } from './group-norm.ts'

export { GroupNorm }

export { MODEL_IDS, SCALABLE_MODELS, widthProblem, type ModelId }
export const MODEL_VERSION = '1'

/**
 * `widthFactor`: the model's filter counts times this (1 when absent, the model as described
 * above): a consortium may try narrower or wider variants of its model as candidate recipes. A
 * multiple of 1/4, so that every filter count stays a multiple of 8 (GroupNorm's groups divide it).
 * The initial weights' seeds do not depend on it, so a factor of 1 builds exactly the model above.
 */
export interface ModelSpec { id: ModelId, height: number, width: number, channels: number, classes: number, seed: number, widthFactor?: number }

/** 32 groups where the channels split into them (every width factor 1), else the largest count that divides them */
function gcd (a: number, b: number): number { return b === 0 ? a : gcd(b, a % b) }

/** `filters` scaled by the spec's width factor */
function scaled (s: ModelSpec, filters: number): number {
  return Math.round(filters * (s.widthFactor ?? 1))
}


function cnnSmall (s: ModelSpec): tfl.LayersModel {
  const init = (k: number) => tfl.initializers.heNormal({ seed: s.seed + k })
  return tfl.sequential({
    name: 'cnn_small',
    layers: [
      tfl.layers.conv2d({ inputShape: [s.height, s.width, s.channels], filters: scaled(s, 32), kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(1) }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: scaled(s, 64), kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(2) }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: scaled(s, 64), kernelSize: 3, padding: 'same', activation: 'relu', kernelInitializer: init(3) }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: scaled(s, 64), activation: 'relu', kernelInitializer: init(4) }),
      tfl.layers.dense({ units: s.classes, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: s.seed + 5 }) })
    ]
  })
}

/**
 * A small CNN with GroupNorm and global average pooling instead of cnn-small's large dense layer:
 * far fewer parameters to overfit on a few hundred images per hospital, and, with no batch
 * statistics, usable under DP-SGD.
 */
function cnnGroupNorm (s: ModelSpec): tfl.LayersModel {
  const init = (k: number) => tfl.initializers.heNormal({ seed: s.seed + k })
  const block = (filters: number, k: number, first = false): tfl.layers.Layer[] => [
    tfl.layers.conv2d({ ...(first ? { inputShape: [s.height, s.width, s.channels] } : {}), filters, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: init(k) }),
    new GroupNorm({ groups: 8 }),
    tfl.layers.reLU()
  ]
  return tfl.sequential({
    name: 'cnn_gn',
    layers: [
      ...block(scaled(s, 32), 1, true), tfl.layers.maxPooling2d({ poolSize: 2 }),
      ...block(scaled(s, 64), 2), tfl.layers.maxPooling2d({ poolSize: 2 }),
      ...block(scaled(s, 128), 3),
      tfl.layers.globalAveragePooling2d({}),
      tfl.layers.dense({ units: s.classes, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: s.seed + 5 }) })
    ]
  })
}

/** The sizes of medmesh/he-cnn (the encrypted path reads them from here). */
export const HE_CNN = { filters: 4, hidden: 64, kernel: 7, stride: 3 } as const

function heCnn (s: ModelSpec): tfl.LayersModel {
  if (s.height !== 28 || s.width !== 28 || s.channels !== 1) throw new Error(`medmesh/he-cnn takes 28×28 grayscale images (its encrypted layout is fixed), not ${s.height}×${s.width}×${s.channels}`)
  const init = (k: number) => tfl.initializers.glorotUniform({ seed: s.seed + k })
  const square = (x: tfl.SymbolicTensor): tfl.SymbolicTensor => tfl.layers.multiply({}).apply([x, x]) as tfl.SymbolicTensor
  const input = tfl.input({ shape: [28, 28, 1] })
  let x = tfl.layers.conv2d({ filters: HE_CNN.filters, kernelSize: HE_CNN.kernel, strides: HE_CNN.stride, padding: 'valid', kernelInitializer: init(1) }).apply(input) as tfl.SymbolicTensor
  x = square(x)
  x = tfl.layers.flatten().apply(x) as tfl.SymbolicTensor
  x = square(tfl.layers.dense({ units: HE_CNN.hidden, kernelInitializer: init(2) }).apply(x) as tfl.SymbolicTensor)
  const out = tfl.layers.dense({ units: s.classes, activation: 'softmax', kernelInitializer: init(3) }).apply(x) as tfl.SymbolicTensor
  return tfl.model({ inputs: input, outputs: out, name: 'he_cnn' })
}

/** Logistic regression on the pixels: a baseline, and a model small enough for soak tests. */
function linear (s: ModelSpec): tfl.LayersModel {
  return tfl.sequential({
    name: 'linear',
    layers: [
      tfl.layers.flatten({ inputShape: [s.height, s.width, s.channels] }),
      tfl.layers.dense({ units: s.classes, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: s.seed + 1 }) })
    ]
  })
}

function resnet18 (s: ModelSpec, norm: 'batch' | 'group', stem: 'small' | 'imagenet'): tfl.LayersModel {
  let k = 0
  const init = () => tfl.initializers.heNormal({ seed: s.seed + (++k) })
  const normLayer = (channels: number): tfl.layers.Layer => norm === 'batch' ? tfl.layers.batchNormalization({}) : new GroupNorm({ groups: gcd(32, channels) })
  const conv = (filters: number, kernel: number, stride: number) => tfl.layers.conv2d({ filters, kernelSize: kernel, strides: stride, padding: 'same', useBias: false, kernelInitializer: init() })
  const input = tfl.input({ shape: [s.height, s.width, s.channels] })
  const base = scaled(s, 64)
  let x = (stem === 'small' ? conv(base, 3, 1) : conv(base, 7, 2)).apply(input) as tfl.SymbolicTensor
  x = normLayer(base).apply(x) as tfl.SymbolicTensor
  x = tfl.layers.reLU().apply(x) as tfl.SymbolicTensor
  if (stem === 'imagenet') x = tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x) as tfl.SymbolicTensor
  let channels = base
  for (const [stage, filters] of [base, 2 * base, 4 * base, 8 * base].entries()) {
    for (let block = 0; block < 2; block++) {
      const stride = stage > 0 && block === 0 ? 2 : 1
      let y = conv(filters, 3, stride).apply(x) as tfl.SymbolicTensor
      y = normLayer(filters).apply(y) as tfl.SymbolicTensor
      y = tfl.layers.reLU().apply(y) as tfl.SymbolicTensor
      y = conv(filters, 3, 1).apply(y) as tfl.SymbolicTensor
      y = normLayer(filters).apply(y) as tfl.SymbolicTensor
      let shortcut = x
      if (stride !== 1 || channels !== filters) {
        shortcut = conv(filters, 1, stride).apply(x) as tfl.SymbolicTensor
        shortcut = normLayer(filters).apply(shortcut) as tfl.SymbolicTensor
      }
      x = tfl.layers.reLU().apply(tfl.layers.add().apply([y, shortcut])) as tfl.SymbolicTensor
      channels = filters
    }
  }
  x = tfl.layers.globalAveragePooling2d({}).apply(x) as tfl.SymbolicTensor
  const out = tfl.layers.dense({ units: s.classes, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: s.seed + (++k) }) }).apply(x) as tfl.SymbolicTensor
  return tfl.model({ inputs: input, outputs: out, name: `resnet18_${stem === 'small' ? '28_' : ''}${norm}` })
}

export function buildModel (spec: ModelSpec): tfl.LayersModel {
  const problem = widthProblem(spec.id, spec.widthFactor ?? 1)
  if (problem !== null) throw new Error(problem)
  switch (spec.id) {
    case 'medmesh/cnn-small': return cnnSmall(spec)
    case 'medmesh/cnn-gn': return cnnGroupNorm(spec)
    case 'medmesh/resnet18-28': return resnet18(spec, 'batch', 'small')
    case 'medmesh/resnet18-28-gn': return resnet18(spec, 'group', 'small')
    case 'medmesh/resnet18': return resnet18(spec, 'batch', 'imagenet')
    case 'medmesh/resnet18-gn': return resnet18(spec, 'group', 'imagenet')
    case 'medmesh/linear': return linear(spec)
    case 'medmesh/he-cnn': return heCnn(spec)
    case 'medmesh/cnn-gn-stem': return cnnGroupNormStem(spec)
    default: throw new Error(`unknown model '${String(spec.id)}': known models are ${MODEL_IDS.join(', ')}`)
  }
}

/** Whether the model holds batch statistics (and so cannot be trained with per-example DP-SGD). */
export function hasBatchNorm (model: tfl.LayersModel): boolean {
  return model.layers.some(l => l.getClassName() === 'BatchNormalization')
}

export function flattenWeights (model: tfl.LayersModel): Float32Array {
  const weights = model.getWeights()
  const total = weights.reduce((s, w) => s + w.size, 0)
  const out = new Float32Array(total)
  let off = 0
  for (const w of weights) { out.set(w.dataSync() as Float32Array, off); off += w.size }
  return out
}

export function setFlatWeights (model: tfl.LayersModel, flat: Float32Array): void {
  const current = model.getWeights()
  const total = current.reduce((s, w) => s + w.size, 0)
  if (flat.length !== total) throw new Error(`weights have ${flat.length} values, the model ${total}`)
  let off = 0
  const next = current.map(w => { const t = tf.tensor(flat.subarray(off, off + w.size), w.shape, 'float32'); off += w.size; return t })
  model.setWeights(next)
  tf.dispose(next)
}

export function countParameters (model: tfl.LayersModel): number {
  return model.getWeights().reduce((s, w) => s + w.size, 0)
}
