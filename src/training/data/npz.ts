/**
 * NumPy .npy and .npz (a zip of .npy files, deflated or stored) readers, for MedMNIST's format.
 * Sizes are checked before anything is allocated; malformed input is a clear NpyError.
 */
import { unzipSync, zipSync } from 'fflate'
import { existsSync, readFileSync } from 'node:fs'
import type { ImageDataset } from './dataset.ts'

export class NpyError extends Error {
  constructor (message: string) { super(message); this.name = 'NpyError' }
}

export type NpyData = Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array | Uint32Array | Float32Array | Float64Array | BigInt64Array

export interface NpyArray {
  dtype: string
  shape: number[]
  /** numbers, or strings for a unicode array ('<U…') */
  data: NpyData | string[]
}

const MAX_ELEMENTS = 2 ** 31

const DTYPES: Record<string, { bytes: number, make: (buf: ArrayBuffer, n: number) => NpyData }> = {
  '|u1': { bytes: 1, make: (b, n) => new Uint8Array(b, 0, n) },
  '|b1': { bytes: 1, make: (b, n) => new Uint8Array(b, 0, n) },
  '|i1': { bytes: 1, make: (b, n) => new Int8Array(b, 0, n) },
  '<u2': { bytes: 2, make: (b, n) => new Uint16Array(b, 0, n) },
  '<i2': { bytes: 2, make: (b, n) => new Int16Array(b, 0, n) },
  '<i4': { bytes: 4, make: (b, n) => new Int32Array(b, 0, n) },
  '<u4': { bytes: 4, make: (b, n) => new Uint32Array(b, 0, n) },
  '<i8': { bytes: 8, make: (b, n) => new BigInt64Array(b, 0, n) },
  '<f4': { bytes: 4, make: (b, n) => new Float32Array(b, 0, n) },
  '<f8': { bytes: 8, make: (b, n) => new Float64Array(b, 0, n) }
}

export function parseNpy (bytes: Uint8Array, name = 'array'): NpyArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59] // \x93NUMPY
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new NpyError(`${name}: not a .npy array (bad magic)`)
  const major = bytes[6]
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let headerLen: number
  let offset: number
  if (major === 1) { headerLen = view.getUint16(8, true); offset = 10 } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new NpyError(`${name}: truncated header`)
    headerLen = view.getUint32(8, true); offset = 12
  } else throw new NpyError(`${name}: unsupported .npy version ${major}`)
  if (headerLen > 65536 || offset + headerLen > bytes.length) throw new NpyError(`${name}: header length ${headerLen} is out of range`)
  const header = new TextDecoder('latin1').decode(bytes.subarray(offset, offset + headerLen))
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header)?.[1]
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1]
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1]
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw new NpyError(`${name}: malformed header`)
  if (fortran === 'True') throw new NpyError(`${name}: Fortran-ordered arrays are not supported`)
  const unicode = /^<U(\d{1,4})$/.exec(descr)
  const dtype = unicode !== null ? { bytes: 4 * Number(unicode[1]), make: (b: ArrayBuffer, n: number) => utf32Strings(b, n, Number(unicode[1])) } : DTYPES[descr]
  if (dtype === undefined) throw new NpyError(`${name}: unsupported dtype ${descr.slice(0, 10)}`)
  const shape = shapeText.split(',').map(s => s.trim()).filter(s => s.length > 0).map(s => {
    if (!/^\d+$/.test(s)) throw new NpyError(`${name}: bad shape`)
    return Number(s)
  })
  const n = shape.reduce((a, b) => a * b, 1)
  if (!Number.isSafeInteger(n) || n > MAX_ELEMENTS) throw new NpyError(`${name}: too many elements`)
  const start = offset + headerLen
  const needed = n * dtype.bytes
  if (bytes.length - start < needed) throw new NpyError(`${name}: truncated data (${bytes.length - start} of ${needed} bytes)`)
  const copy = bytes.slice(start, start + needed) // aligned, and independent of the zip buffer
  return { dtype: descr, shape, data: dtype.make(copy.buffer, n) }
}

/** NumPy's '<U{width}': fixed-width UTF-32LE strings, padded with NULs. */
function utf32Strings (buf: ArrayBuffer, n: number, width: number): string[] {
  const view = new DataView(buf)
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    let s = ''
    for (let k = 0; k < width; k++) {
      const cp = view.getUint32((i * width + k) * 4, true)
      if (cp === 0) break
      if (cp > 0x10ffff) throw new NpyError('a unicode array holds an invalid code point')
      s += String.fromCodePoint(cp)
    }
    out.push(s)
  }
  return out
}

export function parseNpz (bytes: Uint8Array): Record<string, NpyArray> {
  let files: Record<string, Uint8Array>
  try {
    files = unzipSync(bytes)
  } catch (e) {
    throw new NpyError(`not a readable .npz (zip) archive: ${(e as Error).message}`)
  }
  const out: Record<string, NpyArray> = {}
  for (const [file, content] of Object.entries(files)) {
    if (!file.endsWith('.npy')) continue
    const key = file.slice(0, -4)
    out[key] = parseNpy(content, file)
  }
  return out
}

export interface MedMnistSplits { train: ImageDataset, val: ImageDataset, test: ImageDataset }

