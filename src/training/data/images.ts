/**
 * Folders of images by class, as a hospital exports them:  root/<class>/<file>.{png,jpg,jpeg,dcm}
 * Each image becomes grayscale (ITU-R BT.601 luma), is resized to size×size (area averaging
 * when shrinking, bilinear when enlarging), and scaled to [0, 1]. Classes are the folder names,
 * in sorted order.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, extname } from 'node:path'
import { PNG } from 'pngjs'
import jpeg from 'jpeg-js'
import { decodeDicom } from './dicom.ts'
import { ImageLoadError, type GrayImage, type ImageDataset } from './dataset.ts'

export { ImageLoadError, type GrayImage }

const MAX_PIXELS = 64 * 1024 * 1024

/** Decode a PNG or JPEG file's bytes into a grayscale image in [0, 1]. */
export function decodeImage (bytes: Uint8Array, name: string): GrayImage {
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
  const pixels = new Float32Array(width * height)
  for (let i = 0; i < pixels.length; i++) pixels[i] = (0.299 * data[4 * i] + 0.587 * data[4 * i + 1] + 0.114 * data[4 * i + 2]) / 255
  return { width, height, pixels }
}

/** Resize to w×h: each output pixel averages the input area it covers (bilinear when enlarging). */
export function resize (img: GrayImage, w: number, h: number): Float32Array {
  const out = new Float32Array(w * h)
  const sx = img.width / w
  const sy = img.height / h
  if (sx >= 1 && sy >= 1) {
    for (let y = 0; y < h; y++) {
      const y0 = y * sy; const y1 = y0 + sy
      for (let x = 0; x < w; x++) {
        const x0 = x * sx; const x1 = x0 + sx
        let sum = 0; let area = 0
        for (let iy = Math.floor(y0); iy < Math.ceil(y1); iy++) {
          const wy = Math.min(y1, iy + 1) - Math.max(y0, iy)
          for (let ix = Math.floor(x0); ix < Math.ceil(x1); ix++) {
            const wx = Math.min(x1, ix + 1) - Math.max(x0, ix)
            sum += img.pixels[iy * img.width + ix] * wx * wy
            area += wx * wy
          }
        }
        out[y * w + x] = sum / area
      }
    }
    return out
  }
  for (let y = 0; y < h; y++) {
    const fy = Math.min(img.height - 1, Math.max(0, (y + 0.5) * sy - 0.5))
    const y0 = Math.floor(fy); const y1 = Math.min(img.height - 1, y0 + 1); const ty = fy - y0
    for (let x = 0; x < w; x++) {
      const fx = Math.min(img.width - 1, Math.max(0, (x + 0.5) * sx - 0.5))
      const x0 = Math.floor(fx); const x1 = Math.min(img.width - 1, x0 + 1); const tx = fx - x0
      const p = (yy: number, xx: number) => img.pixels[yy * img.width + xx]
      out[y * w + x] = (p(y0, x0) * (1 - tx) + p(y0, x1) * tx) * (1 - ty) + (p(y1, x0) * (1 - tx) + p(y1, x1) * tx) * ty
    }
  }
  return out
}

const IMAGE_EXTS = new Set(['.png', '.jpg', '.jpeg', '.dcm'])

/** Load root/<class>/* as a dataset of size×size grayscale images. */
export function loadImageFolder (root: string, size = 28): ImageDataset {
  let classes: string[]
  try {
    classes = readdirSync(root).filter(c => !c.startsWith('.') && statSync(join(root, c)).isDirectory()).sort()
  } catch (e) {
    throw new ImageLoadError(`cannot read the image folder ${root}: ${(e as Error).message}`)
  }
  if (classes.length < 2) throw new ImageLoadError(`${root} must hold one sub-folder per class (at least two), found ${classes.length}`)
  const images: Float32Array[] = []
  const labels: number[] = []
  classes.forEach((cls, label) => {
    for (const file of readdirSync(join(root, cls)).sort()) {
      if (!IMAGE_EXTS.has(extname(file).toLowerCase())) continue
      const path = join(root, cls, file)
      images.push(resize(decodeImage(new Uint8Array(readFileSync(path)), path), size, size))
      labels.push(label)
    }
  })
  if (images.length === 0) throw new ImageLoadError(`${root} holds no PNG, JPEG or DICOM images`)
  const all = new Float32Array(images.length * size * size)
  images.forEach((img, i) => all.set(img, i * size * size))
  return { images: all, labels: Int32Array.from(labels), height: size, width: size, classes }
}
