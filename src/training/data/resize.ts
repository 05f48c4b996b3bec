/**
 * Resizing: each output pixel averages the input area it covers when shrinking (not the nearest
 * pixel, which aliases fine structure away), bilinear interpolation when enlarging; every channel
 * alike. Datasets stay uint8.
 */
import { imageLength, type ImageDataset, type Picture } from './dataset.ts'

/** `p` resized to w×h, channels last. */
export function resize (p: Picture, w: number, h: number): Float32Array {
  const c = p.channels
  const out = new Float32Array(w * h * c)
  const sx = p.width / w
  const sy = p.height / h
  const at = (y: number, x: number, ch: number): number => p.pixels[(y * p.width + x) * c + ch]
  if (sx >= 1 && sy >= 1) {
    for (let y = 0; y < h; y++) {
      const y0 = y * sy; const y1 = y0 + sy
      for (let x = 0; x < w; x++) {
        const x0 = x * sx; const x1 = x0 + sx
        for (let ch = 0; ch < c; ch++) {
          let sum = 0; let area = 0
          for (let iy = Math.floor(y0); iy < Math.ceil(y1); iy++) {
            const wy = Math.min(y1, iy + 1) - Math.max(y0, iy)
            for (let ix = Math.floor(x0); ix < Math.ceil(x1); ix++) {
              const wx = Math.min(x1, ix + 1) - Math.max(x0, ix)
              sum += at(iy, ix, ch) * wx * wy
              area += wx * wy
            }
          }
          out[(y * w + x) * c + ch] = sum / area
        }
      }
    }
    return out
  }
  for (let y = 0; y < h; y++) {
    const fy = Math.min(p.height - 1, Math.max(0, (y + 0.5) * sy - 0.5))
    const y0 = Math.floor(fy); const y1 = Math.min(p.height - 1, y0 + 1); const ty = fy - y0
    for (let x = 0; x < w; x++) {
      const fx = Math.min(p.width - 1, Math.max(0, (x + 0.5) * sx - 0.5))
      const x0 = Math.floor(fx); const x1 = Math.min(p.width - 1, x0 + 1); const tx = fx - x0
      for (let ch = 0; ch < c; ch++) {
        out[(y * w + x) * c + ch] = (at(y0, x0, ch) * (1 - tx) + at(y0, x1, ch) * tx) * (1 - ty) + (at(y1, x0, ch) * (1 - tx) + at(y1, x1, ch) * tx) * ty
      }
    }
  }
  return out
}

/** Floats in [0, 1] to bytes, rounded. */
export function toBytes (values: Float32Array, out: Uint8Array = new Uint8Array(values.length), offset = 0): Uint8Array {
  for (let i = 0; i < values.length; i++) out[offset + i] = Math.round(Math.min(1, Math.max(0, values[i])) * 255)
  return out
}

/** Every image of `d` at size×size (the same dataset when it already is). */
export function resizeDataset (d: ImageDataset, size: number): ImageDataset {
  if (d.height === size && d.width === size) return d
  const px = imageLength(d)
  const outPx = size * size * d.channels
  const pixels = new Uint8Array(d.labels.length * outPx)
  const one = new Float32Array(px)
  for (let i = 0; i < d.labels.length; i++) {
    const src = d.pixels.subarray(i * px, (i + 1) * px)
    for (let k = 0; k < px; k++) one[k] = src[k] / 255
    toBytes(resize({ width: d.width, height: d.height, channels: d.channels, pixels: one }, size, size), pixels, i * outPx)
  }
  return { ...d, pixels, height: size, width: size }
}
