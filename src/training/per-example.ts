/**
 * DP-SGD's clipped gradient sum, Σ_b c_b·g_b with c_b = min(1, C / ‖g_b‖)·w_b, computed for the
 * whole batch at once instead of one backward pass per example.
 *
 * 1. One forward pass with a zero "probe" added to each trainable layer's pre-activation output
 *    z_l, and one backward pass to the probes only: δ_l = ∂(Σ_b loss_b)/∂z_l, whose row b is
 *    example b's own ∂loss_b/∂z_l (no layer mixes examples: models with BatchNorm are refused
 *    before this). The layers' weight gradients are not computed in this pass.
 * 2. Each example's squared gradient norm, layer by layer, from its inputs a_l and δ_l:
 *    - dense: ‖a_b‖²·‖δ_b‖² (an outer product's norm), plus ‖δ_b‖² for the bias;
 *    - convolution: each example's filter gradient g_b and its norm, through oneDNN one example
 *      after another where it runs (native-kernels.ts); elsewhere all at once as one depthwise
 *      convolution, or, where the image is small and the filters many, the "ghost" norm
 *      Σ (P_b P_bᵀ) ⊙ (δ_b δ_bᵀ) from the patches P_b (im2col, T positions × kh·kw·ci) without
 *      forming g_b (Li et al. 2022);
 *    - GroupNorm: Σ_hw n_b ⊙ δ_b for the scale and Σ_hw δ_b for the shift, n the normalised input.
 * 3. The clip factors c_b from the norms, and the weighted sum from the same δ: the gradient of
 *    Σ_l Σ (c ⊙ δ_l) ⊙ z_l(a_l; W_l) with a_l, δ_l and c held constant is exactly Σ_b c_b·g_b.
 *    Each layer's weight gradient is written out (a_lᵀ·(c ⊙ δ_l) for dense layers, the filter
 *    gradient kernel for convolutions), so it costs no second forward and no second backward pass.
 *
 * Checked against the per-example passes in test/training/per-example.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core'
import type * as tfl from '@tensorflow/tfjs-layers'
import { GroupNorm } from './models.ts'
import { convPreActivation, type ConvLayer } from './unfused.ts'
import { perExampleFilterGradNorms } from './native-kernels.ts'

interface Activation { apply: (x: tf.Tensor) => tf.Tensor }
interface DenseLayer { kernel: tfl.LayerVariable, bias: tfl.LayerVariable | null, useBias: boolean, activation: Activation | null }

type Kind = 'conv' | 'dense' | 'groupnorm'

/** A trainable layer as this module sees it: how to rebuild its output, and what it kept. */
interface Hooked {
  layer: tfl.layers.Layer
  kind: Kind
  /** the layer's input (conv, dense) or normalised input (GroupNorm), kept from the forward pass */
  input: tf.Tensor | null
}

const KNOWN: Record<string, Kind> = { Conv2D: 'conv', Dense: 'dense', [GroupNorm.className]: 'groupnorm' }

/** Why this model's clipped sum cannot be batched (a layer with weights of another kind), or null. */
export function unbatchable (model: tfl.LayersModel): string | null {
  for (const l of model.layers) {
    if (l.trainableWeights.length === 0) continue
    const kind = KNOWN[l.getClassName()]
    if (kind === undefined) return `layer ${l.name} (${l.getClassName()}) has weights this batched computation does not know`
    if (kind === 'conv' && ((l as unknown as ConvLayer).dataFormat !== 'channelsLast' || (l as unknown as ConvLayer).dilationRate.some(d => d !== 1))) return `layer ${l.name} is not a channels-last convolution without dilation`
    if (kind === 'dense') {
      const rank = (l.input as tfl.SymbolicTensor).shape.length
      if (rank !== 2) return `layer ${l.name} is a dense layer on inputs of rank ${rank}, not 2`
    }
  }
  return null
}

