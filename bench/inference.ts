/**
 * bench/inference: encrypted inference (CKKS, node-seal) against the same model in the clear, side
 * by side in one run, on loopback through the real protocol (a holder's listener and SEAL worker,
 * a clinic's libp2p dialer):
 *   - plaintext: medmesh/he-cnn in TF.js, one image per call and batched
 *   - encrypted: per image, the clinic's encryption, the holder's evaluation, the round trip and
 *     the decryption; bytes per query; the one-time evaluation keys (size, time to make and load)
 *   - agreement: the same predicted class, and the largest differences of scores and probabilities
 *   - beside them, the plaintext accuracy of he-cnn and of the default cnn-small, trained alike
 * The ratio is encrypted over plaintext time per image. Last line: one JSON object.
 *
 * Usage: npm run bench:inference [-- --images 200 --epochs 3 --data-dir DIR]
 *   --data-dir: serve that member's chosen certified he-cnn instead of training one here
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { selectBackend } from '../src/training/backend.ts'
import { loadMedMnist, BUNDLED_PNEUMONIAMNIST } from '../src/training/data/npz.ts'
import { buildModel, flattenWeights, HE_CNN, type ModelSpec } from '../src/training/models.ts'
import { LocalTrainer } from '../src/training/trainer.ts'
import { normalisation, pixelStats, statsVector, type Normalisation } from '../src/training/data/stats.ts'
import { predictWith, withWeights } from '../src/training/predict.ts'
import { clinicalMetrics } from '../src/training/metrics.ts'
import { NodeIdentity } from '../src/privacy/index.ts'
import { defaultParams, validateManifest } from '../src/protocol/manifest.ts'
import { createInferenceHolder, servedModel } from '../src/node/inference/holder.ts'
import { Clinic } from '../src/node/inference/clinic.ts'
import type { ServedModel } from '../src/node/inference/service.ts'
import type { Logger } from '../src/node/logger.ts'

const { values } = parseArgs({ options: { images: { type: 'string', default: '200' }, epochs: { type: 'string', default: '3' }, 'data-dir': { type: 'string' } } })
const n = Number(values.images)
const epochs = Number(values.epochs)
const backend = await selectBackend()
const data = loadMedMnist(BUNDLED_PNEUMONIAMNIST)
const test = data.test!
const px = 28 * 28

/** one model trained on the pooled training set: its weights, and its test AUC and accuracy */
function trainCentral (id: ModelSpec['id'], norm: Normalisation): { weights: Float32Array, auc: number, accuracy: number, seconds: number } {
  const spec: ModelSpec = { id, height: 28, width: 28, channels: 1, classes: 2, seed: 1 }
  const model = buildModel(spec)
  const trainer = new LocalTrainer(model)
  const t = performance.now()
  for (let e = 0; e < epochs; e++) trainer.train(data.train, { epochs: 1, batchSize: 32, learningRate: id === 'medmesh/he-cnn' ? 0.003 : 0.001, normalisation: norm, classWeighting: 'balanced', augment: false, seed: new Uint8Array(32).fill(e + 1) })
  const seconds = (performance.now() - t) / 1000
  const m = trainer.evaluate(test, norm)
  const weights = flattenWeights(model)
  trainer.dispose()
  return { weights, auc: m.auc, accuracy: m.accuracy, seconds }
}

