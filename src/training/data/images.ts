/**
 * Folders of images by class, as a hospital exports them:  root/<class>/<file>.{png,jpg,jpeg,dcm}
 * Classes are the folder names, in sorted order. Images keep their colour when the data has it
 * (channels: 3 if any image is in colour, else 1; or as asked), are resized to size×size (area
 * averaging when shrinking, bilinear when enlarging; by default the size most images have) and
 * kept as bytes.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, extname } from 'node:path'
import { PNG } from 'pngjs'
import jpeg from 'jpeg-js'
import { decodeDicom } from './dicom.ts'
import { ImageLoadError, type ImageDataset, type Picture } from './dataset.ts'
import { resize, toBytes } from './resize.ts'

export { ImageLoadError, type Picture }

const MAX_PIXELS = 64 * 1024 * 1024

/** Decode a PNG, JPEG or DICOM file's bytes: RGB (3 channels) or grayscale (1), in [0, 1]. */
export function decodeImage (bytes: Uint8Array, name: string): Picture {
  const ext = extname(name).toLowerCase()
  let rgba: { width: number, height: number, data: Uint8Array }
  try {
    if (ext === '.png') rgba = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    else if (ext === '.jpg' || ext === '.jpeg') rgba = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_PIXELS / 1e6, maxMemoryUsageInMB: 1024 })
    else if (ext === '.dcm') return decodeDicom(bytes, name)
    else throw new ImageLoadError(`${name}: not a PNG, JPEG or DICOM file`)
  } catch (e) {
    if (e instanceof ImageLoadError) throw e
    throw new ImageLoadError(`${name}: cannot decode (${(e as Error).message.slice(0, 100)})`)
  }
  const { width, height, data } = rgba
  if (width * height > MAX_PIXELS) throw new ImageLoadError(`${name}: ${width}×${height} is too large`)
  let colour = false
  for (let i = 0; i < width * height && !colour; i++) colour = data[4 * i] !== data[4 * i + 1] || data[4 * i + 1] !== data[4 * i + 2]
  const channels = colour ? 3 : 1
  const pixels = new Float32Array(width * height * channels)
  for (let i = 0; i < width * height; i++) {
    if (colour) for (let c = 0; c < 3; c++) pixels[3 * i + c] = data[4 * i + c] / 255
    else pixels[i] = data[4 * i] / 255
  }
  return { width, height, channels, pixels }
}

/** The same picture with `channels` channels: grayscale repeated into RGB, or RGB to luma (ITU-R BT.601). */
export function withChannels (p: Picture, channels: number): Picture {
  if (p.channels === channels) return p
  const n = p.width * p.height
  const pixels = new Float32Array(n * channels)
  if (channels === 3) for (let i = 0; i < n; i++) pixels[3 * i] = pixels[3 * i + 1] = pixels[3 * i + 2] = p.pixels[i]
  else for (let i = 0; i < n; i++) pixels[i] = 0.299 * p.pixels[3 * i] + 0.587 * p.pixels[3 * i + 1] + 0.114 * p.pixels[3 * i + 2]
  return { width: p.width, height: p.height, channels, pixels }
}

const IMAGE_EXTS = new Set(['.png', '.jpg', '.jpeg', '.dcm'])

export interface FolderOptions {
  /** square side to resize to (default: the size most images have) */
  size?: number
  /** 1 or 3 (default: 3 if any image is in colour, else 1) */
  channels?: number
}

/** Load root/<class>/* as a dataset. */
export function loadImageFolder (root: string, o: FolderOptions = {}): ImageDataset {
  let classes: string[]
  try {
    classes = readdirSync(root).filter(c => !c.startsWith('.') && statSync(join(root, c)).isDirectory()).sort()
  } catch (e) {
    throw new ImageLoadError(`cannot read the image folder ${root}: ${(e as Error).message}`)
  }
  if (classes.length < 2) throw new ImageLoadError(`${root} must hold one sub-folder per class (at least two), found ${classes.length}`)
  const pictures: Picture[] = []
  const labels: number[] = []
  classes.forEach((cls, label) => {
    for (const file of readdirSync(join(root, cls)).sort()) {
      if (!IMAGE_EXTS.has(extname(file).toLowerCase())) continue
      const path = join(root, cls, file)
      pictures.push(decodeImage(new Uint8Array(readFileSync(path)), path))
      labels.push(label)
    }
  })
  if (pictures.length === 0) throw new ImageLoadError(`${root} holds no PNG, JPEG or DICOM images`)
  const channels = o.channels ?? (pictures.some(p => p.channels === 3) ? 3 : 1)
  if (channels !== 1 && channels !== 3) throw new ImageLoadError(`channels must be 1 or 3, got ${channels}`)
  const size = o.size ?? mostCommonSize(pictures)
  const px = size * size * channels
  const pixels = new Uint8Array(pictures.length * px)
  pictures.forEach((p, i) => toBytes(resize(withChannels(p, channels), size, size), pixels, i * px))
  return { pixels, labels: Int32Array.from(labels), height: size, width: size, channels, classes }
}

/** The side most images have (their larger side), ties to the smaller. */
function mostCommonSize (pictures: Picture[]): number {
  const counts = new Map<number, number>()
  for (const p of pictures) { const s = Math.max(p.width, p.height); counts.set(s, (counts.get(s) ?? 0) + 1) }
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0]
}
