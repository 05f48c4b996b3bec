/** Image files made in memory for tests: PNG and a minimal DICOM Part 10 file. */
import { PNG } from 'pngjs'

export function grayPng (w: number, h: number, value: number): Buffer {
  const png = new PNG({ width: w, height: h })
  for (let i = 0; i < w * h; i++) png.data.set([value, value, value, 255], 4 * i)
  return PNG.sync.write(png)
}

/** A minimal DICOM Part 10 file (explicit VR little endian) with a grayscale image. */
export function dicomFile (o: { rows: number, cols: number, bits: 8 | 16, pixels: number[], photometric?: string, slope?: number, intercept?: number, syntax?: string }): Uint8Array {
  const parts: number[] = []
  const u16 = (v: number) => [v & 0xff, v >> 8]
  const u32 = (v: number) => [v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff]
  const str = (s: string) => { const b = [...Buffer.from(s)]; if (b.length % 2 === 1) b.push(0x20); return b }
  const el = (group: number, elem: number, vr: string, value: number[]) => {
    parts.push(...u16(group), ...u16(elem), ...Buffer.from(vr))
    if (['OB', 'OW', 'UN', 'SQ'].includes(vr)) parts.push(0, 0, ...u32(value.length))
    else parts.push(...u16(value.length))
    parts.push(...value)
  }
  const syntax = o.syntax ?? '1.2.840.10008.1.2.1'
  const meta: number[] = []
  const save = parts.length
  el(0x0002, 0x0010, 'UI', (() => { const b = [...Buffer.from(syntax)]; if (b.length % 2) b.push(0); return b })())
  meta.push(...parts.splice(save))
  el(0x0002, 0x0000, 'UL', u32(meta.length))
  parts.push(...meta)
  el(0x0028, 0x0002, 'US', u16(1))
  el(0x0028, 0x0004, 'CS', str(o.photometric ?? 'MONOCHROME2'))
  el(0x0028, 0x0010, 'US', u16(o.rows))
  el(0x0028, 0x0011, 'US', u16(o.cols))
  el(0x0028, 0x0100, 'US', u16(o.bits))
  el(0x0028, 0x0103, 'US', u16(0))
  if (o.intercept !== undefined) el(0x0028, 0x1052, 'DS', str(String(o.intercept)))
  if (o.slope !== undefined) el(0x0028, 0x1053, 'DS', str(String(o.slope)))
  const px = o.bits === 8 ? o.pixels : o.pixels.flatMap(u16)
  el(0x7fe0, 0x0010, o.bits === 8 ? 'OB' : 'OW', px.length % 2 ? [...px, 0] : px)
  const out = new Uint8Array(132 + parts.length)
  out.set(Buffer.from('DICM'), 128)
  out.set(parts, 132)
  return out
}

/** A PNG of an 8-bit grayscale image (row-major bytes). */
export function pngOf (w: number, h: number, gray: ArrayLike<number>): Buffer {
  const png = new PNG({ width: w, height: h })
  for (let i = 0; i < w * h; i++) png.data.set([gray[i], gray[i], gray[i], 255], 4 * i)
  return PNG.sync.write(png)
}

/** xorshift: a test's random images are the same on every run */
export function xorshift (seed: number): () => number {
  let s = seed >>> 0 || 1
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32 }
}

/** n images of uniform noise, `px` bytes each, from `seed` */
export function noiseImages (n: number, seed: number, px = 784): Uint8Array[] {
  const r = xorshift(seed)
  return Array.from({ length: n }, () => Uint8Array.from({ length: px }, () => Math.floor(r() * 256)))
}
