import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import { MemNet } from './harness.ts'
import { NodeIdentity, seededRandom } from '../../src/privacy/index.ts'
import { hex } from '../../src/protocol/codec.ts'
import { ProtocolError } from '../../src/protocol/errors.ts'
import { Ledger, membershipHeader, signHeader, decodeCertificate, encodeCertificate, type Certificate } from '../../src/protocol/ledger.ts'
import { consortiumId, validateManifest, signManifest, verifySignedManifest, defaultParams, ManifestError } from '../../src/protocol/manifest.ts'
import { decodeState, encodeState, stateHash, initialState } from '../../src/protocol/model.ts'
import { fedAvg } from '../../src/protocol/strategy/fedavg.ts'
import { fedAvgM } from '../../src/protocol/strategy/fedavgm.ts'
import { fedAdam } from '../../src/protocol/strategy/fedadam.ts'

function threeRounds (): MemNet {
  const net = new MemNet({ n: 4, seed: 31, modelSize: 6, lastRound: 2 })
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.entries.length === 3))
  return net
}

test('the ledger verifies from the manifest alone, and any tampering breaks it', () => {
  const net = threeRounds()
  const certs = net.peers[1].ledger.entries.map(e => decodeCertificate(encodeCertificate(e.certificate)))
  const ledger = Ledger.verify(net.manifest, certs)
  assert.is(hex(ledger.head), hex(net.peers[0].ledger.head))
  // out of order, a missing link, too few signatures, a forged header
  throwsA(() => Ledger.verify(net.manifest, [certs[1], certs[0]]), ProtocolError)
  throwsA(() => Ledger.verify(net.manifest, [certs[0], certs[2]]), ProtocolError, /does not extend the ledger/)
  const weak: Certificate = { header: certs[0].header, signatures: certs[0].signatures.slice(0, net.manifest.params.quorum - 1) }
  throwsA(() => Ledger.verify(net.manifest, [weak]), ProtocolError, /quorum/)
  const forged = Uint8Array.from(certs[0].header); forged[forged.length - 3] ^= 1
  throwsA(() => Ledger.verify(net.manifest, [{ header: forged, signatures: certs[0].signatures }]), ProtocolError)
  // another consortium's manifest does not accept these certificates
  const other = validateManifest({ ...net.manifest, name: 'another consortium' })
  throwsA(() => Ledger.verify(other, certs), ProtocolError, /another consortium/)
})

test('a membership change is a certificate signed by a quorum of the current members', () => {
  const net = threeRounds()
  const ledger = Ledger.verify(net.manifest, net.peers[0].ledger.entries.map(e => e.certificate))
  const newcomer = NodeIdentity.generate(seededRandom(new Uint8Array(32).fill(5)))
  const next = validateManifest({ ...net.manifest, members: [...net.manifest.members, { peerId: newcomer.peerId, name: 'new hospital' }] })
  const header = membershipHeader(ledger, next, 3)
  const quorum = net.manifest.params.quorum
  const short: Certificate = { header, signatures: net.identities.slice(0, quorum - 1).map((id, i) => [i, signHeader(id, header)]) }
  throwsA(() => ledger.append(short), ProtocolError, /quorum/)
  const cert: Certificate = { header, signatures: net.identities.slice(0, quorum).map((id, i) => [i, signHeader(id, header)]) }
  ledger.append(cert)
  assert.is(ledger.manifest.members.length, 5)
  assert.is(hex(ledger.consortium), hex(consortiumId(next)))
  // and the whole chain, membership change included, verifies from the genesis manifest
  const again = Ledger.verify(net.manifest, ledger.entries.map(e => e.certificate))
  assert.is(again.manifest.members.length, 5)
})

