/**
 * Augmentation suited to the modality, seeded, on the raw batch (channels last):
 * - X-ray: small random affine transforms (rotation up to ±8°, scale 0.92–1.08, shift up to
 *   ±2 px at 28 px, in proportion at other sizes), bilinear sampling, edges filled with the
 *   nearest pixel. No flips: in a chest X-ray the heart is on the left.
 * - ultrasound: the probe may be held either way, and gain and depth settings vary between
 *   machines and sonographers: horizontal flips, slightly larger affine transforms, and a
 *   brightness and contrast jitter.
 * - photograph (fundus, dermoscopy, histology): orientation carries no meaning, so horizontal
 *   flips and larger rotations, and a small brightness and contrast jitter for the camera.
 */
import { seededRandom, uniformDoubles, type RandomSource } from '../privacy/index.ts'

export interface AugmentOptions {
  maxRotationDeg: number
  maxScale: number
  /** pixels; at 28 px, and in proportion at other sizes when scaleShifts is set */
  maxShift: number
  flip: boolean
  colourJitter: number
  /** shifts in proportion to the image (a modality named in the manifest); absent: maxShift pixels at every size, as consortia founded before modalities trained */
  scaleShifts?: boolean
}
export const XRAY_AUGMENT: AugmentOptions = { maxRotationDeg: 8, maxScale: 0.08, maxShift: 2, flip: false, colourJitter: 0 }
export const COLOUR_AUGMENT: AugmentOptions = { maxRotationDeg: 15, maxScale: 0.08, maxShift: 2, flip: true, colourJitter: 0.1 }
export const ULTRASOUND_AUGMENT: AugmentOptions = { maxRotationDeg: 10, maxScale: 0.1, maxShift: 2, flip: true, colourJitter: 0.15 }

export const MODALITIES = ['xray', 'ultrasound', 'photo'] as const
export type Modality = typeof MODALITIES[number]

/** The augmentation for a modality (shifts in proportion to the image), or, with none named, for images of this many channels as before modalities (X-ray for grayscale, photograph for colour). */
export function augmentFor (channels: number, modality?: Modality): AugmentOptions {
  if (modality === undefined) return channels === 3 ? COLOUR_AUGMENT : XRAY_AUGMENT
  return { ...(modality === 'ultrasound' ? ULTRASOUND_AUGMENT : modality === 'photo' ? COLOUR_AUGMENT : XRAY_AUGMENT), scaleShifts: true }
}

export class Augmenter {
  readonly #rng: RandomSource
  readonly #o: AugmentOptions
  constructor (seed: Uint8Array, o: AugmentOptions = XRAY_AUGMENT) { this.#rng = seededRandom(seed); this.#o = o }

  /**
   * Transform `count` images of h×w×c held in `images` (in place). With `shard`, they are images
   * from..from+count-1 of a batch of `total`: the draws are those of the whole batch, so that a
   * batch split across workers is augmented exactly as it would be in one piece.
   */
  apply (images: Float32Array, count: number, h: number, w: number, c = 1, shard?: { from: number, total: number }): void {
    const o = this.#o
    const draws = o.flip || o.colourJitter > 0 ? 7 : 4
    const all = uniformDoubles(this.#rng, draws * (shard?.total ?? count))
    const u = shard === undefined ? all : all.subarray(draws * shard.from)
    const src = new Float32Array(h * w * c)
    const cy = (h - 1) / 2; const cx = (w - 1) / 2
    // shifts are given in pixels at 28 px: with a named modality, the same share of the image at any size
    const shiftScale = o.scaleShifts === true ? Math.max(h, w) / 28 : 1
    for (let i = 0; i < count; i++) {
      const r = u.subarray(draws * i, draws * (i + 1))
      const angle = (r[0] * 2 - 1) * o.maxRotationDeg * Math.PI / 180
      const scale = 1 + (r[1] * 2 - 1) * o.maxScale
      const dy = (r[2] * 2 - 1) * o.maxShift * shiftScale
      const dx = (r[3] * 2 - 1) * o.maxShift * shiftScale
      const flip = o.flip && r[4] < 0.5
      const img = images.subarray(i * h * w * c, (i + 1) * h * w * c)
      src.set(img)
      const cos = Math.cos(angle) / scale; const sin = Math.sin(angle) / scale
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          // inverse map: output pixel -> source coordinates
          const ox = (flip ? w - 1 - x : x) - cx - dx; const oy = y - cy - dy
          const sx = Math.min(w - 1, Math.max(0, cos * ox + sin * oy + cx))
          const sy = Math.min(h - 1, Math.max(0, -sin * ox + cos * oy + cy))
          const x0 = Math.floor(sx); const y0 = Math.floor(sy)
          const x1 = Math.min(w - 1, x0 + 1); const y1 = Math.min(h - 1, y0 + 1)
          const tx = sx - x0; const ty = sy - y0
          for (let k = 0; k < c; k++) {
            const p = (yy: number, xx: number): number => src[(yy * w + xx) * c + k]
            img[(y * w + x) * c + k] = (p(y0, x0) * (1 - tx) + p(y0, x1) * tx) * (1 - ty) + (p(y1, x0) * (1 - tx) + p(y1, x1) * tx) * ty
          }
        }
      }
      if (o.colourJitter > 0) {
        const brightness = (r[5] * 2 - 1) * o.colourJitter
        const contrast = 1 + (r[6] * 2 - 1) * o.colourJitter
        for (let k = 0; k < img.length; k++) img[k] = Math.min(1, Math.max(0, (img[k] - 0.5) * contrast + 0.5 + brightness))
      }
    }
  }
}