/** z_l as a function of the layer's weights, from its kept input */
function preActivation (h: Hooked, input: tf.Tensor): tf.Tensor {
  if (h.kind === 'groupnorm') return (h.layer as GroupNorm).scaleShift(input as tf.Tensor4D)
  if (h.kind === 'dense') {
    const d = h.layer as unknown as DenseLayer
    const z = tf.matMul(input as tf.Tensor2D, d.kernel.read() as tf.Tensor2D)
    return d.useBias && d.bias !== null ? tf.add(z, d.bias.read()) : z
  }
  return convPreActivation(h.layer as unknown as ConvLayer, input as tf.Tensor4D)
}

/**
 * The gradient of Σ (cd ⊙ z_l) over the layer's weights, z_l = preActivation(input): each
 * variable's gradient written out (the transposed products a backward pass would form), so that
 * z_l itself is never computed again. `cd` is the clip-weighted δ_l.
 */
function weightGradients (h: Hooked, input: tf.Tensor, cd: tf.Tensor): Array<[tf.Variable, tf.Tensor]> {
  const variable = (w: tfl.LayerVariable): tf.Variable => w.read() as tf.Variable
  const rows = cd.shape.length === 2 ? [0] : [0, 1, 2]
  if (h.kind === 'groupnorm') {
    const [gamma, beta] = h.layer.trainableWeights
    return [[variable(gamma), tf.sum(tf.mul(input, cd), rows)], [variable(beta), tf.sum(cd, rows)]]
  }
  const layer = h.layer as unknown as DenseLayer
  let kernel: tf.Tensor
  if (h.kind === 'dense') kernel = tf.matMul(input as tf.Tensor2D, cd as tf.Tensor2D, true, false)
  else {
    const c = h.layer as unknown as ConvLayer
    const attrs = { strides: c.strides, pad: c.padding, dataFormat: 'NHWC', filterShape: c.kernel.read().shape }
    kernel = tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: input, dy: cd }, attrs) as tf.Tensor
  }
  const out: Array<[tf.Variable, tf.Tensor]> = [[variable(layer.kernel), kernel]]
  if (layer.useBias && layer.bias !== null) out.push([variable(layer.bias), tf.sum(cd, rows)])
  return out
}

/** the layer's input padded as the convolution pads it, and the output size */
function padded (x: tf.Tensor4D, c: ConvLayer): { x: tf.Tensor4D, OH: number, OW: number } {
  const [kh, kw] = c.kernelSize
  const info = tf.backend_util.computeConv2DInfo(x.shape, [kh, kw, x.shape[3], 1], c.strides as [number, number], 1, c.padding)
  const { top, bottom, left, right } = info.padInfo
  return { x: top + bottom + left + right > 0 ? tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]]) : x, OH: info.outHeight, OW: info.outWidth }
}

/** im2col: [B, T, kh·kw·ci] patches of a channels-last input, T = output positions */
function patches (x: tf.Tensor4D, c: ConvLayer): tf.Tensor3D {
  const [kh, kw] = c.kernelSize
  const [sh, sw] = c.strides
  const { x: xp, OH, OW } = padded(x, c)
  const [B, ci] = [x.shape[0], x.shape[3]]
  const taps: tf.Tensor4D[] = []
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) taps.push(tf.stridedSlice(xp, [0, i, j, 0], [B, i + sh * (OH - 1) + 1, j + sw * (OW - 1) + 1, ci], [1, sh, sw, 1]) as tf.Tensor4D)
  }
  const all = taps.length === 1 ? taps[0] : tf.concat(taps, 3)
  return tf.reshape(all, [B, OH * OW, kh * kw * ci])
}

/**
 * Every example's own filter gradient at once, [kh·kw·ci, B, co]: the filter gradient written as
 * a convolution (as in wasm-kernels.ts, input [ci, H, W, B], the output gradient as the filter,
 * dilated by the stride), made depthwise so that example b's input meets only example b's output
 * gradient. The backend's depthwise path is several times faster than its batched matrix product.
 */
