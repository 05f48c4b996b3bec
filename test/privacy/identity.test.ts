import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import { inspect } from 'node:util'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import {
  NodeIdentity, verifySignature, signedPayload, peerIdFromEd25519PublicKey, ed25519PublicKeyFromPeerId,
  referenceEd25519, seededRandom, InvalidArgumentError
} from '../../src/privacy/index.ts'
import { hex, toHex, testSeed } from '../helpers/bytes.ts'

// RFC 8032 section 7.1, TEST 1 and TEST 2
const RFC8032 = [
  {
    seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    pub: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    msg: '',
    sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'
  },
  {
    seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    pub: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    msg: '72',
    sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'
  }
]

test('Ed25519 public keys match RFC 8032', () => {
  for (const v of RFC8032) assert.is(toHex(NodeIdentity.fromSeed(hex(v.seed)).publicKey), v.pub)
})

test('signatures are RFC 8032 Ed25519 over the domain-separated payload', () => {
  for (const v of RFC8032) {
    const id = NodeIdentity.fromSeed(hex(v.seed))
    const sig = id.sign('test', hex(v.msg))
    // the reference implementation signs the same payload to the same bytes
    assert.is(toHex(sig), toHex(referenceEd25519.sign(signedPayload('test', hex(v.msg)), hex(v.seed))))
    assert.ok(referenceEd25519.verify(sig, signedPayload('test', hex(v.msg)), hex(v.pub)))
    // and the raw RFC vector holds for the payload the RFC signed
    assert.is(toHex(referenceEd25519.sign(hex(v.msg), hex(v.seed))), v.sig)
  }
})

test('signedPayload layout: "medmesh/v1/<purpose>" 0x00 message', () => {
  assert.is(toHex(signedPayload('ab', Uint8Array.of(7))), toHex(Buffer.concat([Buffer.from('medmesh/v1/ab'), Buffer.of(0, 7)])))
  throwsA(() => signedPayload('Bad Purpose', new Uint8Array(0)), InvalidArgumentError)
  throwsA(() => signedPayload('', new Uint8Array(0)), InvalidArgumentError)
})

test('verifySignature accepts the signer, rejects another purpose, message, key or a mangled signature', () => {
  const rng = seededRandom(testSeed(9))
  const alice = NodeIdentity.generate(rng)
  const bob = NodeIdentity.generate(rng)
  const msg = new TextEncoder().encode('round 7 commitment')
  const sig = alice.sign('commit', msg)
  assert.ok(verifySignature(alice.publicKey, 'commit', msg, sig))
  assert.not.ok(verifySignature(alice.publicKey, 'advertise', msg, sig))
  assert.not.ok(verifySignature(bob.publicKey, 'commit', msg, sig))
  assert.not.ok(verifySignature(alice.publicKey, 'commit', msg.subarray(1), sig))
  const bad = Uint8Array.from(sig); bad[10] ^= 1
  assert.not.ok(verifySignature(alice.publicKey, 'commit', msg, bad))
  assert.not.ok(verifySignature(alice.publicKey, 'commit', msg, sig.subarray(0, 63)))
  throwsA(() => verifySignature(alice.publicKey.subarray(1), 'commit', msg, sig), InvalidArgumentError)
})

test('native signing agrees with @noble/curves on random keys and messages', () => {
  const rng = seededRandom(testSeed(10))
  for (let i = 0; i < 20; i++) {
    const id = NodeIdentity.generate(rng)
    const msg = new Uint8Array(i * 13).fill(i)
    const sig = id.sign('x', msg)
    assert.is(toHex(sig), toHex(referenceEd25519.sign(signedPayload('x', msg), id.exportSeed())))
  }
})

test('the identity is the libp2p identity: same peer id, same signatures', async () => {
  const id = NodeIdentity.fromSeed(testSeed(11))
  const key = id.toLibp2pPrivateKey()
  assert.is(peerIdFromPrivateKey(key).toString(), id.peerId)
  assert.ok(id.peerId.startsWith('12D3KooW'))
  const msg = Uint8Array.of(1, 2, 3)
  assert.is(toHex(await key.sign(msg)), toHex(referenceEd25519.sign(msg, id.exportSeed())))
  assert.is(toHex(ed25519PublicKeyFromPeerId(id.peerId)), toHex(id.publicKey))
  assert.is(peerIdFromEd25519PublicKey(id.publicKey), id.peerId)
})

test('peer ids that are not Ed25519 peer ids are refused', () => {
  throwsA(() => ed25519PublicKeyFromPeerId('not a peer id'), InvalidArgumentError)
  // an RSA-style (sha256 multihash) peer id carries no key
  throwsA(() => ed25519PublicKeyFromPeerId('QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'), InvalidArgumentError)
  throwsA(() => ed25519PublicKeyFromPeerId('x'.repeat(200)), InvalidArgumentError)
})

test('the seed never appears in JSON, inspect output or errors', () => {
  const seed = testSeed(12)
  const id = NodeIdentity.fromSeed(seed)
  const seedHex = toHex(seed)
  assert.not.ok(JSON.stringify(id).includes(seedHex))
  assert.not.ok(JSON.stringify({ id }).includes(String(seed[5])+','+String(seed[6])))
  assert.not.ok(inspect(id, { showHidden: true, depth: 5 }).includes(seedHex))
  assert.is(inspect(id), `NodeIdentity(${id.peerId})`)
  try { NodeIdentity.fromSeed(seed.subarray(0, 31)) } catch (e) {
    assert.instance(e, InvalidArgumentError)
    assert.not.ok((e as Error).message.includes(String(seed[0]) + ','))
  }
  assert.is(toHex(id.exportSeed()), seedHex)
})

test.run()
