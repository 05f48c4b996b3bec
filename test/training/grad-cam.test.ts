/** Grad-CAM: the map's shape and range, that it follows the input, and that it finds what the model learnt to look at. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import { xorshift } from '../helpers/images.ts'
import { selectBackend } from '../../src/training/backend.ts'
import { buildModel, type ModelSpec } from '../../src/training/models.ts'
import { LocalTrainer } from '../../src/training/trainer.ts'
import { predictWith } from '../../src/training/predict.ts'
import { explain, overlay, jet, GradCamError } from '../../src/training/grad-cam.ts'
import type { ImageDataset } from '../../src/training/data/dataset.ts'

const SIZE = 28
const spec = (id: ModelSpec['id'], channels = 1): ModelSpec => ({ id, height: SIZE, width: SIZE, channels, classes: 2, seed: 3 })

const rng = xorshift

/** Noise, with a bright 7×7 square at (y, x) when given. */
function picture (r: () => number, channels: number, square?: [number, number]): Uint8Array {
  const img = new Uint8Array(SIZE * SIZE * channels)
  for (let i = 0; i < img.length; i++) img[i] = Math.floor(r() * 90)
  if (square !== undefined) {
    for (let y = square[0]; y < square[0] + 7; y++) for (let x = square[1]; x < square[1] + 7; x++) for (let c = 0; c < channels; c++) img[(y * SIZE + x) * channels + c] = 230
  }
  return img
}

test.before(async () => { await selectBackend() })

test('one map per image, of the input size, in [0, 1], probabilities as the model predicts them', () => {
  for (const id of ['medmesh/cnn-small', 'medmesh/cnn-gn', 'medmesh/resnet18-28'] as const) {
    const channels = id === 'medmesh/cnn-gn' ? 3 : 1
    const model = buildModel(spec(id, channels))
    try {
      const r = rng(7)
      const images = [picture(r, channels, [2, 3]), picture(r, channels, [18, 16]), picture(r, channels)]
      const norm = { mean: Array(channels).fill(0.2), std: Array(channels).fill(0.3) }
      const maps = explain(model, images, norm)
      const probs = predictWith(model, images, norm)
      assert.is(maps.length, 3)
      maps.forEach((m, i) => {
        assert.is(m.heat.length, SIZE * SIZE, id)
        assert.ok(m.heat.every(v => v >= 0 && v <= 1), `${id}: heat within [0, 1]`)
        for (let k = 0; k < 2; k++) assert.ok(Math.abs(m.probabilities[k] - probs[i * 2 + k]) < 1e-5, `${id}: image ${i} class ${k}: ${m.probabilities[k]} vs ${probs[i * 2 + k]}`)
        assert.is(m.classIndex, probs[i * 2 + 1] > probs[i * 2] ? 1 : 0, `${id}: the predicted class by default`)
      })
      const differ = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + Math.abs(v - b[i]), 0) / a.length
      assert.ok(differ(maps[0].heat, maps[1].heat) > 0.01, `${id}: different images give different maps (${differ(maps[0].heat, maps[1].heat)})`)
      assert.equal(Array.from(explain(model, [images[0]], norm)[0].heat), Array.from(maps[0].heat), `${id}: the same image gives the same map`)
      const chosen = explain(model, [images[0]], norm, 1 - maps[0].classIndex)[0]
      assert.is(chosen.classIndex, 1 - maps[0].classIndex)
      // the model is intact after being split for the explanation
      assert.ok(Math.abs(predictWith(model, images, norm)[0] - probs[0]) < 1e-6, `${id}: the model still predicts`)
    } finally { model.dispose() }
  }
})

test('after training to spot a bright square, the map is hottest on the square', () => {
  const model = buildModel(spec('medmesh/cnn-small'))
  try {
    const r = rng(11)
    const n = 240
    const pixels = new Uint8Array(n * SIZE * SIZE)
    const labels = new Int32Array(n)
    for (let i = 0; i < n; i++) {
      labels[i] = i % 2
      const at: [number, number] = [Math.floor(r() * 21), Math.floor(r() * 21)]
      pixels.set(picture(r, 1, labels[i] === 1 ? at : undefined), i * SIZE * SIZE)
    }
    const data: ImageDataset = { pixels, labels, height: SIZE, width: SIZE, channels: 1, classes: ['plain', 'square'] }
    const trainer = new LocalTrainer(model)
    trainer.train(data, { epochs: 4, batchSize: 32, learningRate: 0.002, seed: new Uint8Array(32).fill(5) })
    trainer.dispose()
    const probe = rng(99)
    let hits = 0
    const cases = [[2, 2], [2, 19], [19, 2], [19, 19], [10, 10], [5, 14]] as Array<[number, number]>
    for (const at of cases) {
      const [m] = explain(model, [picture(probe, 1, at)], undefined, 1)
      let inside = 0; let outside = 0
      for (let y = 0; y < SIZE; y++) {
        for (let x = 0; x < SIZE; x++) {
          const v = m.heat[y * SIZE + x]
          if (y >= at[0] && y < at[0] + 7 && x >= at[1] && x < at[1] + 7) inside += v / 49
          else outside += v / (SIZE * SIZE - 49)
        }
      }
      if (inside > 2 * outside) hits++
    }
    assert.ok(hits >= cases.length - 1, `the map is hottest on the square in ${hits} of ${cases.length} images`)
  } finally { model.dispose() }
})

test('a model without convolutions is refused, as is a class it does not have', () => {
  const linear = buildModel(spec('medmesh/linear'))
  const cnn = buildModel(spec('medmesh/cnn-small'))
  try {
    throwsA(() => explain(linear, [new Uint8Array(SIZE * SIZE)], undefined), GradCamError, /no convolutional layer/)
    throwsA(() => explain(cnn, [new Uint8Array(SIZE * SIZE)], undefined, 2), GradCamError, /class 2 of a model with 2 classes/)
    throwsA(() => explain(cnn, [new Uint8Array(10)], undefined), GradCamError, /10 values for a 28×28×1 model/)
  } finally { linear.dispose(); cnn.dispose() }
})

test('overlay: the image unchanged where the heat is zero, coloured where it is hot', () => {
  const pixels = new Float32Array(4 * 4).fill(0.2)
  const heat = new Float32Array(4 * 4)
  heat[0] = 1
  const rgba = overlay({ width: 4, height: 4, channels: 1, pixels }, heat, 4, 4)
  assert.is(rgba.length, 4 * 4 * 4)
  assert.equal(Array.from(rgba.subarray(15 * 4, 16 * 4)), [51, 51, 51, 255], 'cold pixel unchanged')
  assert.ok(rgba[0] > rgba[2] + 50 && rgba[0] > 51, `hot pixel is red: ${Array.from(rgba.subarray(0, 4))}`)
  assert.equal(jet(0).map(v => Math.round(v * 10) / 10), [0, 0, 0.5])
  assert.equal(jet(1).map(v => Math.round(v * 10) / 10), [0.5, 0, 0])
})

test.run()
