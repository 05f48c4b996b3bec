/** Encrypted inference's core: the layout against TF.js, the encrypted path against the layout, and every refusal. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import { noiseImages } from '../helpers/images.ts'
import { selectBackend } from '../../src/training/backend.ts'
import { buildModel, flattenWeights, HE_CNN, type ModelSpec } from '../../src/training/models.ts'
import { predictWith } from '../../src/training/predict.ts'
import { CkksSuite, CkksError, galoisElement, SCALE } from '../../src/inference/ckks.ts'
import { HeModel } from '../../src/inference/he-model.ts'
import { HeClient, softmax } from '../../src/inference/he-client.ts'
import { im2col, plainScores, plainVectors, rotationSteps, splitWeights, HeLayoutError, type HeShape } from '../../src/inference/he-layout.ts'

const norm = { mean: [0.45], std: [0.25] }
const spec: ModelSpec = { id: 'medmesh/he-cnn', height: 28, width: 28, channels: 1, classes: 2, seed: 11 }
const shape: HeShape = { filters: HE_CNN.filters, hidden: HE_CNN.hidden, classes: 2 }

const images = noiseImages
const normalised = (img: Uint8Array): Float32Array => Float32Array.from(img, v => (v / 255 - norm.mean[0]) / norm.std[0])

let suite: CkksSuite
let weights: Float32Array
let client: HeClient
let model: HeModel
test.before(async () => {
  await selectBackend()
  const m = buildModel(spec)
  weights = flattenWeights(m)
  m.dispose()
  suite = await CkksSuite.create()
  client = new HeClient(suite)
  model = new HeModel(suite, splitWeights(weights, shape))
})
test.after(() => { model.delete(); client.delete(); suite.delete() })

test('the slot layout computes what TF.js computes (softmax of the plain-slot scores = the model\'s probabilities)', () => {
  const m = buildModel(spec)
  const imgs = images(5, 1)
  const tfProbs = predictWith(m, imgs, norm)
  m.dispose()
  const vectors = plainVectors(splitWeights(weights, shape))
  imgs.forEach((img, i) => {
    const p = softmax(plainScores(im2col(normalised(img)), vectors, 2))
    for (let k = 0; k < 2; k++) assert.ok(Math.abs(p[k] - tfProbs[i * 2 + k]) < 1e-4, `image ${i} class ${k}: ${p[k]} vs ${tfProbs[i * 2 + k]}`)
  })
})

test('rotation steps and their Galois elements are the ones SEAL generates keys for', () => {
  assert.equal(rotationSteps(3), [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, -1, -2])
  assert.is(galoisElement(1), 3)
  assert.is(galoisElement(2), 9)
  const kg = new suite.seal.KeyGenerator(suite.context)
  const gk = kg.createGaloisKeysWithSteps(Int32Array.from([1, -1, 64]))
  for (const s of [1, -1, 64]) assert.ok(gk.hasKey(galoisElement(s)), `step ${s}`)
  assert.not.ok(gk.hasKey(galoisElement(2)))
  gk.delete(); kg.delete()
  throwsA(() => galoisElement(4096), CkksError, /no rotation/)
})

test('encrypted scores match the plain ones; the answer sits at the last level', () => {
  const session = model.openSession(client.evaluationKeys(2))
  const vectors = plainVectors(splitWeights(weights, shape))
  try {
    for (const img of images(3, 2)) {
      const x = normalised(img)
      const plain = plainScores(im2col(x), vectors, 2)
      const answer = model.evaluate(session, client.encryptImage(x))
      const enc = client.decryptScores(answer, 2)
      // CKKS is approximate and each encryption draws fresh noise: at scale 2^29 through depth 5
      // the scores came within 0.013 of the plain ones (one CI run; 0.012 over bench:inference's
      // images), so 3e-2 bounds the noise with room, while any wrong layout or key is off by far
      // more; and the class must be the plain one's
      for (let k = 0; k < 2; k++) assert.ok(Math.abs(enc[k] - plain[k]) < 3e-2 * Math.max(1, Math.abs(plain[k])), `class ${k}: ${enc[k]} vs ${plain[k]}`)
      if (Math.abs(plain[0] - plain[1]) > 0.1) assert.is(enc[0] > enc[1], plain[0] > plain[1], 'the encrypted answer names the plain one\'s class')
      const ct = suite.loadCiphertext(answer, { level: 0 })
      assert.is(suite.level(ct), 0)
      ct.delete()
    }
  } finally { session.delete() }
})

test('answers are re-randomised: the same query twice gives other bytes, the same scores', () => {
  const session = model.openSession(client.evaluationKeys(2))
  try {
    const q = client.encryptImage(normalised(images(1, 4)[0]))
    const [a, b] = [model.evaluate(session, q), model.evaluate(session, q)]
    assert.not.equal(Buffer.from(a).equals(Buffer.from(b)), true)
    const [sa, sb] = [client.decryptScores(a, 2), client.decryptScores(b, 2)]
    for (let k = 0; k < 2; k++) assert.ok(Math.abs(sa[k] - sb[k]) < 1e-3, `${sa[k]} vs ${sb[k]}`)
    // what the clinic sends: the public, relinearisation and Galois keys, never the secret key
    assert.equal(Object.keys(client.evaluationKeys(2)).sort(), ['galoisKeys', 'publicKey', 'relinKeys'])
  } finally { session.delete() }
})

test('refused before SEAL evaluates: wrong Galois steps, garbage, a ciphertext at another level or scale, oversize', () => {
  const keys = client.evaluationKeys(2)
  const fewer = new HeModel(suite, splitWeights(weights, shape))
  // keys for a 3-class model's rotations (one more than this model's) are not exactly what it needs
  throwsA(() => fewer.openSession(client.evaluationKeys(3)), CkksError, /Galois keys for 14 rotations \(exactly 13 expected\)/)
  throwsA(() => fewer.openSession({ ...keys, galoisKeys: keys.publicKey }), CkksError, /Galois keys do not load/)
  throwsA(() => fewer.openSession({ ...keys, relinKeys: new Uint8Array(0) }), CkksError, /relinKeys of 0 bytes/)
  const session = fewer.openSession(keys)
  try {
    const good = client.encryptImage(normalised(images(1, 3)[0]))
    throwsA(() => fewer.evaluate(session, Uint8Array.from(good.subarray(0, 200))), CkksError, /does not load/)
    throwsA(() => fewer.evaluate(session, new Uint8Array(2 << 20)), CkksError, /limit/)
    const answer = fewer.evaluate(session, good)
    throwsA(() => fewer.evaluate(session, answer), CkksError, /at level 0 \(5 expected\)/)
    // the holder still serves after refusing
    assert.is(client.decryptScores(fewer.evaluate(session, good), 2).length, 2)
  } finally { session.delete(); fewer.delete() }
  throwsA(() => splitWeights(weights.subarray(1), shape), HeLayoutError, /weights, not/)
  throwsA(() => im2col(new Float32Array(100)), HeLayoutError, /784 values/)
  assert.is(SCALE, 2 ** 29)
})

test.run()