function perExampleFilterGrads (x: tf.Tensor4D, delta: tf.Tensor4D, c: ConvLayer): tf.Tensor3D {
  const [kh, kw] = c.kernelSize
  const { x: xp } = padded(x, c)
  const [B, ci, co] = [x.shape[0], x.shape[3], delta.shape[3]]
  const full = tf.depthwiseConv2d(tf.transpose(xp, [3, 1, 2, 0]), tf.transpose(delta, [1, 2, 0, 3]), 1, 'valid', 'NHWC', c.strides as [number, number])
  const cropped = full.shape[1] === kh && full.shape[2] === kw ? full : tf.slice(full, [0, 0, 0, 0], [-1, kh, kw, -1])
  return tf.reshape(cropped, [ci * kh * kw, B, co])
}

/** each example's squared norm of this layer's weight gradients: [B] */
function squaredNorms (h: Hooked, delta: tf.Tensor, limitFloats: number): tf.Tensor1D {
  const B = delta.shape[0]
  const input = h.input!
  if (h.kind === 'dense') {
    const d = h.layer as unknown as DenseLayer
    const dd = tf.sum(tf.square(delta), 1)
    const w = tf.mul(tf.sum(tf.square(input), 1), dd)
    return (d.useBias ? tf.add(w, dd) : w) as tf.Tensor1D
  }
  if (h.kind === 'groupnorm') {
    const scale = tf.sum(tf.mul(input, delta), [1, 2])
    const shift = tf.sum(delta, [1, 2])
    return tf.add(tf.sum(tf.square(scale), 1), tf.sum(tf.square(shift), 1)) as tf.Tensor1D
  }
  const c = h.layer as unknown as ConvLayer
  const [, OH, OW, co] = delta.shape as [number, number, number, number]
  const bias = (): tf.Tensor => tf.sum(tf.square(tf.sum(tf.reshape(delta, [B, OH * OW, co]), 1)), 1)
  const filterShape = c.kernel.read().shape as [number, number, number, number]
  const native = perExampleFilterGradNorms(input as tf.Tensor4D, delta as tf.Tensor4D, c.strides as [number, number], c.padding, filterShape)
  if (native !== null) return (c.useBias ? tf.add(native, bias()) : native) as tf.Tensor1D
  const T = OH * OW
  const K = c.kernelSize[0] * c.kernelSize[1] * input.shape[3]!
  // the gradients themselves cost B·K·co·T multiply-adds (and B·K·co floats), the ghost norm
  // B·T²·(K + co) (and B·T² floats) on a path about four times slower: the cheaper one, computed
  // for as many examples at a time as keep its largest intermediate within 64 MB
  const direct = K * co * T / 4 <= T * T * (K + co)
  const perExample = direct ? K * co : T * T
  const chunk = Math.max(1, Math.floor(limitFloats / perExample))
  const part = (x: tf.Tensor4D, d: tf.Tensor4D): tf.Tensor => {
    const b = x.shape[0]
    if (direct) return tf.sum(tf.square(perExampleFilterGrads(x, d, c)), [0, 2])
    const P = patches(x, c)
    const D = tf.reshape(d, [b, T, co]) as tf.Tensor3D
    return tf.sum(tf.mul(tf.matMul(P, P, false, true), tf.matMul(D, D, false, true)), [1, 2])
  }
  const parts: tf.Tensor[] = []
  for (let from = 0; from < B; from += chunk) {
    const n = Math.min(chunk, B - from)
    parts.push(n === B ? part(input as tf.Tensor4D, delta as tf.Tensor4D) : part(tf.slice(input, [from, 0, 0, 0], [n, -1, -1, -1]) as tf.Tensor4D, tf.slice(delta, [from, 0, 0, 0], [n, -1, -1, -1]) as tf.Tensor4D))
  }
  const w = parts.length === 1 ? parts[0] : tf.concat(parts, 0)
  return (c.useBias ? tf.add(w, bias()) : w) as tf.Tensor1D
}

