/**
 * An image classification dataset held in memory. Pixels stay uint8 (N × height × width ×
 * channels, row-major, channels last) and are turned into floats a batch at a time, so that
 * clinical resolutions fit: 5,000 images at 224×224×3 take 750 MB as bytes, four times that as
 * float32.
 */
export interface ImageDataset {
  /** N × height × width × channels, row-major, channels last, 0–255 */
  pixels: Uint8Array
  labels: Int32Array
  height: number
  width: number
  /** 1 (grayscale) or 3 (RGB) */
  channels: number
  /** class names, by label */
  classes: string[]
}

/** Values per image. */
export const imageLength = (d: Pick<ImageDataset, 'height' | 'width' | 'channels'>): number => d.height * d.width * d.channels

/** The examples at `indices`, copied. */
export function subset (d: ImageDataset, indices: ArrayLike<number>): ImageDataset {
  const px = imageLength(d)
  const pixels = new Uint8Array(indices.length * px)
  const labels = new Int32Array(indices.length)
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i]
    if (!Number.isInteger(j) || j < 0 || j >= d.labels.length) throw new RangeError(`index ${j} is outside the dataset`)
    pixels.set(d.pixels.subarray(j * px, (j + 1) * px), i * px)
    labels[i] = d.labels[j]
  }
  return { pixels, labels, height: d.height, width: d.width, channels: d.channels, classes: d.classes }
}

/** The images at `indices` as floats in [0, 1], one after another (for a batch). */
export function floatsOf (d: ImageDataset, indices: ArrayLike<number>): Float32Array {
  const px = imageLength(d)
  const out = new Float32Array(indices.length * px)
  for (let i = 0; i < indices.length; i++) {
    const src = d.pixels.subarray(indices[i] * px, (indices[i] + 1) * px)
    for (let k = 0; k < px; k++) out[i * px + k] = src[k] / 255
  }
  return out
}

export function classCounts (d: ImageDataset): number[] {
  const counts = new Array<number>(d.classes.length).fill(0)
  for (const l of d.labels) counts[l]++
  return counts
}

export class ImageLoadError extends Error {
  constructor (message: string) { super(message); this.name = 'ImageLoadError' }
}

/** One decoded image: channels-last floats in [0, 1]. */
export interface Picture { width: number, height: number, channels: number, pixels: Float32Array }
