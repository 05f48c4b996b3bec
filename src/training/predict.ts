/**
 * Running a model on images, with the preprocessing it was trained with: decoded, given the
 * model's channels, resized to its side (area averaging when shrinking), kept as bytes, then
 * normalised with the consortium's statistics a batch at a time (LocalTrainer.predict). Knows
 * no protocol and no network: the caller gives the weights and the statistics.
 */
import type * as tfl from '@tensorflow/tfjs-layers'
import { buildModel, setFlatWeights, type ModelSpec } from './models.ts'
import { LocalTrainer } from './trainer.ts'
import { decodeImage, withChannels, ImageLoadError } from './data/images.ts'
import { resize, toBytes } from './data/resize.ts'
import type { ImageDataset } from './data/dataset.ts'
import type { Normalisation } from './data/stats.ts'

export { ImageLoadError }

/** An image file's bytes as the model takes them (size × size × channels, uint8); throws ImageLoadError. */
export function preprocess (bytes: Uint8Array, name: string, size: number, channels: number): Uint8Array {
  const picture = withChannels(decodeImage(bytes, name), channels)
  return toBytes(resize(picture, size, size))
}

/** Class probabilities (images × classes) of the model with `weights` on preprocessed images. */
export function predictProbabilities (spec: ModelSpec, weights: Float32Array, images: Uint8Array[], norm: Normalisation | undefined): Float32Array {
  const model = withWeights(spec, weights)
  try { return predictWith(model, images, norm) } finally { model.dispose() }
}

/** The model of `spec` with `weights` (the caller disposes it). */
export function withWeights (spec: ModelSpec, weights: Float32Array): tfl.LayersModel {
  const model = buildModel(spec)
  try { setFlatWeights(model, weights) } catch (e) { model.dispose(); throw e }
  return model
}

/** Class probabilities (images × classes) of any loaded model on images preprocessed to its input shape. */
export function predictWith (model: tfl.LayersModel, images: Uint8Array[], norm: Normalisation | undefined): Float32Array {
  const [, height, width, channels] = model.inputs[0].shape as number[]
  const classes = (model.outputs[0].shape as number[])[1]
  const px = height * width * channels
  const pixels = new Uint8Array(images.length * px)
  images.forEach((img, i) => {
    if (img.length !== px) throw new Error(`an image of ${img.length} values for a ${height}×${width}×${channels} model`)
    pixels.set(img, i * px)
  })
  const data: ImageDataset = { pixels, labels: new Int32Array(images.length), height, width, channels, classes: Array.from({ length: classes }, (_, i) => String(i)) }
  const trainer = new LocalTrainer(model)
  try { return trainer.predict(data, norm) } finally { trainer.dispose() }
}

/**
 * The model with `weights` as TF.js Layers artifacts: model.json's contents (topology and a
 * weights manifest naming `weights.bin`) and the bytes of weights.bin, as tf.io's file handler
 * writes them, so that `tf.loadLayersModel` loads the folder in Node or a browser. Models with
 * GroupNorm need its class (MedmeshGroupNorm) registered by whoever loads them.
 */
export async function layersArtifacts (spec: ModelSpec, weights: Float32Array): Promise<{ modelJson: Record<string, unknown>, weightsBin: Uint8Array, customLayers: string[] }> {
  const tfio = (await import('@tensorflow/tfjs-core')).io
  const model = buildModel(spec)
  try {
    setFlatWeights(model, weights)
    let saved: { modelTopology: unknown, weightSpecs: unknown[], weightData: ArrayBuffer | ArrayBuffer[] } | null = null
    await model.save(tfio.withSaveHandler(async artifacts => {
      saved = { modelTopology: artifacts.modelTopology, weightSpecs: artifacts.weightSpecs ?? [], weightData: artifacts.weightData as ArrayBuffer | ArrayBuffer[] }
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }
    }))
    const s = saved as unknown as { modelTopology: unknown, weightSpecs: unknown[], weightData: ArrayBuffer | ArrayBuffer[] }
    const parts = Array.isArray(s.weightData) ? s.weightData : [s.weightData]
    const weightsBin = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
    let off = 0
    for (const p of parts) { weightsBin.set(new Uint8Array(p), off); off += p.byteLength }
    const customLayers = [...new Set(model.layers.map(l => l.getClassName()).filter(n => n.startsWith('Medmesh')))]
    return {
      modelJson: { format: 'layers-model', generatedBy: 'medmesh', convertedBy: null, modelTopology: s.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: s.weightSpecs }] },
      weightsBin,
      customLayers
    }
  } finally {
    model.dispose()
  }
}
