/**
 * Running a model on images, with the preprocessing it was trained with: decoded, given the
 * model's channels, resized to its side (area averaging when shrinking), kept as bytes, then
 * normalised with the consortium's statistics a batch at a time (LocalTrainer.predict). Knows
 * no protocol and no network: the caller gives the weights and the statistics.
 */
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
  const model = buildModel(spec)
  try {
    setFlatWeights(model, weights)
    const px = spec.height * spec.width * spec.channels
    const pixels = new Uint8Array(images.length * px)
    images.forEach((img, i) => pixels.set(img, i * px))
    const data: ImageDataset = { pixels, labels: new Int32Array(images.length), height: spec.height, width: spec.width, channels: spec.channels, classes: Array.from({ length: spec.classes }, (_, i) => String(i)) }
    const trainer = new LocalTrainer(model)
    try { return trainer.predict(data, norm) } finally { trainer.dispose() }
  } finally {
    model.dispose()
  }
}
