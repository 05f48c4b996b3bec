/**
 * Augmentation that suits chest X-rays: small random affine transforms (rotation up to ±8°,
 * scale 0.92–1.08, shift up to ±2 px), bilinear sampling, edges filled with the nearest pixel.
 * No flips: the heart is on the left. Done on the raw arrays (28×28 images are cheap), seeded.
 */
import { seededRandom, uniformDoubles, type RandomSource } from '../privacy/index.ts'

export interface AugmentOptions { maxRotationDeg: number, maxScale: number, maxShift: number }
export const XRAY_AUGMENT: AugmentOptions = { maxRotationDeg: 8, maxScale: 0.08, maxShift: 2 }

export class Augmenter {
  readonly #rng: RandomSource
  readonly #o: AugmentOptions
  constructor (seed: Uint8Array, o: AugmentOptions = XRAY_AUGMENT) { this.#rng = seededRandom(seed); this.#o = o }

  /** Transform `count` images of h×w held in `images` (in place). */
  apply (images: Float32Array, count: number, h: number, w: number): void {
    const u = uniformDoubles(this.#rng, 4 * count)
    const src = new Float32Array(h * w)
    const cy = (h - 1) / 2; const cx = (w - 1) / 2
    for (let i = 0; i < count; i++) {
      const angle = (u[4 * i] * 2 - 1) * this.#o.maxRotationDeg * Math.PI / 180
      const scale = 1 + (u[4 * i + 1] * 2 - 1) * this.#o.maxScale
      const dy = (u[4 * i + 2] * 2 - 1) * this.#o.maxShift
      const dx = (u[4 * i + 3] * 2 - 1) * this.#o.maxShift
      const img = images.subarray(i * h * w, (i + 1) * h * w)
      src.set(img)
      const cos = Math.cos(angle) / scale; const sin = Math.sin(angle) / scale
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          // inverse map: output pixel -> source coordinates
          const ox = x - cx - dx; const oy = y - cy - dy
          const sx = Math.min(w - 1, Math.max(0, cos * ox + sin * oy + cx))
          const sy = Math.min(h - 1, Math.max(0, -sin * ox + cos * oy + cy))
          const x0 = Math.floor(sx); const y0 = Math.floor(sy)
          const x1 = Math.min(w - 1, x0 + 1); const y1 = Math.min(h - 1, y0 + 1)
          const tx = sx - x0; const ty = sy - y0
          img[y * w + x] = (src[y0 * w + x0] * (1 - tx) + src[y0 * w + x1] * tx) * (1 - ty) + (src[y1 * w + x0] * (1 - tx) + src[y1 * w + x1] * tx) * ty
        }
      }
    }
  }
}
