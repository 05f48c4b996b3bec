/**
 * Grad-CAM (Selvaraju et al., ICCV 2017): where a convolutional model looked. The activations A
 * of the last layer with a spatial output (the last convolutional block) are weighted by the
 * spatial mean of the gradient of the class's score (the logit, before the softmax) with respect
 * to them; the map is ReLU(Σ_k α_k A_k), scaled to [0, 1] and resized to the input.
 *
 * The model is split at that layer: the layers after it must form a chain (flatten, pooling,
 * dense), which holds for every medmesh model with convolutions; a model without them (linear)
 * is refused.
 */
import * as tf from '@tensorflow/tfjs-core'
import * as tfl from '@tensorflow/tfjs-layers'
import { resize } from './data/resize.ts'
import { normaliseInPlace, type Normalisation } from './data/stats.ts'

export class GradCamError extends Error {}

export interface Explanation {
  /** the class explained: the predicted one unless the caller chose */
  classIndex: number
  probabilities: Float32Array
  /** height × width of the model's input, in [0, 1] */
  heat: Float32Array
  /** the layer whose activations are weighted */
  layer: string
}

interface Split { features: tfl.LayersModel, head: tfl.layers.Layer[], layer: string }

/** The model cut after its last layer with a spatial (rank-4) output, and the chain after it. */
function split (model: tfl.LayersModel): Split {
  const layers = model.layers
  let cut = -1
  for (let i = layers.length - 1; i >= 0; i--) {
    const shape = layers[i].outputShape
    if (Array.isArray(shape) && !Array.isArray(shape[0]) && shape.length === 4 && layers[i].getClassName() !== 'InputLayer') { cut = i; break }
  }
  if (cut < 0) throw new GradCamError(`model '${model.name}' has no convolutional layer to explain`)
  const head = layers.slice(cut + 1)
  head.forEach((l, j) => {
    const before = j === 0 ? layers[cut] : head[j - 1]
    const inbound = l.inboundNodes.flatMap(n => n.inboundLayers)
    if (inbound.length !== 1 || inbound[0] !== before) throw new GradCamError(`model '${model.name}': the layers after ${layers[cut].name} do not form a chain`)
  })
  const last = head[head.length - 1]
  if (last === undefined || last.getClassName() !== 'Dense') throw new GradCamError(`model '${model.name}' does not end in a dense layer`)
  return { features: tfl.model({ inputs: model.inputs, outputs: layers[cut].output as tfl.SymbolicTensor }), head, layer: layers[cut].name }
}

/** The class scores before the softmax: the head applied to the activations, the last dense layer without its activation. */
function logits (head: tfl.layers.Layer[], a: tf.Tensor): tf.Tensor2D {
  let x = a
  for (const l of head.slice(0, -1)) x = l.apply(x, { training: false }) as tf.Tensor
  const [kernel, bias] = head[head.length - 1].getWeights()
  const z = tf.matMul(x as tf.Tensor2D, kernel as tf.Tensor2D)
  return (bias === undefined ? z : tf.add(z, bias)) as tf.Tensor2D
}

/**
 * A Grad-CAM map for each image (uint8, height × width × channels as preprocess gives them),
 * normalised with `norm` as in training; `classIndex` chooses the class (default the predicted).
 */
export function explain (model: tfl.LayersModel, images: Uint8Array[], norm: Normalisation | undefined, classIndex?: number): Explanation[] {
  const [, h, w, c] = model.inputs[0].shape as number[]
  // the features model shares the model's layers and holds no weights of its own; disposing
  // it would dispose them, so it is left to the garbage collector
  const { features, head, layer } = split(model)
  {
    const out: Explanation[] = []
    for (const image of images) {
      if (image.length !== h * w * c) throw new GradCamError(`an image of ${image.length} values for a ${h}×${w}×${c} model`)
      const buf = Float32Array.from(image, v => v / 255)
      normaliseInPlace(buf, norm)
      const { cam, probs, cls, gh, gw } = tf.tidy(() => {
        const x = tf.tensor4d(buf, [1, h, w, c])
        const a = features.apply(x, { training: false }) as tf.Tensor4D
        const scores = logits(head, a)
        const p = tf.softmax(scores).dataSync() as Float32Array
        const k = classIndex ?? p.indexOf(Math.max(...p))
        if (!Number.isInteger(k) || k < 0 || k >= p.length) throw new GradCamError(`class ${k} of a model with ${p.length} classes`)
        const mask = tf.cast(tf.oneHot([k], p.length), 'float32')
        const grad = tf.grad((act: tf.Tensor) => tf.sum(tf.mul(logits(head, act), mask)))(a)
        const alpha = tf.mean(grad, [1, 2], true)
        const map = tf.squeeze(tf.relu(tf.sum(tf.mul(a, alpha), -1)), [0])
        return { cam: map.dataSync() as Float32Array, probs: p, cls: k, gh: a.shape[1], gw: a.shape[2] }
      })
      let max = 0
      for (const v of cam) if (v > max) max = v
      const scaled = max > 0 ? cam.map(v => v / max) : cam
      const heat = resize({ width: gw, height: gh, channels: 1, pixels: scaled }, w, h)
      for (let i = 0; i < heat.length; i++) heat[i] = Math.min(1, Math.max(0, heat[i]))
      out.push({ classIndex: cls, probabilities: probs, heat, layer })
    }
    return out
  }
}

/** Jet colour map (blue → cyan → yellow → red) of t in [0, 1], as RGB in [0, 1]. */
export function jet (t: number): [number, number, number] {
  const f = (x: number): number => Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - x)))
  return [f(3), f(2), f(1)]
}

/**
 * The heat map over a picture (RGB or grayscale floats in [0, 1], width × height), as RGBA bytes
 * at that size: each pixel blended with the colour of its heat, more strongly where it is hotter,
 * so that the cold parts show the image unchanged.
 */
export function overlay (picture: { width: number, height: number, channels: number, pixels: Float32Array }, heat: Float32Array, heatWidth: number, heatHeight: number): Uint8Array {
  const { width, height, channels } = picture
  const up = resize({ width: heatWidth, height: heatHeight, channels: 1, pixels: heat }, width, height)
  const rgba = new Uint8Array(width * height * 4)
  for (let i = 0; i < width * height; i++) {
    const t = Math.min(1, Math.max(0, up[i]))
    const colour = jet(t)
    const a = 0.65 * t
    for (let ch = 0; ch < 3; ch++) {
      const v = picture.pixels[i * channels + (channels === 1 ? 0 : ch)]
      rgba[i * 4 + ch] = Math.round(255 * Math.min(1, Math.max(0, (1 - a) * v + a * colour[ch])))
    }
    rgba[i * 4 + 3] = 255
  }
  return rgba
}
