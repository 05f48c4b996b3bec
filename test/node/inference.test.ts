/**
 * Encrypted inference over libp2p on loopback: a holder's listener and SEAL worker, a clinic that
 * the manifest lists, a member, and a stranger; predictions that match the plaintext model, and
 * every refusal with the holder still serving.
 */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import initSeal from 'node-seal'
import { NodeIdentity } from '../../src/privacy/index.ts'
import { defaultParams, validateManifest } from '../../src/protocol/manifest.ts'
import { selectBackend } from '../../src/training/backend.ts'
import { buildModel, flattenWeights, HE_CNN } from '../../src/training/models.ts'
import { predictWith } from '../../src/training/predict.ts'
import { createInferenceHolder, type InferenceHolder } from '../../src/node/inference/holder.ts'
import { Clinic } from '../../src/node/inference/clinic.ts'
import { createClientHost } from '../../src/node/inference/host.ts'
import { HolderLink } from '../../src/node/inference/client.ts'
import { CkksSuite } from '../../src/inference/ckks.ts'
import { HeClient } from '../../src/inference/he-client.ts'
import { InferRefused } from '../../src/inference/he-wire.ts'
import type { ServedModel } from '../../src/node/inference/service.ts'
import { recordingLogger, type LogLine } from './services/stubs.ts'
import { testSeed } from '../helpers/bytes.ts'
import { noiseImages } from '../helpers/images.ts'

const [memberA, memberB, clinicId, stranger, heavy] = [1, 2, 3, 4, 5].map(i => NodeIdentity.fromSeed(testSeed(40 + i)))
const manifest = validateManifest({
  version: 1, name: 'inference test', members: [{ peerId: memberA.peerId, name: 'A' }, { peerId: memberB.peerId, name: 'B' }],
  params: { ...defaultParams(2, 10, '0'.repeat(64)), inference: { clients: [{ peerId: clinicId.peerId, name: 'clinic' }, { peerId: heavy.peerId, name: 'heavy user' }] } }
})
const norm = { mean: [0.45], std: [0.25] }
const spec = { id: 'medmesh/he-cnn' as const, height: 28, width: 28, channels: 1, classes: 2, seed: 5 }

const images = noiseImages

let dir: string
let holder: InferenceHolder
let lines: LogLine[]
let weights: Float32Array
let address: string

test.before(async () => {
  await selectBackend()
  const m = buildModel(spec)
  weights = flattenWeights(m)
  m.dispose()
  dir = mkdtempSync(join(tmpdir(), 'medmesh-infer-'))
  const served: ServedModel = { round: 7, stateHash: 'ab'.repeat(32), weights, shape: { filters: HE_CNN.filters, hidden: HE_CNN.hidden, classes: 2 }, classNames: ['normal', 'pneumonia'], mean: norm.mean, std: norm.std }
  const rec = recordingLogger()
  lines = rec.lines
  holder = await createInferenceHolder({ dataDir: dir, manifest, listen: ['/ip4/127.0.0.1/tcp/0'], log: rec.log, model: () => served, options: { perMinute: 40 } })
  await holder.start()
  address = holder.addresses()[0]
})
test.after(async () => { await holder.stop(); rmSync(dir, { recursive: true, force: true }) })

test('a listed clinic gets encrypted predictions that match the plaintext model; a member may ask too', async () => {
  const imgs = images(3, 9)
  const m = buildModel(spec)
  const plain = predictWith(m, imgs, norm)
  m.dispose()
  for (const who of [clinicId, memberB]) {
    const clinic = await Clinic.connect(who, address)
    try {
      assert.equal(clinic.info.classNames, ['normal', 'pneumonia'])
      assert.is(clinic.info.round, 7)
      for (const [i, img] of (who === clinicId ? imgs : imgs.slice(0, 1)).entries()) {
        const p = await clinic.predict(img)
        for (let k = 0; k < 2; k++) assert.ok(Math.abs(p.probabilities[k] - plain[i * 2 + k]) < 1e-3, `image ${i} class ${k}: ${p.probabilities[k]} vs ${plain[i * 2 + k]}`)
        assert.is(p.round, 7)
      }
    } finally { await clinic.close() }
  }
  const answered = lines.filter(l => l.msg === 'inference query answered')
  assert.is(answered.length, 4)
  // what the holder logs of a query: who, the sizes, how long, which round; never content
  assert.equal(Object.keys(answered[0].fields).sort(), ['client', 'in', 'ms', 'op', 'out', 'peer', 'round'])
  assert.is(answered[0].fields.client, 'clinic')
})

