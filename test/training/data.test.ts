import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { zipSync } from 'fflate'
import jpeg from 'jpeg-js'
import { throwsA } from '../helpers/assert.ts'
import { parseNpz, parseNpy, loadMedMnist, encodeMedMnist, encodeNpy, NpyError, BUNDLED_PNEUMONIAMNIST } from '../../src/training/data/npz.ts'
import { loadImageFolder, ImageLoadError } from '../../src/training/data/images.ts'
import { resize } from '../../src/training/data/resize.ts'
import { decodeDicom } from '../../src/training/data/dicom.ts'
import { classCounts, subset } from '../../src/training/data/dataset.ts'
import { partitionIid, partitionDirichlet, partitionQuantity } from '../../src/training/data/partition.ts'
import { pixelStats, normalisation, statsVector, classFrequencies } from '../../src/training/data/stats.ts'
import { grayPng, dicomFile } from '../helpers/images.ts'

const npy = encodeNpy

test('the bundled PneumoniaMNIST loads with the official split sizes and class counts', () => {
  const d = loadMedMnist(BUNDLED_PNEUMONIAMNIST)
  assert.is(d.train.labels.length, 4708)
  assert.equal(classCounts(d.train), [1214, 3494])
  assert.equal(classCounts(d.val), [135, 389])
  assert.equal(classCounts(d.test), [234, 390])
  assert.is(d.train.height, 28)
  assert.is(d.train.channels, 1)
  assert.is(d.train.pixels.length, 4708 * 28 * 28)
  assert.equal(d.train.classes, ['normal', 'pneumonia'], 'named by the sidecar beside the file')
})

test('.npz entries are read whether deflated or stored', () => {
  const img = npy('|u1', [2, 2, 2], Uint8Array.of(0, 255, 10, 20, 30, 40, 50, 60))
  const f32 = npy('<f4', [3], new Uint8Array(Float32Array.of(1.5, -2, 3).buffer))
  for (const level of [0, 6] as const) {
    const arrays = parseNpz(zipSync({ 'a.npy': img, 'b.npy': f32 }, { level }))
    assert.equal(arrays.a.shape, [2, 2, 2])
    assert.equal(Array.from(arrays.a.data as Uint8Array), [0, 255, 10, 20, 30, 40, 50, 60])
    assert.equal(Array.from(arrays.b.data as Float32Array), [1.5, -2, 3])
  }
})

test('a data set written as .npz reads back the same (pixels, labels and class names exactly)', () => {
  const d = loadMedMnist(BUNDLED_PNEUMONIAMNIST)
  const part = subset(d.train, [5, 17, 4000])
  const dir = mkdtempSync(join(tmpdir(), 'medmesh-npz-'))
  try {
    const file = join(dir, 'part.npz')
    writeFileSync(file, encodeMedMnist({ train: part, val: subset(d.val, [1]), test: subset(d.test, []) }))
    const back = loadMedMnist(file)
    assert.equal(Array.from(back.train.labels), Array.from(part.labels))
    assert.equal(Array.from(back.train.pixels), Array.from(part.pixels))
    assert.equal(back.train.classes, ['normal', 'pneumonia'], 'carried inside the file')
    assert.is(back.val.labels.length, 1)
    assert.is(back.test.labels.length, 0)
  } finally { rmSync(dir, { recursive: true }) }
})

test('malformed .npy/.npz input is a clear NpyError', () => {
  throwsA(() => parseNpz(Uint8Array.of(1, 2, 3)), NpyError, /not a readable .npz/)
  throwsA(() => parseNpy(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)), NpyError, /bad magic/)
  const good = npy('|u1', [4], Uint8Array.of(1, 2, 3, 4))
  throwsA(() => parseNpy(good.subarray(0, good.length - 2)), NpyError, /truncated/)
  throwsA(() => parseNpy(npy('<c16', [1], new Uint8Array(16))), NpyError, /unsupported dtype/)
})

test('DICOM: 8 and 16 bit, rescale, MONOCHROME1 inverted, compressed refused', () => {
  const a = decodeDicom(dicomFile({ rows: 2, cols: 2, bits: 8, pixels: [0, 50, 100, 200] }), 'a.dcm')
  assert.equal(Array.from(a.pixels, v => +v.toFixed(3)), [0, 0.25, 0.5, 1])
  const b = decodeDicom(dicomFile({ rows: 1, cols: 3, bits: 16, pixels: [1000, 2000, 3000], slope: 2, intercept: -1000 }), 'b.dcm')
  assert.equal(Array.from(b.pixels, v => +v.toFixed(3)), [0, 0.5, 1])
  const c = decodeDicom(dicomFile({ rows: 1, cols: 2, bits: 8, pixels: [0, 255], photometric: 'MONOCHROME1' }), 'c.dcm')
  assert.equal(Array.from(c.pixels), [1, 0])
  throwsA(() => decodeDicom(dicomFile({ rows: 1, cols: 2, bits: 8, pixels: [0, 1], syntax: '1.2.840.10008.1.2.4.50' }), 'd.dcm'), ImageLoadError, /compressed DICOM/)
  throwsA(() => decodeDicom(Uint8Array.of(1, 2, 3), 'e.dcm'), ImageLoadError, /not a readable DICOM/)
})