let served: ServedModel
let cnnSmall: { auc: number, accuracy: number } | null = null
let heFigures: { auc: number, accuracy: number } | null = null
if (values['data-dir'] !== undefined) {
  const s = servedModel(values['data-dir'])
  if (typeof s === 'string') throw new Error(s)
  served = s
} else {
  const norm = normalisation(statsVector(pixelStats(data.train)), 1)
  const he = trainCentral('medmesh/he-cnn', norm)
  const cnn = trainCentral('medmesh/cnn-small', norm)
  heFigures = { auc: he.auc, accuracy: he.accuracy }
  cnnSmall = { auc: cnn.auc, accuracy: cnn.accuracy }
  console.log(`plaintext, trained here on the pooled training set (${epochs} epochs), on the test set (${test.labels.length} images):`)
  console.log(`  medmesh/he-cnn    AUC ${he.auc.toFixed(3)}  ACC ${he.accuracy.toFixed(3)}  (${he.seconds.toFixed(0)} s to train)`)
  console.log(`  medmesh/cnn-small AUC ${cnn.auc.toFixed(3)}  ACC ${cnn.accuracy.toFixed(3)}  (${cnn.seconds.toFixed(0)} s to train)`)
  served = { round: 0, stateHash: '00'.repeat(32), weights: he.weights, shape: { filters: HE_CNN.filters, hidden: HE_CNN.hidden, classes: 2 }, classNames: ['normal', 'pneumonia'], mean: norm.mean, std: norm.std }
}
const norm: Normalisation = { mean: served.mean, std: served.std }
const spec: ModelSpec = { id: 'medmesh/he-cnn', height: 28, width: 28, channels: 1, classes: 2, seed: 1 }
const images = Array.from({ length: n }, (_, i) => test.pixels.slice((i % test.labels.length) * px, (i % test.labels.length + 1) * px))

// plaintext: batched, and one image per call on a loaded model
const model = withWeights(spec, served.weights)
predictWith(model, images.slice(0, 4), norm)
let t = performance.now()
const plain = predictWith(model, images, norm)
const plainBatchMs = (performance.now() - t) / n
t = performance.now()
for (let i = 0; i < 50; i++) predictWith(model, [images[i % n]], norm)
const plainSingleMs = (performance.now() - t) / 50
model.dispose()

