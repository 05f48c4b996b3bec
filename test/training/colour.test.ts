/** Colour, multi-class, resolution and class names: the data paths beyond grayscale 28×28 pairs. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { zipSync } from 'fflate'
import { PNG } from 'pngjs'
import { throwsA } from '../helpers/assert.ts'
import { loadMedMnist, encodeMedMnist, encodeNpy, NpyError, BUNDLED_RETINAMNIST } from '../../src/training/data/npz.ts'
import { loadImageFolder } from '../../src/training/data/images.ts'
import { classCounts, floatsOf, subset, type ImageDataset } from '../../src/training/data/dataset.ts'
import { resizeDataset } from '../../src/training/data/resize.ts'
import { pixelStats, statsVector, normalisation } from '../../src/training/data/stats.ts'
import { fitData, SiteDataError } from '../../src/training/site.ts'
import { selectBackend } from '../../src/training/backend.ts'
import { buildModel } from '../../src/training/models.ts'
import { LocalTrainer } from '../../src/training/trainer.ts'
import { Augmenter, COLOUR_AUGMENT, augmentFor } from '../../src/training/augment.ts'

const tmp = (): string => mkdtempSync(join(tmpdir(), 'medmesh-colour-'))

test('RetinaMNIST loads as colour 28×28×3 with five named classes and the official counts', () => {
  const d = loadMedMnist(BUNDLED_RETINAMNIST)
  assert.is(d.train.channels, 3)
  assert.is(d.train.pixels.length, 1080 * 28 * 28 * 3)
  assert.equal(d.train.classes, ['0', '1', '2', '3', '4'])
  assert.equal(classCounts(d.train), [486, 128, 206, 194, 66])
  assert.equal(classCounts(d.test), [174, 46, 92, 68, 20])
  const st = pixelStats(d.train)
  assert.is(st.mean.length, 3, 'statistics per channel')
  assert.ok(st.mean[0] > st.mean[2], `fundus images are red: ${st.mean.map(x => x.toFixed(2))}`)
})

test('class names: carried in the .npz, from a MedMNIST-style sidecar, or the label values', () => {
  const dir = tmp()
  try {
    const img = encodeNpy('|u1', [3, 2, 2], new Uint8Array(12))
    const lab = encodeNpy('<i4', [3, 1], new Uint8Array(Int32Array.of(0, 2, 1).buffer))
    const files = { 'train_images.npy': img, 'train_labels.npy': lab, 'val_images.npy': img, 'val_labels.npy': lab, 'test_images.npy': img, 'test_labels.npy': lab }
    writeFileSync(join(dir, 'plain.npz'), zipSync(files))
    assert.equal(loadMedMnist(join(dir, 'plain.npz')).train.classes, ['0', '1', '2'])
    writeFileSync(join(dir, 'named.npz'), zipSync(files))
    writeFileSync(join(dir, 'named.json'), JSON.stringify({ label: { 0: 'adipose', 2: 'debris', 1: 'background' } }))
    assert.equal(loadMedMnist(join(dir, 'named.npz')).train.classes, ['adipose', 'background', 'debris'])
    const d = loadMedMnist(join(dir, 'named.npz'))
    writeFileSync(join(dir, 'again.npz'), encodeMedMnist({ train: d.train, val: d.val, test: d.test }))
    assert.equal(loadMedMnist(join(dir, 'again.npz')).train.classes, ['adipose', 'background', 'debris'], 'written into the file')
    writeFileSync(join(dir, 'bad.npz'), zipSync(files))
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ classes: ['only one'] }))
    throwsA(() => loadMedMnist(join(dir, 'bad.npz')), NpyError, /must name the 3 classes/)
  } finally { rmSync(dir, { recursive: true }) }
})

test('multi-label data and other image layouts are refused with a clear message', () => {
  const dir = tmp()
  try {
    const img = encodeNpy('|u1', [2, 2, 2], new Uint8Array(8))
    const multi = encodeNpy('|u1', [2, 3], Uint8Array.of(1, 0, 1, 0, 1, 1))
    writeFileSync(join(dir, 'chest.npz'), zipSync({ 'train_images.npy': img, 'train_labels.npy': multi, 'val_images.npy': img, 'val_labels.npy': multi, 'test_images.npy': img, 'test_labels.npy': multi }))
    throwsA(() => loadMedMnist(join(dir, 'chest.npz')), NpyError, /multi-label data .* is not supported/)
    const four = encodeNpy('|u1', [2, 2, 2, 4], new Uint8Array(32))
    const lab = encodeNpy('<i4', [2, 1], new Uint8Array(8))
    writeFileSync(join(dir, 'rgba.npz'), zipSync({ 'train_images.npy': four, 'train_labels.npy': lab, 'val_images.npy': four, 'val_labels.npy': lab, 'test_images.npy': four, 'test_labels.npy': lab }))
    throwsA(() => loadMedMnist(join(dir, 'rgba.npz')), NpyError, /N×H×W×3 \(colour\)/)
  } finally { rmSync(dir, { recursive: true }) }
})

function png (w: number, h: number, rgb: (x: number, y: number) => [number, number, number]): Buffer {
  const p = new PNG({ width: w, height: h })
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) p.data.set([...rgb(x, y), 255], 4 * (y * w + x))
  return PNG.sync.write(p)
}

test('image folders keep colour when the data has it, take the size most images have, and can be asked for 1 or 3 channels', () => {
  const root = tmp()
  try {
    mkdirSync(join(root, 'benign')); mkdirSync(join(root, 'malignant'))
    writeFileSync(join(root, 'benign', 'a.png'), png(64, 64, () => [200, 40, 40]))
    writeFileSync(join(root, 'benign', 'b.png'), png(64, 64, () => [100, 100, 100]))
    writeFileSync(join(root, 'malignant', 'c.png'), png(32, 32, () => [10, 20, 250]))
    const d = loadImageFolder(root)
    assert.is(d.channels, 3)
    assert.is(d.height, 64, 'the size most images have')
    assert.equal(Array.from(d.pixels.subarray(0, 3)), [200, 40, 40])
    assert.equal(Array.from(d.pixels.subarray(64 * 64 * 3, 64 * 64 * 3 + 3)), [100, 100, 100], 'a gray image in a colour set is repeated into RGB')
    const gray = loadImageFolder(root, { channels: 1, size: 16 })
    assert.is(gray.channels, 1)
    assert.is(gray.pixels.length, 3 * 16 * 16)
    assert.is(gray.pixels[0], Math.round(0.299 * 200 + 0.587 * 40 + 0.114 * 40), 'luma')
  } finally { rmSync(root, { recursive: true }) }
})

test('resizing a dataset averages areas per channel and keeps bytes', () => {
  const d: ImageDataset = { pixels: new Uint8Array(4 * 4 * 3), labels: Int32Array.of(0), height: 4, width: 4, channels: 3, classes: ['a', 'b'] }
  for (let i = 0; i < 16; i++) d.pixels.set([(i % 2) * 255, 100, ((i >> 2) % 2) * 200], 3 * i)
  const small = resizeDataset(d, 2)
  assert.is(small.pixels.length, 2 * 2 * 3)
  for (let i = 0; i < 4; i++) assert.equal(Array.from(small.pixels.subarray(3 * i, 3 * i + 3)), [128, 100, 100], `pixel ${i}`)
  assert.is(resizeDataset(d, 4), d, 'nothing to do')
})

test('a site whose images have other channels or classes than the consortium\'s model is refused; its data is resized to the model\'s input', () => {
  const retina = loadMedMnist(BUNDLED_RETINAMNIST)
  const data = { train: subset(retina.train, [0, 1, 2]), val: null, test: null }
  throwsA(() => fitData(data, { input: { size: 28, channels: 1 }, classes: 5 }), SiteDataError, /have 3 channel\(s\) \(colour\); the consortium's model takes 1/)
  throwsA(() => fitData(data, { input: { size: 28, channels: 3 }, classes: 2 }), SiteDataError, /has 5 classes/)
  const fitted = fitData(data, { input: { size: 64, channels: 3 }, classes: 5 })
  assert.is(fitted.train.height, 64)
  assert.is(fitted.train.pixels.length, 3 * 64 * 64 * 3)
})

test('colour augmentation flips and jitters, grayscale never flips', () => {
  const h = 4; const w = 4
  const img = Float32Array.from({ length: h * w * 3 }, (_, i) => (i % 3 === 0 ? (Math.floor(i / 3) % w) / w : 0.5))
  let flipped = false
  for (let s = 0; s < 20 && !flipped; s++) {
    const copy = img.slice()
    new Augmenter(new Uint8Array(32).fill(s), { ...COLOUR_AUGMENT, maxRotationDeg: 0, maxScale: 0, maxShift: 0, colourJitter: 0 }).apply(copy, 1, h, w, 3)
    flipped = copy[0] > copy[3 * (w - 1)]
  }
  assert.ok(flipped, 'some seed flips the image left to right')
})

test('a named modality shifts in proportion to the image; without one (older manifests) shifts stay in pixels; ultrasound flips and jitters grayscale', () => {
  // a single bright column in a 112 px image; no rotation, scale or flips: only the shift moves it
  const h = 112; const w = 112
  const farthest = (o: ReturnType<typeof augmentFor>): number => {
    let most = 0
    for (let s = 0; s < 40; s++) {
      const img = new Float32Array(h * w)
      for (let y = 0; y < h; y++) img[y * w + 56] = 1
      new Augmenter(new Uint8Array(32).fill(s), { ...o, maxRotationDeg: 0, maxScale: 0, flip: false, colourJitter: 0 }).apply(img, 1, h, w, 1)
      let at = 0; let best = -1
      for (let x = 0; x < w; x++) if (img[60 * w + x] > best) { best = img[60 * w + x]; at = x }
      most = Math.max(most, Math.abs(at - 56))
    }
    return most
  }
  assert.ok(farthest(augmentFor(1)) <= 2, 'no modality: at most 2 px, as before')
  const scaled = farthest(augmentFor(1, 'xray'))
  assert.ok(scaled > 2 && scaled <= 8, `xray named: up to 2 px × 112/28 = 8 px, moved ${scaled}`)
  const us = augmentFor(1, 'ultrasound')
  assert.ok(us.flip && us.colourJitter > 0 && us.scaleShifts === true)
  // the jitter applies to grayscale too: a flat grey image comes out another grey
  const grey = new Float32Array(28 * 28).fill(0.5)
  new Augmenter(new Uint8Array(32).fill(3), { ...us, maxRotationDeg: 0, maxScale: 0, maxShift: 0, flip: false }).apply(grey, 1, 28, 28, 1)
  assert.ok(Math.abs(grey[0] - 0.5) > 1e-3 && grey.every(v => Math.abs(v - grey[0]) < 1e-6))
})

test('a five-class colour model trains on RetinaMNIST and is judged by macro AUC', async () => {
  await selectBackend('auto')
  const d = loadMedMnist(BUNDLED_RETINAMNIST)
  const model = buildModel({ id: 'medmesh/cnn-small', height: 28, width: 28, channels: 3, classes: 5, seed: 3 })
  const trainer = new LocalTrainer(model)
  const norm = normalisation(statsVector(pixelStats(d.train)), 3)
  trainer.train(d.train, { epochs: 2, batchSize: 32, learningRate: 1e-3, seed: new Uint8Array(32).fill(9), augment: true, classWeighting: 'none', normalisation: norm })
  const m = trainer.evaluate(d.test, norm)
  assert.is(m.confusion.length, 5)
  assert.ok(m.auc > 0.6 && m.auc <= 1, `macro AUC ${m.auc}`)
  assert.is(floatsOf(d.test, [0]).length, 28 * 28 * 3)
  trainer.dispose(); model.dispose()
})

test.run()