test('refused, with the holder serving on: a stranger, garbage, other parameters, no session, over the rate', async () => {
  let strangerError: unknown = null
  try { await (await Clinic.connect(stranger, address)).close() } catch (e) { strangerError = e }
  assert.ok(strangerError !== null, 'a stranger connected')
  assert.ok(lines.some(l => l.msg.startsWith('inference connection refused') && l.fields.peer === stranger.peerId))

  const host = await createClientHost(heavy)
  const suite = await CkksSuite.create()
  const client = new HeClient(suite)
  try {
    const link = new HolderLink(host, address)
    const refused = async (p: Promise<unknown>, why: RegExp): Promise<void> => {
      try { await p; assert.unreachable('not refused') } catch (e) { assert.instance(e, InferRefused); assert.match((e as Error).message, why) }
    }
    // keys made under other parameters (N = 4096) do not load
    const seal = await initSeal()
    const parms = new seal.EncryptionParameters(seal.SchemeType.ckks)
    parms.setPolyModulusDegree(4096)
    parms.setCoeffModulus(seal.CoeffModulus.Create(4096, Int32Array.from([40, 20, 40])))
    const other = new seal.SEALContext(parms, true, seal.SecLevelType.tc128)
    const kg = new seal.KeyGenerator(other)
    const zstd = seal.ComprModeType.zstd
    const foreign = { publicKey: kg.createPublicKeySerializable().saveToArray(zstd) as Uint8Array, relinKeys: kg.createRelinKeysSerializable().saveToArray(zstd) as Uint8Array, galoisKeys: kg.createGaloisKeysSerializableWithSteps(Int32Array.from([1])).saveToArray(zstd) as Uint8Array }
    await refused(link.openSession(foreign), /keys not accepted: the public key does not load under these parameters/)
    const { session } = await link.openSession(client.evaluationKeys(2))
    await refused(link.query(new Uint8Array(16), client.encryptImage(new Float32Array(784))), /no such session/)
    await refused(link.query(session, Uint8Array.from({ length: 5000 }, (_, i) => i & 0xff)), /query not evaluated: .*does not load/)
    // a ciphertext of the other parameters
    const pt = new seal.Plaintext(); new seal.CKKSEncoder(other).encode(new Float64Array(2048), 2 ** 20, pt)
    const foreignCt = new seal.Encryptor(other, kg.createPublicKey()).encryptSerializable(pt).saveToArray(zstd) as Uint8Array
    await refused(link.query(session, foreignCt), /query not evaluated: .*does not load/)
    // 40 a minute: the session cost 10 (and the refused keys 10), each query 1
    let refusal = ''
    for (let i = 0; i < 25 && refusal === ''; i++) {
      try { await link.query(session, new Uint8Array(10)) } catch (e) { if (/over the rate/.test((e as Error).message)) refusal = (e as Error).message }
    }
    assert.match(refusal, /over the rate of 40 queries a minute: ask again in \d+ s/)
  } finally { client.delete(); suite.delete(); await host.stop() }
  assert.ok(lines.filter(l => l.level === 'warn' && l.msg.startsWith('inference request refused') && l.fields.client === 'heavy user').length >= 5)

  // the holder still serves others
  const clinic = await Clinic.connect(clinicId, address)
  try { assert.is((await clinic.predict(images(1, 3)[0])).probabilities.length, 2) } finally { await clinic.close() }
})

test.run()
