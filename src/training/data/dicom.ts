/**
 * DICOM images through dicom-parser (a maintained Part 10 parser): uncompressed pixel data.
 * Grayscale (8 or 16 bits, signed or not) with the modality rescale (slope, intercept), the VOI
 * window when the file gives one (else the pixel range), and MONOCHROME1 inverted so that bright
 * is dense everywhere; colour (RGB, 8 bits, pixel- or plane-interleaved) as it is. Compressed
 * transfer syntaxes are refused with a clear message.
 */
import dicomParser from 'dicom-parser'
import { ImageLoadError, type Picture } from './dataset.ts'

const UNCOMPRESSED = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2'])

export function decodeDicom (bytes: Uint8Array, name: string): Picture {
  let ds: dicomParser.DataSet
  try {
    ds = dicomParser.parseDicom(bytes)
  } catch (e) {
    const msg = e instanceof Error ? e.message : typeof e === 'object' && e !== null && 'exception' in e ? String((e as { exception: unknown }).exception) : String(e)
    throw new ImageLoadError(`${name}: not a readable DICOM file (${msg.slice(0, 100)})`)
  }
  const syntax = ds.string('x00020010')?.trim().replace(/\0/g, '') ?? '1.2.840.10008.1.2'
  if (!UNCOMPRESSED.has(syntax)) throw new ImageLoadError(`${name}: compressed DICOM (transfer syntax ${syntax}) is not supported; export uncompressed`)
  const rows = ds.uint16('x00280010') ?? 0
  const cols = ds.uint16('x00280011') ?? 0
  const bits = ds.uint16('x00280100') ?? 0
  const signed = (ds.uint16('x00280103') ?? 0) === 1
  const spp = ds.uint16('x00280002') ?? 1
  const photometric = (ds.string('x00280004') ?? 'MONOCHROME2').trim()
  if (rows === 0 || cols === 0 || rows * cols > 64 * 1024 * 1024) throw new ImageLoadError(`${name}: bad image size ${rows}×${cols}`)
  if (photometric === 'RGB' && spp === 3) return rgb(ds, bytes, rows, cols, bits, name)
  if (spp !== 1 || !photometric.startsWith('MONOCHROME')) throw new ImageLoadError(`${name}: grayscale (MONOCHROME1/2) and RGB DICOM are supported, got ${photometric} with ${spp} samples per pixel`)
  if (bits !== 8 && bits !== 16) throw new ImageLoadError(`${name}: ${bits} bits allocated; 8 or 16 are supported`)
  const el = ds.elements.x7fe00010
  if (el === undefined) throw new ImageLoadError(`${name}: no pixel data`)
  const n = rows * cols
  if (el.length < n * (bits / 8)) throw new ImageLoadError(`${name}: pixel data is truncated`)
  const raw = bytes.slice(el.dataOffset, el.dataOffset + n * (bits / 8))
  const big = syntax === '1.2.840.10008.1.2.2'
  const view = new DataView(raw.buffer)
  const slope = ds.floatString('x00281053') ?? 1
  const intercept = ds.floatString('x00281052') ?? 0
  const values = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const v = bits === 8 ? (signed ? view.getInt8(i) : view.getUint8(i)) : (signed ? view.getInt16(2 * i, !big) : view.getUint16(2 * i, !big))
    values[i] = v * slope + intercept
  }
  let lo: number; let hi: number
  const center = ds.floatString('x00281050')
  const width = ds.floatString('x00281051')
  if (center !== undefined && width !== undefined && width > 0) { lo = center - width / 2; hi = center + width / 2 } else {
    lo = Infinity; hi = -Infinity
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v }
  }
  const span = hi > lo ? hi - lo : 1
  const pixels = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const t = Math.min(1, Math.max(0, (values[i] - lo) / span))
    pixels[i] = photometric === 'MONOCHROME1' ? 1 - t : t
  }
  return { width: cols, height: rows, channels: 1, pixels }
}

/** 8-bit RGB, interleaved by pixel (planar configuration 0) or by plane (1). */
function rgb (ds: dicomParser.DataSet, bytes: Uint8Array, rows: number, cols: number, bits: number, name: string): Picture {
  if (bits !== 8) throw new ImageLoadError(`${name}: RGB DICOM must have 8 bits allocated, got ${bits}`)
  const el = ds.elements.x7fe00010
  const n = rows * cols
  if (el === undefined || el.length < 3 * n) throw new ImageLoadError(`${name}: no or truncated pixel data`)
  const planar = (ds.uint16('x00280006') ?? 0) === 1
  const pixels = new Float32Array(3 * n)
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) pixels[3 * i + c] = bytes[el.dataOffset + (planar ? c * n + i : 3 * i + c)] / 255
  }
  return { width: cols, height: rows, channels: 3, pixels }
}