test('image folders: one class per sub-folder, PNG, JPEG and DICOM, grayscale, resized', () => {
  const root = mkdtempSync(join(tmpdir(), 'medmesh-img-'))
  try {
    mkdirSync(join(root, 'normal')); mkdirSync(join(root, 'pneumonia'))
    writeFileSync(join(root, 'normal', 'a.png'), grayPng(56, 56, 51))
    const raw = { width: 40, height: 40, data: Buffer.alloc(40 * 40 * 4, 204) }
    writeFileSync(join(root, 'pneumonia', 'b.jpg'), jpeg.encode(raw, 95).data)
    writeFileSync(join(root, 'pneumonia', 'c.dcm'), dicomFile({ rows: 2, cols: 2, bits: 8, pixels: [0, 0, 255, 255] }))
    writeFileSync(join(root, 'pneumonia', 'notes.txt'), 'ignored')
    const d = loadImageFolder(root, { size: 28 })
    assert.equal(d.classes, ['normal', 'pneumonia'])
    assert.equal(Array.from(d.labels), [0, 1, 1])
    assert.is(d.channels, 1, 'all grayscale')
    assert.is(d.pixels.length, 3 * 28 * 28)
    assert.ok(Math.abs(d.pixels[100] / 255 - 0.2) < 3e-3, `png gray ${d.pixels[100]}`)
    assert.ok(Math.abs(d.pixels[28 * 28 + 100] / 255 - 0.8) < 0.02, `jpeg gray ${d.pixels[28 * 28 + 100]}`)
    writeFileSync(join(root, 'normal', 'broken.png'), 'not a png')
    throwsA(() => loadImageFolder(root), ImageLoadError, /broken.png: cannot decode/)
    throwsA(() => loadImageFolder(join(root, 'normal')), ImageLoadError, /one sub-folder per class/)
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('resize averages areas when shrinking and interpolates when enlarging', () => {
  const img = { width: 4, height: 4, channels: 1, pixels: Float32Array.from({ length: 16 }, (_, i) => i % 2) }
  assert.equal(Array.from(resize(img, 2, 2)), [0.5, 0.5, 0.5, 0.5])
  const up = resize({ width: 2, height: 1, channels: 1, pixels: Float32Array.of(0, 1) }, 4, 1)
  assert.ok(up[0] <= up[1] && up[1] <= up[2] && up[2] <= up[3])
})

test('partitions: seeded, disjoint, complete; Dirichlet skews labels as α shrinks', () => {
  const labels = Int32Array.from({ length: 1000 }, (_, i) => i < 300 ? 0 : 1)
  const seed = new Uint8Array(32).fill(3)
  for (const parts of [partitionIid(1000, 5, seed), partitionDirichlet(labels, 5, 0.5, seed), partitionQuantity(1000, 5, 1, seed)]) {
    const all = parts.flat().sort((a, b) => a - b)
    assert.equal(all, Array.from({ length: 1000 }, (_, i) => i))
  }
  assert.equal(partitionDirichlet(labels, 5, 0.5, seed), partitionDirichlet(labels, 5, 0.5, seed))
  const skew = (alpha: number) => {
    const parts = partitionDirichlet(labels, 5, alpha, seed)
    return Math.max(...parts.map(p => Math.abs(p.filter(i => labels[i] === 0).length / p.length - 0.3)))
  }
  assert.ok(skew(0.1) > skew(100), `skew ${skew(0.1)} vs ${skew(100)}`)
  const sizes = partitionQuantity(1000, 5, 0.3, seed).map(p => p.length)
  assert.ok(Math.max(...sizes) > 2 * Math.min(...sizes), `quantity skew ${sizes}`)
  assert.throws(() => partitionIid(3, 5, seed))
})

test('per-site statistics combine into the global mean and std and the pooled class frequencies', () => {
  const d = loadMedMnist(BUNDLED_PNEUMONIAMNIST).val
  const halves = [subset(d, Array.from({ length: 200 }, (_, i) => i)), subset(d, Array.from({ length: 324 }, (_, i) => 200 + i))]
  const s = halves.map(pixelStats)
  const total = s[0].count + s[1].count
  const v = s.map(statsVector)
  const combined = v[0].map((x, k) => (x * s[0].count + v[1][k] * s[1].count) / total)
  const whole = pixelStats(d)
  const a = normalisation(combined, 1)
  const b = normalisation(statsVector(whole), 1)
  assert.ok(Math.abs(a.mean[0] - b.mean[0]) < 1e-9 && Math.abs(a.std[0] - b.std[0]) < 1e-9)
  assert.is(combined.length, 2 + 2) // one channel's pair, two classes' fractions
  const pooled = classFrequencies(combined, 1)!
  const counts = classCounts(d)
  counts.forEach((c, k) => assert.ok(Math.abs(pooled[k] - c / d.labels.length) < 1e-12, `class ${k}: ${pooled[k]} vs ${c / d.labels.length}`))
  // the halves differ in balance, so neither one's own fractions are the pooled ones
  assert.ok(Math.abs(s[0].classFractions[0] - pooled[0]) > 1e-3)
  assert.throws(() => normalisation([0.5], 1), /at least 2/)
  assert.is(classFrequencies([0.5, 0.3], 1), null)
})

test.run()