function toDataset (images: NpyArray, labels: NpyArray, classes: string[], split: string): ImageDataset {
  const shape = images.shape
  const channels = shape.length === 3 ? 1 : shape[3]
  if (images.dtype !== '|u1' || (shape.length !== 3 && !(shape.length === 4 && (channels === 1 || channels === 3)))) {
    throw new NpyError(`${split}_images must be uint8 N×H×W (grayscale) or N×H×W×3 (colour), got ${images.dtype} ${shape.join('×')}`)
  }
  const [n, height, width] = shape
  if (labels.shape[0] !== n) throw new NpyError(`${split}_labels has ${labels.shape[0]} rows for ${n} images`)
  if (labels.shape.length > 1 && labels.shape.slice(1).reduce((a, b) => a * b, 1) !== 1) {
    throw new NpyError(`${split}_labels is ${labels.shape.join('×')}: multi-label data (several labels per image) is not supported; medmesh learns one class per image`)
  }
  if (typeof labels.data[0] === 'string') throw new NpyError(`${split}_labels must be integers`)
  const lab = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const v = Number(labels.data[i])
    if (!Number.isInteger(v) || v < 0 || v >= classes.length) throw new NpyError(`${split}_labels[${i}] = ${v} is not a class index (${classes.length} classes)`)
    lab[i] = v
  }
  return { pixels: images.data as Uint8Array, labels: lab, height, width, channels, classes }
}

/**
 * The class names of an .npz: its own 'class_names' array, else a sidecar JSON beside it
 * (`<name>.json`, holding {"classes": [...]} or MedMNIST's info form {"label": {"0": ..., ...}}),
 * else the label values themselves ("0", "1", …).
 */
export function classNamesOf (path: string, arrays: Record<string, NpyArray>, labelCount: number): string[] {
  const own = arrays.class_names?.data
  if (Array.isArray(own)) return own
  const sidecar = path.replace(/\.npz$/i, '') + '.json'
  if (existsSync(sidecar)) {
    let info: { classes?: unknown, label?: unknown }
    try { info = JSON.parse(readFileSync(sidecar, 'utf8')) } catch { throw new NpyError(`${sidecar} is not valid JSON`) }
    const names = Array.isArray(info.classes) ? info.classes : (info.label !== null && typeof info.label === 'object') ? Object.entries(info.label as Record<string, unknown>).sort((a, b) => Number(a[0]) - Number(b[0])).map(e => e[1]) : null
    if (names === null || names.some(x => typeof x !== 'string') || names.length < labelCount) throw new NpyError(`${sidecar} must name the ${labelCount} classes: {"classes": [...]} or {"label": {"0": ...}}`)
    return names as string[]
  }
  return Array.from({ length: labelCount }, (_, i) => String(i))
}

/** A MedMNIST 2D .npz (grayscale or colour, one label per image): train/val/test splits. */
export function loadMedMnist (path: string, classes?: string[]): MedMnistSplits {
  const arrays = parseNpz(new Uint8Array(readFileSync(path)))
  const get = (k: string): NpyArray => {
    const a = arrays[k]
    if (a === undefined) throw new NpyError(`${path} has no '${k}' array`)
    return a
  }
  let top = -1
  for (const split of ['train', 'val', 'test']) for (const v of get(`${split}_labels`).data) top = Math.max(top, Number(v))
  const names = classes ?? classNamesOf(path, arrays, top + 1)
  return {
    train: toDataset(get('train_images'), get('train_labels'), names, 'train'),
    val: toDataset(get('val_images'), get('val_labels'), names, 'val'),
    test: toDataset(get('test_images'), get('test_labels'), names, 'test')
  }
}

/** Raw little-endian bytes of dtype `descr` (e.g. '|u1', '<i4') as .npy (version 1.0, C order). */
export function encodeNpy (descr: string, shape: number[], data: Uint8Array): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`
  // magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64
  while ((10 + header.length + 1) % 64 !== 0) header += ' '
  header += '\n'
  const out = new Uint8Array(10 + header.length + data.length)
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0])
  new DataView(out.buffer).setUint16(8, header.length, true)
  out.set(new TextEncoder().encode(header), 10)
  out.set(data, 10 + header.length)
  return out
}

/** Strings as NumPy's '<U{width}' (UTF-32LE, NUL-padded). */
function utf32Bytes (strings: string[]): { width: number, data: Uint8Array } {
  const cps = strings.map(s => Array.from(s, c => c.codePointAt(0)!))
  const width = Math.max(1, ...cps.map(c => c.length))
  const data = new Uint8Array(strings.length * width * 4)
  const view = new DataView(data.buffer)
  cps.forEach((c, i) => c.forEach((cp, k) => view.setUint32((i * width + k) * 4, cp, true)))
  return { width, data }
}

/** Train/val/test splits as a MedMNIST-style .npz, with the class names as 'class_names'. */
export function encodeMedMnist (splits: Record<'train' | 'val' | 'test', ImageDataset>): Uint8Array {
  const files: Record<string, Uint8Array> = {}
  for (const [split, d] of Object.entries(splits)) {
    const n = d.labels.length
    files[`${split}_images.npy`] = encodeNpy('|u1', d.channels === 1 ? [n, d.height, d.width] : [n, d.height, d.width, d.channels], d.pixels)
    files[`${split}_labels.npy`] = encodeNpy('<i4', [n, 1], new Uint8Array(Int32Array.from(d.labels).buffer))
  }
  const names = utf32Bytes(splits.train.classes)
  files['class_names.npy'] = encodeNpy(`<U${names.width}`, [splits.train.classes.length], names.data)
  return zipSync(files, { level: 1 })
}

/** The bundled PneumoniaMNIST file (grayscale, two classes). */
export const BUNDLED_PNEUMONIAMNIST = new URL('../../../data/medmnist/pneumoniamnist.npz', import.meta.url).pathname
/** The bundled RetinaMNIST file (colour, five classes). */
export const BUNDLED_RETINAMNIST = new URL('../../../data/medmnist/retinamnist.npz', import.meta.url).pathname
