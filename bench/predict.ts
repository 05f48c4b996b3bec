/**
 * bench/predict: `medmesh predict`'s path (PNG decode, preprocessing, the default model
 * medmesh/cnn-small at 28×28) on the backend in use, side by side in one run:
 *   - a batch of N images in one call (images per second), versus
 *   - one image per call, as `medmesh predict FILE` does (latency, and the images per second it implies)
 *   - and, beside them, a Grad-CAM explanation per image (`--explain`)
 * The ratio is the batch's throughput over one-at-a-time. Last line: one JSON object.
 *
 * Usage: npm run bench:predict [-- --images 1024 --singles 20]
 */
import { parseArgs } from 'node:util'
import { PNG } from 'pngjs'
import { selectBackend } from '../src/training/backend.ts'
import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from '../src/training/data/npz.ts'
import { buildModel, flattenWeights, type ModelSpec } from '../src/training/models.ts'
import { preprocess, predictProbabilities, withWeights } from '../src/training/predict.ts'
import { explain } from '../src/training/grad-cam.ts'

const { values } = parseArgs({ options: { images: { type: 'string', default: '1024' }, singles: { type: 'string', default: '20' } } })
const n = Number(values.images)
const singles = Number(values.singles)
const backend = await selectBackend()
const spec: ModelSpec = { id: 'medmesh/cnn-small', height: 28, width: 28, channels: 1, classes: 2, seed: 1 }
const model = buildModel(spec)
const weights = flattenWeights(model)
model.dispose()
const test = loadMedMnist(BUNDLED_PNEUMONIAMNIST).test!
const px = 28 * 28
const pngs = Array.from({ length: n }, (_, i) => {
  const j = i % test.labels.length
  const png = new PNG({ width: 28, height: 28 })
  for (let k = 0; k < px; k++) { const v = test.pixels[j * px + k]; png.data.set([v, v, v, 255], 4 * k) }
  return new Uint8Array(PNG.sync.write(png))
})

predictProbabilities(spec, weights, pngs.slice(0, 8).map(b => preprocess(b, 'x.png', 28, 1)), undefined) // warm up
let t = performance.now()
const probs = predictProbabilities(spec, weights, pngs.map(b => preprocess(b, 'x.png', 28, 1)), undefined)
const batchS = (performance.now() - t) / 1000
if (probs.length !== 2 * n) throw new Error('wrong output size')
const latencies: number[] = []
for (let i = 0; i < singles; i++) {
  t = performance.now()
  predictProbabilities(spec, weights, [preprocess(pngs[i], 'x.png', 28, 1)], undefined)
  latencies.push(performance.now() - t)
}
latencies.sort((a, b) => a - b)
const median = latencies[Math.floor(latencies.length / 2)]
const loaded = withWeights(spec, weights)
explain(loaded, [preprocess(pngs[0], 'x.png', 28, 1)], undefined) // warm up
t = performance.now()
explain(loaded, pngs.slice(0, singles).map(b => preprocess(b, 'x.png', 28, 1)), undefined)
const explainMs = (performance.now() - t) / singles
loaded.dispose()
const batchRate = n / batchS
const singleRate = 1000 / median
console.log(`backend ${backend.name}; ${spec.id} 28×28`)
console.log(`batch of ${n}: ${batchS.toFixed(2)} s, ${batchRate.toFixed(0)} images/s`)
console.log(`one image per call (${singles}): median ${median.toFixed(1)} ms (model built each call, as the CLI does), ${singleRate.toFixed(1)} images/s`)
console.log(`Grad-CAM explanation: ${explainMs.toFixed(1)} ms per image`)
console.log(`batch / one at a time: ${(batchRate / singleRate).toFixed(1)}×`)
console.log(JSON.stringify({ bench: 'predict', backend: backend.name, model: spec.id, images: n, batchImagesPerSecond: Math.round(batchRate), singleImageMs: Number(median.toFixed(1)), gradCamMsPerImage: Number(explainMs.toFixed(1)), ratio: Number((batchRate / singleRate).toFixed(2)) }))