// encrypted, on loopback
const holderId = NodeIdentity.generate()
const clinicId = NodeIdentity.generate()
const manifest = validateManifest({ version: 1, name: 'bench', members: [{ peerId: holderId.peerId, name: 'holder' }, { peerId: NodeIdentity.generate().peerId, name: 'other' }], params: { ...defaultParams(2, 10, '0'.repeat(64)), inference: { clients: [{ peerId: clinicId.peerId, name: 'clinic' }] } } })
const evalMs: number[] = []
const quiet = { debug () {}, warn () {}, error () {}, info (fields: Record<string, unknown>, msg?: string) { if (msg === 'inference query answered') evalMs.push(fields.ms as number) } } as unknown as Logger
const dir = mkdtempSync(join(tmpdir(), 'medmesh-bench-infer-'))
const holder = await createInferenceHolder({ dataDir: dir, manifest, listen: ['/ip4/127.0.0.1/tcp/0'], log: quiet, model: () => served, options: { perMinute: 100_000 } })
await holder.start()
const clinic = await Clinic.connect(clinicId, holder.addresses()[0])
const rows: Array<{ encrypt: number, roundTrip: number, decrypt: number, query: number, answer: number }> = []
let agree = 0
let maxScore = 0
let maxProb = 0
const encProbs = new Float32Array(2 * n)
// the first query also encodes the holder's plaintexts (cached after): timed apart
const warm = await clinic.predict(images[0])
evalMs.length = 0
for (let i = 0; i < n; i++) {
  const p = await clinic.predict(images[i])
  rows.push({ ...p.ms, query: p.bytes.query, answer: p.bytes.answer })
  const q = [plain[2 * i], plain[2 * i + 1]]
  if ((p.probabilities[1] > p.probabilities[0]) === (q[1] > q[0])) agree++
  // scores: the plaintext logits differ from ours by a constant per image; compare their difference
  const plainGap = Math.log(q[1] / q[0])
  maxScore = Math.max(maxScore, Math.abs((p.scores[1] - p.scores[0]) - plainGap))
  maxProb = Math.max(maxProb, Math.abs(p.probabilities[1] - q[1]))
  encProbs[2 * i] = p.probabilities[0]; encProbs[2 * i + 1] = p.probabilities[1]
}
await clinic.close()
await holder.stop()
rmSync(dir, { recursive: true, force: true })

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }
const enc = { encrypt: median(rows.map(r => r.encrypt)), evaluate: median(evalMs), roundTrip: median(rows.map(r => r.roundTrip)), decrypt: median(rows.map(r => r.decrypt)) }
const total = median(rows.map(r => r.encrypt + r.roundTrip + r.decrypt))
const labels = Int32Array.from({ length: n }, (_, i) => test.labels[i % test.labels.length])
const encMetrics = clinicalMetrics(encProbs, labels, 2)
const plainMetrics = clinicalMetrics(plain, labels, 2)
const ratio = total / plainSingleMs
console.log(`backend ${backend.name}; medmesh/he-cnn 28×28 (${served.weights.length} weights); CKKS N=8192, 218-bit modulus, scale 2^29 (node-seal, 128-bit)`)
console.log(`evaluation keys (once per session): ${(clinic.keys.bytes / 1e6).toFixed(1)} MB, made in ${clinic.keys.makeMs.toFixed(0)} ms, sent and loaded in ${clinic.keys.sendMs.toFixed(0)} ms`)
console.log(`first query (the holder encodes its plaintexts): ${(warm.ms.encrypt + warm.ms.roundTrip + warm.ms.decrypt).toFixed(0)} ms`)
console.log(`encrypted, per image (median of ${n}): encrypt ${enc.encrypt.toFixed(1)} ms, holder evaluates ${enc.evaluate.toFixed(0)} ms, round trip ${enc.roundTrip.toFixed(0)} ms, decrypt ${enc.decrypt.toFixed(1)} ms; total ${total.toFixed(0)} ms`)
console.log(`bytes per query: ${(median(rows.map(r => r.query)) / 1024).toFixed(0)} KiB up, ${(median(rows.map(r => r.answer)) / 1024).toFixed(0)} KiB down`)
console.log(`plaintext, per image: ${plainSingleMs.toFixed(1)} ms one at a time, ${plainBatchMs.toFixed(2)} ms batched`)
console.log(`agreement with plaintext on ${n} test images: same class ${(100 * agree / n).toFixed(1)}%; largest difference of the score gap ${maxScore.toFixed(4)}, of a probability ${maxProb.toFixed(4)}; AUC encrypted ${encMetrics.auc.toFixed(4)} vs plaintext ${plainMetrics.auc.toFixed(4)}`)
console.log(`encrypted / plaintext time per image: ${ratio.toFixed(0)}× (PriMIA's function secret sharing: on the order of 100 s per image)`)
console.log(JSON.stringify({
  bench: 'inference', backend: backend.name, images: n, model: 'medmesh/he-cnn', weights: served.weights.length,
  keys: { bytes: clinic.keys.bytes, makeMs: Math.round(clinic.keys.makeMs), sendAndLoadMs: Math.round(clinic.keys.sendMs) },
  perImageMs: { encrypt: +enc.encrypt.toFixed(2), holderEvaluate: enc.evaluate, roundTrip: +enc.roundTrip.toFixed(1), decrypt: +enc.decrypt.toFixed(2), total: +total.toFixed(1), plaintextSingle: +plainSingleMs.toFixed(2), plaintextBatched: +plainBatchMs.toFixed(3) },
  bytesPerQuery: { up: median(rows.map(r => r.query)), down: median(rows.map(r => r.answer)) },
  agreement: { sameClass: agree / n, maxScoreGapDiff: +maxScore.toFixed(5), maxProbabilityDiff: +maxProb.toFixed(5), aucEncrypted: +encMetrics.auc.toFixed(4), aucPlaintext: +plainMetrics.auc.toFixed(4) },
  plaintextAccuracy: heFigures === null ? null : { heCnn: heFigures, cnnSmall },
  ratio: +ratio.toFixed(1), targetMs: 2000, meetsTarget: total <= 2000 && agree / n >= 0.99
}))
