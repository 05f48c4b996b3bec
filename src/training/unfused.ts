/**
 * Convolutions without TF.js's fused kernel while a model trains. A Conv2D layer with a linear
 * activation (every ResNet convolution, BatchNorm or GroupNorm after it) runs through
 * `tf.fused.conv2d` even under a gradient tape, and the fused op's gradient computes the input
 * gradient whether or not anything needs it: for the first layer, the gradient of the images
 * themselves (at 128×128 on ResNet-18's 7×7 stem, 0.93 s of a 8 s step). The plain ops' gradients
 * are computed only where the tape needs them. The forward values are the same.
 */
import * as tf from '@tensorflow/tfjs-core'
import type * as tfl from '@tensorflow/tfjs-layers'

/** the fields of a tfjs-layers convolution that its computation reads */
export interface ConvLayer { kernel: tfl.LayerVariable, bias: tfl.LayerVariable | null, useBias: boolean, kernelSize: number[], strides: number[], padding: 'same' | 'valid', dilationRate: number[], dataFormat: string, rank: number, activation: { apply: (x: tf.Tensor) => tf.Tensor } | null }

/** a channels-last 2D convolution's output before its activation: conv2d(x, kernel) + bias */
export function convPreActivation (c: ConvLayer, x: tf.Tensor4D): tf.Tensor4D {
  const z = tf.conv2d(x, c.kernel.read() as tf.Tensor4D, c.strides as [number, number], c.padding)
  return c.useBias && c.bias !== null ? tf.add(z, c.bias.read()) : z
}

/** Replace each plain 2D convolution's call with unfused ops; returns the function that puts them back. */
export function unfuseConvolutions (model: tfl.LayersModel): () => void {
  const patched: Array<{ layer: tfl.layers.Layer, call: tfl.layers.Layer['call'] }> = []
  for (const layer of model.layers) {
    if (layer.getClassName() !== 'Conv2D') continue
    const c = layer as unknown as ConvLayer
    if (c.rank !== 2 || c.dataFormat !== 'channelsLast' || c.dilationRate.some(d => d !== 1)) continue
    patched.push({ layer, call: layer.call })
    layer.call = (inputs: tf.Tensor | tf.Tensor[]): tf.Tensor => {
      const z = convPreActivation(c, (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor4D)
      return c.activation === null ? z : c.activation.apply(z)
    }
  }
  return () => { for (const p of patched) p.layer.call = p.call }
}
