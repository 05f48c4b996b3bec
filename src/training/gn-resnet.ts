/**
 * medmesh/gn-resnet@1: the default model at any resolution from 28 to 224 px and more.
 *
 * Why this shape:
 * - a stem by resolution: ⌈log2(size / 32)⌉ convolutions of stride 2 (none at 28–32 px, one at 64,
 *   two at 128, three at 224), so the body always sees about 28–32 px, and a round at 224 px costs
 *   little more than one at 32 px; the parameter count does not depend on the input size at all,
 *   since the head is global average pooling, not a dense layer over a flattened map (which at
 *   128 px made cnn-small a 4.2M-parameter model that diverged on its first epoch);
 * - GroupNorm, not BatchNorm: no batch statistics, which differ between hospitals (a federated
 *   average of them describes nobody's data) and break DP-SGD's per-example gradients;
 * - three residual stages (width w, 2w, 4w, two 3×3 convolutions each, the later two entered
 *   with stride 2): residual paths keep the gradients usable from the first round, and the last
 *   GroupNorm of each block starts at zero scale (Goyal et al. 2017), so that each block starts
 *   as the identity and an untrained model's outputs do not saturate at high resolution.
 */
import * as tfl from '@tensorflow/tfjs-layers'
import { GroupNorm } from './group-norm.ts'
import type { ModelSpec } from './models.ts'

/** Stride-2 stem convolutions for this input side: the body then sees at most 32 px. */
export function stemDownsamplings (size: number): number {
  return Math.max(0, Math.ceil(Math.log2(size / 32)))
}

export function gnResnet (s: ModelSpec, width = 32): tfl.LayersModel {
  let k = 0
  const init = () => tfl.initializers.heNormal({ seed: s.seed + (++k) })
  const conv = (filters: number, stride: number, kernel = 3): tfl.layers.Layer =>
    tfl.layers.conv2d({ filters, kernelSize: kernel, strides: stride, padding: 'same', useBias: false, kernelInitializer: init() })
  const groups = (c: number): number => Math.min(8, c)
  const apply = (l: tfl.layers.Layer, x: tfl.SymbolicTensor): tfl.SymbolicTensor => l.apply(x) as tfl.SymbolicTensor
  const input = tfl.input({ shape: [s.height, s.width, s.channels] })
  let x = input
  const downs = stemDownsamplings(Math.max(s.height, s.width))
  for (let i = 0; i < downs; i++) {
    const c = i === downs - 1 ? width : Math.max(16, width / 2)
    x = apply(tfl.layers.reLU(), apply(new GroupNorm({ groups: groups(c) }), apply(conv(c, 2), x)))
  }
  if (downs === 0) x = apply(tfl.layers.reLU(), apply(new GroupNorm({ groups: groups(width) }), apply(conv(width, 1), x)))
  let channels = width
  for (const [stage, filters] of [width, 2 * width, 4 * width].entries()) {
    const stride = stage === 0 ? 1 : 2
    let y = apply(tfl.layers.reLU(), apply(new GroupNorm({ groups: groups(filters) }), apply(conv(filters, stride), x)))
    y = apply(new GroupNorm({ groups: groups(filters), zeroScale: true }), apply(conv(filters, 1), y))
    const shortcut = stride === 1 && channels === filters ? x : apply(new GroupNorm({ groups: groups(filters) }), apply(conv(filters, stride, 1), x))
    x = apply(tfl.layers.reLU(), tfl.layers.add().apply([y, shortcut]) as tfl.SymbolicTensor)
    channels = filters
  }
  x = apply(tfl.layers.globalAveragePooling2d({}), x)
  const out = tfl.layers.dense({ units: s.classes, activation: 'softmax', kernelInitializer: tfl.initializers.glorotUniform({ seed: s.seed + (++k) }) }).apply(x) as tfl.SymbolicTensor
  return tfl.model({ inputs: input, outputs: out, name: 'gn_resnet' })
}