test('manifests: validated field by field, signed by every founding member', () => {
  const ids = [1, 2, 3].map(k => NodeIdentity.generate(seededRandom(new Uint8Array(32).fill(k))))
  const manifest = validateManifest({ version: 1, name: 'c', members: ids.map((id, i) => ({ peerId: id.peerId, name: `h${i}` })), params: defaultParams(3, 10, '0'.repeat(64)) })
  const signatures = Object.fromEntries(ids.map(id => [id.peerId, signManifest(manifest, id)]))
  assert.is(verifySignedManifest({ manifest, signatures }).name, 'c')
  const missing = { ...signatures }; delete missing[ids[2].peerId]
  throwsA(() => verifySignedManifest({ manifest, signatures: missing }), ManifestError, /lacks a signature/)
  throwsA(() => verifySignedManifest({ manifest: { ...manifest, name: 'd' }, signatures }), ManifestError, /invalid/)
  const bad = (mutate: (m: any) => void, re: RegExp) => {
    const m = structuredClone(manifest) as any; mutate(m)
    throwsA(() => validateManifest(m), ManifestError, re)
  }
  bad(m => { m.params.threshold = 1 }, /threshold/)
  bad(m => { m.params.quorum = 4 }, /quorum/)
  bad(m => { m.members = [m.members[0]] }, /2 to 100 members/)
  bad(m => { m.members[1].peerId = m.members[0].peerId }, /listed twice/)
  bad(m => { m.members[0].peerId = 'Qm-not-a-key' }, /Ed25519/)
  bad(m => { m.params.quantization.scale = 2 ** 30; m.params.quantization.clip = 2 ** 10 }, /quantization/)
  bad(m => { m.params.aggregation.rule = 'median' }, /rule/)
  // encrypted inference's clients: Ed25519 peer ids with names, none a member, nothing else
  const clinic = NodeIdentity.generate().peerId
  assert.equal(validateManifest({ ...structuredClone(manifest), params: { ...structuredClone(manifest.params), inference: { clients: [{ peerId: clinic, name: 'clinic' }] } } }).params.inference, { clients: [{ peerId: clinic, name: 'clinic' }] })
  bad(m => { m.params.inference = { clients: [{ peerId: m.members[0].peerId, name: 'x' }] } }, /inference client .* is listed twice or is a member/)
  bad(m => { m.params.inference = { clients: [{ peerId: 'Qm-not-a-key', name: 'x' }] } }, /inference\.clients\[0\]\.peerId is not an Ed25519/)
  bad(m => { m.params.inference = { clients: [{ peerId: clinic, name: 'x', role: 'admin' }] } }, /must be \{ peerId, name \}/)
  bad(m => { m.params.inference = { clients: [], open: true } }, /params\.inference must be/)
  // the local recipe is the consortium's: every field checked
  bad(m => { m.params.training.epochs = 0 }, /training\.epochs/)
  bad(m => { m.params.training.batchSize = 2.5 }, /training\.batchSize/)
  bad(m => { delete m.params.training.learningRate }, /training\.learningRate/)
  bad(m => { m.params.training.classWeighting = 'inverse' }, /classWeighting/)
  bad(m => { m.params.training.schedule = 'linear' }, /schedule/)
  bad(m => { (m.params.training as { priorCorrection?: string }).priorCorrection = 'local' }, /priorCorrection must be none or pooled/)
  bad(m => { m.params.training.minSteps = 0 }, /training\.minSteps/)
  bad(m => { m.params.training.minSteps = 2.5 }, /training\.minSteps/)
  assert.is(validateManifest({ ...structuredClone(manifest), params: { ...structuredClone(manifest.params), training: { ...manifest.params.training, priorCorrection: 'pooled' } } }).params.training.priorCorrection, 'pooled')
})

test('model state: canonical encoding round-trips and its hash is stable', () => {
  const s = { weights: Float32Array.of(1, -2, 3.5), optimizer: [Float32Array.of(0.1, 0.2, 0.3)], step: 4 }
  const back = decodeState(encodeState(s), 1 << 20)
  assert.equal(Array.from(back.weights), Array.from(s.weights))
  assert.is(hex(stateHash(back)), hex(stateHash(s)))
  assert.is.not(hex(stateHash({ ...s, step: 5 })), hex(stateHash(s)))
})

test('strategies: FedAvg, FedAvgM and FedAdam follow their formulas and are deterministic', () => {
  const params = { rule: 'fedavg' as const, serverLr: 0.5, beta1: 0.9, beta2: 0.99, tau: 1e-3 }
  const s0 = initialState(Float32Array.of(1, 2))
  const d = Float64Array.of(0.2, -0.4)
  const a = fedAvg.apply(s0, d, params)
  assert.ok(Math.abs(a.weights[0] - 1.1) < 1e-6 && Math.abs(a.weights[1] - 1.8) < 1e-6)
  const m1 = fedAvgM.apply(s0, d, params)
  const m2 = fedAvgM.apply(m1, d, params)
  assert.ok(Math.abs(m2.optimizer[0][0] - (0.9 * 0.2 + 0.2)) < 1e-6, 'momentum accumulates')
  assert.ok(Math.abs(m2.weights[0] - (1 + 0.5 * 0.2 + 0.5 * 0.38)) < 1e-5)
  const f1 = fedAdam.apply(s0, d, params)
  const m = 0.1 * 0.2; const v = 0.01 * 0.04
  assert.ok(Math.abs(f1.weights[0] - (1 + 0.5 * m / (Math.sqrt(v) + 1e-3))) < 1e-5)
  assert.is(hex(stateHash(fedAdam.apply(s0, d, params))), hex(stateHash(f1)), 'bit-identical on every peer')
  throwsA(() => fedAvg.apply(s0, Float64Array.of(1), params), Error)
})

test('FedAdam rounds through the protocol leave every peer with the same state', () => {
  const net = new MemNet({ n: 4, seed: 32, modelSize: 6, lastRound: 1, params: p => { p.aggregation.rule = 'fedadam'; p.aggregation.serverLr = 0.01 } })
  net.startAll()
  net.run(() => net.peers.every(p => p.ledger.entries.length === 2))
  assert.is(new Set(net.peers.map(p => hex(stateHash(p.state)))).size, 1)
  assert.is(net.peers[0].state.optimizer.length, 2)
})

test.run()
