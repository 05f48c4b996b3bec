/** Counting commits: a quorum of distinct members on one header, signatures checked, floods bounded. */
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { NodeIdentity, seededRandom } from '../../src/privacy/index.ts'
import { CommitTally, commitSignatureValid } from '../../src/protocol/commits.ts'
import { encodeHeader, headerHash, signHeader, verifyCertificate } from '../../src/protocol/ledger.ts'
import { hex } from '../../src/protocol/codec.ts'
import { defaultParams, validateManifest, consortiumId } from '../../src/protocol/manifest.ts'

const rng = seededRandom(new Uint8Array(32).fill(3))
const ids = [0, 1, 2, 3].map(() => NodeIdentity.generate(rng))
const manifest = validateManifest({ version: 1, name: 't', members: ids.map((id, i) => ({ peerId: id.peerId, name: `m${i}` })), params: { ...defaultParams(4, 1, '00'.repeat(32)), quorum: 3 } })
const member = (i: number): NodeIdentity => ids.find(id => id.peerId === manifest.members[i].peerId)!
const keys = manifest.members.map(m => ids.find(id => id.peerId === m.peerId)!.publicKey)
const header = (round: number): Uint8Array => encodeHeader({ consortium: consortiumId(manifest), round, prev: new Uint8Array(32), kind: 'update', survivors: [0, 1, 2], aggregateHash: new Uint8Array(32), stateHash: new Uint8Array(32), extra: new Uint8Array(0) })
const commit = (i: number, h: Uint8Array) => ({ header: h, signature: signHeader(member(i), h) })

test('a quorum of distinct members on one header makes a certificate that verifies', () => {
  const t = new CommitTally()
  const h = header(1)
  t.record(0, commit(0, h)); t.record(1, commit(1, h))
  t.record(1, commit(1, h)) // the same member twice counts once
  assert.is(t.certificate(3), null)
  const key = t.record(2, commit(2, h))!
  assert.is(key, hex(headerHash(h)))
  const cert = t.certificate(3)!
  assert.equal(cert.signatures.map(s => s[0]), [0, 1, 2])
  assert.is(verifyCertificate(cert, manifest).round, 1)
  assert.equal(t.signers(key), [0, 1, 2])
})

test('signatures: a member\'s own verifies, anyone else\'s or an altered header does not', () => {
  const h = header(2)
  assert.ok(commitSignatureValid(keys, 1, commit(1, h)))
  assert.not.ok(commitSignatureValid(keys, 2, commit(1, h)))
  assert.not.ok(commitSignatureValid(keys, 1, { header: header(3), signature: commit(1, h).signature }))
  assert.not.ok(commitSignatureValid(keys, 9, commit(1, h)), 'no such member')
})

test('latest per sender: a member moving to another header takes its vote along; headers are bounded', () => {
  const t = new CommitTally({ latestPerSender: true, maxHeaders: 2 })
  const [a, b, c] = [header(1), header(2), header(3)]
  t.record(0, commit(0, a)); t.record(1, commit(1, a))
  t.record(0, commit(0, b))
  assert.equal(t.signers(hex(headerHash(a))), [1])
  assert.equal(t.signers(hex(headerHash(b))), [0])
  assert.is(t.record(2, commit(2, c)), null, 'a third header is not counted')
  t.clear()
  assert.equal(t.signers(hex(headerHash(a))), [])
})

test('certificateFor: only the header named, whatever others hold', () => {
  const t = new CommitTally()
  const [a, b] = [header(1), header(2)]
  for (const i of [0, 1, 2]) t.record(i, commit(i, a))
  t.record(3, commit(3, b))
  assert.is(t.certificateFor(hex(headerHash(b)), 3), null)
  assert.ok(t.certificateFor(hex(headerHash(a)), 3) !== null)
})

test.run()
