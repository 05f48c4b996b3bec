/**
 * NumPy .npy and .npz (a zip of .npy files, deflated or stored) readers, for MedMNIST's format.
 * Sizes are checked before anything is allocated; malformed input is a clear NpyError.
 */
import { unzipSync, zipSync } from 'fflate'
import { readFileSync } from 'node:fs'
import type { ImageDataset } from './dataset.ts'

export class NpyError extends Error {
  constructor (message: string) { super(message); this.name = 'NpyError' }
}

export type NpyData = Uint8Array | Int8Array | Uint16Array | Int16Array | Int32Array | Uint32Array | Float32Array | Float64Array | BigInt64Array

export interface NpyArray {
  dtype: string
  shape: number[]
  data: NpyData
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
  const dtype = DTYPES[descr]
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
  if (images.dtype !== '|u1' || images.shape.length !== 3) throw new NpyError(`${split}_images must be uint8 N×H×W (grayscale)`)
  const [n, height, width] = images.shape
  if (labels.shape[0] !== n) throw new NpyError(`${split}_labels has ${labels.shape[0]} rows for ${n} images`)
  const px = new Float32Array(images.data.length)
  const src = images.data as Uint8Array
  for (let i = 0; i < px.length; i++) px[i] = src[i] / 255
  const lab = new Int32Array(n)
  for (let i = 0; i < n; i++) {
    const v = Number(labels.data[i * (labels.shape[1] ?? 1)])
    if (!Number.isInteger(v) || v < 0 || v >= classes.length) throw new NpyError(`${split}_labels[${i}] = ${v} is not a class index`)
    lab[i] = v
  }
  return { images: px, labels: lab, height, width, classes }
}

/** A MedMNIST 2D .npz (grayscale): train/val/test splits. */
export function loadMedMnist (path: string, classes = ['normal', 'pneumonia']): MedMnistSplits {
  const arrays = parseNpz(new Uint8Array(readFileSync(path)))
  const get = (k: string): NpyArray => {
    const a = arrays[k]
    if (a === undefined) throw new NpyError(`${path} has no '${k}' array`)
    return a
  }
  return {
    train: toDataset(get('train_images'), get('train_labels'), classes, 'train'),
    val: toDataset(get('val_images'), get('val_labels'), classes, 'val'),
    test: toDataset(get('test_images'), get('test_labels'), classes, 'test')
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

/** Train/val/test splits as a MedMNIST-style .npz (pixels in [0, 1] stored as uint8). */
export function encodeMedMnist (splits: Record<'train' | 'val' | 'test', ImageDataset>): Uint8Array {
  const files: Record<string, Uint8Array> = {}
  for (const [split, d] of Object.entries(splits)) {
    const n = d.labels.length
    files[`${split}_images.npy`] = encodeNpy('|u1', [n, d.height, d.width], Uint8Array.from(d.images, v => Math.round(v * 255)))
    files[`${split}_labels.npy`] = encodeNpy('<i4', [n, 1], new Uint8Array(Int32Array.from(d.labels).buffer))
  }
  return zipSync(files, { level: 1 })
}

/** The bundled PneumoniaMNIST file. */
export const BUNDLED_PNEUMONIAMNIST = new URL('../../../data/medmnist/pneumoniamnist.npz', import.meta.url).pathname
