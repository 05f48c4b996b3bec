/** An image classification dataset held in memory: grayscale images in [0, 1], integer labels. */
export interface ImageDataset {
  /** N × height × width, row-major, values in [0, 1] */
  images: Float32Array
  labels: Int32Array
  height: number
  width: number
  classes: string[]
}

/** The examples at `indices`, copied. */
export function subset (d: ImageDataset, indices: ArrayLike<number>): ImageDataset {
  const px = d.height * d.width
  const images = new Float32Array(indices.length * px)
  const labels = new Int32Array(indices.length)
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i]
    if (!Number.isInteger(j) || j < 0 || j >= d.labels.length) throw new RangeError(`index ${j} is outside the dataset`)
    images.set(d.images.subarray(j * px, (j + 1) * px), i * px)
    labels[i] = d.labels[j]
  }
  return { images, labels, height: d.height, width: d.width, classes: d.classes }
}

export function classCounts (d: ImageDataset): number[] {
  const counts = new Array<number>(d.classes.length).fill(0)
  for (const l of d.labels) counts[l]++
  return counts
}

export class ImageLoadError extends Error {
  constructor (message: string) { super(message); this.name = 'ImageLoadError' }
}

export interface GrayImage { width: number, height: number, pixels: Float32Array }