export interface ClippedSum {
  /** Σ_b c_b·g_b for each variable, in the order given */
  sums: tf.Tensor[]
  /** Σ_b loss_b */
  lossSum: number
  /** ‖g_b‖ before clipping */
  norms: Float32Array
}

/**
 * The clipped, weighted gradient sum of a batch. `lossOf(probs)` gives each example's loss [B];
 * `factors(norms)` the c_b from the per-example gradient norms. The model must pass `unbatchable`.
 */
export function clippedGradientSum (
  model: tfl.LayersModel, x: tf.Tensor4D, lossOf: (probs: tf.Tensor2D) => tf.Tensor1D,
  factors: (norms: Float32Array) => Float32Array, vars: tf.Variable[],
  /** the largest intermediate of a layer's norms, in floats: examples are taken in groups that fit */
  limitFloats = 16 * 2 ** 20
): ClippedSum {
  const B = x.shape[0]
  const hooked: Hooked[] = model.layers.filter(l => l.trainableWeights.length > 0).map(layer => ({ layer, kind: KNOWN[layer.getClassName()], input: null }))
  // filled by the backend in its own memory (tf.zeros would build the zeros in JavaScript and copy them in: 10 MB a step for cnn-small at batch 64)
  const probes = hooked.map(h => tf.fill([B, ...(h.layer.outputShape as number[]).slice(1)], 0))
  const original = hooked.map(h => h.layer.call)
  let deltas: tf.Tensor[] = []
  let lossSum = 0
  /** the probes of the pass under way (the gradient function's own copies of them) */
  let current: tf.Tensor[] = probes
  try {
    hooked.forEach((h, i) => {
      // the layer's own computation, rewritten so that its pre-activation output and its input can be seen
      h.layer.call = (inputs: tf.Tensor | tf.Tensor[]): tf.Tensor => {
        const input = (Array.isArray(inputs) ? inputs[0] : inputs)
        // the input itself is kept (no copy), but for the batch, which is the caller's to dispose
        const kept = h.kind === 'groupnorm' ? (h.layer as GroupNorm).normalise(input as tf.Tensor4D) : input === x ? input.clone() : input
        h.input = tf.keep(kept)
        const z = tf.add(preActivation(h, kept), current[i])
        const act = (h.layer as unknown as { activation?: Activation | null }).activation
        return act === undefined || act === null ? z : act.apply(z)
      }
    })
    const { value, grads } = tf.valueAndGrads((...p: tf.Tensor[]) => {
      current = p
      return tf.sum(lossOf(model.apply(x, { training: true }) as tf.Tensor2D))
    })(probes)
    lossSum = value.dataSync()[0]
    value.dispose()
    deltas = grads
  } catch (e) {
    for (const h of hooked) h.input?.dispose()
    throw e
  } finally {
    hooked.forEach((h, i) => { h.layer.call = original[i] })
    tf.dispose(probes)
  }
  try {
    // a ghost norm of an example whose gradient is about zero can round below zero: clamp it
    const norms = tf.tidy(() => tf.sqrt(tf.relu(tf.addN(hooked.map((h, i) => squaredNorms(h, deltas[i], limitFloats))))).dataSync() as Float32Array)
    const c = factors(norms)
    const sums = tf.tidy(() => {
      const weight = tf.tensor1d(c)
      const byName = new Map<string, tf.Tensor>()
      hooked.forEach((h, i) => {
        const d = deltas[i]
        const cd = tf.mul(d, tf.reshape(weight, [B, ...d.shape.slice(1).map(() => 1)]))
        for (const [v, g] of weightGradients(h, h.input!, cd)) byName.set(v.name, g)
      })
      return vars.map(v => {
        const g = byName.get(v.name)
        if (g === undefined) throw new Error(`the batched clipped sum reached no gradient for ${v.name}`)
        return g
      })
    })
    return { sums, lossSum, norms }
  } finally {
    tf.dispose(deltas)
    for (const h of hooked) h.input?.dispose()
  }
}
