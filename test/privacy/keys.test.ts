import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { throwsA } from '../helpers/assert.ts'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { x25519 } from '@noble/curves/ed25519.js'
import {
  x25519PublicKey, x25519SharedSecret, generateX25519KeyPair, deriveKey, hkdfInfo, agreeKey, KEY_PURPOSES,
  seededRandom, InvalidArgumentError
} from '../../src/privacy/index.ts'
import { hex, toHex, testSeed } from '../helpers/bytes.ts'

test('X25519 matches RFC 7748 section 6.1', () => {
  const a = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
  const b = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb')
  assert.is(toHex(x25519PublicKey(a)), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a')
  assert.is(toHex(x25519PublicKey(b)), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f')
  const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'
  assert.is(toHex(x25519SharedSecret(a, x25519PublicKey(b))), shared)
  assert.is(toHex(x25519SharedSecret(b, x25519PublicKey(a))), shared)
})

test('X25519 equals @noble/curves on random keys, and on public keys with the top bit set (RFC 7748: ignored)', () => {
  const rng = seededRandom(testSeed(7))
  for (let i = 0; i < 50; i++) {
    const a = generateX25519KeyPair(rng); const b = generateX25519KeyPair(rng)
    assert.is(toHex(a.publicKey), toHex(x25519.getPublicKey(a.secretKey)))
    assert.is(toHex(x25519SharedSecret(a.secretKey, b.publicKey)), toHex(x25519.getSharedSecret(a.secretKey, b.publicKey)))
    const high = Uint8Array.from(b.publicKey); high[31] |= 0x80
    assert.is(toHex(x25519SharedSecret(a.secretKey, high)), toHex(x25519.getSharedSecret(a.secretKey, high)))
  }
})

test('low-order X25519 public keys are refused', () => {
  const { secretKey } = generateX25519KeyPair(seededRandom(testSeed(1)))
  throwsA(() => x25519SharedSecret(secretKey, new Uint8Array(32)), InvalidArgumentError)
  const one = new Uint8Array(32); one[0] = 1
  throwsA(() => x25519SharedSecret(secretKey, one), InvalidArgumentError)
  throwsA(() => x25519SharedSecret(secretKey, new Uint8Array(31)), InvalidArgumentError)
})

test('deriveKey is HKDF-SHA256 with empty salt and info "medmesh/v1/<purpose>" 0x00 context', () => {
  const ikm = testSeed(2)
  const ctx = Uint8Array.of(9, 8, 7)
  const info = Buffer.concat([Buffer.from('medmesh/v1/share-encryption'), Buffer.of(0), Buffer.from(ctx)])
  assert.is(toHex(hkdfInfo('share-encryption', ctx)), toHex(info))
  assert.is(toHex(deriveKey(ikm, 'share-encryption', ctx, 42)), toHex(hkdf(sha256, ikm, new Uint8Array(0), info, 42)))
})

test('node HKDF reproduces RFC 5869 test case 3 (the primitive under deriveKey)', async () => {
  const { hkdfSync } = await import('node:crypto')
  const okm = new Uint8Array(hkdfSync('sha256', hex('0b'.repeat(22)), new Uint8Array(0), new Uint8Array(0), 42))
  assert.is(toHex(okm), '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8')
})

test('every purpose and every context gives a different key', () => {
  const ikm = testSeed(3)
  const keys = new Set<string>()
  for (const p of KEY_PURPOSES) {
    keys.add(toHex(deriveKey(ikm, p)))
    keys.add(toHex(deriveKey(ikm, p, Uint8Array.of(1))))
  }
  assert.is(keys.size, KEY_PURPOSES.length * 2)
  throwsA(() => deriveKey(ikm, 'nope' as never), InvalidArgumentError)
  throwsA(() => deriveKey(ikm.subarray(0, 8), 'share-encryption'), InvalidArgumentError)
})

test('agreeKey gives both peers the same key, and a third peer another', () => {
  const rng = seededRandom(testSeed(4))
  const a = generateX25519KeyPair(rng)
  const b = generateX25519KeyPair(rng)
  const c = generateX25519KeyPair(rng)
  const ctx = Uint8Array.of(1)
  const ab = agreeKey(a.secretKey, b.publicKey, 'pairwise-mask-seed', ctx)
  assert.is(toHex(ab), toHex(agreeKey(b.secretKey, a.publicKey, 'pairwise-mask-seed', ctx)))
  assert.is.not(toHex(ab), toHex(agreeKey(c.secretKey, b.publicKey, 'pairwise-mask-seed', ctx)))
  assert.is.not(toHex(ab), toHex(agreeKey(a.secretKey, b.publicKey, 'share-encryption', ctx)))
})

test.run()
